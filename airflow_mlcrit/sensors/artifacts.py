"""Sensors on the artifact store: a new version of an artifact; drift in a new dataset version."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from airflow_mlcrit.operators.base import MlcritLineageMixin
from airflow_mlcrit.version_compat import BaseSensorOperator, conf


class ArtifactVersionSensor(MlcritLineageMixin, BaseSensorOperator):
    """Wait for a committed version of ``artifact`` (``kind/name``) newer than ``after_version``
    (default: the newest one when the sensor starts). Returns ``{"ref", "version"}``.

    :param artifact: ``kind/name`` to watch. (templated)
    :param after_version: wait for a version above this one; None: above the current newest. (templated)
    :param store_conn_id: connection of the artifact store; None: ``[mlcrit] artifact_root``. (templated)
    :param artifact_root: overrides the store root of the connection or config. (templated)
    :param deferrable: wait in the triggerer (default ``[operators] default_deferrable``).
    """

    template_fields: Sequence[str] = ("artifact", "after_version", "store_conn_id", "artifact_root")

    def __init__(
        self,
        *,
        artifact: str,
        after_version: int | str | None = None,
        store_conn_id: str | None = None,
        artifact_root: str | None = None,
        deferrable: bool | None = None,
        **kwargs: Any,
    ):
        kwargs.setdefault("multiple_outputs", True)  # downstream reads upstream.output["ref"]
        super().__init__(**kwargs)
        self.artifact, self.after_version = artifact, after_version
        self.store_conn_id, self.artifact_root = store_conn_id, artifact_root
        self.deferrable = (
            conf.getboolean("operators", "default_deferrable", fallback=False) if deferrable is None else deferrable
        )
        self._baseline: int | None = None

    @functools.cached_property
    def store(self) -> Any:
        from airflow_mlcrit.hooks.artifacts import ArtifactStoreHook

        return ArtifactStoreHook(self.store_conn_id, root=self.artifact_root).get_store()

    def _after(self) -> int:
        if self._baseline is None:
            if self.after_version not in (None, "", "None"):
                self._baseline = int(str(self.after_version).lstrip("v"))
            else:
                versions = self.store.versions(self.artifact)
                self._baseline = versions[-1] if versions else 0
        return self._baseline

    def _newer(self) -> dict[str, Any] | None:
        newer = [v for v in self.store.versions(self.artifact) if v > self._after()]
        return {"ref": f"{self.artifact}@v{newer[-1]}", "version": newer[-1]} if newer else None

    def poke(self, context: Any) -> Any:
        from airflow.sdk.bases.sensor import PokeReturnValue

        found = self._newer()
        return PokeReturnValue(is_done=found is not None, xcom_value=found)

    def execute(self, context: Any) -> Any:
        if not self.deferrable:
            return super().execute(context)
        found = self._newer()
        if found is not None:
            return found
        self._defer(self._after())

    def _defer(self, after: int) -> None:
        from airflow_mlcrit.triggers.artifacts import ArtifactVersionTrigger

        self.log.info("deferring: waiting for %s after v%s", self.artifact, after)
        self.defer(
            trigger=ArtifactVersionTrigger(
                self.artifact, after, self.store_conn_id, self.artifact_root, poll_interval=self.poke_interval
            ),
            method_name="execute_complete",
        )

    def execute_complete(self, context: Any, event: dict[str, Any]) -> dict[str, Any]:
        self.log.info("%s committed", event["ref"])
        return event


class DataDriftSensor(ArtifactVersionSensor):
    """Wait until a new version of a dataset drifts from the one before it: each new version is
    profiled and compared with its predecessor's profile by the same rule as
    ``ValidateDataOperator``'s drift check (JS divergence for numbers and text, L-infinity for
    categories, PSI where a limit is set; per-column overrides); a version within the thresholds
    is noted and the wait goes on. Returns ``{"ref", "baseline", "drifted": [{column, measure,
    value, limit}]}``, so a downstream task (TriggerDagRunOperator, say) can retrain on it.

    :param columns: columns to compare; None: every column both versions have. (templated)
    :param thresholds: limits by measure, as ``ValidationConfig.drift_thresholds``:
        ``{"js_divergence": 0.1, "linf": 0.1, "psi": 0.2}``. (templated)
    :param column_thresholds: per-column overrides, as ``ValidationConfig.column_thresholds``:
        ``{"amount": {"js_divergence": 0.3}}``. (templated)
    """

    template_fields: Sequence[str] = (
        *ArtifactVersionSensor.template_fields,
        "columns",
        "thresholds",
        "column_thresholds",
    )

    def __init__(
        self,
        *,
        columns: list[str] | None = None,
        thresholds: dict[str, float] | None = None,
        column_thresholds: dict[str, dict[str, float]] | None = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.columns = columns
        self.thresholds = thresholds or {"js_divergence": 0.1, "linf": 0.1}
        self.column_thresholds = column_thresholds or {}

    def _drift(self, version: int) -> dict[str, Any] | None:
        from airflow_mlcrit.core.validation.drift import exceeded
        from airflow_mlcrit.core.validation.statistics import compute_statistics
        from airflow_mlcrit.core.validation.validate import ValidationConfig

        store = self.store
        earlier = [v for v in store.versions(self.artifact) if v < version]
        if not earlier:
            return None
        stats = [
            compute_statistics({"source": f"{self.artifact}@v{v}"}, store=store).statistics
            for v in (earlier[-1], version)
        ]
        # the same typed limits as ValidateDataOperator's: a typo or a string is a ConfigError
        cfg = ValidationConfig.from_dict(
            {"source": self.artifact, "drift_thresholds": self.thresholds, "column_thresholds": self.column_thresholds}
        )
        columns = self.columns or sorted(set(stats[0]["columns"]) & set(stats[1]["columns"]))
        drifted = exceeded(stats[0], stats[1], columns, cfg.drift_thresholds, cfg.column_thresholds)
        self.log.info(
            "%s@v%s vs v%s: %s",
            self.artifact,
            version,
            earlier[-1],
            ", ".join(f"{d['column']} {d['measure']}={d['value']:.4f} > {d['limit']}" for d in drifted) or "no drift",
        )
        if not drifted:
            return None
        return {"ref": f"{self.artifact}@v{version}", "baseline": f"{self.artifact}@v{earlier[-1]}", "drifted": drifted}

    def execute(self, context: Any) -> Any:
        if not self.deferrable:
            return super().execute(context)
        found = self._newer()
        if found is None:
            return self._defer(self._after())
        return self.execute_complete(context, found)

    def poke(self, context: Any) -> Any:
        from airflow.sdk.bases.sensor import PokeReturnValue

        found = self._newer()
        if found is None:
            return PokeReturnValue(is_done=False)
        self._baseline = found["version"]  # checked: next time wait for the one after it
        result = self._drift(found["version"])
        return PokeReturnValue(is_done=result is not None, xcom_value=result)

    def execute_complete(self, context: Any, event: dict[str, Any]) -> dict[str, Any] | None:
        result = self._drift(event["version"])
        if result is None:  # this version did not drift: wait for the next one
            self._defer(event["version"])
        return result
