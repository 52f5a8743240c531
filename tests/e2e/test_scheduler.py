"""The embedded-default shape under the real Airflow components on 127.0.0.1: api-server,
scheduler (LocalExecutor), dag-processor and triggerer in a temporary AIRFLOW_HOME with SQLite.
DAG runs are triggered through the REST API; a deferrable sensor is seen in state `deferred` and
completed by the triggerer; secrets in connections never leak. The flagship DAG's weeks, worker
loss and promotion races run on the production shape: tests/e2e/test_celery.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from airflow_mlcrit.core.artifacts import open_store
from tests.helpers.airflow_cluster import Airflow
from tests.helpers.openlineage import validate_event

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


# Planted in Airflow connections; tests/e2e scans everything the run leaves for them.
S3_SECRET = "e2e-S3-SECRET-KEY-not-real-7d1f0c"
API_KEY = "sk-e2e-PLANTED-API-KEY-93b2"


@pytest.fixture(scope="module")
def fake_openai():
    from tests.helpers.openai_server import FakeOpenAI

    with FakeOpenAI() as server:
        yield server


@pytest.fixture(scope="module")
def s3_root(moto_server):
    from tests.conftest import make_s3_root

    return make_s3_root(moto_server)


@pytest.fixture(scope="module")
def tmp_path(tmp_path_factory):
    """One directory for the module: one Airflow serves all of its tests, in order."""
    return tmp_path_factory.mktemp("e2e")


@pytest.fixture(scope="module")
def airflow(tmp_path, moto_server, s3_root, fake_openai):
    s3 = {"root": s3_root, "endpoint_url": moto_server.endpoint_url, "region_name": "us-east-1"}
    af = Airflow(
        tmp_path,
        AIRFLOW_CONN_MLCRIT_S3=json.dumps(
            {"conn_type": "mlcrit", "login": "e2e-access-key", "password": S3_SECRET, "extra": s3}
        ),
        AIRFLOW_CONN_FAKE_OPENAI=json.dumps(
            {"conn_type": "http", "password": API_KEY, "extra": {"base_url": fake_openai.url}}
        ),
    )
    try:
        af.start()
        yield af
    finally:
        af.stop()
        assert all(p.poll() is not None for p in af.procs)


def test_real_scheduler_runs_the_dags_and_the_triggerer_completes_a_deferred_sensor(airflow, tmp_path):
    """A deferred sensor, then mlcrit_register_dataset, on one set of components; the scheduler
    preloaded the ML libraries its task processes are forked with."""
    from airflow_mlcrit.core.demo import customer_messages

    store = open_store(tmp_path / "artifacts")
    # a DAG whose sensor waits, deferred, for a version the test commits
    run_id = airflow.trigger("e2e_mlcrit_wait", {})
    seen = set()

    def commit_when_deferred(states):
        seen.add(states.get("wait"))
        if states.get("wait") == "deferred" and not store.exists("dataset/e2e-incoming"):
            customer_messages(200, seed=4).to_parquet(tmp_path / "in.parquet", index=False)
            store.put("dataset/e2e-incoming", tmp_path / "in.parquet")

    state = airflow.wait_run("e2e_mlcrit_wait", run_id, on_state=commit_when_deferred)
    assert state == "success", (airflow.task_states("e2e_mlcrit_wait", run_id), airflow.logs())
    assert "deferred" in seen
    preloaded = (tmp_path / "home" / "preloaded.txt").read_text().split(",")
    assert {"torch", "transformers", "peft", "apache_beam"} <= set(preloaded)
    assert store.resolve("statistics/e2e-incoming@v1").parents[0]["ref"] == "dataset/e2e-incoming@v1"
    # an example DAG from dags/, triggered with conf through the REST API
    customer_messages(300, seed=5).to_parquet(tmp_path / "reviews.parquet", index=False)
    run_id = airflow.trigger("mlcrit_register_dataset", {"path": str(tmp_path / "reviews.parquet"), "source": "e2e"})
    assert airflow.wait_run("mlcrit_register_dataset", run_id) == "success", airflow.logs()
    assert store.resolve("dataset/reviews@v1").metadata["source"] == "e2e"
    events = _lineage(tmp_path)
    assert {e["job"]["name"] for e in events} >= {"e2e_mlcrit_wait.wait", "mlcrit_register_dataset.validate"}


def _lineage(tmp_path: Path) -> list[dict]:
    """Every event emitted so far, each validated against the vendored official schemas and ours."""
    events = [json.loads(line) for line in (tmp_path / "lineage.jsonl").read_text().splitlines() if line.strip()]
    for event in events:
        validate_event(event)
    return events


def test_connection_secrets_never_leak_into_logs_xcom_manifests_or_lineage(
    airflow, tmp_path, moto_server, s3_root, fake_openai
):
    """Runs tasks that use both secrets (S3 secret key, API key), then scans every file the whole
    e2e run left (task and component logs, the metadata DB with XCom and rendered fields, the
    local store's manifests and payloads, the lineage file) and every object in the S3 bucket."""
    from tests.helpers.models import sentiment

    store = open_store(tmp_path / "artifacts")
    frame = sentiment(40, seed=3)
    frame.to_parquet(tmp_path / "secret-scan.parquet", index=False)
    store.put("dataset/secret-scan-eval", tmp_path / "secret-scan.parquet")
    (tmp_path / "prompt").mkdir()
    spec = {
        "template": "Review: {{ text }}\nSentiment:",
        "variables": ["text"],
        "verbalizers": {"neg": "negative", "pos": "positive"},
    }
    (tmp_path / "prompt" / "prompt.json").write_text(json.dumps(spec))
    prompt = store.put("prompt/secret-scan", tmp_path / "prompt")
    conf = {
        "path": str(tmp_path / "secret-scan.parquet"),
        "prompt": str(prompt.ref),
        "dataset": "dataset/secret-scan-eval@v1",
    }
    run_id = airflow.trigger("e2e_mlcrit_secrets", conf)
    assert airflow.wait_run("e2e_mlcrit_secrets", run_id) == "success", (
        airflow.task_states("e2e_mlcrit_secrets", run_id),
        airflow.logs(),
    )
    # the secrets were really used: the S3 store through the connection, the key by the endpoint
    client = moto_server.client()
    bucket, prefix = s3_root[len("s3://") :].split("/", 1)
    keys = [
        o["Key"]
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        for o in page.get("Contents", [])
    ]
    assert any(k.startswith(f"{prefix}/dataset/secret-scan/") for k in keys)
    assert any(k.startswith(f"{prefix}/validation_report/") for k in keys)
    assert f"Bearer {API_KEY}" in fake_openai.auth
    assert any((tmp_path / "home" / "mlcrit" / "prompt-cache").rglob("*.json"))  # the default cache: $AIRFLOW_HOME
    # the scan
    leaks, scanned = [], 0
    for path in tmp_path.rglob("*"):
        if path.is_file():
            data, scanned = path.read_bytes(), scanned + 1
            leaks += [f"{path} holds {s!r}" for s in (S3_SECRET, API_KEY) if s.encode() in data]
    for k in keys:
        data = client.get_object(Bucket=bucket, Key=k)["Body"].read()
        leaks += [f"s3://{bucket}/{k} holds {s!r}" for s in (S3_SECRET, API_KEY) if s.encode() in data]
    assert not leaks, leaks
    # what was scanned is the real thing: logs, the DB, manifests and lineage name this run
    database = b"".join(p.read_bytes() for p in tmp_path.glob("airflow.db*"))  # SQLite: the WAL too
    assert b"e2e_mlcrit_secrets" in database and b"e2e_mlcrit_secrets" in (tmp_path / "lineage.jsonl").read_bytes()
    assert airflow.task_log("e2e_mlcrit_secrets", run_id, "register") and scanned > 50
