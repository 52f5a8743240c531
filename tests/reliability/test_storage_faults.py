"""Storage faults: a fault-injecting proxy (tests/helpers/fault_proxy.py) between boto3 and an
S3 server on 127.0.0.1 (moto, and SeaweedFS) returns 500, 503 and SlowDown, drops connections,
and loses answers of requests that took effect. Puts, gets, alias moves and Airflow tasks succeed
through boto3's standard retries; when every request fails, the task fails with a clear error
and nothing is committed."""

from __future__ import annotations

import json

import pytest

from airflow_mlcrit.core.artifacts import open_store
from airflow_mlcrit.exceptions import ArtifactError
from tests.airflow.conftest import run_dag, task_states
from tests.conftest import make_s3_root
from tests.helpers.fault_proxy import FaultProxy

pytestmark = pytest.mark.s3
MIXED = {"500": 0.06, "503": 0.06, "slowdown": 0.06, "drop": 0.06, "lost": 0.06}  # 30% of requests fail
ATTEMPTS = 10  # botocore retries after the first try: 0.3**11, a call fails about once in 500,000


@pytest.fixture(params=["moto_server", "seaweedfs"])
def server(request):
    return request.getfixturevalue(request.param)


@pytest.fixture
def proxy(server):
    p = FaultProxy(server.endpoint_url, MIXED, seed=7)
    yield p
    p.stop()


def _store(root: str, endpoint: str, attempts: int = ATTEMPTS):
    return open_store(root, endpoint_url=endpoint, region_name="us-east-1", max_attempts=attempts)


def _payload(tmp_path, n: int = 6):
    src = tmp_path / "payload"
    src.mkdir(exist_ok=True)
    for i in range(n):
        (src / f"part-{i}.bin").write_bytes(bytes([i]) * (1000 + 37 * i))
    return src


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_puts_gets_and_alias_moves_succeed_through_retries(server, proxy, tmp_path, seed):
    proxy.rng.seed(seed)
    root = make_s3_root(server)
    faulty, direct = _store(root, proxy.endpoint_url), _store(root, server.endpoint_url)
    src = _payload(tmp_path)
    refs = [faulty.put("dataset/faults", src, metadata={"i": i}).ref for i in range(4)]
    assert [str(r) for r in refs] == [f"dataset/faults@v{i}" for i in range(1, 5)]
    again = faulty.put("dataset/faults", src, idempotency_key="task-1")
    assert faulty.put("dataset/faults", src, idempotency_key="task-1").version == again.version == 5
    for version in (1, 3, 5):
        faulty.move_alias(f"dataset/faults@v{version}", "production", reason=f"release {version}")
    faulty.get("dataset/faults@v5", tmp_path / "out")
    for f in src.iterdir():
        assert (tmp_path / "out" / f.name).read_bytes() == f.read_bytes()
    # Seen without the proxy: exactly what was committed, no gaps, the full history.
    assert direct.versions("dataset/faults") == [1, 2, 3, 4, 5]
    assert [m.to_version for m in direct.alias_history("dataset/faults", "production")] == [1, 3, 5]
    assert direct.verify("dataset/faults@v5").digest == again.digest
    assert set(proxy.counts) >= {"forwarded", "500", "503", "slowdown", "drop", "lost"}, proxy.counts


def test_when_every_request_fails_the_put_fails_clearly_and_commits_nothing(server, proxy, tmp_path):
    root = make_s3_root(server)
    proxy.configure({"slowdown": 1.0})
    with pytest.raises(ArtifactError, match=r"after 4 attempts: SlowDown: Please reduce"):
        _store(root, proxy.endpoint_url, attempts=3).put("dataset/faults", _payload(tmp_path))
    assert _store(root, server.endpoint_url).versions("dataset/faults") == []


def test_a_manifest_that_never_lands_leaves_no_version(server, proxy, tmp_path):
    root = make_s3_root(server)
    proxy.configure({"500": 1.0}, only="_MANIFEST.json")
    with pytest.raises(ArtifactError, match=r"_MANIFEST\.json failed after 4 attempts: InternalError"):
        _store(root, proxy.endpoint_url, attempts=3).put("dataset/faults", _payload(tmp_path))
    direct = _store(root, server.endpoint_url)
    assert direct.versions("dataset/faults") == []
    assert [g.ref for g in direct.gc(grace_seconds=0, dry_run=True)] == ["dataset/faults@v1"]


def _register(monkeypatch, dag_files, root: str, endpoint: str, attempts: int):
    conn = {
        "conn_type": "mlcrit",
        "login": "testing",  # the credentials SeaweedFS checks (tests/helpers/servers.py)
        "password": "testing",
        "extra": {"root": root, "endpoint_url": endpoint, "region_name": "us-east-1", "max_attempts": attempts},
    }
    monkeypatch.setenv("AIRFLOW_CONN_MLCRIT_FAULTS", json.dumps(conn))
    return run_dag("test_mlcrit_register", {**dag_files, "conn_id": "mlcrit_faults"})


@pytest.mark.slow
def test_airflow_tasks_commit_through_faults_and_fail_clearly_when_storage_is_down(
    server, proxy, tmp_path, dag_files, monkeypatch, airflow_db, capfd
):
    root = make_s3_root(server)
    direct = _store(root, server.endpoint_url)
    dr = _register(monkeypatch, dag_files, root, proxy.endpoint_url, ATTEMPTS)
    assert dr.state == "success"
    assert direct.versions("dataset/reviews") == [1] and direct.versions("model/clf") == [1]

    proxy.configure({"503": 1.0})
    root = make_s3_root(server)
    dr = _register(monkeypatch, dag_files, root, proxy.endpoint_url, 2)
    assert dr.state == "failed"
    assert task_states(dr)["register_data"][0] == "failed"
    assert _store(root, server.endpoint_url).list_artifacts() == []
    log = "".join(capfd.readouterr())
    assert "failed after 3 attempts: ServiceUnavailable: Service is unable to handle request." in log
