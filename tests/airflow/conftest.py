import json
import time
from pathlib import Path

import pytest


@pytest.fixture
def dag_files(tmp_path) -> dict[str, str]:
    data = tmp_path / "reviews.csv"
    data.write_text("text,label\ngood,1\nbad,0\n")
    model = tmp_path / "model"
    model.mkdir()
    (model / "adapter_model.safetensors").write_bytes(b"\x01" * 32)
    return {"data": str(data), "model": str(model)}


class LineageTail:
    """The OpenLineage events appended to the session's file transport since creation."""

    def __init__(self, path: Path):
        self.path = path
        self.offset = path.stat().st_size if path.exists() else 0

    def events(self, dag_run=None, timeout: float = 60) -> list[dict]:
        """With ``dag_run`` (a finished DagRun): only that run's events, once its own COMPLETE or
        FAIL is there. The listener emits DAG-run events from a process pool, so they can land
        after dag.test() returned, even during the next test."""
        deadline = time.monotonic() + timeout
        while True:
            events = self._read()
            if dag_run is None:
                return events
            events = [e for e in events if _run_id(e) == dag_run.run_id]
            if any(e["job"]["name"] == dag_run.dag_id and e["eventType"] in ("COMPLETE", "FAIL") for e in events):
                return events
            assert time.monotonic() < deadline, f"no end event of DAG run {dag_run.run_id} in {timeout} s: {events}"
            time.sleep(0.2)

    def _read(self) -> list[dict]:
        if not self.path.exists():
            return []
        with open(self.path) as f:
            f.seek(self.offset)
            return [json.loads(line) for line in f if line.endswith("\n")]  # a line being written is not yet read


def _run_id(event: dict) -> str | None:
    """The Airflow run_id an event belongs to (task events: ``airflow``, DAG-run events: ``airflowDagRun``)."""
    facets = event["run"]["facets"]
    facet = facets.get("airflow") or facets.get("airflowDagRun") or {}
    return facet.get("dagRun", {}).get("run_id")


@pytest.fixture
def store_root(tmp_path, monkeypatch, airflow_db):
    """An empty local store as the configured [mlcrit] artifact_root."""
    root = tmp_path / "store"
    monkeypatch.setenv("AIRFLOW__MLCRIT__ARTIFACT_ROOT", str(root))
    return root


def task_states(dag_run) -> dict[str, tuple[str, int]]:
    """{task_id: (state, try_number)} of a finished DAG run, from the metadata DB."""
    from airflow.models import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        tis = session.query(TaskInstance).filter_by(dag_id=dag_run.dag_id, run_id=dag_run.run_id).all()
        return {ti.task_id: (ti.state, ti.try_number) for ti in tis}


def xcom(dag_run, task_id: str, key: str = "return_value"):
    """The (deserialized) XCom value a task of a finished DAG run pushed under ``key``."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = (
            session.query(XComModel)
            .filter_by(dag_id=dag_run.dag_id, run_id=dag_run.run_id, task_id=task_id, key=key)
            .one()
        )
        return XComModel.deserialize_value(row)


@pytest.fixture
def lineage_tail(lineage_file):
    return LineageTail(lineage_file)


def run_dag(dag_id: str, conf: dict | None = None, limit_s: float = 480):
    """dag.test() on a DAG from tests/airflow/dags (it must live in the configured DAG bundle).

    dag.test() loops for as long as a task waits (for a person's answer, a retry, a trigger), and
    nothing in it ends that loop. After ``limit_s`` the run's unfinished tasks are failed in the
    metadata DB: the loop ends, the run fails and the test reports it, where it would otherwise
    hold its CI process until the per-test limit."""
    import threading

    try:
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # Airflow < 3.2
        from airflow.models.dagbag import DagBag  # type: ignore[no-redef]

    bag = DagBag(dag_folder=str(Path(__file__).parent / "dags"))
    assert not bag.import_errors, bag.import_errors
    ended = threading.Event()

    def watchdog() -> None:
        if ended.wait(limit_s):
            return
        from airflow.models import TaskInstance
        from airflow.utils.session import create_session
        from airflow.utils.state import State

        with create_session() as session:
            for ti in session.query(TaskInstance).filter_by(dag_id=dag_id):
                if ti.state not in State.finished:
                    ti.state = "failed"

    threading.Thread(target=watchdog, daemon=True).start()
    try:
        return bag.get_dag(dag_id).test(run_conf=conf or {})
    finally:
        ended.set()


def wait_parked(dag_id: str, task_id: str = "approve", timeout: float = 600) -> str:
    """The run_id of the dag.test() run whose ``task_id`` waits in awaiting_input, once dag.test()
    has finished parking it: called from a thread beside dag.test() (which runs each task in the
    main thread), before answering. dag.test() writes a task's end state (awaiting_input) once
    more when the task returns, so an answer given between the task parking itself and that
    write is overwritten: the task is never resumed and the run waits for ever (seen under CI's
    load). Airflow's scheduler path has no such write; this is dag.test()'s alone."""
    import sys
    import threading
    import time

    from airflow.models import TaskInstance
    from airflow.utils.session import create_session

    def in_run_task() -> bool:
        frame = sys._current_frames().get(threading.main_thread().ident)
        while frame is not None:
            if frame.f_code.co_name == "_run_task":
                return True
            frame = frame.f_back
        return False

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with create_session() as session:
            ti = session.query(TaskInstance).filter_by(dag_id=dag_id, task_id=task_id, state="awaiting_input").first()
            run_id = ti.run_id if ti is not None else None
        if run_id is not None and not in_run_task():
            return run_id
        time.sleep(0.2)
    raise AssertionError(f"{dag_id}: {task_id} never waited in awaiting_input with dag.test() back in its loop")


def fail_waiting(dag_id: str, task_id: str = "approve") -> None:
    """Fail ``task_id`` in the metadata DB wherever it still waits: dag.test()'s loop then ends the
    run, and the test reports what went wrong instead of waiting for an answer that never comes."""
    from airflow.models import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        for ti in session.query(TaskInstance).filter_by(dag_id=dag_id, task_id=task_id):
            if ti.state in ("running", "deferred", "awaiting_input", "queued", "scheduled"):
                ti.state = "failed"


def demand_models(store, tmp_path: Path, rows: int):
    """model/demand v1 (production, forced in) and v2, and dataset/demand-eval@v1: ``rows`` rows
    over 3 regions with the true demand and each version's predictions (v2's errors are smaller).
    Returns the frame."""
    import numpy as np
    import pandas as pd

    from airflow_mlcrit.core.gating import promote

    for version in (1, 2):
        (tmp_path / f"model-{version}.json").write_text(json.dumps({"coef": version}))
        store.put("model/demand", tmp_path / f"model-{version}.json")
    promote(store, "model/demand@v1", "production", reason="bootstrap", force=True, create=True)
    rng = np.random.default_rng(0)
    y = rng.uniform(0, 100, rows)
    frame = pd.DataFrame({"region": np.repeat(["CA", "NE", "TX"], rows // 3), "demand": y})
    frame["pred_v1"], frame["pred_v2"] = y + rng.normal(0, 10, rows), y + rng.normal(0, 4, rows)
    frame.to_parquet(tmp_path / "eval.parquet", index=False)
    store.put("dataset/demand-eval", tmp_path / "eval.parquet")
    return frame
