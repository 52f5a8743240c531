"""dev/docker-compose.yml: the stack is wired as docs/marquez.md says. This machine has no
Docker engine or compose plugin, so the file is checked structurally here; where `docker
compose` exists, its own `config` validation runs too."""

import json
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.helpers.airflow_cluster import celery_settings, edge_settings

REPO = Path(__file__).resolve().parents[1]
COMPOSE = REPO / "dev" / "docker-compose.yml"
DEPLOYMENT = REPO / "docs" / "deployment.md"


def _bash_blocks(heading: str) -> list[str]:
    """The ```bash blocks of the docs/deployment.md section under ``heading``."""
    section = DEPLOYMENT.read_text().split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    return [b.split("```", 1)[0] for b in section.split("```bash\n")[1:]]


def _settings(block: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in block.splitlines() if line.strip())


def _celery_section() -> tuple[dict[str, str], list[list[str]]]:
    """docs/deployment.md's Celery section: its settings block and its worker commands."""
    settings_block, workers_block = _bash_blocks("CeleryExecutor with PostgreSQL and S3")
    workers = [shlex.split(line, comments=True) for line in workers_block.splitlines() if line.strip()]
    return _settings(settings_block), workers


def test_the_documented_edge_settings_are_the_ones_the_edge_e2e_test_runs():
    [block] = _bash_blocks("EdgeExecutor: remote and GPU sites")
    assert _settings(block) == edge_settings(api_url="https://airflow.example.com")


def test_the_documented_celery_settings_are_the_ones_the_e2e_test_runs_and_compose_sets():
    """tests/e2e/test_celery.py builds its environment with celery_settings(); here the same
    function, given the docs' host names, must give exactly the documented block, and every
    Airflow service of the compose file must carry it."""
    documented, workers = _celery_section()
    assert documented == celery_settings(
        database="airflow:airflow@postgres:5432/airflow",
        redis="redis:6379/0",
        api_url="http://airflow-api-server:8080",
        jwt_secret="change-me-in-production",
        s3_root="s3://mlcrit/artifacts",
        s3_endpoint="http://minio:9000",
    )
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    for name, service in services.items():
        if name.startswith("airflow-"):
            env = {k: str(v) for k, v in service["environment"].items()}
            assert {k: env.get(k) for k in documented} == documented, name
    assert [w[3:] for w in workers] == [services[s]["command"][2:] for s in ("airflow-worker-gpu", "airflow-worker")]
    assert all(w[:3] == ["airflow", "celery", "worker"] for w in workers)
    assert workers[0][3:5] == ["--queues", "default,gpu"]


def test_compose_stack_is_wired_for_marquez_and_minio():
    doc = yaml.safe_load(COMPOSE.read_text())
    services = doc["services"]
    assert set(services) == {
        "postgres",
        "redis",
        "minio",
        "minio-init",
        "marquez-api",
        "marquez-web",
        "airflow-init",
        "airflow-api-server",
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-triggerer",
        "airflow-worker",
        "airflow-worker-gpu",
    }
    airflow = [s for name, s in services.items() if name.startswith("airflow-")]
    for service in airflow:
        env = service["environment"]
        transport = json.loads(env["AIRFLOW__OPENLINEAGE__TRANSPORT"])
        assert transport["type"] == "http" and transport["url"] == "http://marquez-api:5000"
        assert (
            env["AIRFLOW__MLCRIT__ARTIFACT_ROOT"].startswith("s3://")
            and "minio" in env["AIRFLOW__MLCRIT__S3_ENDPOINT_URL"]
        )
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    commands = sorted(s["command"][0] for s in airflow)
    assert commands == ["api-server", "celery", "celery", "dag-processor", "db", "scheduler", "triggerer"]
    init = COMPOSE.parent / "docker" / "init-marquez-db.sql"
    assert init.is_file() and "CREATE DATABASE marquez" in init.read_text()
    assert services["marquez-api"]["environment"]["POSTGRES_DB"] == "marquez"


@pytest.mark.skipif(shutil.which("docker") is None, reason="no docker client")
def test_docker_compose_config_validates():
    probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip("docker has no compose plugin here")
    result = subprocess.run(["docker", "compose", "-f", str(COMPOSE), "config", "-q"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
