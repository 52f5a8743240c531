"""FineTuneJobHook: an Airflow connection -> a remote training backend."""

from __future__ import annotations

from typing import Any

from airflow_mlcrit.exceptions import ConfigError
from airflow_mlcrit.hooks.artifacts import aws_options
from airflow_mlcrit.version_compat import BaseHook


class FineTuneJobHook(BaseHook):
    """Builds the backend that runs fine-tuning jobs outside the Airflow worker.

    :param backend: ``sagemaker`` (more backends implement core.training.backends.TrainingBackend).
    :param aws_conn_id: an ``aws`` connection (login/password = access key, extras ``region_name``,
        ``endpoint_url``); None uses boto3's default credential chain.
    """

    conn_name_attr = "aws_conn_id"
    default_conn_name = "aws_default"
    hook_name = "ML Critical fine-tuning jobs"
    BACKENDS = ("sagemaker",)

    def __init__(self, backend: str = "sagemaker", aws_conn_id: str | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        if backend not in self.BACKENDS:
            raise ConfigError(f"unknown fine-tuning backend {backend!r}: use 'local' or one of {self.BACKENDS}")
        self.backend = backend
        self.aws_conn_id = aws_conn_id

    def get_backend(self) -> Any:
        from airflow_mlcrit.core.training.backends import SageMakerBackend

        options = aws_options(self.get_connection(self.aws_conn_id), "sagemaker") if self.aws_conn_id else {}
        return SageMakerBackend(**options)

    def get_conn(self) -> Any:
        return self.get_backend()
