"""Production-shaped Airflow: PostgreSQL metadata DB (a fresh database, dropped at the end),
CeleryExecutor with a Redis broker and the result backend in PostgreSQL, the api-server,
scheduler, dag-processor and triggerer, and two Celery workers that share no disk: each runs on
a "machine" of its own (tests/helpers/airflow_cluster.py: its own hostname, PID namespace and a
private tmpfs /tmp with its own DAG copy and AIRFLOW_HOME). The artifact store is S3 on
SeaweedFS and lineage goes over HTTP to an endpoint that validates every event. Only the
worker serving the ``gpu`` queue runs the fine-tune; losing it mid-training is survived.

The demo's two weeks run as they do in ./dev/run-demo, with the same decisions; then two blessed
runs on different data race for ``production``. Settings: docs/deployment.md, "CeleryExecutor
with PostgreSQL and S3" (tests/test_compose.py checks that they are the same as here)."""

from __future__ import annotations

import itertools
import json
import os
import runpy
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from airflow_mlcrit.core.artifacts import open_store
from tests.helpers.airflow_cluster import LOCAL_SETTINGS, Airflow, Worker, celery_settings, short_run_conf
from tests.helpers.servers import free_port
from tests.helpers.services import LineageReceiver, postgres_database, redis_prefix, require_service

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]
DAG = "mlcrit_text_classifier"
ADAPTER = "adapter/support-sentiment"
WORKER = ["celery", "worker", "--concurrency", "1", "--skip-serve-logs", "--without-mingle", "--without-gossip"]

# A release window, as a team might run one: every promotion of the flagship DAG waits in the
# `promotions` pool, which the race below opens only when both candidates have been judged.
SETTINGS = (
    LOCAL_SETTINGS
    + """

def task_policy(task):
    if task.dag_id == "mlcrit_text_classifier" and task.task_id == "promote":
        task.pool = "promotions"
"""
)


@pytest.fixture(scope="module")
def tmp_path(tmp_path_factory):
    """One directory for the module: one cluster serves all of its tests, in order."""
    return tmp_path_factory.mktemp("celery")


@pytest.fixture(scope="module")
def cluster(tmp_path, seaweedfs):
    require_service("Redis", ("127.0.0.1", 6379))
    assert os.geteuid() == 0, "the workers' private /tmp needs unshare --mount, as root"
    bucket = f"e2e-{uuid.uuid4().hex[:10]}"
    seaweedfs.client().create_bucket(Bucket=bucket)
    receiver = LineageReceiver()
    port = free_port()
    with postgres_database() as database, redis_prefix() as prefix:
        settings = celery_settings(
            database=database,
            redis="127.0.0.1:6379/0",
            api_url=f"http://127.0.0.1:{port}",
            jwt_secret="e2e-secret-not-for-production",
            s3_root=f"s3://{bucket}/ml/artifacts",
            s3_endpoint=seaweedfs.endpoint_url,
        )
        af = Airflow(
            tmp_path,
            port=port,
            database=settings["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"],
            local_settings=SETTINGS,
            transport=receiver.transport,
            **settings,
            MLCRIT_ARTIFACT_ROOT=settings["AIRFLOW__MLCRIT__ARTIFACT_ROOT"],
            # for this test only: its own keys in the shared Redis; a lost worker's task is
            # noticed after 20 s instead of 300 s, and retried after 1 s instead of 300 s
            AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__GLOBAL_KEYPREFIX=prefix,
            AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT="20",
            AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL="2",
            AIRFLOW__CORE__DEFAULT_TASK_RETRY_DELAY="1",
            AIRFLOW__CORE__PARALLELISM="4",
        )
        af.store = open_store(settings["AIRFLOW__MLCRIT__ARTIFACT_ROOT"], endpoint_url=seaweedfs.endpoint_url)
        af.receiver = receiver
        # the CLI and dev/demo.py reach the store through boto3's environment (docs/cli.md)
        af.cli_env = {**af.env, "AWS_ENDPOINT_URL": seaweedfs.endpoint_url}
        try:
            af.start()
            af.api("POST", "/pools", {"name": "promotions", "slots": 1, "include_deferred": False})
            af.gpu = Worker(af, "worker-a", [*WORKER, "--queues", "default,gpu"])
            af.cpu = Worker(af, "worker-b", [*WORKER, "--queues", "default"])
            yield af
        finally:
            af.stop()
            receiver.stop()
            assert all(p.poll() is not None for p in af.procs)


def _demo(store, *steps) -> None:
    """The demo's data steps (dev/demo.py), written straight to the S3 store."""
    demo = runpy.run_path(str(REPO / "dev" / "demo.py"))
    for step, *args in steps:
        demo[step](store, *args)


def _celery(af: Airflow, *args: str) -> None:
    subprocess.run([sys.executable, "-m", "airflow", "celery", *args], env=af.env, check=True, capture_output=True)


def _lineage(af: Airflow) -> list[dict]:
    assert not af.receiver.invalid, af.receiver.invalid[:3]
    return list(af.receiver.events)


def test_week_one_survives_losing_the_gpu_worker_mid_training(cluster, tmp_path):
    """Week 1, started by the DAG's own schedule. The fine-tune goes to the `gpu` queue, which
    only worker-a serves; once its first checkpoint is in S3, worker-a's Celery worker is killed
    with `kill -9` of its process group, and worker-b is told to serve `gpu` too. Airflow 3.3 puts
    each task process in a process group of its own, so the task process and its training child
    survive: the test holds them (SIGSTOP) past the heartbeat timeout. The scheduler notices the
    missing heartbeats and retries the task, which resumes on worker-b from the checkpoint in S3,
    not from step 0, and commits one adapter (whose weights are compared with an uninterrupted
    run's below). Then the survivor resumes: its next checkpoint is refused by fencing (a newer try
    has begun), it stops, and the adapter still has exactly one version."""
    af, store = cluster, cluster.store
    _demo(store, ("setup",), ("week", 1))
    af.wait_for_dag(DAG)
    af.api("PATCH", f"/dags/{DAG}", {"is_paused": False})
    deadline = time.monotonic() + 120
    while not (runs := af.api("GET", f"/dags/{DAG}/dagRuns")["dag_runs"]):
        assert time.monotonic() < deadline, af.logs()
        time.sleep(1)
    [run] = runs
    run_id = run["dag_run_id"]
    assert run["run_type"] == "scheduled"
    lost: dict = {}

    def lose_the_gpu_worker(states):
        if not lost and states.get("finetune") == "running" and store.list_artifacts("checkpoint"):
            [first] = af.tries(DAG, run_id, "finetune")
            assert (first["hostname"], first["queue"]) == ("worker-a", "gpu"), first
            _celery(af, "add-queue", "--queues", "gpu", "--celery-hostname", "celery@worker-b")
            procs = af.gpu.processes()
            [child] = [pid for pid, (_, cmd) in procs.items() if "airflow_mlcrit.core.training.worker" in cmd]
            task = procs[child][0]
            supervisor = procs[task][0]
            af.gpu.kill_worker_group()
            # then held, as a frozen process would be, once its supervisor is gone (stopped while
            # its group is orphaned, the task process would get SIGHUP: POSIX's rule for stopped
            # members of a newly orphaned process group)
            deadline = time.monotonic() + 60
            while supervisor in (now := af.gpu.processes()) or now[task][0] == supervisor:
                assert time.monotonic() < deadline, now
                time.sleep(0.05)
            for pid in (task, child):
                os.kill(pid, signal.SIGSTOP)
            lost["survivor"], lost["machine"] = (task, child), af.gpu
            [ckpt] = store.list_artifacts("checkpoint")
            lost["checkpoint"] = store.resolve(f"{ckpt}@latest")
        elif lost and "replacement" not in lost and len(tries := af.tries(DAG, run_id, "finetune")) == 2:
            if tries[1]["state"] == "running":  # the retry runs on worker-b: a new machine may join
                lost["replacement"] = af.gpu = Worker(af, "worker-a", [*WORKER, "--queues", "default,gpu"])

    state = af.wait_run(DAG, run_id, timeout=900, on_state=lose_the_gpu_worker)
    states = af.task_states(DAG, run_id)
    assert state == "success", (states, af.logs())
    task, child = lost["survivor"]
    assert Path(f"/proc/{task}").exists() and Path(f"/proc/{child}").exists()  # it outlived its worker
    first, second = af.tries(DAG, run_id, "finetune")
    assert (first["hostname"], second["hostname"], second["queue"]) == ("worker-a", "worker-b", "gpu")
    checkpoint = lost["checkpoint"]
    step = checkpoint.metadata["step"]
    assert step >= 50, checkpoint.metadata
    # the retry's log (worker-a's machine is still up, with the first try's log on its disk)
    log = "\n".join(line for line in af.task_log(DAG, run_id, "finetune").splitlines() if '"try_number":2' in line)
    assert f"resuming from {checkpoint.ref} (step {step})" in log, log[-3000:]
    assert f"step {step + 25}/150" in log and "step 25/150" not in log  # went on from there, not from 0
    assert store.versions(ADAPTER) == [1] and store.list_artifacts("checkpoint") == []
    _the_survivor_is_fenced(store, lost["machine"], task, child, f"try 1 of finetune of {DAG} run {run_id}")
    # the uninterrupted run trains here while the next test's runs go on (checked after them)
    af.reference = _train_uninterrupted(store, tmp_path, _lineage(af))
    assert states["promote_prompt"] == "skipped" and states["promote"] == "success"
    [move] = store.alias_history(ADAPTER, "production")
    assert move.to_version == 1 and move.reason == "blessed: non-inferior on every state and channel"
    assert move.extra["blessing"] == "blessing/support-sentiment@v1" and move.extra["run"]["run_id"] == run_id
    _quarantined_rows_never_reach_training(store, tmp_path)
    preloaded = (af.cpu.home / "preloaded.txt").read_text().split(",")
    assert {"torch", "transformers", "peft", "apache_beam"} <= set(preloaded)


def _the_survivor_is_fenced(store, machine: Worker, task: int, child: int, survivor: str) -> None:
    """The held survivor resumes: its training child first, until it has written its next
    checkpoint, then the task process, which reads it and tries to store it. Fencing refuses it
    (its claim is reclaimed, naming the try that fenced it), the survivor stops its training and
    ends, nothing new is committed, and nothing is left of the old machine."""
    steps = f"proc/{child}/root/tmp/mlcrit-finetune-*/train/run/checkpoints/step-*/COMPLETE"
    before = set(Path("/").glob(steps))
    os.kill(child, signal.SIGCONT)
    deadline = time.monotonic() + 600  # a bound, not a measurement: 50 training steps on a busy machine
    while not set(Path("/").glob(steps)) - before:
        assert time.monotonic() < deadline and Path(f"/proc/{child}").exists(), "the survivor wrote no checkpoint"
        time.sleep(0.5)
    os.kill(task, signal.SIGCONT)
    deadline = time.monotonic() + 300
    while task in machine.processes():
        assert time.monotonic() < deadline, machine.processes()
        time.sleep(0.5)
    tombstones = [
        json.loads(store.backend.read_bytes(k))["reclaimed_by"]
        for k in store.backend.list_keys("checkpoint")
        if k.endswith("/_MANIFEST.json")
    ]
    assert tombstones == [f"{survivor} itself (fenced by try 2)"], tombstones
    assert store.versions(ADAPTER) == [1] and store.list_artifacts("checkpoint") == []
    assert child not in machine.processes()
    assert machine.kill() == []


def test_week_two_is_spread_over_both_workers_and_stopped_at_the_gate(cluster, tmp_path):
    """Week 2 of the demo (drifted data, a broken phone export), triggered through the REST API,
    with the next test's two racing runs started beside it: its tasks run on both workers, each of
    which holds the logs of exactly the tasks it ran in its private /tmp, and the gate stops it on
    channel=phone, as in the demo."""
    af, store = cluster, cluster.store
    _demo(store, ("week", 2))
    run_id = af.week_two = af.trigger(DAG, {})
    af.race = _start_the_race(af, store, tmp_path)
    assert af.wait_run(DAG, run_id, timeout=900) == "success", af.logs()
    tis = af.task_instances(DAG, run_id)
    ran = {t: ti["hostname"] for t, ti in tis.items() if ti["state"] == "success"}
    assert set(ran.values()) == {"worker-a", "worker-b"}, ran
    assert tis["finetune"]["queue"] == "gpu" and tis["statistics"]["queue"] == "default"
    for worker in (af.gpu, af.cpu):  # no worker sees the test's (or another worker's) /tmp
        assert tmp_path.is_dir() and not (Path(f"/proc/{worker.proc.pid}/root") / tmp_path.relative_to("/")).exists()
    for task, host in ran.items():  # the per-worker marker: its log is on that machine only
        logs = {
            w.name: w.home / "logs" / f"dag_id={DAG}" / f"run_id={run_id}" / f"task_id={task}" for w in (af.gpu, af.cpu)
        }
        assert [name for name, path in logs.items() if any(path.glob("attempt=*.log"))] == [host], task
    assert (tis["gate"]["state"], tis["promote"]["state"]) == ("success", "skipped")
    assert "NOT_BLESSED: skipping approve, promote" in af.task_log(DAG, run_id, "gate")
    ev = store.resolve(_evaluation(store, run_id))
    assert ev.metadata["baseline"] == f"{ADAPTER}@v1"
    [blessing] = [c for c in store.children(ev.ref) if c.kind == "blessing"]
    doc = json.loads(store.read_bytes(blessing.ref, "blessing.json"))
    failed = [c["slice"] for c in doc["checks"] if c["status"] == "failed"]
    assert doc["decision"] == "NOT_BLESSED" and "channel=phone" in failed  # the broken phone export, caught
    assert store.resolve(f"{ADAPTER}@production").version == 1
    summary = subprocess.run(
        [sys.executable, "dev/demo.py", "summary", str(ev.ref)],
        env=af.cli_env,
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert "channel=phone" in summary and "report.html" in summary
    # the same story from the registry's CLI: phone accuracy fell from v1 to v2, which was stopped
    cli = [sys.executable, "-m", "airflow_mlcrit.core.cli", "--json", "history", ADAPTER]
    cli += ["--metric", "accuracy", "--slice", "channel=phone"]
    doc = json.loads(subprocess.run(cli, env=af.cli_env, cwd=REPO, check=True, capture_output=True).stdout)
    week = {v["producer"].get("run_id"): v for v in doc["versions"]}  # the racing runs' versions too
    first, second = week[store.resolve(f"{ADAPTER}@v1").producer["run_id"]], week[run_id]
    v1, v2 = ({s["name"]: s for s in v["slices"]}["channel=phone"] for v in (first, second))
    assert v2["candidate"]["accuracy"]["value"] < v1["candidate"]["accuracy"]["value"]
    assert second["gate"]["decision"] == "NOT_BLESSED" and "channel=phone" in second["gate"]["failed_slices"]
    assert [(s["alias"], s["version"], s["until"]) for s in doc["aliases"]] == [("production", 1, None)]
    assert {e["job"]["name"] for e in _lineage(af)} >= {f"{DAG}.gate"}


def test_the_ml_registry_in_the_airflow_ui_shows_the_two_weeks(cluster, tmp_path):
    """Debian's chromium, headless, logged in as the Airflow UI is (its `_token` cookie), on this
    cluster's api-server with the provider's plugin: the "ML registry" nav entry lists the adapter
    with production at v1; its evolution page shows week 2's phone accuracy below v1's on the
    same data (their paired difference, with its interval), crossed where the gate stopped it;
    the lineage graph of production reaches the clean dataset of week 1. Screenshots go to the
    test's directory (screenshots/)."""
    from tests.helpers.browser import logged_in_page
    from tests.helpers.services import require_program

    require_program("dot", "graphviz")  # the lineage graph's layout, on the api-server's host
    af, store = cluster, cluster.store
    [week_two] = [
        v for v in store.versions(ADAPTER) if store.resolve(f"{ADAPTER}@v{v}").producer["run_id"] == af.week_two
    ]
    shots = tmp_path / "screenshots"
    shots.mkdir()
    with logged_in_page(af.url, af.token) as page:
        page.goto(f"{af.url}/plugin/ml-registry")  # the nav entry: the registry framed by the Airflow UI
        row = page.frame_locator("iframe").locator("tr", has_text="support-sentiment").first
        assert "production: v1" in row.inner_text()
        page.screenshot(path=shots / "registry.png")
        page.goto(f"{af.url}/mlcrit/e/{ADAPTER}")
        # each point: the version minus the production it was judged against, on the same data
        phone = page.locator('[data-metric="accuracy"][data-slice="channel=phone"]')
        tips = phone.locator("circle.pt title").all_text_contents()
        [tip] = [t for t in tips if t.startswith(f"v{week_two} - v1: ")]
        assert float(tip.split(": ")[1].split()[0]) < 0, tips
        assert tip.endswith("stopped by the gate on this slice"), tip
        # its paired interval (a band once the racing runs' versions, judged too, stand beside it)
        assert phone.locator("polygon.band, line.band-line").count() >= 1
        page.screenshot(path=shots / "evolution.png", full_page=True)
        # the artifact page: week 2's verdict and where it stopped, then its compare link: both on
        # the golden set week 2 was judged on
        page.goto(f"{af.url}/mlcrit/a/{ADAPTER}")
        verdict = page.locator(f"tr#v{week_two} td.verdict-cell").inner_text()
        assert verdict.startswith("NOT_BLESSED") and "channel=phone" in verdict, verdict
        page.locator(f"tr#v{week_two}").get_by_role("link", name="compare").click()
        assert "Both on one golden set" in page.locator("#data").inner_text()
        phone = page.locator('tr[data-slice="channel=phone"][data-metric="accuracy"] td.change').inner_text()
        assert float(phone.split()[0]) < 0, phone
        page.screenshot(path=shots / "compare.png", full_page=True)
        page.goto(f"{af.url}/mlcrit/l/{ADAPTER}?at=production")
        assert page.locator("h1").inner_text() == f"Lineage of {ADAPTER}@v1 (production)"
        assert page.locator("#n_dataset_support_messages_clean_v1").count() == 1
        page.screenshot(path=shots / "lineage.png", full_page=True)
    assert sorted(p.name for p in shots.iterdir() if p.stat().st_size > 10_000) == [
        "compare.png",
        "evolution.png",
        "lineage.png",
        "registry.png",
    ]


def _start_the_race(af: Airflow, store, tmp_path: Path) -> list[str]:
    """Two runs of the flagship DAG on different data (week 1's and week 2's messages), short and
    with a lenient gate (DAG params, as a user would set them); their promotions wait in the
    closed `promotions` pool."""
    assert store.alias_version(ADAPTER, "production") == 1
    lenient = {"thresholds": [{"metric": "accuracy", "change": "non_inferiority", "margin": 0.25}]}
    conf = short_run_conf(store, tmp_path, lenient)  # about alias moves under concurrency, not the model
    af.api("PATCH", "/pools/promotions", {"pool": "promotions", "slots": 0, "include_deferred": False})
    return [af.trigger(DAG, {**conf, "dataset": f"dataset/support-messages@v{week}"}) for week in (1, 2)]


def test_two_blessed_runs_race_for_production_and_exactly_one_wins(cluster, tmp_path):
    """The two runs started beside week 2, each judged against production v1 and blessed, are
    promoted at once when the release window (the `promotions` pool) opens. Exactly one promotion
    wins; the other fails with the conflict, and once cleared it is evaluated again against the
    new production and lands after it. Then an operator forces week 2's adapter into production
    with the CLI and takes it back with the mlcrit_rollback DAG."""
    af, store, runs = cluster, cluster.store, cluster.race
    deadline = time.monotonic() + 900
    while not all(af.task_states(DAG, r).get("promote") == "scheduled" for r in runs):
        states = [af.task_states(DAG, r) for r in runs]
        assert time.monotonic() < deadline and not any("failed" in s.values() for s in states), (states, af.logs())
        time.sleep(1)
    for run_id in runs:  # both judged against production v1
        [blessing] = [c for c in store.children(_evaluation(store, run_id)) if c.kind == "blessing"]
        assert store.resolve(blessing.ref).metadata["baseline"] == f"{ADAPTER}@v1"
    af.api("PATCH", "/pools/promotions", {"pool": "promotions", "slots": 2, "include_deferred": False})
    states = {r: (af.wait_run(DAG, r, timeout=300), af.task_states(DAG, r)) for r in runs}
    assert sorted(s["promote"] for _, s in states.values()) == ["failed", "success"], states
    [winner] = [r for r in runs if states[r][1]["promote"] == "success"]
    [loser] = [r for r in runs if states[r][1]["promote"] == "failed"]
    won = store.alias_history(ADAPTER, "production")[-1].to_version
    log = af.task_log(DAG, loser, "promote")
    assert "ArtifactConflictError" in log, log[-3000:]
    assert any(
        message in log
        for message in (
            "another promotion moved it since",
            f"alias 'production' of {ADAPTER} was moved concurrently by another writer; re-read and retry",
            f"alias 'production' of {ADAPTER} points at v{won}, not the expected v1: someone moved it",
            # the winner's entry landed between the loser's checks and its write
            f"alias 'production' of {ADAPTER} changed while this move was checked",
        )
    ), log[-3000:]
    # the retry of the lost race: evaluated again against the new production, gated, promoted
    af.clear(DAG, loser, ["evaluate", "gate", "promote"])
    assert af.wait_run(DAG, loser, timeout=600) == "success", af.logs()
    history = store.alias_history(ADAPTER, "production")
    assert [m.seq for m in history] == list(range(1, len(history) + 1))
    for before, move in itertools.pairwise(history):
        assert move.from_version == before.to_version
    assert [m.extra["run"]["run_id"] for m in history[1:]] == [winner, loser]
    for move in history[1:]:
        assert store.resolve(move.extra["blessing"]).metadata["baseline"] == f"{ADAPTER}@v{move.from_version}"
        assert store.resolve(f"{ADAPTER}@v{move.to_version}").producer["run_id"] == move.extra["run"]["run_id"]
    assert history[-1].from_version == won
    # an operator overrides the gate for week 2's adapter (recorded as forced), then rolls it back
    [week_two] = [
        v for v in store.versions(ADAPTER) if store.resolve(f"{ADAPTER}@v{v}").producer["run_id"] == af.week_two
    ]
    cli = [sys.executable, "-m", "airflow_mlcrit.core.cli", "promote", f"{ADAPTER}@v{week_two}"]
    cli += ["--alias", "production", "--reason", "override for a demo", "--force"]
    subprocess.run(cli, env=af.cli_env, cwd=REPO, check=True, capture_output=True)
    run_id = af.trigger("mlcrit_rollback", {"reason": "phone regression confirmed in production"})
    assert af.wait_run("mlcrit_rollback", run_id) == "success", af.logs()
    history = store.alias_history(ADAPTER, "production")
    landed = history[2].to_version
    assert [(m.to_version, m.forced) for m in history[2:]] == [(landed, False), (week_two, True), (landed, False)]
    assert history[-1].reason == "phone regression confirmed in production"
    jobs = {e["job"]["name"] for e in _lineage(af)}
    assert jobs >= {f"{DAG}.evaluate", f"{DAG}.promote", "mlcrit_rollback.rollback"}


def test_the_adapter_trained_across_two_workers_equals_an_uninterrupted_run(cluster, tmp_path):
    """Week 1's adapter (50 or more steps on worker-a, the rest on worker-b after resuming from
    the checkpoint in S3) equals one trained here in one go from the same transformed dataset,
    base model and hyperparameters, to 1e-6."""
    from safetensors.torch import load_file

    store = cluster.store
    cluster.reference.join()
    assert cluster.reference.output_dir is not None, cluster.reference.error
    store.get(f"{ADAPTER}@v1", tmp_path / "adapter-v1")
    ours, theirs = (
        load_file(next(d.rglob("adapter_model.safetensors")))
        for d in (tmp_path / "adapter-v1", cluster.reference.output_dir)
    )
    assert sorted(ours) == sorted(theirs) and ours
    worst = max(float((ours[k] - theirs[k]).abs().max()) for k in ours)
    assert worst <= 1e-6, worst


def _evaluation(store, run_id: str) -> str:
    [ev] = [
        f"evaluation/support-sentiment@v{v}"
        for v in store.versions("evaluation/support-sentiment")
        if store.resolve(f"evaluation/support-sentiment@v{v}").producer["run_id"] == run_id
    ]
    return ev


def _train_uninterrupted(store, tmp_path: Path, events: list[dict]) -> threading.Thread:
    """Train week 1's adapter again in one go, in a thread: the same transformed dataset, base
    model and hyperparameters (the run's mlcrit_training facet), one torch thread as on the
    workers (the same reduction order)."""
    from airflow_mlcrit.core.training.runner import checkpoint_key, run_training

    adapter = store.resolve(f"{ADAPTER}@v1")
    [event] = [
        e
        for e in events
        if e["job"]["name"] == f"{DAG}.finetune"
        and e["eventType"] == "COMPLETE"
        and "mlcrit_training" in e["run"]["facets"]
    ]
    hyper = event["run"]["facets"]["mlcrit_training"]["hyperparameters"]
    [data] = [p["ref"] for p in adapter.parents if p["ref"].startswith("transformed_dataset/")]
    [base] = [p["ref"] for p in adapter.parents if p["ref"].startswith("base_model/")]
    work = tmp_path / "reference"
    store.get(data, work / "data")
    store.get(base, work / "base")
    previous = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = "1"  # read by the training child; already 1 under dev/run-tests

    def train():
        try:
            result = run_training(
                {**hyper, "base_model": str(work / "base")},
                str(work / "data" / "train"),
                workdir=work / "train",
                store=open_store(work / "scratch"),
                ckpt_key=checkpoint_key("reference", "uninterrupted"),
            )
            thread.output_dir = result.output_dir
        except Exception as exc:
            thread.error = exc
        finally:
            if previous is None:
                os.environ.pop("OMP_NUM_THREADS", None)
            else:
                os.environ["OMP_NUM_THREADS"] = previous

    thread = threading.Thread(target=train, daemon=True)
    thread.output_dir, thread.error = None, None
    thread.start()
    return thread


def _rows(store, ref, dest) -> list[dict]:
    import pyarrow.parquet as pq

    store.get(ref, dest)
    return [r for p in sorted(dest.rglob("*.parquet")) for r in pq.read_table(p).to_pylist()]


def _quarantined_rows_never_reach_training(store, tmp_path):
    """The planted PII rows and second exports are in the quarantine artifact and in no split of
    the transformed dataset, which was made from the clean dataset (its contract's parent)."""
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
