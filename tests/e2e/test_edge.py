"""A central site and a remote one. The central site runs the api-server, scheduler, dag-processor
and triggerer on PostgreSQL with two executors: EdgeExecutor (apache-airflow-providers-edge3) for
the flagship DAG, whose one edge worker pulls its work over HTTP with no broker and no database
connection of its own, as at a remote or GPU site; and LocalExecutor for the central site's own
work (a cluster policy routes it: files delivered there, and the checks below). The edge worker
shares no disk with the central site (tests/helpers/airflow_cluster.py: its own hostname, PID
namespace and private /tmp); the artifact store is S3 (SeaweedFS), lineage goes over HTTP to an
endpoint that validates every event. Also: a deferrable sensor seen in state `deferred` and
completed by the triggerer, an example DAG triggered with conf through the REST API, and secrets
of Airflow connections that never leak. Settings: docs/deployment.md, "EdgeExecutor"."""

from __future__ import annotations

import json
import os
import runpy
import uuid
from pathlib import Path

import pytest

from airflow_mlcrit.core.artifacts import open_store
from tests.helpers.airflow_cluster import LOCAL_SETTINGS, Airflow, Worker, edge_settings, short_run_conf
from tests.helpers.servers import free_port
from tests.helpers.services import LineageReceiver, postgres_database

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
DAG = "mlcrit_text_classifier"

# Planted in Airflow connections; the last test scans everything the run leaves for them.
S3_SECRET = "e2e-S3-SECRET-KEY-not-real-7d1f0c"
API_KEY = "sk-e2e-PLANTED-API-KEY-93b2"

# What the central site runs itself (docs/deployment.md, "EdgeExecutor"): everything else goes
# to the default executor, the first configured: the edge.
SETTINGS = (
    LOCAL_SETTINGS
    + """

def task_policy(task):
    if task.dag_id.startswith(("e2e_mlcrit_", "test_mlcrit_approval")) or task.dag_id == "mlcrit_register_dataset":
        task.executor = "LocalExecutor"
"""
)


@pytest.fixture(scope="module")
def tmp_path(tmp_path_factory):
    """One directory for the module: one site serves all of its tests, in order."""
    return tmp_path_factory.mktemp("edge")


@pytest.fixture(scope="module")
def fake_openai():
    from tests.helpers.openai_server import FakeOpenAI

    with FakeOpenAI() as server:
        yield server


@pytest.fixture(scope="module")
def moto_root(moto_server):
    from tests.conftest import make_s3_root

    return make_s3_root(moto_server)


@pytest.fixture(scope="module")
def site(tmp_path, seaweedfs, moto_server, moto_root, fake_openai):
    bucket = f"edge-{uuid.uuid4().hex[:10]}"
    seaweedfs.client().create_bucket(Bucket=bucket)
    s3_root = f"s3://{bucket}/ml/artifacts"
    receiver = LineageReceiver()
    port = free_port()
    moto = {"root": moto_root, "endpoint_url": moto_server.endpoint_url, "region_name": "us-east-1"}
    with postgres_database("mlcrit_edge") as database:
        af = Airflow(
            tmp_path,
            port=port,
            database=f"postgresql+psycopg2://{database}",
            local_settings=SETTINGS,
            transport=receiver.transport,
            users={"admin": "admin", "ops": "op", "alice": "op", "bob": "op"},
            **edge_settings(api_url=f"http://127.0.0.1:{port}"),
            AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"postgresql+psycopg2://{database}",
            AIRFLOW__MLCRIT__ARTIFACT_ROOT=s3_root,
            AIRFLOW__MLCRIT__S3_ENDPOINT_URL=seaweedfs.endpoint_url,
            AIRFLOW__EDGE__JOB_POLL_INTERVAL="1",  # for this test: pick up each task within 1 s, not 5
            AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE="False",  # only the triggered runs: no weekly one
            # an edge worker's request is signed for [api_auth] jwt_leeway seconds (10 by default):
            # on two busy cores a status update took longer, was refused (403 "signature of the
            # request has expired") and the worker took no more jobs (docs/deployment.md)
            AIRFLOW__API_AUTH__JWT_LEEWAY="60",
            # the scheduler's sweep of expired human-in-the-loop waits: every 2 s, not 15
            AIRFLOW__SCHEDULER__TRIGGER_TIMEOUT_CHECK_INTERVAL="2",
            AIRFLOW_CONN_MLCRIT_S3=json.dumps(
                {"conn_type": "mlcrit", "login": "e2e-access-key", "password": S3_SECRET, "extra": moto}
            ),
            AIRFLOW_CONN_FAKE_OPENAI=json.dumps(
                {"conn_type": "http", "password": API_KEY, "extra": {"base_url": fake_openai.url}}
            ),
        )
        af.database, af.receiver = database, receiver
        af.store = open_store(s3_root, endpoint_url=seaweedfs.endpoint_url)
        af.buckets = [(seaweedfs.client(), bucket), (moto_server.client(), moto_root[len("s3://") :].split("/")[0])]
        try:
            af.start()
            # the edge worker gets no database connection: it talks to the api-server only
            # (its database URL points at a closed port: any use of it would fail the task)
            command = ["edge", "worker", "--queues", "default,gpu", "--concurrency", "1"]
            nowhere = "postgresql+psycopg2://nobody@127.0.0.1:9/none"
            af.edge = Worker(af, "edge-a", command, AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=nowhere)
            yield af
        finally:
            af.stop()
            receiver.stop()
            assert all(p.poll() is not None for p in af.procs)


def _lineage(af: Airflow) -> list[dict]:
    assert not af.receiver.invalid, af.receiver.invalid[:3]
    return list(af.receiver.events)


def test_the_triggerer_completes_a_deferred_sensor_and_an_example_dag_runs_with_conf(site, tmp_path):
    """On the central site (LocalExecutor): a sensor waits, deferred, for a version the test
    commits; then mlcrit_register_dataset, triggered with conf through the REST API. The scheduler
    preloaded the ML libraries its task processes are forked with."""
    from airflow_mlcrit.core.demo import customer_messages

    af, store = site, site.store
    run_id = af.trigger("e2e_mlcrit_wait", {})
    seen = set()

    def commit_when_deferred(states):
        seen.add(states.get("wait"))
        if states.get("wait") == "deferred" and not store.exists("dataset/e2e-incoming"):
            customer_messages(200, seed=4).to_parquet(tmp_path / "in.parquet", index=False)
            store.put("dataset/e2e-incoming", tmp_path / "in.parquet")

    state = af.wait_run("e2e_mlcrit_wait", run_id, on_state=commit_when_deferred)
    assert state == "success", (af.task_states("e2e_mlcrit_wait", run_id), af.logs())
    assert "deferred" in seen
    preloaded = (af.home / "preloaded.txt").read_text().split(",")
    assert {"torch", "transformers", "peft", "apache_beam"} <= set(preloaded)
    assert store.resolve("statistics/e2e-incoming@v1").parents[0]["ref"] == "dataset/e2e-incoming@v1"
    customer_messages(300, seed=5).to_parquet(tmp_path / "reviews.parquet", index=False)
    run_id = af.trigger("mlcrit_register_dataset", {"path": str(tmp_path / "reviews.parquet"), "source": "e2e"})
    assert af.wait_run("mlcrit_register_dataset", run_id) == "success", af.logs()
    assert store.resolve("dataset/reviews@v1").metadata["source"] == "e2e"
    tis = af.task_instances("mlcrit_register_dataset", run_id)
    assert {ti["executor"] for ti in tis.values()} == {"LocalExecutor"}, tis
    assert {e["job"]["name"] for e in _lineage(af)} >= {"e2e_mlcrit_wait.wait", "mlcrit_register_dataset.validate"}


def test_four_eyes_promotion_with_a_real_scheduler_and_the_cli(site, tmp_path):
    """PromotionApprovalOperator on the central site, its people the simple auth manager's users,
    each answering with `mlcrit approve` / `mlcrit reject` (a separate process, through the REST
    API with their own token). The task waits in `awaiting_input`, holding no worker slot. The
    requester is refused by Airflow, an approval on a superseded blessing by the CLI; a rejection
    and an approval are recorded by the task; an unanswered request expires through the
    scheduler's timeout sweep and nothing is promoted."""
    import subprocess
    import sys

    from airflow_mlcrit.core.gating import AliasPolicy, promote, set_policy
    from airflow_mlcrit.core.gating.approval import decide_signed, generate_key, request_policy_change
    from tests.helpers.registry import FIRST, LENIENT, STRICT, add_adapter_version, judge

    af, store, dag = site, site.store, "test_mlcrit_approval"  # tests/airflow/dags, as dag.test() runs it
    people: dict = {}  # who may approve is the alias policy's, not the run's
    bob_key, bob_public = generate_key()  # bob also decides outside Airflow, with his own key
    four_eyes = {"approvals": 1, "approvers": ("ops", "alice", "bob"), "approver_keys": {"bob": bob_public}}
    work = tmp_path / "approval"
    work.mkdir()
    add_adapter_version(store, work, 16, baseline=None, base_right=0, gate=FIRST)
    promote(store, "adapter/clf@v1", "production", reason="first model", actor="pipeline", create=True)
    set_policy(store, "adapter/clf", "production", AliasPolicy(**four_eyes), reason="four eyes", actor="owner")
    v2, _ = add_adapter_version(store, work, 17, baseline=1, base_right=16, gate=LENIENT)

    def mlcrit(user: str, verb: str, ref: str, reason: str) -> subprocess.CompletedProcess:
        env = dict(
            os.environ,
            AWS_ENDPOINT_URL=af.env["AIRFLOW__MLCRIT__S3_ENDPOINT_URL"],
            MLCRIT_AIRFLOW_URL=af.url,
            MLCRIT_AIRFLOW_TOKEN=af.token_for(user),
        )
        root = af.env["AIRFLOW__MLCRIT__ARTIFACT_ROOT"]
        command = [sys.executable, "-m", "airflow_mlcrit.core.cli", "--root", root, verb, ref, "--reason", reason]
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)

    # 1. asked by ops; ops may not answer; the blessing is superseded before alice can; bob rejects
    run_id = af.trigger(dag, people, user="ops")
    af.wait_parked(dag, run_id, "approve")
    assert store.resolve("approval/clf@v1").metadata["requested_by"] == "ops"
    refused = mlcrit("ops", "approve", "approval/clf@v1", "mine")
    assert refused.returncode == 1 and "Airflow answered 403" in refused.stderr, refused.stderr
    assert "not a respondent" in refused.stderr
    judge(store, work, v2, 17, baseline=1, base_right=16, gate=STRICT)  # v2 judged again: NOT_BLESSED
    superseded = mlcrit("alice", "approve", "approval/clf@v1", "phone slice reviewed")
    assert superseded.returncode == 1, superseded.stderr
    assert "approval/clf@v1 can no longer be approved" in superseded.stderr and "NOT_BLESSED" in superseded.stderr
    rejected = mlcrit("bob", "reject", "approval/clf@v1", "judged again, not blessed")
    assert rejected.returncode == 0, rejected.stderr
    assert rejected.stdout.splitlines()[-1] == "approval/clf@v2: REJECTED adapter/clf@v2 for 'production' by bob"
    assert af.wait_run(dag, run_id) == "success", af.logs()
    assert af.task_states(dag, run_id) == {"approve": "skipped", "promote": "skipped"}
    assert store.alias_version("adapter/clf", "production") == 1

    # 2. blessed again, asked again: alice approves, and the alias history names her
    judge(store, work, v2, 17, baseline=1, base_right=16, gate=LENIENT)
    run_id = af.trigger(dag, people, user="ops")
    af.wait_parked(dag, run_id, "approve")
    approved = mlcrit("alice", "approve", "approval/clf@v3", "phone slice reviewed")
    assert approved.returncode == 0, approved.stderr
    assert approved.stdout.splitlines()[-1] == "approval/clf@v4: APPROVED adapter/clf@v2 for 'production' by alice"
    assert af.wait_run(dag, run_id) == "success", af.logs()
    move = store.alias_history("adapter/clf", "production")[-1]
    assert (move.to_version, move.extra["approval"], move.extra["approved_by"]) == (2, "approval/clf@v4", "alice")

    # 3. the policy keeps requests open 2 seconds (a change bob approved with his key); v3, blessed
    # against v2, is asked for: no one answers, the scheduler ends the wait
    short = AliasPolicy(**four_eyes, expires_after_hours=2 / 3600)
    change = request_policy_change(store, "adapter/clf", "production", short, requested_by="ops")
    ok = decide_signed(store, str(change.ref), private_key=bob_key.encode(), approve=True, reason="expiry drill")
    set_policy(store, "adapter/clf", "production", short, reason="expiry drill", actor="ops", approval=str(ok.ref))
    add_adapter_version(store, work, 18, baseline=2, base_right=17, gate=LENIENT)
    run_id = af.trigger("test_mlcrit_approval_expiry", {**people, "candidate": "adapter/clf@v3"}, user="ops")
    assert af.wait_run("test_mlcrit_approval_expiry", run_id, timeout=180) == "failed"
    assert af.task_states("test_mlcrit_approval_expiry", run_id) == {"approve": "failed", "promote": "upstream_failed"}
    expired = store.resolve("approval/clf@v8").metadata
    assert (expired["state"], expired["request"], expired["decided_by"]) == ("EXPIRED", "approval/clf@v7", None)
    assert store.alias_version("adapter/clf", "production") == 2


def test_the_flagship_dag_runs_on_an_edge_worker(site, tmp_path):
    af, store = site, site.store
    demo = runpy.run_path(str(REPO / "dev" / "demo.py"))
    demo["setup"](store)
    demo["week"](store, 1)
    # a short run: what is proven here is where the tasks run, not the model
    lenient = {"thresholds": [{"metric": "accuracy", "min": 0.6}]}  # the first model: no baseline yet
    run_id = af.trigger(DAG, short_run_conf(store, tmp_path, lenient))
    assert af.wait_run(DAG, run_id, timeout=600) == "success", af.logs()
    tis = af.task_instances(DAG, run_id)
    ran = {t: ti["hostname"] for t, ti in tis.items() if ti["state"] == "success"}
    assert set(ran.values()) == {"edge-a"} and len(ran) == 11, ran  # all but promote_prompt
    assert tis["finetune"]["queue"] == "gpu"
    assert store.alias_version("adapter/support-sentiment", "production") == 1
    # pushed over HTTP: the central site has the log the edge worker wrote on its own disk
    central = af.home / "logs" / f"dag_id={DAG}" / f"run_id={run_id}" / "task_id=finetune" / "attempt=1.log"
    assert "step 25/30" in central.read_text()
    assert {e["job"]["name"] for e in _lineage(af)} >= {f"{DAG}.finetune", f"{DAG}.promote"}
    preloaded = (af.edge.home / "preloaded.txt").read_text().split(",")  # its tasks fork from it
    assert {"torch", "transformers", "peft", "apache_beam"} <= set(preloaded)


def test_connection_secrets_never_leak_into_logs_xcom_manifests_or_lineage(site, tmp_path, fake_openai):
    """Runs tasks that use both secrets (S3 secret key, API key), then scans everything the
    module's runs left: the files of the central site (task and component logs) and of the edge
    worker's private disk, the metadata DB (XCom, rendered fields), every object in both S3
    buckets (manifests and payloads) and every lineage event."""
    from tests.helpers.models import sentiment

    af, store = site, site.store
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
    run_id = af.trigger("e2e_mlcrit_secrets", conf)
    assert af.wait_run("e2e_mlcrit_secrets", run_id) == "success", (
        af.task_states("e2e_mlcrit_secrets", run_id),
        af.logs(),
    )
    # the secrets were really used: the S3 store through the connection, the key by the endpoint
    objects = {
        f"s3://{bucket}/{o['Key']}": (client, bucket, o["Key"])
        for client, bucket in af.buckets
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        for o in page.get("Contents", [])
    }
    moto_prefix = f"s3://{af.buckets[1][1]}/ml/artifacts"
    assert any(k.startswith(f"{moto_prefix}/dataset/secret-scan/") for k in objects)
    assert any(k.startswith(f"{moto_prefix}/validation_report/") for k in objects)
    assert f"Bearer {API_KEY}" in fake_openai.auth
    assert any((af.home / "mlcrit" / "prompt-cache").rglob("*.json"))  # the default cache: $AIRFLOW_HOME
    # the scan: every file (the edge worker's private /tmp too), the DB, S3, lineage
    leaks, scanned = [], 0
    for path in [*tmp_path.rglob("*"), *af.edge.home.parent.rglob("*")]:
        if path.is_file():
            data, scanned = path.read_bytes(), scanned + 1
            leaks += [f"{path} holds {s!r}" for s in (S3_SECRET, API_KEY) if s.encode() in data]
    for uri, (client, bucket, key) in objects.items():
        data = client.get_object(Bucket=bucket, Key=key)["Body"].read()
        leaks += [f"{uri} holds {s!r}" for s in (S3_SECRET, API_KEY) if s.encode() in data]
    database = _dump(af.database)
    lineage = json.dumps(_lineage(af)).encode()
    leaks += [
        f"{where} holds {s!r}"
        for where, data in (("the metadata DB", database), ("lineage", lineage))
        for s in (S3_SECRET, API_KEY)
        if s.encode() in data
    ]
    assert not leaks, leaks
    # what was scanned is the real thing: logs, the DB, manifests and lineage name this run
    assert b"e2e_mlcrit_secrets" in database and b"e2e_mlcrit_secrets.evaluate_prompt" in lineage
    assert af.task_log("e2e_mlcrit_secrets", run_id, "register") and scanned > 50
    assert any(uri.endswith("/_MANIFEST.json") for uri in objects) and len(objects) > 50


def _dump(database: str) -> bytes:
    """Every row of every table of the metadata DB, as text (what a database dump would hold)."""
    import psycopg2

    from tests.helpers.services import POSTGRES

    name = database.rsplit("/", 1)[1]
    with (
        psycopg2.connect(host=POSTGRES[0], port=POSTGRES[1], user="postgres", dbname=name) as conn,
        conn.cursor() as cur,
    ):
        cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        rows = []
        for (table,) in cur.fetchall():
            cur.execute(f'SELECT t::text FROM "{table}" t')
            rows += [r for (r,) in cur.fetchall()]
    return "\n".join(rows).encode()
