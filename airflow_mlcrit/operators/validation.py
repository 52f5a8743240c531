"""Statistics, schema inference and validation operators (thin glue over core.validation)."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from airflow_mlcrit.core.tables import is_artifact_ref
from airflow_mlcrit.operators.base import DatasetStepOperator, StepOperator
from airflow_mlcrit.operators.results import (
    ComputeStatisticsResult,
    InferSchemaResult,
    ValidateDataResult,
    artifact_result,
)


class ComputeStatisticsOperator(DatasetStepOperator):
    """Profile a dataset in one streaming pass and commit a ``statistics`` artifact.

    :param dataset: dataset artifact reference (``dataset/reviews@latest``), local path or s3:// URI. (templated)
    :param config: :class:`~airflow_mlcrit.core.validation.statistics.StatisticsConfig` fields (without
        ``source``), as a dataclass or dict. (templated)
    :param output_name: name of the ``statistics`` artifact; default derived from the dag_id. (templated)
    """

    output_kind = "statistics"

    def execute(self, context: Any) -> ComputeStatisticsResult:
        from airflow_mlcrit.core.validation.lineage import quality_metrics, schema_facet
        from airflow_mlcrit.core.validation.statistics import (
            STATISTICS_FILE,
            StatisticsConfig,
            StatisticsResult,
            compute_statistics,
        )

        source, manifest = self.pin(self.dataset)
        key = f"statistics/{self.output_name_for(context)}"
        parents = [source] if manifest else []
        cfg = StatisticsConfig.from_dict({**self.config_dict(), "source": source})
        description = f"statistics of {source}"
        out = self.committed(context, key, parents, description=description)
        staged = None
        if out is not None:  # an earlier try committed them: no second pass over the data
            result = StatisticsResult(json.loads(self.store.read_bytes(out.ref, STATISTICS_FILE)), None)
        else:
            # On Beam the workers read the data where it is and report into a staged version.
            staged = self.store.stage(key, producer=self.producer(context)) if cfg.engine == "beam" else None
            try:
                result = compute_statistics(cfg, store=self.store, output=staged)
            except BaseException as exc:
                if staged is not None:
                    self.store.abandon(staged, f"{type(exc).__name__} in {context['ti'].task_id}")
                raise
            self.log.info(
                "profiled %s: %s rows, %s columns in %ss",
                source,
                result.statistics["rows"],
                len(result.statistics["columns"]),
                result.statistics["seconds"],
            )
        self.record_input(
            source,
            manifest,
            dataQualityMetrics=quality_metrics(result.statistics),
            schema=schema_facet(result.statistics),
        )
        if out is None and staged is not None:
            record = self.store.write_staged(staged, STATISTICS_FILE, json.dumps(result.statistics, sort_keys=True))
            out = self.commit(
                context,
                key,
                staged,
                files=[record],
                parents=parents,
                metadata={"source": source},
                description=description,
            )
        if out is None:
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / STATISTICS_FILE
                path.write_text(json.dumps(result.statistics, sort_keys=True))
                out = self.commit(
                    context,
                    key,
                    path,
                    parents=parents,
                    metadata={"source": source},
                    description=description,
                )
        return artifact_result(ComputeStatisticsResult, out, result.summary)


class InferSchemaOperator(StepOperator):
    """Infer a human-editable YAML ``schema`` artifact from a ``statistics`` artifact.

    :param statistics: statistics artifact reference. (templated)
    :param config: :class:`~airflow_mlcrit.core.validation.schema.SchemaConfig` fields, e.g.
        ``{"label_columns": ["label"]}``. (templated)
    :param output_name: name of the ``schema`` artifact; default derived from the dag_id. (templated)
    """

    template_fields: Sequence[str] = (*StepOperator.template_fields, "statistics")
    output_kind = "schema"

    def __init__(self, *, statistics: str, **kwargs: Any):
        super().__init__(**kwargs)
        self.statistics = statistics

    def execute(self, context: Any) -> InferSchemaResult:
        from airflow_mlcrit.core.validation.schema import SCHEMA_FILE, SchemaConfig, dump_schema, infer_schema
        from airflow_mlcrit.core.validation.statistics import STATISTICS_FILE

        stats_manifest = self.read_input(self.statistics)
        stats = json.loads(self.store.read_bytes(stats_manifest.ref, STATISTICS_FILE))
        schema = infer_schema(stats, SchemaConfig.from_dict(self.config_dict()))
        name = self.output_name_for(context)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / SCHEMA_FILE
            path.write_text(dump_schema(schema))
            out = self.commit(
                context,
                f"schema/{name}",
                path,
                parents=[stats_manifest.ref],
                schema_fields=[{"name": c["name"], "type": c["type"]} for c in schema["columns"]],
            )
        return artifact_result(
            InferSchemaResult,
            out,
            {"columns": len(schema["columns"]), "required": sum(bool(c["required"]) for c in schema["columns"])},
        )


class ValidateDataOperator(DatasetStepOperator):
    """Validate a dataset: GX suite, schema anomalies, drift/skew and text checks, each with a policy.

    Commits a ``validation_report`` (report.json, the data's statistics and GX Data Docs). With a
    ``quarantine`` policy, also commits the failing rows as a ``quarantine`` artifact and the rest as
    a new ``dataset`` version. Failures under policy ``fail`` raise DataValidationError after the
    report is committed, listing every failed check with its column, observed and expected values.

    :param dataset: dataset artifact reference, local path or s3:// URI. (templated)
    :param config: :class:`~airflow_mlcrit.core.validation.validate.ValidationConfig` fields without
        ``source``. ``baseline_statistics`` defaults to ``"previous"``: the statistics of the previous
        version of the same dataset artifact (no drift check when there is none). (templated)
    :param output_name: name of the report (and quarantine/clean dataset) artifacts. (templated)
    """

    output_kind = "validation_report"

    def execute(self, context: Any) -> ValidateDataResult:
        from airflow_mlcrit.core.validation.lineage import (
            previous_statistics,
            quality_assertions,
            quality_metrics,
            schema_facet,
        )
        from airflow_mlcrit.core.validation.statistics import STATISTICS_FILE
        from airflow_mlcrit.core.validation.validate import (
            REPORT_FILE,
            Finding,
            ValidationConfig,
            ValidationResult,
            validate,
        )

        source, manifest = self.pin(self.dataset)
        raw = {"baseline_statistics": "previous", **self.config_dict(), "source": source}
        if raw["baseline_statistics"] == "previous":
            raw["baseline_statistics"] = previous_statistics(self.store, source) if manifest else None
            self.log.info("drift baseline: %s", raw["baseline_statistics"] or "none (first version)")
        cfg = ValidationConfig.from_dict(raw)
        refs = [
            r
            for r in (cfg.baseline_statistics, cfg.training_statistics, cfg.schema)
            if isinstance(r, str) and is_artifact_ref(r.split("@")[0])
        ]
        pinned_refs = [str(self.read_input(r).ref) for r in refs]
        name = self.output_name_for(context)
        parents = ([source] if manifest else []) + pinned_refs
        keys = [f"quarantine/{name}", f"dataset/{name}-clean"] if cfg.quarantines else []
        keys.append(f"validation_report/{name}")
        outputs = self._reusable(context, keys, parents)
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            if outputs:  # an earlier try committed them all: no second pass over the data
                ref = outputs[keys[-1]].ref
                report = json.loads(self.store.read_bytes(ref, REPORT_FILE))
                stats = json.loads(self.store.read_bytes(ref, STATISTICS_FILE))
                result = ValidationResult(report, stats, [Finding.from_dict(f) for f in report["findings"]])
            else:
                result = validate(cfg, store=self.store, workdir=work / "run")
            self.record_input(
                source,
                manifest,
                dataQualityMetrics=quality_metrics(result.statistics),
                schema=schema_facet(result.statistics),
                dataQualityAssertions=quality_assertions(
                    result.findings, result.report["checks_run"], result.report["expectations"]
                ),
            )
            if outputs:
                for key, m in outputs.items():
                    self._record_output(context, key, m)
            else:
                outputs = self._commit_outputs(context, keys, parents, result, work)
        summary: dict[str, Any] = {
            "status": result.report["status"],
            "failed": [f.line() for f in result.failed],
            "warned": [f.line() for f in result.findings if f.policy == "warn"],
        }
        if cfg.quarantines:
            summary.update(result.report["quarantine"])
        for finding in result.findings:
            if finding.policy == "warn":
                self.log.warning("validation warning: %s", finding.line())
        result.raise_for_failures()
        report = outputs[keys[-1]]
        return artifact_result(
            ValidateDataResult,
            report,
            summary,
            report=str(report.ref),
            # what passed validation: the clean rows, or (nothing quarantined) the input as validated
            clean=str(outputs[keys[1]].ref) if cfg.quarantines else source,
            quarantine=str(outputs[keys[0]].ref) if cfg.quarantines else None,
        )

    def _reusable(self, context: Any, keys: list[str], parents: list[str]) -> dict[str, Any] | None:
        """Every output an earlier try of this task instance committed, or None: validate."""
        found = {}
        for key in keys:
            found[key] = self.find_committed(context, key, parents)
            if found[key] is None:
                return None
        return found

    def _commit_outputs(
        self, context: Any, keys: list[str], parents: list[str], result: Any, work: Path
    ) -> dict[str, Any]:
        """Commit the quarantined rows, the clean rows (both when the config quarantines) and the
        report (report.json, statistics, Data Docs), in that order."""
        from airflow_mlcrit.core.validation.statistics import STATISTICS_FILE
        from airflow_mlcrit.core.validation.validate import REPORT_FILE

        outputs = {}
        if result.quarantine_path is not None:  # keys: quarantine, clean, report
            outputs[keys[0]] = self.commit(context, keys[0], result.quarantine_path, parents=parents)
            outputs[keys[1]] = self.commit(
                context,
                keys[1],
                result.clean_path,
                parents=parents,
                metadata={"rows": result.report["quarantine"]["clean_rows"]},
            )
        files = {REPORT_FILE: work / "run" / REPORT_FILE}
        (work / STATISTICS_FILE).write_text(json.dumps(result.statistics, sort_keys=True))
        files[STATISTICS_FILE] = work / STATISTICS_FILE
        if result.data_docs_dir and result.data_docs_dir.is_dir():
            for p in sorted(result.data_docs_dir.rglob("*")):
                if p.is_file():
                    files[f"data_docs/{p.relative_to(result.data_docs_dir).as_posix()}"] = p
        outputs[keys[-1]] = self.commit(
            context,
            keys[-1],
            files,
            parents=parents,
            metadata={"status": result.report["status"], "rows": result.report["rows"]},
        )
        return outputs
