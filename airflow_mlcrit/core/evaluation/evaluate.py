"""evaluate(): score the candidate (and baseline) on the eval rows, slice, bootstrap, run the
behavioural suites and sensitivity analysis; one JSON-able result."""

from __future__ import annotations

from typing import Any

import numpy as np

from airflow_mlcrit.core.evaluation.behaviour import check_suite, run_suite, sensitivity
from airflow_mlcrit.core.evaluation.compute import Predictions, evaluate_predictions
from airflow_mlcrit.core.evaluation.config import EvaluationConfig
from airflow_mlcrit.core.evaluation.slicing import build_slices
from airflow_mlcrit.exceptions import ConfigError, DataValidationError, some


def truth_of(cfg: EvaluationConfig, frame: Any, labels: list[str] | None) -> np.ndarray:
    if cfg.label_column not in frame.columns:
        raise DataValidationError(
            f"EvaluationConfig.label_column {cfg.label_column!r} is not in the eval dataset; "
            f"columns: {some(frame.columns)}"
        )
    values = frame[cfg.label_column].tolist()
    if cfg.task == "regression":
        try:
            return np.array(values, dtype=float)
        except (TypeError, ValueError):
            raise DataValidationError(f"column {cfg.label_column!r} must be numeric for regression") from None
    if cfg.task == "generation":
        return np.array(["" if v is None else str(v) for v in values], dtype=object)
    index = {label: i for i, label in enumerate(labels or [])}
    out = np.empty(len(values), dtype=np.int64)
    for row, v in enumerate(values):
        if str(v) not in index:
            raise DataValidationError(
                f"row {row}: label {v!r} in column {cfg.label_column!r} is not one the model knows ({labels})"
            )
        out[row] = index[str(v)]
    return out


def column_predictions(cfg: EvaluationConfig, frame: Any, column: str, labels: list[str] | None) -> Predictions:
    """Predictions given as an eval dataset column (numbers, texts or label names)."""
    if column not in frame.columns:
        raise DataValidationError(
            f"prediction column {column!r} is not in the eval dataset; columns: {some(frame.columns)}"
        )
    values = frame[column].tolist()
    if cfg.task == "regression":
        try:
            return Predictions(np.array(values, dtype=float))
        except (TypeError, ValueError):
            raise DataValidationError(f"prediction column {column!r} must be numeric for regression") from None
    if cfg.task == "generation":
        return Predictions(np.array(["" if v is None else str(v) for v in values], dtype=object))
    index = {label: i for i, label in enumerate(labels or [])}
    bad = next((row for row, v in enumerate(values) if str(v) not in index), None)
    if bad is not None:
        raise DataValidationError(f"row {bad}: prediction {values[bad]!r} in column {column!r} is not a label {labels}")
    return Predictions(np.array([index[str(v)] for v in values], dtype=np.int64))


def _score(cfg: EvaluationConfig, model: Any, texts: list[str], truth: np.ndarray, frame: Any) -> Predictions:
    if isinstance(model, Predictions):
        return model
    # a prompt reads several columns of each row; a model reads the text column
    p = model.predict_frame(frame) if hasattr(model, "predict_frame") else model.predict(texts)
    if cfg.task == "generation" and {"loss", "perplexity"} & set(cfg.metric_names):
        if not hasattr(model, "loss"):
            raise ConfigError("metrics loss / perplexity need a local language model, not this predictor")
        p.loss = model.loss(texts, [str(t) for t in truth])
    return p


def evaluate(
    cfg: EvaluationConfig | dict[str, Any],
    frame: Any,
    candidate: Any,
    baseline: Any = None,
    *,
    labels: list[str] | None = None,
    suites: list[dict[str, Any]] = (),
) -> tuple[dict[str, Any], dict[str, Predictions]]:
    """``candidate`` / ``baseline``: a ModelScorer or precomputed Predictions. Returns the
    evaluation document and the predictions (to store beside it)."""
    cfg = EvaluationConfig.coerce(cfg)
    if cfg.task == "classification" and cfg.prediction_column and not (labels or cfg.labels):
        for column in (cfg.label_column, cfg.prediction_column, cfg.baseline_prediction_column):
            if column and column not in frame.columns:
                raise DataValidationError(
                    f"column {column!r} is not in the eval dataset; columns: {some(frame.columns)}"
                )
        columns = (cfg.label_column, cfg.prediction_column, cfg.baseline_prediction_column)
        seen = {str(v) for c in columns if c for v in frame[c]}
        labels = sorted(seen)
    labels = labels or cfg.labels or getattr(candidate, "labels", None)
    if cfg.prediction_column:
        candidate = column_predictions(cfg, frame, cfg.prediction_column, labels)
    if cfg.baseline_prediction_column:
        baseline = column_predictions(cfg, frame, cfg.baseline_prediction_column, labels)
    base_labels = getattr(baseline, "labels", None)
    if cfg.task == "classification" and base_labels is not None and base_labels != labels:
        raise ConfigError(f"candidate labels {labels} differ from the baseline's {base_labels}: not comparable")
    if cfg.text_column not in frame.columns and not isinstance(candidate, Predictions):
        raise DataValidationError(
            f"EvaluationConfig.text_column {cfg.text_column!r} is not in the eval dataset; "
            f"columns: {some(frame.columns)}"
        )
    label_names = labels if cfg.task == "classification" else None
    truth = truth_of(cfg, frame, label_names)
    slices = build_slices(frame, cfg.slices)  # a bad slicing spec fails before any inference
    checked = [check_suite(s, label_names) for s in suites]
    texts = (
        [str(t) if t is not None else "" for t in frame[cfg.text_column]] if cfg.text_column in frame.columns else []
    )
    preds = {"candidate": _score(cfg, candidate, texts, truth, frame)}
    if baseline is not None:
        preds["baseline"] = _score(cfg, baseline, texts, truth, frame)
    result = evaluate_predictions(
        cfg, frame, truth, preds["candidate"], preds.get("baseline"), labels=label_names, slices=slices
    )
    result["suites"] = {
        role: [run_suite(s, model.predict, label_names) for s in checked]
        for role, model in (("candidate", candidate), ("baseline", baseline))
        if checked and model is not None and not isinstance(model, Predictions)
    }
    result["sensitivity"] = (
        sensitivity(
            cfg.sensitivity,
            texts,
            truth,
            preds["candidate"],
            candidate.predict,
            slices,
            rows=cfg.sensitivity_rows,
            seed=cfg.seed,
            labels=label_names,
            synonyms=cfg.synonyms,
        )
        if cfg.sensitivity and not isinstance(candidate, Predictions)
        else []
    )
    result["config"] = cfg.to_dict()
    return result, preds


def read_frame(source: str, store: Any = None) -> Any:
    """A dataset (path, s3:// URI or artifact reference) as a pandas DataFrame."""
    import pyarrow as pa

    from airflow_mlcrit.core.tables import iter_batches, open_table

    with open_table(source, store=store) as table:
        batches = list(iter_batches(table))
    if not batches:
        raise DataValidationError(f"eval dataset {source} has no rows")
    return pa.Table.from_batches(batches).to_pandas()


def predictions_table(preds: dict[str, Predictions]) -> Any:
    """The per-row predictions of each model, to store beside the evaluation (audit, reuse)."""
    import pyarrow as pa

    cols: dict[str, Any] = {}
    for role, p in preds.items():
        cols[f"{role}_pred"] = pa.array([x if isinstance(x, str) else x.item() for x in p.pred])
        if p.proba is not None:
            cols[f"{role}_proba"] = pa.array(p.proba.tolist(), type=pa.list_(pa.float64()))
        if p.loss is not None:
            cols[f"{role}_loss"] = pa.array(p.loss.tolist(), type=pa.float64())
    return pa.table(cols)


def predictions_from_table(table: Any, role: str = "candidate") -> Predictions:
    """Predictions stored by predictions_table (e.g. to reuse a baseline's earlier scoring)."""
    pred = np.array(table.column(f"{role}_pred").to_pylist())
    proba = np.array(table.column(f"{role}_proba").to_pylist()) if f"{role}_proba" in table.column_names else None
    loss = np.array(table.column(f"{role}_loss").to_pylist()) if f"{role}_loss" in table.column_names else None
    if pred.dtype.kind == "U":
        pred = pred.astype(object)
    return Predictions(pred, proba, loss)


def check_reusable(ref: str, metadata: dict[str, Any], dataset_digest: str | None, baseline: tuple | None) -> None:
    """An earlier evaluation's predictions stand in for the baseline only if it scored the same
    eval dataset version and, when the baseline is an artifact, that very baseline."""
    if dataset_digest is None or metadata.get("dataset_digest") != dataset_digest:
        raise DataValidationError(
            f"{ref} scored eval dataset digest {metadata.get('dataset_digest')}, but this evaluation uses "
            f"{dataset_digest}: the baseline and the candidate must be scored on the same eval dataset version"
        )
    if baseline is not None and metadata.get("candidate_digest") != baseline[1]:
        raise DataValidationError(
            f"{ref} evaluated digest {metadata.get('candidate_digest')}, not the baseline {baseline[0]} ({baseline[1]})"
        )
