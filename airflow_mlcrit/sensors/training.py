"""FineTuneJobSensor: wait for a fine-tuning job started elsewhere (deferrable)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow_mlcrit.exceptions import MlcritError
from airflow_mlcrit.version_compat import BaseSensorOperator, conf


class FineTuneJobSensor(BaseSensorOperator):
    """Succeeds when the job completes; fails with the job's failure reason when it fails.

    :param job_id: the backend's job name. (templated)
    :param backend: ``sagemaker``.
    :param aws_conn_id: connection of the backend's account. (templated)
    :param deferrable: wait in the triggerer instead of a worker slot (default ``[operators] default_deferrable``).
    """

    template_fields: Sequence[str] = ("job_id", "aws_conn_id")

    def __init__(
        self,
        *,
        job_id: str,
        backend: str = "sagemaker",
        aws_conn_id: str | None = None,
        deferrable: bool | None = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.job_id = job_id
        self.backend = backend
        self.aws_conn_id = aws_conn_id
        self.deferrable = (
            conf.getboolean("operators", "default_deferrable", fallback=False) if deferrable is None else deferrable
        )

    def execute(self, context: Any) -> Any:
        if not self.deferrable:
            return super().execute(context)
        if self.poke(context):
            return None
        from airflow_mlcrit.triggers.training import FineTuneJobTrigger

        self.defer(
            trigger=FineTuneJobTrigger(self.job_id, self.backend, self.aws_conn_id, self.poke_interval),
            method_name="execute_complete",
        )

    def poke(self, context: Any) -> bool:
        from airflow_mlcrit.core.training.backends import FAILED, SUCCEEDED
        from airflow_mlcrit.hooks.training import FineTuneJobHook

        status = FineTuneJobHook(self.backend, self.aws_conn_id).get_backend().status(self.job_id)
        if status.state == FAILED:
            raise MlcritError(f"fine-tuning job {self.job_id} failed: {status.message}")
        return status.state == SUCCEEDED

    def execute_complete(self, context: Any, event: dict[str, Any]) -> None:
        if event["state"] != "SUCCEEDED":
            raise MlcritError(f"fine-tuning job {event['job_id']} failed: {event['message']}")
