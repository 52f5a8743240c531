"""The real Airflow components on 127.0.0.1: api-server, scheduler (LocalExecutor), dag-processor
and triggerer in a temporary AIRFLOW_HOME. DAG runs are triggered through the REST API; a
deferrable sensor is seen in state `deferred` and completed by the triggerer; every OpenLineage
event validates against the official schemas. Every process started is stopped."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from airflow_mlcrit.core.artifacts import open_store
from tests.helpers.airflow_home import airflow_home
from tests.helpers.openlineage import SPEC_DIR, validate_event
from tests.helpers.servers import free_port

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


class Airflow:
    def __init__(self, root: Path):
        self.root, self.port = root, free_port()
        dags = root / "dags"
        dags.mkdir()
        for f in [*(REPO / "dags").glob("*.py"), *(Path(__file__).parent / "dags").glob("*.py")]:
            shutil.copy(f, dags / f.name)
        self.env = airflow_home(
            root,
            dags=dags,
            AIRFLOW__CORE__EXECUTOR="LocalExecutor",
            AIRFLOW__CORE__PARALLELISM="2",
            AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS="True",
            AIRFLOW__API__PORT=str(self.port),
            AIRFLOW__API__HOST="127.0.0.1",
            AIRFLOW__API__BASE_URL=f"http://127.0.0.1:{self.port}",
            AIRFLOW__CORE__EXECUTION_API_SERVER_URL=f"http://127.0.0.1:{self.port}/execution/",
            AIRFLOW__API_AUTH__JWT_SECRET="e2e-secret-not-for-production",
            AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL="5",
            AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC="1",
            AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC="1",
            AIRFLOW__OPENLINEAGE__NAMESPACE="mlcrit-e2e",
        )
        self.procs: list[subprocess.Popen] = []
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        for component in (
            ["api-server", "--port", str(self.port), "--host", "127.0.0.1"],
            ["scheduler"],
            ["dag-processor"],
            ["triggerer"],
        ):
            log = open(self.root / f"{component[0]}.log", "w")
            self.procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "airflow", *component],
                    env=self.env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/api/v2/monitor/health", timeout=2):
                    break
            except OSError:
                time.sleep(1)
        else:
            raise AssertionError(f"api-server did not answer:\n{(self.root / 'api-server.log').read_text()[-3000:]}")
        with urllib.request.urlopen(f"{self.url}/auth/token", timeout=10) as r:
            self.token = json.loads(r.read())["access_token"]

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()

    def api(self, method: str, path: str, body: dict | None = None) -> dict:
        request = urllib.request.Request(
            f"{self.url}/api/v2{path}",
            data=json.dumps(body).encode() if body is not None else None,
            method=method,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as r:
            return json.loads(r.read())

    def wait_for_dag(self, dag_id: str, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.api("GET", f"/dags/{dag_id}")
                return
            except urllib.error.HTTPError:
                time.sleep(1)
        raise AssertionError(f"{dag_id} was not parsed:\n{(self.root / 'dag-processor.log').read_text()[-3000:]}")

    def trigger(self, dag_id: str, conf: dict) -> str:
        self.wait_for_dag(dag_id)
        self.api("PATCH", f"/dags/{dag_id}", {"is_paused": False})
        run = self.api("POST", f"/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": conf})
        return run["dag_run_id"]

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str]:
        tis = self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances")["task_instances"]
        return {t["task_id"]: t["state"] for t in tis}

    def wait_run(self, dag_id: str, run_id: str, timeout: float = 600, on_state=None) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}")["state"]
            if on_state:
                on_state(self.task_states(dag_id, run_id))
            if state in ("success", "failed"):
                return state
            time.sleep(1)
        raise AssertionError(f"{dag_id} {run_id} still running: {self.task_states(dag_id, run_id)}")

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-2000:]}" for p in self.root.glob("*.log"))


@pytest.fixture
def airflow(tmp_path):
    af = Airflow(tmp_path)
    try:
        af.start()
        yield af
    finally:
        af.stop()
        assert all(p.poll() is not None for p in af.procs)


def test_real_scheduler_runs_the_dags_and_the_triggerer_completes_a_deferred_sensor(airflow, tmp_path):
    """One set of components for three runs: a deferred sensor, mlcrit_register_dataset, and
    week 1 of mlcrit_text_classifier (the demo's data) started by its own schedule."""
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
    assert store.resolve("statistics/e2e-incoming@v1").parents[0]["ref"] == "dataset/e2e-incoming@v1"
    # an example DAG from dags/, triggered with conf through the REST API
    customer_messages(300, seed=5).to_parquet(tmp_path / "reviews.parquet", index=False)
    run_id = airflow.trigger("mlcrit_register_dataset", {"path": str(tmp_path / "reviews.parquet"), "source": "e2e"})
    assert airflow.wait_run("mlcrit_register_dataset", run_id) == "success", airflow.logs()
    assert store.resolve("dataset/reviews@v1").metadata["source"] == "e2e"
    # the main example pipeline, week 1 of the demo: prompt first, then LoRA, gate, promote
    env = airflow.env
    for args in (["setup"], ["week", "1"]):
        subprocess.run([sys.executable, "dev/demo.py", *args], env=env, cwd=REPO, check=True, capture_output=True)
    # unpaused, its weekly schedule starts the latest interval at once: scheduled retraining, for real
    airflow.wait_for_dag("mlcrit_text_classifier")
    airflow.api("PATCH", "/dags/mlcrit_text_classifier", {"is_paused": False})
    deadline = time.monotonic() + 120
    while not (runs := airflow.api("GET", "/dags/mlcrit_text_classifier/dagRuns")["dag_runs"]):
        assert time.monotonic() < deadline, airflow.logs()
        time.sleep(1)
    [run] = runs
    run_id = run["dag_run_id"]
    assert run["run_type"] == "scheduled"
    state = airflow.wait_run("mlcrit_text_classifier", run_id, timeout=900)
    states = airflow.task_states("mlcrit_text_classifier", run_id)
    assert state == "success", (states, airflow.logs())
    assert states["promote_prompt"] == "skipped" and states["promote"] == "success"
    [move] = store.alias_history("adapter/support-sentiment", "production")
    assert move.to_version == 1 and move.reason == "blessed: non-inferior on every state and channel"
    assert move.extra["blessing"] == "blessing/support-sentiment@v1" and move.extra["run"]["run_id"] == run_id
    events = [json.loads(line) for line in (tmp_path / "lineage.jsonl").read_text().splitlines() if line.strip()]
    jobs = {e["job"]["name"] for e in events}
    assert jobs >= {"e2e_mlcrit_wait.wait", "mlcrit_register_dataset.validate", "mlcrit_text_classifier.promote"}
    if SPEC_DIR.is_dir():
        for event in events:
            validate_event(event)
