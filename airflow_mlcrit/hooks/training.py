"""FineTuneJobHook: an Airflow connection -> a remote training backend."""

from __future__ import annotations

from typing import Any

from airflow_mlcrit.exceptions import ConfigError
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

        options: dict[str, Any] = {}
        if self.aws_conn_id:
            conn = self.get_connection(self.aws_conn_id)
            extra = conn.extra_dejson
            options = {
                "aws_access_key_id": conn.login or None,
                "aws_secret_access_key": conn.password or None,
                "aws_session_token": extra.get("aws_session_token"),
                "region_name": extra.get("region_name"),
                "endpoint_url": extra.get("endpoint_url"),
            }
        return SageMakerBackend(**{k: v for k, v in options.items() if v is not None})

    def get_conn(self) -> Any:
        return self.get_backend()
