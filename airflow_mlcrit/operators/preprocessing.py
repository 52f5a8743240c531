"""BeamPreprocessOperator: the built-in (or a user's) Beam pipeline, committed as artifacts."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from airflow_mlcrit.operators.base import DatasetStepOperator
from airflow_mlcrit.operators.results import BeamPreprocessResult, artifact_result


class BeamPreprocessOperator(DatasetStepOperator):
    """Preprocess a dataset on Apache Beam and commit a sharded-Parquet ``transformed_dataset`` plus
    its ``transform_contract``.

    The built-in steps (normalization, length filter, exact and near dedup, label encoding,
    instruction formatting, tokenization, full-pass analyzers, group-key split) are configured by
    :class:`~airflow_mlcrit.core.preprocessing.config.PreprocessConfig`; ``user_pipeline`` replaces
    them with ``module:function``. ``runner`` and ``pipeline_options`` pass through to Beam verbatim;
    the default is FnApiRunner with one worker process per core (no download attempt, ever).

    :param dataset: dataset artifact reference or local path (Parquet or JSONL). (templated)
    :param config: PreprocessConfig fields without ``source``. (templated)
    :param output_name: name of the output artifacts; default derived from the dag_id. (templated)
    """

    output_kind = "transformed_dataset"

    def execute(self, context: Any) -> BeamPreprocessResult:
        from airflow_mlcrit.core.lineage import facet
        from airflow_mlcrit.core.preprocessing.config import PreprocessConfig
        from airflow_mlcrit.core.preprocessing.contract import CONTRACT_FILE, build_contract
        from airflow_mlcrit.core.preprocessing.pipeline import run_preprocess

        source, manifest = self.pin(self.dataset)
        cfg = PreprocessConfig.from_dict({**self.config_dict(), "source": source})
        name = self.output_name_for(context)
        parents = [source] if manifest else []
        contract_done = self.find_committed(context, f"transform_contract/{name}", parents)
        done = contract_done and self.find_committed(
            context, f"transformed_dataset/{name}", [*parents, str(contract_done.ref)]
        )
        if done:  # an earlier try committed both outputs: no second pass over the data
            self.record_input(source, manifest)
            self._record_output(context, f"transform_contract/{name}", contract_done)
            self._record_output(context, f"transformed_dataset/{name}", done)
            return self._summary(done, done.metadata)
        self.log.info("running Beam pipeline on %s (runner %s)", source, cfg.runner or "FnApiRunner")
        from airflow_mlcrit.core.beam import child_pids

        # The workers write the shards straight into this claimed version; nothing passes through here.
        staged = self.store.stage(f"transformed_dataset/{name}", producer=self.producer(context))
        self._before = child_pids()  # on_kill ends only the processes the pipeline starts
        self._running = True
        try:
            result = run_preprocess(cfg, store=self.store, output=staged, on_started=self._started)
        except BaseException as exc:
            self.store.abandon(staged, f"{type(exc).__name__} in {context['ti'].task_id}")
            raise
        finally:
            self._running = False
        self.log.info(
            "pipeline done in %.1fs: %s of %s input rows per split",
            result.seconds,
            result.row_counts,
            result.input_rows,
        )
        self.record_input(source, manifest, schema=facet("schema", fields=result.input_fields))
        contract = build_contract(cfg, result.analyzers, result.analyzers.get("label_vocabulary"))
        with tempfile.TemporaryDirectory(prefix="mlcrit-preprocess-") as tmp:
            contract_path = Path(tmp) / CONTRACT_FILE
            contract_path.write_text(json.dumps(contract, indent=2, sort_keys=True))
            contract_manifest = self.commit(
                context,
                f"transform_contract/{name}",
                contract_path,
                parents=parents,
                metadata={"digest": contract["digest"]},
            )
        counts = self.store.write_staged(staged, "row_counts.json", json.dumps(result.row_counts, sort_keys=True))
        files = [*result.files, counts]
        out = self.commit(
            context,
            f"transformed_dataset/{name}",
            staged,
            files=files,
            parents=[*parents, str(contract_manifest.ref)],
            metadata={
                "row_counts": result.row_counts,
                "input_rows": result.input_rows,
                "transform_contract": str(contract_manifest.ref),
                "runner": result.runner,
            },
            schema_fields=result.output_fields,
            outputStatistics=facet(
                "outputStatistics",
                rowCount=sum(result.row_counts.values()),
                size=sum(f["size"] for f in files),
                fileCount=len(files),
            ),
        )
        self.lineage.job_facets["mlcrit_beam"] = facet(
            "mlcrit_beam",
            runner=result.runner,
            pipelineOptions={k: str(v) for k, v in cfg.pipeline_options.items()},
            userPipeline=cfg.user_pipeline,
            rowCounts=result.row_counts,
            inputRows=result.input_rows,
            seconds=round(result.seconds, 3),
        )
        return self._summary(out, out.metadata)

    _running = False
    _pipeline_result: Any = None
    _before: frozenset[int] = frozenset()

    def _started(self, result: Any) -> None:
        self._pipeline_result = result

    def on_kill(self) -> None:
        """Cancel the pipeline (a remote runner's job) and end its local worker processes."""
        if self._running:
            from airflow_mlcrit.core.beam import stop_pipeline

            done = stop_pipeline(self._pipeline_result, spare=self._before)
            self.log.info("stopping the Beam pipeline: %s", "; ".join(done))

    @staticmethod
    def _summary(out: Any, m: dict[str, Any]) -> BeamPreprocessResult:
        summary = {k: m[k] for k in ("row_counts", "input_rows", "transform_contract")}
        return artifact_result(BeamPreprocessResult, out, summary, contract=m["transform_contract"])
