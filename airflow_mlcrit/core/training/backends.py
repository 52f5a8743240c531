"""Where a fine-tuning job runs. ``local`` is the child process (runner.py); remote backends
implement :class:`TrainingBackend` (submit / status / fetch), so a Kubernetes backend plugs in
without touching the operator."""

from __future__ import annotations

import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from airflow_mlcrit.exceptions import ConfigError, MlcritError

RUNNING, SUCCEEDED, FAILED = "RUNNING", "SUCCEEDED", "FAILED"


@dataclass
class JobSpec:
    name: str
    config: dict[str, Any]  # FineTuneConfig fields: passed to the job as hyperparameters
    channels: dict[str, str]  # channel name -> s3:// prefix (train, eval, base_model)
    output_uri: str
    options: dict[str, Any] = field(default_factory=dict)  # backend-specific: image, instance type, role...


@dataclass
class JobStatus:
    state: str  # RUNNING | SUCCEEDED | FAILED
    message: str = ""
    output_uri: str | None = None
    raw_status: str = ""


class TrainingBackend(Protocol):
    def submit(self, spec: JobSpec) -> str: ...
    def status(self, job_id: str) -> JobStatus: ...
    def fetch_output(self, status: JobStatus, dest: Path) -> Path: ...
    def stop(self, job_id: str) -> None: ...


class SageMakerBackend:
    """Amazon SageMaker training jobs through boto3 (``create_training_job`` / ``describe_training_job``).

    ``options``: ``image_uri`` (a training image with airflow-mlcrit[train] whose entry point runs
    ``python -m airflow_mlcrit.core.training.worker``), ``role_arn``, ``instance_type``,
    ``instance_count`` (1), ``volume_size_gb`` (30), ``max_runtime_s`` (86400).
    """

    REQUIRED = ("image_uri", "role_arn", "instance_type")

    def __init__(
        self,
        *,
        region_name: str | None = None,
        endpoint_url: str | None = None,
        aws_access_key_id: str | None = None,
        aws_secret_access_key: str | None = None,
        aws_session_token: str | None = None,
    ):
        import boto3

        session = boto3.session.Session(
            aws_access_key_id=aws_access_key_id,
            aws_secret_access_key=aws_secret_access_key,
            aws_session_token=aws_session_token,
            region_name=region_name,
        )
        self.sagemaker = session.client("sagemaker", endpoint_url=endpoint_url)
        self.s3 = session.client("s3", endpoint_url=endpoint_url)

    def submit(self, spec: JobSpec) -> str:
        missing = [k for k in self.REQUIRED if not spec.options.get(k)]
        if missing:
            raise ConfigError(
                f"the sagemaker backend needs backend_options {missing} (training image, IAM role, instance type)"
            )
        for name, uri in spec.channels.items():
            if not uri.startswith("s3://"):
                raise ConfigError(
                    f"SageMaker channel {name!r} must be an s3:// prefix, got {uri!r}: use an S3 artifact store"
                )
        o = spec.options
        self.sagemaker.create_training_job(
            TrainingJobName=spec.name,
            AlgorithmSpecification={"TrainingImage": o["image_uri"], "TrainingInputMode": "File"},
            RoleArn=o["role_arn"],
            HyperParameters={k: str(v) for k, v in spec.config.items() if v is not None},
            InputDataConfig=[
                {
                    "ChannelName": name,
                    "DataSource": {
                        "S3DataSource": {
                            "S3DataType": "S3Prefix",
                            "S3Uri": uri,
                            "S3DataDistributionType": "FullyReplicated",
                        }
                    },
                }
                for name, uri in spec.channels.items()
            ],
            OutputDataConfig={"S3OutputPath": spec.output_uri},
            ResourceConfig={
                "InstanceType": o["instance_type"],
                "InstanceCount": int(o.get("instance_count", 1)),
                "VolumeSizeInGB": int(o.get("volume_size_gb", 30)),
            },
            StoppingCondition={"MaxRuntimeInSeconds": int(o.get("max_runtime_s", 86400))},
        )
        return spec.name

    def status(self, job_id: str) -> JobStatus:
        d = self.sagemaker.describe_training_job(TrainingJobName=job_id)
        raw = d["TrainingJobStatus"]
        state = {"Completed": SUCCEEDED, "Failed": FAILED, "Stopped": FAILED}.get(raw, RUNNING)
        message = d.get("FailureReason") or (
            f"the job was stopped ({d.get('SecondaryStatus', '')})" if raw == "Stopped" else ""
        )
        return JobStatus(state, message, d.get("ModelArtifacts", {}).get("S3ModelArtifacts"), raw)

    def stop(self, job_id: str) -> None:
        """Ask SageMaker to stop the job (a job that already ended is left as it is)."""
        if self.status(job_id).state == RUNNING:
            self.sagemaker.stop_training_job(TrainingJobName=job_id)

    def fetch_output(self, status: JobStatus, dest: Path) -> Path:
        """Download and unpack the job's model.tar.gz (members may not escape ``dest``)."""
        if not status.output_uri:
            raise MlcritError("the training job finished without model artifacts")
        bucket, _, key = status.output_uri[len("s3://") :].partition("/")
        dest.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            archive = Path(tmp) / "model.tar.gz"
            self.s3.download_file(bucket, key, str(archive))
            with tarfile.open(archive) as tar:
                tar.extractall(dest, filter="data")  # refuses absolute paths, '..' and links out of dest
        return dest
