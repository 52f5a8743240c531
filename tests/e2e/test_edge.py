"""EdgeExecutor (apache-airflow-providers-edge3): a worker that pulls its work from the
api-server over HTTP, with no broker and no database connection of its own, as at a remote or GPU
site. One run of the flagship DAG on one edge worker that shares no disk with the central site
(tests/helpers/airflow_cluster.py: its own hostname, PID namespace and private /tmp), against the
artifact store on S3 (SeaweedFS) and PostgreSQL; its task logs reach the central site over HTTP.
Settings: docs/deployment.md, "EdgeExecutor"."""

from __future__ import annotations

import runpy
import uuid
from pathlib import Path

import pytest

from airflow_mlcrit.core.artifacts import open_store
from tests.helpers.airflow_cluster import Airflow, Worker, edge_settings, short_run_conf
from tests.helpers.servers import free_port
from tests.helpers.services import LineageReceiver, postgres_database

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
DAG = "mlcrit_text_classifier"


def test_the_flagship_dag_runs_on_an_edge_worker(tmp_path, seaweedfs):
    bucket = f"edge-{uuid.uuid4().hex[:10]}"
    seaweedfs.client().create_bucket(Bucket=bucket)
    s3_root = f"s3://{bucket}/ml/artifacts"
    receiver = LineageReceiver()
    port = free_port()
    with postgres_database("mlcrit_edge") as database:
        settings = edge_settings(api_url=f"http://127.0.0.1:{port}")
        af = Airflow(
            tmp_path,
            port=port,
            database=f"postgresql+psycopg2://{database}",
            transport=receiver.transport,
            **settings,
            AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"postgresql+psycopg2://{database}",
            AIRFLOW__MLCRIT__ARTIFACT_ROOT=s3_root,
            AIRFLOW__MLCRIT__S3_ENDPOINT_URL=seaweedfs.endpoint_url,
            AIRFLOW__EDGE__JOB_POLL_INTERVAL="1",  # for this test: pick up each task within 1 s, not 5
            AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE="False",  # only the triggered run: no weekly one
            # an edge worker's request is signed for [api_auth] jwt_leeway seconds (10 by default):
            # on two busy cores a status update took longer, was refused (403 "signature of the
            # request has expired") and the worker took no more jobs (docs/deployment.md)
            AIRFLOW__API_AUTH__JWT_LEEWAY="60",
        )
        try:
            af.start()
            # the edge worker gets no database connection: it talks to the api-server only
            # (its database URL points at a closed port: any use of it would fail the task)
            command = ["edge", "worker", "--queues", "default,gpu", "--concurrency", "1"]
            nowhere = "postgresql+psycopg2://nobody@127.0.0.1:9/none"
            edge = Worker(af, "edge-a", command, AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=nowhere)
            assert edge.alive
            store = open_store(s3_root, endpoint_url=seaweedfs.endpoint_url)
            demo = runpy.run_path(str(REPO / "dev" / "demo.py"))
            demo["setup"](store)
            demo["week"](store, 1)
            # a short run: what is proven here is where the tasks run, not the model
            lenient = {"thresholds": [{"metric": "accuracy", "min": 0.6}]}  # the first model: no baseline yet
            run_id = af.trigger(DAG, short_run_conf(store, tmp_path, lenient))
            assert af.wait_run(DAG, run_id, timeout=600) == "success", af.logs()
            tis = af.task_instances(DAG, run_id)
            ran = {t: ti["hostname"] for t, ti in tis.items() if ti["state"] == "success"}
            assert set(ran.values()) == {"edge-a"} and len(ran) == 10, ran  # all but promote_prompt
            assert tis["finetune"]["queue"] == "gpu"
            assert store.alias_version("adapter/support-sentiment", "production") == 1
            # pushed over HTTP: the central site has the log the edge worker wrote on its own disk
            central = af.home / "logs" / f"dag_id={DAG}" / f"run_id={run_id}" / "task_id=finetune" / "attempt=1.log"
            assert "step 25/30" in central.read_text()
            assert not receiver.invalid, receiver.invalid[:3]
            assert {e["job"]["name"] for e in receiver.events} >= {f"{DAG}.finetune", f"{DAG}.promote"}
        finally:
            af.stop()
            receiver.stop()
