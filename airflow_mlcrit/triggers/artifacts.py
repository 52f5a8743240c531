"""ArtifactVersionTrigger: waits in the triggerer for a new committed version of an artifact."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent


class ArtifactVersionTrigger(BaseTrigger):
    """Polls the store every ``poll_interval`` seconds; yields one event ``{"ref", "version"}``
    when ``key`` has a committed version above ``after_version``."""

    def __init__(
        self,
        key: str,
        after_version: int = 0,
        store_conn_id: str | None = None,
        artifact_root: str | None = None,
        poll_interval: float = 60.0,
    ):
        super().__init__()
        self.key, self.after_version = key, after_version
        self.store_conn_id, self.artifact_root, self.poll_interval = store_conn_id, artifact_root, poll_interval

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "airflow_mlcrit.triggers.artifacts.ArtifactVersionTrigger",
            {
                "key": self.key,
                "after_version": self.after_version,
                "store_conn_id": self.store_conn_id,
                "artifact_root": self.artifact_root,
                "poll_interval": self.poll_interval,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from airflow_mlcrit.hooks.artifacts import ArtifactStoreHook

        store = await asyncio.to_thread(ArtifactStoreHook(self.store_conn_id, root=self.artifact_root).get_store)
        while True:
            versions = await asyncio.to_thread(store.versions, self.key)
            newer = [v for v in versions if v > self.after_version]
            if newer:
                yield TriggerEvent({"ref": f"{self.key}@v{newer[-1]}", "version": newer[-1]})
                return
            self.log.info(
                "%s has no version after v%s yet; next check in %ss", self.key, self.after_version, self.poll_interval
            )
            await asyncio.sleep(self.poll_interval)
