"""Sliced metrics with Poisson-bootstrap intervals, for one model and paired against a baseline.

Paired: the candidate and the baseline are scored on the same replicate weights, so the interval
of their difference reflects only how they differ, not the noise both share. Count metrics draw
the joint (truth, candidate prediction, baseline prediction) cell counts; every other metric
draws per-row weights, vectorized over replicates in chunks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from airflow_mlcrit.core.evaluation import metrics as M
from airflow_mlcrit.core.evaluation.config import EvaluationConfig
from airflow_mlcrit.core.evaluation.slicing import build_slices
from airflow_mlcrit.exceptions import ConfigError, DataValidationError

# metrics where lower is better (the gate flips the direction of change thresholds)
LOWER_IS_BETTER = {"log_loss", "ece", "mae", "rmse", "loss", "perplexity"}
_ROW_TASK = {
    "log_loss": "classification",
    "ece": "classification",
    "roc_auc": "classification",
    "exact_match": "generation",
    "token_f1": "generation",
    "rouge_l": "generation",
    "loss": "generation",
    "perplexity": "generation",
    "mae": "regression",
    "rmse": "regression",
}
_USER: dict[str, tuple[Callable[..., float], bool]] = {}
_MAX_CELLS = 4096  # joint K^3 cells beyond which count metrics use per-row weights
_CHUNK_VALUES = 20_000_000  # replicate x row weights held at once


def register_metric(
    name: str, fn: Callable[[np.ndarray, np.ndarray, np.ndarray | None], float], *, higher_is_better: bool = True
) -> None:
    """Register ``fn(y_true, y_pred, proba) -> float`` under ``name`` for EvaluationConfig.metrics."""
    if name in M.COUNT_METRICS or name in _ROW_TASK:
        raise ConfigError(f"metric name {name!r} is built in; choose another name")
    _USER[name] = (fn, higher_is_better)
    if not higher_is_better:
        LOWER_IS_BETTER.add(name)


def known_metrics(task: str) -> list[str]:
    builtin = list(M.COUNT_METRICS) if task == "classification" else []
    return builtin + [m for m, t in _ROW_TASK.items() if t == task] + sorted(_USER)


@dataclass
class Predictions:
    """One model's outputs on the eval rows: class indices (with probabilities), generated
    texts (with per-row loss), or numbers."""

    pred: np.ndarray
    proba: np.ndarray | None = None
    loss: np.ndarray | None = None

    def take(self, rows: np.ndarray) -> Predictions:
        pick = lambda a: None if a is None else a[rows]  # noqa: E731
        return Predictions(self.pred[rows], pick(self.proba), pick(self.loss))


def _check(cfg: EvaluationConfig, truth: np.ndarray, p: Predictions, who: str, k: int) -> None:
    if len(p.pred) != len(truth):
        raise DataValidationError(
            f"{who}: {len(p.pred)} predictions for {len(truth)} eval rows; every row needs exactly one"
        )
    for name, arr in (("probabilities", p.proba), ("losses", p.loss)):
        if arr is not None and len(arr) != len(truth):
            raise DataValidationError(f"{who}: {len(arr)} rows of {name} for {len(truth)} eval rows")
    if cfg.task == "classification" and len(truth) and (p.pred.min() < 0 or p.pred.max() >= k):
        raise DataValidationError(f"{who}: predicted class indices must lie in 0..{k - 1}")


def _row_values(metric: str, truth: np.ndarray, p: Predictions) -> np.ndarray:
    """Per-row values whose (weighted) mean is the metric, before any final transform."""
    if metric == "log_loss":
        eps = np.finfo(p.proba.dtype).eps
        return -np.log(np.clip(p.proba[np.arange(len(truth)), truth], eps, 1 - eps))
    if metric in ("exact_match", "token_f1", "rouge_l"):
        fn = getattr(M, metric)
        return np.array([fn(str(t), str(q)) for t, q in zip(truth, p.pred, strict=True)], dtype=float)
    if metric in ("loss", "perplexity"):
        return np.asarray(p.loss, dtype=float)
    if metric == "mae":
        return np.abs(truth.astype(float) - p.pred.astype(float))
    if metric == "rmse":
        return (truth.astype(float) - p.pred.astype(float)) ** 2
    raise AssertionError(metric)


def _finish(metric: str, mean: np.ndarray) -> np.ndarray:
    if metric == "rmse":
        return np.sqrt(mean)
    if metric == "perplexity":
        return np.exp(mean)
    return mean


class _Scorer:
    """Metric values for one slice: the point value (no weights) and B replicate values."""

    def __init__(self, cfg: EvaluationConfig, names: list[str], truth: np.ndarray, k: int):
        self.cfg, self.names, self.truth, self.k = cfg, names, truth, k

    def needs(self, p: Predictions, metric: str) -> str | None:
        if metric in ("log_loss", "ece", "roc_auc") and p.proba is None:
            return "needs predicted probabilities"
        if metric in ("loss", "perplexity") and p.loss is None:
            return "needs per-row losses"
        return None

    def point(self, truth: np.ndarray, p: Predictions, metric: str) -> float | None:
        if metric in M.COUNT_METRICS:
            return float(M.from_counts(M.confusion(truth, p.pred, self.k))[metric])
        if metric == "roc_auc":
            return float(M.roc_auc(truth, p.proba[:, 1])) if self.k == 2 and len(np.unique(truth)) == 2 else None
        if metric == "ece":
            return float(M.expected_calibration_error(truth, p.proba))
        if metric in _USER:
            return float(_USER[metric][0](truth, p.pred, p.proba))
        return float(_finish(metric, _row_values(metric, truth, p).mean()))

    def replicates(
        self, truth: np.ndarray, models: list[Predictions], rows: list[str], rng: np.random.Generator
    ) -> dict[str, list[np.ndarray]]:
        """Per-row-weight metrics for each model on shared weights: {metric: [B values per model]}."""
        n, B = len(truth), self.cfg.replicates
        cached = {m: [_row_values(m, truth, p) for p in models] for m in rows if m not in ("roc_auc", "ece", *_USER)}
        out: dict[str, list[list[np.ndarray]]] = {m: [[] for _ in models] for m in rows}
        chunk = max(1, min(B, _CHUNK_VALUES // max(n, 1)))
        for start in range(0, B, chunk):
            w = rng.poisson(1.0, size=(min(chunk, B - start), n)).astype(np.float64)
            total = w.sum(axis=1)
            for m in rows:
                for i, p in enumerate(models):
                    if m == "roc_auc":
                        v = M.roc_auc(truth, p.proba[:, 1], w)
                    elif m == "ece":
                        v = M.expected_calibration_error(truth, p.proba, w)
                    elif m in _USER:
                        v = np.array([_user_on(m, truth, p, row) for row in w])
                    elif m in M.COUNT_METRICS:  # too many classes for joint cells
                        v = _weighted_counts(truth, p.pred, self.k, w)[m]
                    else:
                        with np.errstate(invalid="ignore", divide="ignore"):
                            v = _finish(m, (w @ cached[m][i]) / total)
                    out[m][i].append(np.asarray(v, dtype=float))
        return {m: [np.concatenate(parts) for parts in per_model] for m, per_model in out.items()}


def _weighted_counts(truth: np.ndarray, pred: np.ndarray, k: int, w: np.ndarray) -> dict[str, np.ndarray]:
    cell = truth * k + pred
    counts = np.stack([np.bincount(cell, weights=row, minlength=k * k) for row in w]).reshape(len(w), k, k)
    return M.from_counts(counts)


def _user_on(metric: str, truth: np.ndarray, p: Predictions, weights: np.ndarray) -> float:
    rows = np.repeat(np.arange(len(truth)), weights.astype(int))
    if not len(rows):
        return np.nan
    q = p.take(rows)
    return float(_USER[metric][0](truth[rows], q.pred, q.proba))


def _interval(values: np.ndarray, alpha: float) -> tuple[float | None, float | None]:
    values = values[np.isfinite(values)]
    if not len(values):
        return None, None
    return float(np.quantile(values, alpha)), float(np.quantile(values, 1 - alpha))


def evaluate_predictions(
    cfg: EvaluationConfig | dict[str, Any],
    frame: Any,
    truth: np.ndarray,
    candidate: Predictions,
    baseline: Predictions | None = None,
    *,
    labels: list[str] | None = None,
    slices: list[Any] | None = None,
) -> dict[str, Any]:
    """Per slice: n, whether it is gated, each metric's value and interval for the candidate,
    the baseline and their difference (candidate - baseline, paired replicates). ``slices``:
    already built from ``cfg.slices`` (else built here)."""
    cfg = EvaluationConfig.coerce(cfg)
    names = cfg.metric_names
    known = known_metrics(cfg.task)
    unknown = [m for m in names if m not in known]
    if unknown:
        raise ConfigError(
            f"EvaluationConfig.metrics: unknown metric(s) {unknown} for task {cfg.task!r}; known: {', '.join(known)}"
        )
    k = len(labels or [])
    if cfg.task == "classification" and k < 2:
        raise ConfigError("classification evaluation needs the label list (at least 2 labels)")
    if len(frame) != len(truth):
        raise DataValidationError(f"{len(truth)} labels for {len(frame)} eval rows")
    if not len(truth):
        raise DataValidationError("the eval dataset has no rows: nothing to evaluate")
    _check(cfg, truth, candidate, "candidate", k)
    if baseline is not None:
        _check(cfg, truth, baseline, "baseline", k)
    models = [candidate] + ([baseline] if baseline is not None else [])
    scorer = _Scorer(cfg, names, truth, k)
    missing = {m: scorer.needs(p, m) for p in models for m in names if scorer.needs(p, m)}
    if missing:
        raise ConfigError(f"metric(s) {sorted(missing)} cannot be computed: {', '.join(sorted(set(missing.values())))}")
    rng = np.random.default_rng(cfg.seed)
    alpha = (1 - cfg.confidence) / 2
    out_slices = []
    for sl in slices if slices is not None else build_slices(frame, cfg.slices):
        t = truth[sl.rows]
        ms = [p.take(sl.rows) for p in models]
        draws: dict[str, list[np.ndarray]] = {}
        count = [m for m in names if m in M.COUNT_METRICS]
        joint_ok = k and k ** len(ms) * k <= _MAX_CELLS
        if count and joint_ok:
            # joint cells over (truth, candidate pred[, baseline pred]); marginals give each model
            idx = t.copy()
            for p in ms:
                idx = idx * k + p.pred
            cells = np.bincount(idx, minlength=k ** (1 + len(ms))).reshape((k,) * (1 + len(ms)))
            drawn = rng.poisson(cells, size=(cfg.replicates, *cells.shape)).astype(np.float64)
            per_model = [drawn.sum(axis=-1) if len(ms) == 2 else drawn]
            if len(ms) == 2:
                per_model.append(drawn.sum(axis=-2))
            values = [M.from_counts(c) for c in per_model]
            draws.update({m: [v[m] for v in values] for m in count})
        if "roc_auc" in names and k == 2 and len(np.unique(t)) == 2:
            # AUC depends on the weights only through their sums per (score group, class): draw
            # those (a sum of c Poisson(1) weights is Poisson(c)) instead of per-row weights
            if len(ms) == 1:
                pos, neg = M.auc_groups(t, ms[0].proba[:, 1])
                shape = (cfg.replicates, len(pos))
                draws["roc_auc"] = [M.auc_from_groups(rng.poisson(pos, size=shape), rng.poisson(neg, size=shape))]
            else:
                draws["roc_auc"] = M.paired_auc_draws(t, [p.proba[:, 1] for p in ms], cfg.replicates, rng)
        rows = [m for m in names if m not in draws]
        if rows and len(t):
            draws.update(scorer.replicates(t, ms, rows, rng))
        result: dict[str, Any] = {"name": sl.name, "spec": sl.spec, "n": len(sl.rows)}
        result["gated"] = len(sl.rows) >= cfg.min_slice_size
        for role, i in (("candidate", 0), ("baseline", 1)):
            if i >= len(ms):
                result[role] = None
                continue
            result[role] = {}
            for m in names:
                value = scorer.point(t, ms[i], m) if len(t) else None
                low, high = _interval(draws[m][i], alpha) if m in draws else (None, None)
                result[role][m] = {"value": _clean(value), "low": low, "high": high}
        if len(ms) == 2:
            result["difference"] = {}
            for m in names:
                c, b = result["candidate"][m]["value"], result["baseline"][m]["value"]
                low, high = _interval(draws[m][0] - draws[m][1], alpha) if m in draws else (None, None)
                diff = None if c is None or b is None else c - b
                result["difference"][m] = {"value": diff, "low": low, "high": high}
        else:
            result["difference"] = None
        out_slices.append(result)
    report: dict[str, Any] = {
        "task": cfg.task,
        "metrics": names,
        "lower_is_better": sorted(m for m in names if m in LOWER_IS_BETTER),
        "labels": labels,
        "rows": len(truth),
        "replicates": cfg.replicates,
        "confidence": cfg.confidence,
        "seed": cfg.seed,
        "min_slice_size": cfg.min_slice_size,
        "slices": out_slices,
        "skipped_slices": [
            {"name": s["name"], "n": s["n"], "reason": f"fewer than min_slice_size={cfg.min_slice_size} rows"}
            for s in out_slices
            if not s["gated"]
        ],
    }
    if cfg.task == "classification":
        report["per_class"] = {
            role: M.per_class(M.confusion(truth, p.pred, k), labels or [])
            for role, p in zip(("candidate", "baseline"), models, strict=False)
        }
    return report


def _clean(value: float | None) -> float | None:
    return None if value is None or not np.isfinite(value) else value
