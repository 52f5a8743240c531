"""RegisterArtifactOperator and the lineage plumbing through real dag.test() runs."""

from airflow_mlcrit.core.artifacts import open_store
from tests.airflow.conftest import run_dag, task_states, xcom
from tests.helpers.openlineage import validate_event


def test_register_commits_versions_with_producer_and_parents(store_root, dag_files):
    dr = run_dag("test_mlcrit_register", dag_files)
    assert dr.state == "success"
    store = open_store(store_root)
    data = store.resolve("dataset/reviews@v1")
    model = store.resolve("model/clf@v1")
    assert data.metadata == {"rows": 2}
    assert model.parents == [{"ref": "dataset/reviews@v1", "digest": data.digest}]
    assert model.producer == {
        "dag_id": "test_mlcrit_register",
        "run_id": dr.run_id,
        "task_id": "register_model",
        "map_index": -1,
        "try_number": 1,
    }
    assert model.idempotency_key == f"test_mlcrit_register/{dr.run_id}/register_model/-1/model/clf"
    assert "apache-airflow" in model.libraries
    assert xcom(dr, "register_model") == {
        "ref": "model/clf@v1",
        "uri": model.uri,
        "digest": model.digest,
        "summary": {"files": 1, "bytes": 32},
    }


def test_an_airflow_retry_returns_the_version_the_first_try_committed(store_root, dag_files):
    dr = run_dag("test_mlcrit_retry", dag_files)
    assert dr.state == "success"
    assert task_states(dr) == {"register": ("success", 2)}
    store = open_store(store_root)
    assert store.versions("dataset/reviews") == [1]
    manifest = store.resolve("dataset/reviews@v1")
    assert manifest.producer["try_number"] == 1
    assert xcom(dr, "register")["ref"] == "dataset/reviews@v1"


def test_asset_events_carry_the_committed_ref(store_root, dag_files):
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    dr = run_dag("test_mlcrit_register", dag_files)
    with create_session() as session:
        rows = (
            session.query(AssetEvent)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .filter(AssetModel.uri == "mlcrit://model/clf", AssetEvent.source_run_id == dr.run_id)
            .all()
        )
        extras = [r.extra for r in rows]
    digest = open_store(store_root).resolve("model/clf@v1").digest
    assert extras == [{"ref": "model/clf@v1", "digest": digest}]


def test_every_openlineage_event_validates_against_the_official_schemas(store_root, dag_files, lineage_tail):
    dr = run_dag("test_mlcrit_register", dag_files)
    assert dr.state == "success"
    events = lineage_tail.events(dag_run=dr)
    # START + COMPLETE per task, and the DAG run's COMPLETE (dag.test() emits no DAG-run START)
    assert sorted((e["job"]["name"], e["eventType"]) for e in events) == [
        ("test_mlcrit_register", "COMPLETE"),
        ("test_mlcrit_register.register_data", "COMPLETE"),
        ("test_mlcrit_register.register_data", "START"),
        ("test_mlcrit_register.register_model", "COMPLETE"),
        ("test_mlcrit_register.register_model", "START"),
    ]
    for event in events:
        validate_event(event)
    complete = {e["job"]["name"]: e for e in events if e["eventType"] == "COMPLETE"}
    reg_model = complete["test_mlcrit_register.register_model"]
    [out] = reg_model["outputs"]
    [inp] = reg_model["inputs"]
    prefix = str(store_root).lstrip("/")
    assert (out["name"], inp["name"]) == (f"{prefix}/model/clf", f"{prefix}/dataset/reviews")
    assert out["namespace"].startswith("file://")
    assert validate_event(reg_model) >= {"mlcrit_artifact", "version", "storage"}
    assert out["facets"]["version"]["datasetVersion"] == "v1"
    assert out["facets"]["mlcrit_artifact"]["ref"] == "model/clf@v1"
    assert out["facets"]["mlcrit_artifact"]["parents"] == ["dataset/reviews@v1"]
    data_out = complete["test_mlcrit_register.register_data"]["outputs"][0]
    assert data_out["facets"]["documentation"]["description"] == "raw reviews"
    assert "documentation" in validate_event(complete["test_mlcrit_register.register_data"])


def test_a_lineage_failure_never_fails_the_task(store_root, dag_files, monkeypatch, lineage_tail):
    import airflow_mlcrit.operators.base as base

    def broken(record):
        raise RuntimeError("lineage backend exploded")

    monkeypatch.setattr(base, "to_operator_lineage", broken)
    dr = run_dag("test_mlcrit_register", dag_files)
    assert dr.state == "success"
    assert task_states(dr) == {"register_data": ("success", 1), "register_model": ("success", 1)}
    assert open_store(store_root).versions("model/clf") == [1]
    complete = [
        e for e in lineage_tail.events() if e["eventType"] == "COMPLETE" and e["job"]["name"].endswith("register_model")
    ]
    assert complete and complete[-1]["outputs"] == []  # the event still went out, without our datasets


def test_a_broken_lineage_transport_never_fails_the_task(store_root, dag_files, tmp_path):
    """The file transport points into a path that cannot be created: emitting fails, tasks succeed."""
    import json
    import os
    import subprocess
    import sys

    env = dict(
        os.environ,
        AIRFLOW__OPENLINEAGE__TRANSPORT=json.dumps(
            {"type": "file", "log_file_path": "/proc/mlcrit-no-such-dir/lineage.jsonl", "append": True}
        ),
    )
    code = (
        "import sys; from tests.airflow.conftest import run_dag; "
        f"dr = run_dag('test_mlcrit_register', {dag_files!r}); print('STATE', dr.state)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "STATE success" in result.stdout
    assert open_store(store_root).versions("model/clf") == [1]
    output = result.stdout + result.stderr
    assert output.count("Failed to emit OpenLineage `COMPLETE` event") >= 2  # both tasks tried and failed
