"""FineTuneJobTrigger: waits for a remote fine-tuning job in the triggerer, off the worker slots."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent


class FineTuneJobTrigger(BaseTrigger):
    """Polls the job's status every ``poll_interval`` seconds; yields exactly one event when it ends:
    ``{"job_id", "state": SUCCEEDED|FAILED, "message", "output_uri"}``."""

    def __init__(
        self, job_id: str, backend: str = "sagemaker", aws_conn_id: str | None = None, poll_interval: float = 60.0
    ):
        super().__init__()
        self.job_id = job_id
        self.backend = backend
        self.aws_conn_id = aws_conn_id
        self.poll_interval = poll_interval

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "airflow_mlcrit.triggers.training.FineTuneJobTrigger",
            {
                "job_id": self.job_id,
                "backend": self.backend,
                "aws_conn_id": self.aws_conn_id,
                "poll_interval": self.poll_interval,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from airflow_mlcrit.core.training.backends import RUNNING
        from airflow_mlcrit.hooks.training import FineTuneJobHook

        backend = await asyncio.to_thread(FineTuneJobHook(self.backend, self.aws_conn_id).get_backend)
        while True:
            status = await asyncio.to_thread(backend.status, self.job_id)
            if status.state != RUNNING:
                yield TriggerEvent(
                    {
                        "job_id": self.job_id,
                        "state": status.state,
                        "message": status.message,
                        "output_uri": status.output_uri,
                    }
                )
                return
            self.log.info("job %s is %s; next check in %ss", self.job_id, status.raw_status, self.poll_interval)
            await asyncio.sleep(self.poll_interval)
