"""Evaluation and gate operators (thin glue over core.evaluation and core.gating.decide)."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from airflow_mlcrit.core.gating.blessing import BLESSING_FILE
from airflow_mlcrit.exceptions import ArtifactNotFoundError, ConfigError
from airflow_mlcrit.operators.base import DatasetStepOperator, StepOperator
from airflow_mlcrit.operators.results import (
    EvaluationResult,
    GateResult,
    artifact_result,
)
from airflow_mlcrit.version_compat import BaseOperatorLink, SkipMixin

EVALUATION_FILE = "evaluation.json"
REPORT_FILE = "report.html"
PREDICTIONS_FILE = "predictions.parquet"


class EvaluationReportLink(BaseOperatorLink):
    """The evaluation's HTML report in the artifact store (file:// or s3:// URI).

    Airflow 3 resolves links once, in the worker, when the task ends (and stores them as XComs),
    so the operator that ran knows the URL; a task that failed before its report has none (and
    no spurious "XCom not found" error is logged looking for one)."""

    name = "Evaluation report"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        return getattr(operator, "report_url", None) or ""


class GateReportLink(EvaluationReportLink):
    """The blessing's report: the evaluation judged, with the decision and every verdict on top."""

    name = "Gate report"


class EvaluateModelOperator(DatasetStepOperator):
    """Score a candidate model (and by default the model behind the ``production`` alias) on one
    eval dataset version: sliced metrics with paired confidence intervals, behavioural suites and
    sensitivity, an HTML report; commits an ``evaluation`` artifact.

    :param dataset: eval dataset artifact reference, path or s3:// URI. (templated)
    :param split: sub-folder of a dataset artifact to read (e.g. ``eval``), if any. (templated)
    :param candidate: ``model``/``adapter`` artifact reference or a local model directory. (templated)
    :param baseline: an alias of the candidate's artifact (default ``production``), a reference or
        path, or None for no baseline. An alias that is not set yet means "first model". (templated)
    :param baseline_evaluation: an earlier ``evaluation`` whose candidate predictions are reused as
        the baseline's; it must be of the same eval dataset digest. (templated)
    :param suites: ``suite`` artifact references (MFT / INV / DIR tests). (templated)
    :param config: :class:`~airflow_mlcrit.core.evaluation.config.EvaluationConfig` fields. (templated)
    :param output_name: name of the ``evaluation`` artifact; default derived from the dag_id. (templated)
    """

    template_fields: Sequence[str] = (
        *DatasetStepOperator.template_fields,
        "split",
        "candidate",
        "baseline",
        "baseline_evaluation",
        "suites",
    )
    output_kind = "evaluation"
    operator_extra_links = (*DatasetStepOperator.operator_extra_links, EvaluationReportLink())

    def __init__(
        self,
        *,
        candidate: str,
        baseline: str | None = "production",
        baseline_evaluation: str | None = None,
        suites: Sequence[str] | str = (),
        split: str | None = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.candidate = candidate
        self.baseline = baseline
        self.baseline_evaluation = baseline_evaluation
        self.suites = suites
        self.split = split
        self._more_parents: list[str] = []  # e.g. the earlier steps of a prompt chain
        self._model_binding: dict[str, Any] = {}
        self.report_url: str | None = None  # set once the evaluation is committed (the extra link)

    def evaluated_names(self, config: Any, suites: Any) -> dict[str, Any]:
        """What this evaluation will measure, for checking a gate's thresholds before it runs."""
        from airflow_mlcrit.core.artifacts.refs import parse_ref
        from airflow_mlcrit.core.evaluation.config import EvaluationConfig
        from airflow_mlcrit.core.evaluation.slicing import OVERALL, spec_name

        cfg = EvaluationConfig.coerce(config)
        refs = [suites] if isinstance(suites, str) else list(suites or [])
        return {
            "metrics": cfg.metric_names,
            "specs": [OVERALL, *(spec_name(s, f"EvaluationConfig.slices[{i}]") for i, s in enumerate(cfg.slices))],
            "perturbations": list(cfg.sensitivity),
            "suites": [parse_ref(r).name for r in refs],
        }

    def _check_gates(self, context: Any, config: Any) -> list[Any]:
        """Check the thresholds of every gate directly downstream against what this evaluation
        measures, before anything is read or scored: a misspelled metric, slice spec, suite or
        perturbation fails here, with the valid names, instead of after the whole evaluation.
        Returns the gates' configs, whose slice values are checked once the data is read."""
        from airflow_mlcrit.core.gating.decide import check_names

        names = self.evaluated_names(config, self.suites)  # rendered: this task's fields are
        gates = []
        for task in self.get_direct_relatives(upstream=False):
            if isinstance(task, EvaluationGateOperator):
                gate = task.render_template(task.config, context)  # the gate's are not, yet
                check_names(gate, **names)
                gates.append(gate)
        return gates

    def _baseline_ref(self, candidate_manifest: Any) -> str | None:
        if not self.baseline:
            return None
        if "/" in self.baseline:
            return self.baseline
        if candidate_manifest is None:
            raise ConfigError(f"baseline alias {self.baseline!r} needs the candidate to be an artifact reference")
        ref = f"{candidate_manifest.kind}/{candidate_manifest.name}@{self.baseline}"
        try:
            self.store.resolve(ref)  # at use, not once per run: see _models
        except ArtifactNotFoundError:
            self.log.info("%s is not set: no baseline, this is the first model", ref)
            return None
        return ref

    def execute(self, context: Any) -> EvaluationResult:
        import pyarrow.parquet as pq

        from airflow_mlcrit.core.evaluation.behaviour import SUITE_FILE
        from airflow_mlcrit.core.evaluation.config import EvaluationConfig
        from airflow_mlcrit.core.evaluation.evaluate import (
            evaluate,
            predictions_table,
            read_frame,
        )
        from airflow_mlcrit.core.evaluation.report import render_html
        from airflow_mlcrit.core.evaluation.slicing import build_slices
        from airflow_mlcrit.core.gating.decide import check_slice_values

        cfg = EvaluationConfig.from_dict(self.config_dict())
        gates = self._check_gates(context, cfg)
        source, data_manifest = self.pin(self.dataset)
        self.record_input(source, data_manifest)
        with tempfile.TemporaryDirectory(prefix="mlcrit-eval-") as tmp:
            work = Path(tmp)
            frame_source = source
            if self.split:
                if data_manifest is None:
                    frame_source = str(Path(source) / self.split)
                else:
                    self.store.get(source, work / "data")
                    frame_source = str(work / "data" / self.split)
            frame = read_frame(frame_source, self.store)
            made = [(sl.name, sl.spec) for sl in build_slices(frame, cfg.slices)]
            for gate in gates:  # a slice value the data does not have: before any model loads
                check_slice_values(gate, made)
            candidate, cand_m, baseline, base_m, base_ref = self._models(cfg, work, data_manifest)
            suites, suite_manifests = [], []
            for ref in [self.suites] if isinstance(self.suites, str) else list(self.suites or []):
                m = self.read_input(ref)
                suite_manifests.append(m)
                suites.append(json.loads(self.store.read_bytes(m.ref, SUITE_FILE)))
            binding = {
                "candidate": str(cand_m.ref) if cand_m else self.candidate,
                "candidate_digest": cand_m.digest if cand_m else None,
                "baseline": str(base_m.ref) if base_m else base_ref,
                "baseline_digest": base_m.digest if base_m else None,
                # the alias the baseline was read through: promotion to it checks it has not moved
                "baseline_alias": self.baseline if self.baseline and "/" not in self.baseline else None,
                "dataset": source,
                "dataset_digest": data_manifest.digest if data_manifest else None,
                **self._model_binding,  # a prompt: the model it ran on
            }
            name = self.output_name_for(context)
            key = f"evaluation/{name}"
            parents = [
                r
                for r in (
                    binding["candidate"] if cand_m else None,
                    binding["baseline"] if base_m else None,
                    source if data_manifest else None,
                    *(str(m.ref) for m in suite_manifests),
                    *self._more_parents,
                )
                if r
            ]
            manifest = self.find_committed(context, key, parents)
            if manifest is not None:  # an earlier try committed it: no second pass of inference
                result = json.loads(self.store.read_bytes(manifest.ref, EVALUATION_FILE))
                self._record_output(context, key, manifest, **self._facets(result))
            else:
                result, preds = evaluate(cfg, frame, candidate, baseline, suites=suites)
                result["binding"] = binding
                out = work / "out"
                out.mkdir()
                self._extra(result, out)
                (out / EVALUATION_FILE).write_text(json.dumps(result, indent=1, default=str))
                title = f"Evaluation {name}: {binding['candidate']}"
                (out / REPORT_FILE).write_text(render_html(result, title=title))
                pq.write_table(predictions_table(preds), out / PREDICTIONS_FILE)
                manifest = self.commit(
                    context,
                    key,
                    out,
                    parents=parents,
                    metadata={**binding, "task": cfg.task, "overall": result["slices"][0]["candidate"]},
                    **self._facets(result),
                )
        self.report_url = f"{manifest.uri.rstrip('/')}/{REPORT_FILE}"
        self._log_summary(result)
        return artifact_result(EvaluationResult, manifest, result["slices"][0]["candidate"], report_url=self.report_url)

    def _models(self, cfg: Any, work: Path, data_manifest: Any) -> tuple[Any, Any, Any, Any, str | None]:
        """(candidate, its manifest, baseline, its manifest, baseline ref): scorers, predictions
        read from columns, or a reused evaluation's predictions."""
        from airflow_mlcrit.core.evaluation.evaluate import predictions_from_table
        from airflow_mlcrit.core.evaluation.inference import Lazy, ModelScorer, materialize_model
        from airflow_mlcrit.core.tables import is_artifact_ref

        opts = {
            "task": cfg.task,
            "batch_size": cfg.batch_size,
            "max_length": cfg.max_length,
            "max_new_tokens": cfg.max_new_tokens,
            "device": cfg.device,
            "max_truncated_rate": cfg.max_truncated_rate,
        }

        def load(ref: str, where: str, predicted_in: str | None) -> tuple[Any, Any]:
            """(scorer, or None when the predictions are an eval column; manifest or None). The
            version is pinned now; its files are fetched and loaded only when it first scores.
            The candidate's ``@latest`` resolves once per DAG run. The baseline resolves at use:
            a candidate must beat production as it is now, so a run cleared after losing the race
            to promote is judged again against the new production (promotion checks that the alias
            has not moved since: ``baseline_alias``)."""
            if not is_artifact_ref(ref.split("@")[0]):
                manifest = None
            else:
                manifest = self.resolve_input(ref) if where == "candidate" else self.store.resolve(ref)
            if predicted_in:  # a tabular / batch-scored model: only its identity is needed
                return None, manifest
            pinned = str(manifest.ref) if manifest is not None else ref

            def build() -> Any:
                path, base, _ = materialize_model(self.store, pinned, work / where)
                return ModelScorer(path, base_path=base, name=f"{where} {pinned}", **opts)

            return Lazy(build), manifest

        candidate, cand_m = load(self.candidate, "candidate", cfg.prediction_column)
        if cand_m is not None:
            self._add_input(cand_m)
        base_ref = self._baseline_ref(cand_m)
        base_m = baseline = None
        if base_ref:
            if self.baseline_evaluation:
                base_m = self.store.resolve(base_ref) if is_artifact_ref(base_ref.split("@")[0]) else None
            else:
                baseline, base_m = load(base_ref, "baseline", cfg.baseline_prediction_column)
            if base_m is not None:
                self._add_input(base_m)
                if cand_m is not None:
                    self._check_contracts(cand_m, base_m)
            if self.baseline_evaluation:
                baseline = self._reused_baseline(data_manifest, base_m, predictions_from_table)
        elif cfg.baseline_prediction_column:
            raise ConfigError(
                "EvaluationConfig.baseline_prediction_column is set but there is no baseline "
                f"({self.baseline!r} is not set); set baseline to a reference or drop the column"
            )
        return candidate, cand_m, baseline, base_m, base_ref

    def _extra(self, result: dict[str, Any], out: Path) -> None:
        """Subclasses add files to the evaluation and entries to its result."""

    def _facets(self, result: dict[str, Any]) -> dict[str, Any]:
        """The evaluation's lineage facets, from its result alone (a reused one has no more)."""
        from airflow_mlcrit.core.evaluation.lineage import evaluation_facet
        from airflow_mlcrit.core.lineage import facet

        return {"mlcrit_evaluation": facet("mlcrit_evaluation", **evaluation_facet(result))}

    def _check_contracts(self, cand_m: Any, base_m: Any) -> None:
        from airflow_mlcrit.core.preprocessing.contract import CONTRACT_FILE, check_contract

        refs = [m.metadata.get("transform_contract") for m in (cand_m, base_m)] if cand_m else [None]
        if all(refs) and refs[0] != refs[1]:
            contracts = [json.loads(self.store.read_bytes(r, CONTRACT_FILE)) for r in refs]
            check_contract(contracts[1], contracts[0])

    def _reused_baseline(self, data_manifest: Any, base_m: Any, from_table: Any) -> Any:
        import io

        import pyarrow.parquet as pq

        from airflow_mlcrit.core.evaluation.evaluate import check_reusable

        ev = self.read_input(self.baseline_evaluation)
        check_reusable(
            str(ev.ref),
            ev.metadata,
            data_manifest.digest if data_manifest else None,
            (str(base_m.ref), base_m.digest) if base_m else None,
        )
        return from_table(pq.read_table(io.BytesIO(self.store.read_bytes(ev.ref, PREDICTIONS_FILE))))

    def _log_summary(self, result: dict[str, Any]) -> None:
        metric = result["metrics"][0]
        for s in result["slices"]:
            c, d = s["candidate"][metric], (s.get("difference") or {}).get(metric)
            self.log.info(
                "%-40s n=%-6s %s=%s [%s, %s]%s",
                s["name"],
                s["n"],
                metric,
                c["value"],
                c["low"],
                c["high"],
                f"  diff={d['value']} [{d['low']}, {d['high']}]" if d else "",
            )


class EvaluationGateOperator(StepOperator, SkipMixin):
    """Judge an ``evaluation`` against thresholds and commit a ``blessing`` (BLESSED or NOT_BLESSED)
    bound to the candidate's, eval dataset's and baseline's digests. Fails closed: no thresholds
    is a ConfigError. When NOT_BLESSED, every downstream task is skipped (short circuit) and the
    log and XCom (``failures``) list each failed threshold; ``fail_when_not_blessed=True`` fails
    the task instead, and ``short_circuit=False`` only records the decision (for a branch that
    reads it, like PromptOrFineTuneBranchOperator).

    :param evaluation: ``evaluation`` artifact reference. (templated)
    :param config: :class:`~airflow_mlcrit.core.gating.GateConfig` fields. (templated)
    :param fail_when_not_blessed: fail the task (GateFailedError) instead of skipping downstream.
    :param short_circuit: skip every downstream task when NOT_BLESSED; False only records the decision.
    :param output_name: name of the ``blessing`` artifact; default: the candidate's name. (templated)
    """

    template_fields: Sequence[str] = (*StepOperator.template_fields, "evaluation")
    output_kind = "blessing"
    operator_extra_links = (*StepOperator.operator_extra_links, GateReportLink())

    def __init__(
        self, *, evaluation: str, fail_when_not_blessed: bool = False, short_circuit: bool = True, **kwargs: Any
    ):
        super().__init__(**kwargs)
        self.evaluation = evaluation
        self.fail_when_not_blessed = fail_when_not_blessed
        self.short_circuit = short_circuit
        self.report_url: str | None = None  # set once the blessing is committed (the extra link)
        self._check_at_parse()

    def _check_at_parse(self) -> None:
        """Gate and evaluation both configured literally: check the thresholds now, so a typo is
        an import error of the DAG (``airflow dags list-import-errors``), not a failed run."""
        from airflow_mlcrit.core.gating.decide import check_names

        upstream = getattr(self.evaluation, "operator", None)  # evaluation=evaluate.output["ref"]
        if not isinstance(upstream, EvaluateModelOperator):
            return
        literal = [self.config, upstream.config, upstream.suites]
        if any("{{" in json.dumps(v, default=str) for v in literal):
            return  # templated: EvaluateModelOperator checks it at run time, before inference
        check_names(self.config_dict(), **upstream.evaluated_names(upstream.config_dict(), upstream.suites))

    def execute(self, context: Any) -> GateResult:
        from airflow_mlcrit.core.evaluation.report import render_html
        from airflow_mlcrit.core.gating import GateConfig, decide
        from airflow_mlcrit.core.lineage import facet
        from airflow_mlcrit.exceptions import GateFailedError

        cfg = GateConfig.from_dict(self.config_dict())
        ev = self.read_input(self.evaluation)
        result = json.loads(self.store.read_bytes(ev.ref, EVALUATION_FILE))
        decision = decide(cfg, result)
        b = result["binding"]
        if not b.get("candidate_digest"):
            raise ConfigError(f"{ev.ref} evaluated {b['candidate']}, not an artifact: only artifacts can be blessed")
        if "model" in b and not b.get("model_digest") and not b.get("endpoint"):
            raise ConfigError(
                f"{ev.ref} ran {b['candidate']} on the model directory {b['model']}, which no digest pins: a blessed "
                "prompt is only meaningful with the exact model it was judged on. Register the model (mlcrit "
                "artifacts put base_model/<name> <dir>) and evaluate the prompt on that reference"
            )
        model = {k: b[k] for k in ("model", "model_digest", "endpoint", "model_overrides") if k in b}
        doc = {
            **decision.to_dict(),
            "candidate": b["candidate"],
            "candidate_digest": b["candidate_digest"],
            "baseline": b["baseline"],
            "baseline_digest": b["baseline_digest"],
            "baseline_alias": b.get("baseline_alias"),
            "dataset": b["dataset"],
            "dataset_digest": b["dataset_digest"],
            "evaluation": str(ev.ref),
            "evaluation_digest": ev.digest,
            **model,
            "gate": cfg.to_dict(),
        }
        name = self.output_name or b["candidate"].split("/")[1].split("@")[0]
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "blessing"
            path.mkdir()
            (path / BLESSING_FILE).write_text(json.dumps(doc, indent=1))
            title = f"Gate {name}: {b['candidate']}"
            (path / REPORT_FILE).write_text(render_html(result, title=title, gate=doc))
            out = self.commit(
                context,
                f"blessing/{name}",
                path,
                parents=[str(ev.ref), b["candidate"], *([model["model"]] if model.get("model_digest") else [])],
                metadata={
                    **{
                        k: doc[k]
                        for k in (
                            "decision",
                            "candidate",
                            "candidate_digest",
                            "baseline",
                            "baseline_digest",
                            "baseline_alias",
                            "dataset_digest",
                            "evaluation",
                        )
                    },
                    **model,
                },
                mlcrit_blessing=facet(
                    "mlcrit_blessing",
                    decision=decision.decision,
                    candidate=b["candidate"],
                    candidateDigest=b["candidate_digest"],
                    baseline=b["baseline"],
                    baselineDigest=b["baseline_digest"],
                    evalDatasetDigest=b["dataset_digest"],
                    evaluation=str(ev.ref),
                    **{
                        {"model_digest": "modelDigest", "model_overrides": "modelOverrides"}.get(k, k): v
                        for k, v in model.items()
                        if v is not None
                    },
                    checks=[_check_facet(c) for c in decision.checks],
                ),
            )
        for c in decision.checks:
            self.log.info("%s: %s", c["status"].upper(), c["message"])
        self.log.info("%s: %s", out.ref, decision.decision)
        self.report_url = f"{out.uri.rstrip('/')}/{REPORT_FILE}"
        ti = context["ti"]
        ti.xcom_push(key="failures", value=decision.failures)
        summary = artifact_result(
            GateResult,
            out,
            {"decision": decision.decision, "failures": decision.failures},
            blessing=str(out.ref),
            report_url=self.report_url,
        )
        if decision.blessed:
            return summary
        if self.fail_when_not_blessed:
            raise GateFailedError(f"{b['candidate']} is NOT_BLESSED: " + "; ".join(decision.failures))
        if self.short_circuit:
            ti.xcom_push(key="return_value", value=summary)
            self._skip_downstream(context)
        return summary

    def _skip_downstream(self, context: Any) -> None:
        tasks = [t for t in context["task"].get_flat_relatives(upstream=False) if not t.is_teardown]
        if tasks:
            self.log.info("NOT_BLESSED: skipping %s", ", ".join(sorted(t.task_id for t in tasks)))
            self.skip(ti=context["ti"], tasks=tasks)


def _check_facet(check: dict[str, Any]) -> dict[str, Any]:
    """A gate check for the blessing facet: unknown values absent (never null, which OpenLineage's
    serializer would strip, silently shortening a ``ci`` pair to one number)."""
    from airflow_mlcrit.core.lineage import without_nulls

    keys = ("kind", "status", "message", "metric", "slice", "observed", "limit")
    ci = check.get("ci")
    whole = bool(ci) and all(v is not None for v in ci)  # half an interval is no interval
    extra = {
        "halfWidth": check.get("half_width"),
        "underpowered": check.get("underpowered"),
        "pValue": check.get("p_value"),
        "correction": check.get("correction"),
    }
    return without_nulls({**{k: check.get(k) for k in keys}, "ci": list(ci) if whole else None, **extra})


# Promotion and rollback live in operators/promotion.py; importable from here as before.
from airflow_mlcrit.operators.promotion import PromoteModelOperator, RollbackModelOperator  # noqa: E402

__all__ = ["EvaluateModelOperator", "EvaluationGateOperator", "PromoteModelOperator", "RollbackModelOperator"]
