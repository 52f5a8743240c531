"""The real Airflow components on 127.0.0.1: api-server, scheduler (LocalExecutor), dag-processor
and triggerer in a temporary AIRFLOW_HOME. DAG runs are triggered through the REST API; a
deferrable sensor is seen in state `deferred` and completed by the triggerer; every OpenLineage
event validates against the official schemas. Every process started is stopped."""

from __future__ import annotations

import itertools
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
from tests.helpers.openlineage import validate_event
from tests.helpers.servers import free_port

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


LOCAL_SETTINGS = """import os, sys

if sys.argv[1:2] == ["scheduler"]:
    from airflow_mlcrit.preload import preload

    # logging is not configured yet this early: the test reads what was loaded from a file
    with open(os.path.join(os.environ["AIRFLOW_HOME"], "preloaded.txt"), "w") as f:
        f.write(",".join(preload()))
"""


class Airflow:
    def __init__(self, root: Path, **extra_env: str):
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
            # two tasks at once on 2 cores: one torch thread each. With torch's default (all cores
            # per process) two concurrent fine-tunes took 130 s each instead of 17 s.
            OMP_NUM_THREADS="1",
            # The production tuning docs/deployment.md recommends: task processes forked from a
            # scheduler that preloaded torch & co. (airflow_local_settings.py below), a supervisor
            # that notices a finished task within 1 s instead of 5, and no re-parsing of unchanged
            # DAG files every 30 s. One flagship run: 96 s before, 60 s after.
            AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL="1",
            AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL="600",
            **extra_env,
        )
        config = Path(self.env["AIRFLOW_HOME"]) / "config"
        config.mkdir(parents=True, exist_ok=True)
        (config / "airflow_local_settings.py").write_text(LOCAL_SETTINGS)
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

    def clear(self, dag_id: str, run_id: str, task_ids: list[str]) -> None:
        """Clear task instances (what a user's "clear" does): they run again, with a new try."""
        body = {"dry_run": False, "dag_run_id": run_id, "task_ids": task_ids, "only_failed": False}
        self.api("POST", f"/dags/{dag_id}/clearTaskInstances", body)

    def task_log(self, dag_id: str, run_id: str, task_id: str) -> str:
        logs = self.root / "home" / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={task_id}"
        return "\n".join(p.read_text() for p in sorted(logs.glob("attempt=*.log")))

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
    preloaded = (tmp_path / "home" / "preloaded.txt").read_text().split(",")
    assert {"torch", "transformers", "peft", "apache_beam"} <= set(preloaded)
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
    _quarantined_rows_never_reach_training(store, tmp_path)
    events = _lineage(tmp_path)
    jobs = {e["job"]["name"] for e in events}
    assert jobs >= {"e2e_mlcrit_wait.wait", "mlcrit_register_dataset.validate", "mlcrit_text_classifier.promote"}


def test_week_two_is_stopped_at_the_gate_then_a_forced_override_is_rolled_back(airflow, tmp_path):
    """Week 2 of the demo (drifted data with a broken phone export), triggered through the REST
    API with the demo's settings, is judged against the scheduled week 1 above, now production:
    the gate stops it on channel=phone, as in the demo. An operator then forces it into
    production with the CLI and takes it back with the mlcrit_rollback DAG."""
    store = open_store(tmp_path / "artifacts")
    env = airflow.env
    subprocess.run([sys.executable, "dev/demo.py", "week", "2"], env=env, cwd=REPO, check=True, capture_output=True)
    run_id = airflow.trigger("mlcrit_text_classifier", {})
    assert airflow.wait_run("mlcrit_text_classifier", run_id, timeout=900) == "success", airflow.logs()
    states = airflow.task_states("mlcrit_text_classifier", run_id)
    assert (states["gate"], states["promote"]) == ("success", "skipped"), states
    assert "NOT_BLESSED: skipping promote" in airflow.task_log("mlcrit_text_classifier", run_id, "gate")
    ev = store.resolve("evaluation/support-sentiment@v2")
    assert ev.metadata["baseline"] == "adapter/support-sentiment@v1"
    [blessing] = [c for c in store.children(ev.ref) if c.kind == "blessing"]
    doc = json.loads(store.read_bytes(blessing.ref, "blessing.json"))
    failed = [c["slice"] for c in doc["checks"] if c["status"] == "failed"]
    assert doc["decision"] == "NOT_BLESSED" and "channel=phone" in failed  # the broken phone export, caught
    assert store.resolve("adapter/support-sentiment@production").version == 1
    summary = subprocess.run(
        [sys.executable, "dev/demo.py", "summary"], env=env, cwd=REPO, check=True, capture_output=True, text=True
    ).stdout
    assert "channel=phone" in summary and "report.html" in summary
    # an operator overrides the gate (recorded as forced), then rolls back with the rollback DAG
    cli = [sys.executable, "-m", "airflow_mlcrit.core.cli", "promote", "adapter/support-sentiment@v2"]
    cli += ["--alias", "production", "--reason", "override for a demo", "--force"]
    subprocess.run(cli, env=env, cwd=REPO, check=True, capture_output=True)
    run_id = airflow.trigger("mlcrit_rollback", {"reason": "phone regression confirmed in production"})
    assert airflow.wait_run("mlcrit_rollback", run_id) == "success", airflow.logs()
    history = store.alias_history("adapter/support-sentiment", "production")
    assert [(m.to_version, m.forced) for m in history] == [(1, False), (2, True), (1, False)]
    assert history[-1].reason == "phone regression confirmed in production"
    assert {e["job"]["name"] for e in _lineage(tmp_path)} >= {"mlcrit_rollback.rollback"}


def _lineage(tmp_path: Path) -> list[dict]:
    """Every event emitted so far, each validated against the vendored official schemas and ours."""
    events = [json.loads(line) for line in (tmp_path / "lineage.jsonl").read_text().splitlines() if line.strip()]
    for event in events:
        validate_event(event)
    return events


def _rows(store, ref, dest) -> list[dict]:
    import pyarrow.parquet as pq

    store.get(ref, dest)
    return [r for p in sorted(dest.rglob("*.parquet")) for r in pq.read_table(p).to_pylist()]


def _quarantined_rows_never_reach_training(store, tmp_path):
    """The planted PII rows and second exports are in the quarantine artifact and in no split of
    the transformed dataset, which was made from the clean dataset (its contract's parent)."""
    import runpy

    demo = runpy.run_path(str(REPO / "dev" / "demo.py"))
    PLANTED_DUPLICATES, PLANTED_PII = demo["PLANTED_DUPLICATES"], demo["PLANTED_PII"]
    quarantined = _rows(store, "quarantine/support-messages@v1", tmp_path / "quarantine")
    assert sorted(r["message_id"] for r in quarantined) == sorted(
        [f"w1-pii-{i}" for i in range(len(PLANTED_PII))] + [f"w1-1-{i:06d}" for i in range(PLANTED_DUPLICATES)]
    )
    contract = store.resolve("transform_contract/support-messages@v1")
    assert [p["ref"] for p in contract.parents] == ["dataset/support-messages-clean@v1"]
    transformed = store.resolve("transformed_dataset/support-messages@v1")
    assert [p["ref"] for p in transformed.parents] == ["dataset/support-messages-clean@v1", str(contract.ref)]
    splits = _rows(store, transformed.ref, tmp_path / "splits")
    assert len(splits) == sum(transformed.metadata["row_counts"].values()) > 2000  # exact dedup of texts, too
    ids = [r["message_id"] for r in splits]
    assert not {i for i in ids if "-pii-" in i} and not set(PLANTED_PII) & {r["text"] for r in splits}
    assert len(ids) == len(set(ids))  # each twice-exported row once: its second copy is quarantined


def _bless(store, tmp_path: Path, candidate, baseline: str | None) -> None:
    """A BLESSED blessing, as EvaluationGateOperator commits it, judged against ``baseline``."""
    f = tmp_path / f"blessing-{candidate.name}-{candidate.version}-{time.monotonic_ns()}.json"
    f.write_text(json.dumps({"decision": "BLESSED"}))
    metadata = {
        "decision": "BLESSED",
        "candidate": str(candidate.ref),
        "candidate_digest": candidate.digest,
        "baseline": baseline,
        "baseline_alias": "production",
    }
    store.put(f"blessing/{candidate.name}", f, parents=[candidate.ref], metadata=metadata)


def test_four_concurrent_retraining_runs_lose_no_alias_move(airflow, tmp_path):
    """Four runs of mlcrit_text_classifier at once (LocalExecutor, parallelism 2) against one store,
    with adapter v1 production again (the scheduled week 1, after week 2's override was rolled
    back above). Each trains, evaluates against
    production and, when blessed, promotes. Whatever the interleaving: distinct versions, every
    promotion that succeeded is in the history exactly once, each move starts where the previous
    one ended and from the very version its blessing judged the candidate against; a promotion
    whose baseline moved meanwhile failed with that conflict, and clearing it (re-evaluation
    against the new production) lands it.

    What is raced here is promotion, not model quality: the runs train briefly and are judged on
    300 golden rows by a lenient gate (both through the DAG's params, as a user would), so every
    candidate is blessed and all four promotions race."""
    import pandas as pd

    store = open_store(tmp_path / "artifacts")
    key = "adapter/support-sentiment"
    assert store.alias_version(key, "production") == 1
    store.get("dataset/support-golden@v1", tmp_path / "golden")
    golden = pd.read_parquet(tmp_path / "golden" / "golden.parquet").head(300)
    golden.to_parquet(tmp_path / "golden-300.parquet", index=False)
    small = store.put("dataset/support-golden-300", tmp_path / "golden-300.parquet")
    lenient = {"thresholds": [{"metric": "accuracy", "change": "non_inferiority", "margin": 0.25}]}
    # 100 bootstrap replicates: this test is about alias moves under concurrency, not interval accuracy
    conf = {"replicates": 100, "steps": 30, "golden": str(small.ref), "gate": lenient}
    runs = [airflow.trigger("mlcrit_text_classifier", conf) for _ in range(4)]
    states = {}
    for run_id in runs:
        assert airflow.wait_run("mlcrit_text_classifier", run_id, timeout=900) in ("success", "failed")
        states[run_id] = airflow.task_states("mlcrit_text_classifier", run_id)
        assert states[run_id]["gate"] == "success", (states[run_id], airflow.logs())
    assert store.versions(key) == [1, 2, 3, 4, 5, 6]
    finetuned = {store.resolve(f"{key}@v{v}").producer["run_id"] for v in (3, 4, 5, 6)}
    assert finetuned == set(runs)
    promoted = [r for r in runs if states[r]["promote"] == "success"]
    lost = [r for r in runs if states[r]["promote"] == "failed"]
    assert promoted and len(promoted) + len(lost) == 4, states
    for run_id in lost:
        log = airflow.task_log("mlcrit_text_classifier", run_id, "promote")
        assert "ArtifactConflictError" in log and "another promotion moved it since" in log, log[-3000:]

    def check_history(expected_runs: list[str]) -> None:
        history = store.alias_history(key, "production")
        assert [m.seq for m in history] == list(range(1, len(history) + 1))
        for before, move in itertools.pairwise(history):
            assert move.from_version == before.to_version
        later = history[3:]  # after week 1, the override and its rollback
        assert sorted(m.extra["run"]["run_id"] for m in later) == sorted(expected_runs)
        for move in later:
            blessing = store.resolve(move.extra["blessing"])
            assert blessing.metadata["baseline"] == f"{key}@v{move.from_version}"
            assert store.resolve(f"{key}@v{move.to_version}").producer["run_id"] == move.extra["run"]["run_id"]

    check_history(promoted)
    if lost:  # the retry of a lost race: evaluate again against the new production, gate, promote
        airflow.clear("mlcrit_text_classifier", lost[0], ["evaluate", "gate", "promote"])
        assert airflow.wait_run("mlcrit_text_classifier", lost[0], timeout=600) == "success", airflow.logs()
        check_history([*promoted, lost[0]])


def test_two_promotions_racing_for_production_one_wins_the_other_conflicts_then_retries(airflow, tmp_path):
    store = open_store(tmp_path / "artifacts")
    versions = []
    for tag in "abc":
        (tmp_path / f"race-{tag}").mkdir()
        (tmp_path / f"race-{tag}" / "model.safetensors").write_bytes(tag.encode() * 64)
        versions.append(store.put("model/race", tmp_path / f"race-{tag}"))
    v1, v2, v3 = versions
    store.move_alias(v1.ref, "production", reason="first model", forced=True)
    for candidate in (v2, v3):
        _bless(store, tmp_path, candidate, baseline="model/race@v1")
    run_id = airflow.trigger("e2e_mlcrit_promote_race", {"a": str(v2.ref), "b": str(v3.ref)})
    assert airflow.wait_run("e2e_mlcrit_promote_race", run_id) == "failed"
    states = airflow.task_states("e2e_mlcrit_promote_race", run_id)
    assert sorted(states.values()) == ["failed", "success"], states
    [winner] = [t for t, s in states.items() if s == "success"]
    [loser] = [t for t, s in states.items() if s == "failed"]
    won, other = (v2, v3) if winner == "promote_a" else (v3, v2)
    # Whether the loser read production before or after the winner's move, it is a conflict:
    # the baseline check (production moved since the candidate was judged), the expected version
    # (moved between that check and the move), or the CAS itself.
    log = airflow.task_log("e2e_mlcrit_promote_race", run_id, loser)
    assert "ArtifactConflictError" in log, log[-3000:]
    assert (
        f"'production' of model/race points at v{won.version}, but blessing/race@v" in log
        and f"judged model/race@v{other.version} against v1: another promotion moved it since" in log
    ) or any(
        message in log
        for message in (
            "alias 'production' of model/race was moved concurrently by another writer; re-read and retry",
            f"alias 'production' of model/race points at v{won.version}, not the expected v1: someone moved it",
        )
    )
    # the retry: judged again against the winner, the cleared task promotes
    _bless(store, tmp_path, other, baseline=f"model/race@v{won.version}")
    airflow.clear("e2e_mlcrit_promote_race", run_id, [loser])
    assert airflow.wait_run("e2e_mlcrit_promote_race", run_id) == "success", airflow.logs()
    history = store.alias_history("model/race", "production")
    assert [(m.from_version, m.to_version) for m in history] == [
        (None, 1),
        (1, won.version),
        (won.version, other.version),
    ]


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
