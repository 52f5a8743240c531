"""Sliced metrics with confidence intervals, for one model and paired against a baseline.

Which interval each metric gets, and why, is in ``intervals`` and docs/evaluation.md. Paired: the
candidate and the baseline are judged on the same rows (the same resampling weights, or the
discordant counts), so the interval of their difference reflects only how they differ, not the
noise both share. Count metrics draw the joint (truth, candidate prediction, baseline
prediction) cell counts; every other metric draws per-row weights, vectorized in chunks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from airflow_mlcrit.core.evaluation import intervals as I
from airflow_mlcrit.core.evaluation import metrics as M
from airflow_mlcrit.core.evaluation.config import EvaluationConfig
from airflow_mlcrit.core.evaluation.slicing import OVERALL, build_slices, spec_name
from airflow_mlcrit.exceptions import ConfigError, DataValidationError, some

# metrics where lower is better (the gate flips the direction of change thresholds)
LOWER_IS_BETTER = {"log_loss", "ece", "mae", "rmse", "loss", "perplexity", "unparsed_rate"}
# a classification prediction with no label: a generation that matched no verbalizer. It is wrong
# for every row, predicts no class (no class's precision pays for it) and has its own rate.
UNPARSED = -1
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
    builtin = [*M.COUNT_METRICS, "unparsed_rate"] if task == "classification" else []
    return builtin + [m for m, t in _ROW_TASK.items() if t == task] + sorted(_USER)


@dataclass
class Predictions:
    """One model's outputs on the eval rows: class indices (UNPARSED for no label; with
    probabilities), generated texts (with per-row loss), or numbers. ``truncated``: per row,
    whether the model's input was cut at max_length."""

    pred: np.ndarray
    proba: np.ndarray | None = None
    loss: np.ndarray | None = None
    truncated: np.ndarray | None = None

    def take(self, rows: np.ndarray) -> Predictions:
        pick = lambda a: None if a is None else a[rows]  # noqa: E731
        return Predictions(self.pred[rows], pick(self.proba), pick(self.loss), pick(self.truncated))


def _first_bad(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def check_truth(cfg: EvaluationConfig, truth: np.ndarray, labels: list[str] | None) -> np.ndarray:
    """The eval rows' true values, refused before any scoring when they cannot be what the task
    needs: class indices 0..K-1 of ``labels`` (classification) or finite numbers (regression).
    The error names the first bad row and its value."""
    truth = np.asarray(truth)
    if cfg.task == "classification":
        k = len(labels or [])
        if truth.dtype.kind not in "iu":
            whole = (
                truth.dtype.kind == "f" and bool(np.all(np.isfinite(truth))) and bool(np.all(truth == np.round(truth)))
            )
            if not whole:
                bad = next(
                    (
                        i
                        for i, v in enumerate(truth.tolist())
                        if not isinstance(v, (int, float)) or not np.isfinite(v) or v != round(v)
                    ),
                    0,
                )
                raise DataValidationError(
                    f"true label at row {bad} is {truth.tolist()[bad]!r}: classification truth must be class indices "
                    f"0..{k - 1} into the labels {some(labels or [])} (map label names with evaluate(), which does)"
                )
            truth = truth.astype(np.int64)
        outside = (truth < 0) | (truth >= k)
        if outside.any():
            row = _first_bad(outside)
            raise DataValidationError(
                f"true label at row {row} is {int(truth[row])}, outside the {k} declared labels {some(labels or [])} "
                f"(indices 0..{k - 1}); fix the eval data or declare the label"
            )
        return truth
    if cfg.task == "regression":
        try:
            values = truth.astype(float)
        except (TypeError, ValueError):
            raise DataValidationError("regression truth must be numbers") from None
        if not np.all(np.isfinite(values)):
            row = _first_bad(~np.isfinite(values))
            raise DataValidationError(
                f"true value at row {row} is {float(values[row])}: regression truth must be finite"
            )
        return values
    return truth


def _check(cfg: EvaluationConfig, truth: np.ndarray, p: Predictions, who: str, k: int) -> Predictions:
    """``p``, refused before any metric when it cannot be scored: a length other than the eval
    rows', a non-finite or out-of-range prediction, probability or loss (the row is named), or
    probabilities of the wrong shape. A NaN must never turn into a metric value."""
    if len(p.pred) != len(truth):
        raise DataValidationError(
            f"{who}: {len(p.pred)} predictions for {len(truth)} eval rows; every row needs exactly one"
        )
    for name, arr in (("probabilities", p.proba), ("losses", p.loss)):
        if arr is not None and len(arr) != len(truth):
            raise DataValidationError(f"{who}: {len(arr)} rows of {name} for {len(truth)} eval rows")
    pred = np.asarray(p.pred)
    if cfg.task in ("classification", "regression"):
        try:
            numbers = pred.astype(float)
        except (TypeError, ValueError):
            row = next(i for i, v in enumerate(pred.tolist()) if not isinstance(v, (int, float)))
            raise DataValidationError(
                f"{who}: prediction at row {row} is {pred.tolist()[row]!r}, not a number"
                + (" (classification predictions are class indices)" if cfg.task == "classification" else "")
            ) from None
        if not np.all(np.isfinite(numbers)):
            row = _first_bad(~np.isfinite(numbers))
            raise DataValidationError(
                f"{who}: prediction at row {row} is {float(numbers[row])}; every prediction must be finite"
            )
        if cfg.task == "classification":
            wrong = (numbers != np.round(numbers)) | (numbers < UNPARSED) | (numbers >= k)
            if wrong.any():
                row = _first_bad(wrong)
                raise DataValidationError(
                    f"{who}: prediction at row {row} is {pred.tolist()[row]!r}; predicted class indices must lie in "
                    f"0..{k - 1} (or {UNPARSED}: no label)"
                )
            pred = numbers.astype(np.int64)
        else:
            pred = numbers
    proba = p.proba
    if proba is not None:
        proba = np.asarray(proba, dtype=float)
        if cfg.task == "classification" and (proba.ndim != 2 or proba.shape[1] != k):
            raise DataValidationError(
                f"{who}: probabilities have shape {proba.shape}, expected ({len(truth)}, {k}): one per label"
            )
        bad = ~np.isfinite(proba) | (proba < 0) | (proba > 1)
        if bad.any():
            row = _first_bad(bad.reshape(len(proba), -1).any(axis=1))
            raise DataValidationError(
                f"{who}: probabilities at row {row} are {some(proba[row].tolist(), 10)}; each must be a finite number "
                "in [0, 1]"
            )
    loss = p.loss
    if loss is not None:
        loss = np.asarray(loss, dtype=float)
        if not np.all(np.isfinite(loss)):
            row = _first_bad(~np.isfinite(loss))
            raise DataValidationError(
                f"{who}: loss at row {row} is {float(loss[row])}; every per-row loss must be finite"
            )
    return Predictions(pred, proba, loss, p.truncated)


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

    def __init__(self, cfg: EvaluationConfig, names: list[str], truth: np.ndarray, labels: list[str], cols: int):
        self.cfg, self.names, self.truth, self.labels, self.k = cfg, names, truth, labels, len(labels)
        self.cols = cols  # confusion columns: k, or k + 1 when some prediction is UNPARSED
        self.majority: int | None = None  # classification: index of the eval set's majority class

    def needs(self, p: Predictions, metric: str) -> str | None:
        if metric in ("log_loss", "ece", "roc_auc") and p.proba is None:
            return "needs predicted probabilities"
        if metric in ("loss", "perplexity") and p.loss is None:
            return "needs per-row losses"
        return None

    def defined(self, truth: np.ndarray, metric: str) -> str | None:
        """Why ``metric`` has no value on these rows, or None."""
        if metric == "roc_auc":
            present = np.bincount(truth, minlength=self.k)
            if self.k == 2 and present.min() == 0:
                return "ROC AUC needs both classes, and this slice has one"
            absent = [self.labels[i] for i in np.flatnonzero(present == 0)]
            if absent:
                return f"one-vs-rest ROC AUC needs every class, and this slice has no {some(absent)} rows"
        return None

    def point(self, truth: np.ndarray, p: Predictions, metric: str) -> float | None:
        if metric in M.COUNT_METRICS:
            return float(M.from_counts(M.confusion(truth, p.pred, self.k, self.cols))[metric])
        if metric == "unparsed_rate":
            return float(np.mean(p.pred == UNPARSED))
        if metric == "roc_auc":
            return float(M.roc_auc(truth, p.proba[:, 1]) if self.k == 2 else M.roc_auc_ovr(truth, p.proba))
        if metric == "ece":
            return float(M.expected_calibration_error(truth, p.proba))
        if metric in _USER:
            return float(_USER[metric][0](truth, p.pred, p.proba))
        return float(_finish(metric, _row_values(metric, truth, p).mean()))

    def replicates(
        self, truth: np.ndarray, models: list[Predictions], rows: list[str], rng: np.random.Generator
    ) -> dict[str, list[np.ndarray]]:
        """Per-row-weight metrics for each model on shared weights: {metric: [B values per model]}.
        Bayesian bootstrap: Dirichlet row weights (normalized exponentials); a user metric, which
        sees rows rather than weights, gets Poisson counts of each row."""
        n, B = len(truth), self.cfg.replicates
        # per-row values of the metrics that have them; the others are computed on each draw below
        uncached = ("roc_auc", "ece", *_USER, *M.COUNT_METRICS)
        cached = {m: [_row_values(m, truth, p) for p in models] for m in rows if m not in uncached}
        out: dict[str, list[list[np.ndarray]]] = {m: [[] for _ in models] for m in rows}
        chunk = max(1, min(B, _CHUNK_VALUES // max(n, 1)))
        for start in range(0, B, chunk):
            size = (min(chunk, B - start), n)
            w = rng.standard_exponential(size)
            counts = rng.poisson(1.0, size=size) if any(m in _USER for m in rows) else None
            total = w.sum(axis=1)
            for m in rows:
                for i, p in enumerate(models):
                    if m == "roc_auc":
                        v = M.roc_auc(truth, p.proba[:, 1], w) if self.k == 2 else M.roc_auc_ovr(truth, p.proba, w)
                    elif m == "ece":
                        v = M.expected_calibration_error(truth, p.proba, w)
                    elif m in _USER:
                        v = np.array([_user_on(m, truth, p, row) for row in counts])
                    elif m in M.COUNT_METRICS:  # too many classes for joint cells
                        v = _weighted_counts(truth, p.pred, self.k, self.cols, w)[m]
                    else:
                        with np.errstate(invalid="ignore", divide="ignore"):
                            v = _finish(m, (w @ cached[m][i]) / total)
                    out[m][i].append(np.asarray(v, dtype=float))
        return {m: [np.concatenate(parts) for parts in per_model] for m, per_model in out.items()}


def _weighted_counts(truth: np.ndarray, pred: np.ndarray, k: int, cols: int, w: np.ndarray) -> dict[str, np.ndarray]:
    cell = truth * cols + np.where(pred < 0, k, pred)
    counts = np.stack([np.bincount(cell, weights=row, minlength=k * cols) for row in w]).reshape(len(w), k, cols)
    return M.from_counts(counts)


def _user_on(metric: str, truth: np.ndarray, p: Predictions, weights: np.ndarray) -> float:
    rows = np.repeat(np.arange(len(truth)), weights.astype(int))
    if not len(rows):
        return np.nan
    q = p.take(rows)
    return float(_USER[metric][0](truth[rows], q.pred, q.proba))


# metrics that are a share of rows (each row right or wrong): exact intervals, not a bootstrap
PROPORTIONS = ("accuracy", "exact_match", "unparsed_rate")


def interval_method(metric: str, k: int, models: int = 2) -> dict[str, str]:
    """How the intervals of ``metric`` are computed (recorded in the evaluation and its facet)."""
    if metric in PROPORTIONS:
        return {"model": I.CLOPPER_PEARSON, "difference": I.TANGO}
    if metric in M.COUNT_METRICS and k and k ** (1 + models) <= _MAX_CELLS:
        return {"model": I.BAYES_BCA, "difference": I.BAYES_BCA}
    return {"model": I.BAYES, "difference": I.BAYES}


def _undefined(reason: str) -> dict[str, Any]:
    return {"value": None, "low": None, "high": None, "reason": reason}


def _count_intervals(
    cfg: EvaluationConfig, t: np.ndarray, ms: list[Predictions], k: int, cols: int, metrics: list[str], rng
):
    """Per metric: [interval of each model], interval of the difference (or None): the union of a
    Bayesian bootstrap of the joint (truth, candidate, baseline) cells, with a Dirichlet prior of
    total mass one, and a BCa Poisson bootstrap of the same cells (jackknife over the cells)."""
    idx = t.copy()
    for p in ms:
        idx = idx * cols + np.where(p.pred < 0, k, p.pred)
    shape = (k,) + (cols,) * len(ms)
    cells = np.bincount(idx, minlength=int(np.prod(shape))).reshape(shape).astype(np.float64)
    shape = (cfg.replicates, *cells.shape)
    bayes = rng.gamma(cells + 1.0 / cells.size, size=shape)
    poisson = rng.poisson(cells, size=shape).astype(np.float64)
    observed = np.flatnonzero(cells)
    weights = cells.ravel()[observed]
    at = np.unravel_index(observed, cells.shape)  # (truth, candidate pred[, baseline pred]) of each

    def confusions(c: np.ndarray) -> list[np.ndarray]:
        """Each model's (..., K, K) confusion from joint (..., truth, candidate[, baseline]) cells."""
        return [c] if len(ms) == 1 else [c.sum(axis=-1), c.sum(axis=-2)]

    def per_model(c: np.ndarray) -> list[dict[str, np.ndarray]]:
        return [M.from_counts(m) for m in confusions(c)]

    def jackknife() -> list[dict[str, np.ndarray]]:
        """Each model's metrics with one row of each observed joint cell left out: a K x K
        confusion per cell (never the K^3 joint table per cell, which is 128 MB at K = 16)."""
        out = []
        for i, confusion in enumerate(confusions(cells)):
            loo = np.repeat(confusion[None], len(observed), axis=0)
            loo[np.arange(len(observed)), at[0], at[1 + i]] -= 1
            out.append(M.from_counts(loo))
        return out

    point, b_vals, p_vals = (per_model(c) for c in (cells, bayes, poisson))
    j_vals = jackknife()
    out: dict[str, tuple[list, Any]] = {}
    for m in metrics:

        def both(pick):
            return I.union(
                I.percentile(pick(b_vals), cfg.confidence),
                I.bca(pick(p_vals), float(pick(point)), pick(j_vals), weights, cfg.confidence),
            )

        models = [both(lambda v, i=i, m=m: v[i][m]) for i in range(len(ms))]
        diff = both(lambda v, m=m: v[0][m] - v[1][m]) if len(ms) == 2 else None
        out[m] = (models, diff)
    return out


def _proportion_intervals(cfg: EvaluationConfig, right: list[np.ndarray]) -> tuple[list, Any]:
    """Clopper-Pearson per model, Tango for the paired difference; ``right``: 0/1 per row."""
    n = len(right[0])
    models = [tuple(float(v) for v in I.clopper_pearson(r.sum(), n, cfg.confidence)) for r in right]
    diff = None
    if len(right) == 2:
        b = float(np.sum((right[0] == 1) & (right[1] == 0)))
        c = float(np.sum((right[0] == 0) & (right[1] == 1)))
        diff = (*(float(v) for v in I.tango(b, c, n, cfg.confidence)), [int(b), int(c)])
    return models, diff


def _binary_auc_intervals(cfg: EvaluationConfig, t: np.ndarray, ms: list[Predictions], rng) -> tuple[list, Any]:
    """AUC depends on the row weights only through their sums per (score group, class): a
    Bayesian bootstrap draws those sums as Gamma variates. One model: a prior of total mass one
    over every (group, class), so a perfect ranking still gets an interval below 1."""
    if len(ms) == 1:
        pos, neg = M.auc_groups(t, ms[0].proba[:, 1])
        shape, prior = (cfg.replicates, len(pos)), 0.5 / len(pos)
        draws = M.auc_from_groups(rng.gamma(pos + prior, size=shape), rng.gamma(neg + prior, size=shape))
        return [I.percentile(draws, cfg.confidence)], None
    a, b = M.paired_auc_draws(t, [p.proba[:, 1] for p in ms], cfg.replicates, rng)
    return [I.percentile(a, cfg.confidence), I.percentile(b, cfg.confidence)], I.percentile(a - b, cfg.confidence)


def _shares(metric: str, t: np.ndarray, p: Predictions) -> np.ndarray:
    """0/1 per row for a proportion metric."""
    if metric == "accuracy":
        return p.pred == t
    if metric == "unparsed_rate":
        return p.pred == UNPARSED
    return _row_values(metric, t, p)


def _majority(cfg: EvaluationConfig, t: np.ndarray, cand: Predictions, label: int) -> dict[str, Any]:
    """The candidate against always answering ``label`` (the eval set's majority class): that
    constant's accuracy on the slice, and the paired (Tango) interval of candidate - constant."""
    right, constant = (cand.pred == t).astype(float), (t == label).astype(float)
    low, high = (
        float(v)
        for v in I.tango(float(np.sum(right > constant)), float(np.sum(right < constant)), len(t), cfg.confidence)
    )
    return {
        "accuracy": float(constant.mean()),
        "difference": {"value": float(right.mean() - constant.mean()), "low": low, "high": high},
    }


def _slice_result(cfg: EvaluationConfig, scorer: _Scorer, sl: Any, t: np.ndarray, ms: list[Predictions], k, rng):
    names = cfg.metric_names
    result: dict[str, Any] = {"name": sl.name, "spec": sl.spec, "n": len(sl.rows)}
    result["gated"] = len(sl.rows) >= cfg.min_slice_size
    intervals: dict[str, tuple[list, Any]] = {}
    if len(t):
        count = [m for m in names if interval_method(m, k, len(ms))["model"] == I.BAYES_BCA]
        if count:
            intervals.update(_count_intervals(cfg, t, ms, k, scorer.cols, count, rng))
        for m in [m for m in names if m in PROPORTIONS]:
            right = [_shares(m, t, p) for p in ms]
            intervals[m] = _proportion_intervals(cfg, [np.asarray(r, dtype=float) for r in right])
        if "roc_auc" in names and k == 2 and scorer.defined(t, "roc_auc") is None:
            intervals["roc_auc"] = _binary_auc_intervals(cfg, t, ms, rng)
        rows = [m for m in names if m not in intervals and scorer.defined(t, m) is None]
        if rows:
            draws = scorer.replicates(t, ms, rows, rng)
            for m in rows:
                models = [I.percentile(d, cfg.confidence) for d in draws[m]]
                diff = I.percentile(draws[m][0] - draws[m][1], cfg.confidence) if len(ms) == 2 else None
                intervals[m] = (models, diff)
    for role, i in (("candidate", 0), ("baseline", 1)):
        if i >= len(ms):
            result[role] = None
            continue
        result[role] = {}
        for m in names:
            reason = "the slice is empty" if not len(t) else scorer.defined(t, m)
            value = None if reason else _clean(scorer.point(t, ms[i], m))
            if value is None:
                result[role][m] = _undefined(reason or "the metric is not finite on this slice")
                continue
            low, high = intervals[m][0][i] if m in intervals else (None, None)
            result[role][m] = {"value": value, "low": low, "high": high}
    if len(ms) == 2:
        result["difference"] = {}
        for m in names:
            c, b = result["candidate"][m], result["baseline"][m]
            if c["value"] is None or b["value"] is None:
                result["difference"][m] = _undefined(c.get("reason") or b.get("reason"))
                continue
            low, high, *discordant = intervals[m][1] if m in intervals else (None, None)
            result["difference"][m] = {"value": c["value"] - b["value"], "low": low, "high": high}
            if low is not None and high is not None:  # the smallest margin this slice could clear
                result["difference"][m]["half_width"] = (high - low) / 2
            if discordant:  # rows only the candidate / only the baseline got right: p-values (Holm)
                result["difference"][m]["discordant"] = discordant[0]
    else:
        result["difference"] = None
    if scorer.majority is not None and len(t):
        result["majority"] = _majority(cfg, t, ms[0], scorer.majority)
    if any(p.truncated is not None for p in ms) and len(t):
        result["truncated"] = {
            role: float(np.mean(p.truncated))
            for role, p in zip(("candidate", "baseline"), ms, strict=False)
            if p.truncated is not None
        }
    return result


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
    truth = check_truth(cfg, truth, labels)
    candidate = _check(cfg, truth, candidate, "candidate", k)
    if baseline is not None:
        baseline = _check(cfg, truth, baseline, "baseline", k)
    models = [candidate] + ([baseline] if baseline is not None else [])
    unparsed = cfg.task == "classification" and any((p.pred == UNPARSED).any() for p in models)
    scorer = _Scorer(cfg, names, truth, labels or [], k + 1 if unparsed else k)
    if cfg.task == "classification":  # the constant answer a useful model must beat
        scorer.majority = int(np.argmax(np.bincount(truth, minlength=k)))
    missing = {m: scorer.needs(p, m) for p in models for m in names if scorer.needs(p, m)}
    if missing:
        raise ConfigError(f"metric(s) {sorted(missing)} cannot be computed: {', '.join(sorted(set(missing.values())))}")
    rng = np.random.default_rng(cfg.seed)
    out_slices = [
        _slice_result(cfg, scorer, sl, truth[sl.rows], [p.take(sl.rows) for p in models], k, rng)
        for sl in (slices if slices is not None else build_slices(frame, cfg.slices))
    ]
    report: dict[str, Any] = {
        "task": cfg.task,
        "metrics": names,
        "lower_is_better": sorted(m for m in names if m in LOWER_IS_BETTER),
        "labels": labels,
        "rows": len(truth),
        "replicates": cfg.replicates,
        "confidence": cfg.confidence,
        "interval_methods": {m: interval_method(m, k, len(models)) for m in names},
        "seed": cfg.seed,
        "min_slice_size": cfg.min_slice_size,
        "slice_specs": [OVERALL, *(spec_name(s, f"slices[{i}]") for i, s in enumerate(cfg.slices) if s != OVERALL)],
        "slices": out_slices,
        "skipped_slices": [
            {"name": s["name"], "n": s["n"], "reason": f"fewer than min_slice_size={cfg.min_slice_size} rows"}
            for s in out_slices
            if not s["gated"]
        ],
    }
    if cfg.task == "classification":
        roles = list(zip(("candidate", "baseline"), models, strict=False))
        report["per_class"] = {
            role: M.per_class(M.confusion(truth, p.pred, k, scorer.cols), labels) for role, p in roles
        }
        # how often each model answers each class: a class never answered is flagged by the gate
        report["prediction_rates"] = {
            role: {
                **{label: float(np.mean(p.pred == i)) for i, label in enumerate(labels)},
                **({"(unparsed)": float(np.mean(p.pred == UNPARSED))} if unparsed else {}),
            }
            for role, p in roles
        }
        report["majority"] = {
            "label": labels[scorer.majority],
            "share": float(np.mean(truth == scorer.majority)),
        }
    return report


def _clean(value: float | None) -> float | None:
    return None if value is None or not np.isfinite(value) else value
