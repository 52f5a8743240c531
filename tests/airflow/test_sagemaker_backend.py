"""The SageMaker backend, trigger and sensor against moto's server on 127.0.0.1.

SageMaker's compute cannot run here: moto keeps the job records and S3, and the test plays the
training instance (it uploads model.tar.gz to the job's output path and moves the job's status
through the emulation endpoint of tests/helpers/moto_server.py)."""

import asyncio
import io
import json
import re
import tarfile

import pytest

from airflow_mlcrit.core.training.backends import FAILED, RUNNING, SUCCEEDED, JobSpec
from airflow_mlcrit.exceptions import ConfigError, MlcritError
from airflow_mlcrit.hooks.training import FineTuneJobHook
from airflow_mlcrit.sensors.training import FineTuneJobSensor
from airflow_mlcrit.triggers.training import FineTuneJobTrigger

OPTIONS = {
    "image_uri": "123456789012.dkr.ecr.us-east-1.amazonaws.com/mlcrit-train:0.1.0",
    "role_arn": "arn:aws:iam::123456789012:role/sagemaker",
    "instance_type": "ml.g5.xlarge",
}


@pytest.fixture
def aws_conn(monkeypatch, moto_server):
    monkeypatch.setenv(
        "AIRFLOW_CONN_SM",
        json.dumps(
            {
                "conn_type": "aws",
                "login": "testing",
                "password": "testing",
                "extra": {"region_name": "us-east-1", "endpoint_url": moto_server.endpoint_url},
            }
        ),
    )
    client = moto_server.client()
    client.create_bucket(Bucket="ml-store")
    return "sm"


def _spec(name):
    return JobSpec(
        name=name,
        config={
            "base_model": "/opt/ml/input/data/base_model",
            "max_steps": 100,
            "learning_rate": 0.001,
            "target_modules": None,
        },
        channels={
            "train": "s3://ml-store/dataset/reviews/v000001",
            "base_model": "s3://ml-store/base_model/minilm/v000001",
        },
        output_uri="s3://ml-store/_jobs",
        options=OPTIONS,
    )


def _finish(moto_server, name, files):
    """Play the training instance: write model.tar.gz where SageMaker would, then complete."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for path, data in files.items():
            info = tarfile.TarInfo(path)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    sagemaker = FineTuneJobHook("sagemaker", "sm").get_backend().sagemaker
    artifacts = sagemaker.describe_training_job(TrainingJobName=name)["ModelArtifacts"]["S3ModelArtifacts"]
    bucket, _, key = artifacts[len("s3://") :].partition("/")
    moto_server.client().put_object(Bucket=bucket, Key=key, Body=buf.getvalue())
    moto_server.set_training_job(name, "Completed")


def test_request_shape_polling_and_output(aws_conn, moto_server, tmp_path):
    backend = FineTuneJobHook("sagemaker", aws_conn).get_backend()
    assert backend.submit(_spec("mlcrit-ok")) == "mlcrit-ok"
    d = backend.sagemaker.describe_training_job(TrainingJobName="mlcrit-ok")
    assert d["AlgorithmSpecification"]["TrainingImage"] == OPTIONS["image_uri"]
    assert d["ResourceConfig"]["InstanceType"] == "ml.g5.xlarge" and d["ResourceConfig"]["InstanceCount"] == 1
    assert {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in d["InputDataConfig"]} == {
        "train": "s3://ml-store/dataset/reviews/v000001",
        "base_model": "s3://ml-store/base_model/minilm/v000001",
    }
    assert d["HyperParameters"] == {
        "base_model": "/opt/ml/input/data/base_model",
        "max_steps": "100",
        "learning_rate": "0.001",
    }
    assert d["OutputDataConfig"]["S3OutputPath"] == "s3://ml-store/_jobs"
    assert backend.status("mlcrit-ok").state == RUNNING
    _finish(moto_server, "mlcrit-ok", {"adapter_config.json": b"{}", "adapter_model.safetensors": b"\x00" * 8})
    status = backend.status("mlcrit-ok")
    assert (status.state, status.output_uri) == (SUCCEEDED, "s3://ml-store/_jobs/mlcrit-ok/output/model.tar.gz")
    out = backend.fetch_output(status, tmp_path / "out")
    assert sorted(p.name for p in out.iterdir()) == ["adapter_config.json", "adapter_model.safetensors"]


def test_failure_reason_reaches_the_trigger_and_the_sensor(aws_conn, moto_server):
    backend = FineTuneJobHook("sagemaker", aws_conn).get_backend()
    backend.submit(_spec("mlcrit-bad"))

    async def first_event():
        trigger = FineTuneJobTrigger("mlcrit-bad", "sagemaker", aws_conn, poll_interval=0.2)
        agen = trigger.run()
        task = asyncio.ensure_future(agen.__anext__())
        await asyncio.sleep(0.5)
        assert not task.done()  # still polling a running job
        await asyncio.to_thread(moto_server.set_training_job, "mlcrit-bad", "Failed", "CUDA out of memory")
        return await asyncio.wait_for(task, 10)

    event = asyncio.run(first_event())
    assert event.payload == {
        "job_id": "mlcrit-bad",
        "state": FAILED,
        "message": "CUDA out of memory",
        "output_uri": "s3://ml-store/_jobs/mlcrit-bad/output/model.tar.gz",
    }
    classpath, kwargs = FineTuneJobTrigger("mlcrit-bad", "sagemaker", aws_conn, 0.2).serialize()
    assert classpath == "airflow_mlcrit.triggers.training.FineTuneJobTrigger"
    assert kwargs == {"job_id": "mlcrit-bad", "backend": "sagemaker", "aws_conn_id": "sm", "poll_interval": 0.2}
    sensor = FineTuneJobSensor(task_id="wait", job_id="mlcrit-bad", aws_conn_id=aws_conn, deferrable=False)
    with pytest.raises(MlcritError, match=re.escape("fine-tuning job mlcrit-bad failed: CUDA out of memory")):
        sensor.poke({})
    with pytest.raises(MlcritError, match=re.escape("fine-tuning job mlcrit-bad failed: CUDA out of memory")):
        sensor.execute_complete({}, event.payload)


def test_submit_errors_name_what_is_missing(aws_conn):
    backend = FineTuneJobHook("sagemaker", aws_conn).get_backend()
    spec = _spec("mlcrit-x")
    spec.options = {"image_uri": "img"}
    with pytest.raises(ConfigError, match=re.escape("needs backend_options ['role_arn', 'instance_type']")):
        backend.submit(spec)
    spec = _spec("mlcrit-y")
    spec.channels = {"train": "/local/path"}
    with pytest.raises(ConfigError, match=re.escape("channel 'train' must be an s3:// prefix")):
        backend.submit(spec)
    with pytest.raises(ConfigError, match=re.escape("unknown fine-tuning backend 'k8s'")):
        FineTuneJobHook("k8s")


def _emulate_instance(moto_server, tiny_bert, workdir, outcome):
    """The training instance: wait for the job, then either train for real and upload
    model.tar.gz (success) or report a failure reason."""
    import threading
    import time

    def run():
        client = FineTuneJobHook("sagemaker", "sm").get_backend().sagemaker
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            # this test's job: the operator's (named after the output), still running
            jobs = client.list_training_jobs(NameContains="mlcrit-sentiment-", StatusEquals="InProgress")[
                "TrainingJobSummaries"
            ]
            if jobs:
                break
            time.sleep(0.2)
        name = jobs[0]["TrainingJobName"]
        if outcome != "Completed":
            moto_server.set_training_job(name, "Failed", outcome)
            return
        from airflow_mlcrit.core.training.finetune import finetune
        from tests.helpers.models import sentiment

        sentiment(64).to_parquet(workdir / "train.parquet", index=False)
        result = finetune(
            {"base_model": tiny_bert, "max_steps": 10, "max_length": 16},
            str(workdir / "train.parquet"),
            workdir=workdir / "instance",
        )
        _finish(moto_server, name, {p.name: p.read_bytes() for p in result.output_dir.iterdir()})

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.mark.timeout(300)
def _s3_store_connection(monkeypatch, moto_server, tmp_path):
    """The ``s3_store`` connection: an mlcrit store under this test's own prefix of ml-store."""
    monkeypatch.setenv(
        "AIRFLOW_CONN_S3_STORE",
        json.dumps(
            {
                "conn_type": "mlcrit",
                "login": "testing",
                "password": "testing",
                "extra": {
                    "root": f"s3://ml-store/{tmp_path.name}",
                    "endpoint_url": moto_server.endpoint_url,
                    "region_name": "us-east-1",
                },
            }
        ),
    )


@pytest.mark.parametrize("outcome", ["Completed", "AlgorithmError: loss became NaN"])
def test_fine_tune_operator_defers_on_a_sagemaker_job(
    aws_conn, moto_server, tiny_bert, tmp_path, monkeypatch, airflow_db, outcome
):
    from airflow_mlcrit.core.artifacts import open_store
    from tests.airflow.conftest import run_dag, task_states
    from tests.helpers.models import sentiment

    _s3_store_connection(monkeypatch, moto_server, tmp_path)
    sentiment(64).to_parquet(tmp_path / "data.parquet", index=False)
    thread = _emulate_instance(moto_server, tiny_bert, tmp_path, outcome)
    dr = run_dag(
        "test_mlcrit_sagemaker", {"data": str(tmp_path / "data.parquet"), "base": tiny_bert, "options": OPTIONS}
    )
    thread.join(60)
    store = open_store(f"s3://ml-store/{tmp_path.name}", endpoint_url=moto_server.endpoint_url, region_name="us-east-1")
    if outcome == "Completed":
        assert dr.state == "success", task_states(dr)
        adapter = store.resolve("adapter/sentiment@v1")
        assert adapter.metadata["backend"] == "sagemaker" and adapter.metadata["steps"] == 10
        assert [p["ref"] for p in adapter.parents] == ["dataset/reviews@v1", "base_model/tiny-bert@v1"]
        assert "adapter_model.safetensors" in {f["path"] for f in adapter.files}
    else:
        assert dr.state == "failed" and task_states(dr)["finetune"][0] == "failed"
        assert not store.exists("adapter/sentiment")


def test_a_timed_out_sagemaker_fine_tune_stops_its_job(
    aws_conn, moto_server, tiny_bert, tmp_path, monkeypatch, airflow_db
):
    """The wait outlives execution_timeout: on_kill asks SageMaker to stop the job (moto lacks
    StopTrainingJob; tests/helpers/moto_server.py answers it as SageMaker does)."""
    from tests.airflow.conftest import run_dag, task_states
    from tests.helpers.models import sentiment

    _s3_store_connection(monkeypatch, moto_server, tmp_path)
    sentiment(64).to_parquet(tmp_path / "data.parquet", index=False)
    dr = run_dag(
        "test_mlcrit_sagemaker_timeout", {"data": str(tmp_path / "data.parquet"), "base": tiny_bert, "options": OPTIONS}
    )
    assert task_states(dr)["finetune"] == ("failed", 1)
    client = moto_server.client("sagemaker")
    jobs = [
        client.describe_training_job(TrainingJobName=j["TrainingJobName"])
        for j in client.list_training_jobs()["TrainingJobSummaries"]
    ]
    [job] = [j for j in jobs if tmp_path.name in j["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"]]
    assert job["TrainingJobStatus"] == "Stopped"
