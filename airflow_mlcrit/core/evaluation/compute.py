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
from typing import Any, Literal

import numpy as np

from airflow_mlcrit.core.evaluation import intervals as I
from airflow_mlcrit.core.evaluation import metrics as M
from airflow_mlcrit.core.evaluation.config import EvaluationConfig
from airflow_mlcrit.core.evaluation.slicing import OVERALL, build_slices, spec_name
from airflow_mlcrit.exceptions import ConfigError, DataValidationError, some

# a classification prediction with no label: a generation that matched no verbalizer. It is wrong
# for every row, predicts no class (no class's precision pays for it) and has its own rate.
UNPARSED = -1
_CHUNK_VALUES = 20_000_000  # replicate x row weights held at once
_AUC_GROUPS = 2048  # distinct scores per class beyond which AUC's score groups are quantile bins


@dataclass(frozen=True)
class Metric:
    """Everything the evaluation and the gate know about one metric, in one place.

    ``form`` says how its value and its interval are computed:

    - ``proportion``: the share of rows whose ``per_row`` value is 1 (Clopper-Pearson; Tango's
      paired interval for a difference);
    - ``count``: a function of the confusion counts (``metrics.from_counts``): a Bayesian
      bootstrap of the joint (truth, candidate, baseline) cells with a Dirichlet-process prior of
      mass one row, united with a BCa Poisson bootstrap;
    - ``auc``: ROC AUC (binary, or one-vs-rest macro): Bayesian bootstrap of score-group sums,
      with a prior of mass one row per class;
    - ``mean``: ``finish`` of the mean of ``per_row`` values (Bayesian bootstrap of the rows);
    - ``weighted``: ``weighted(truth, predictions, weights)`` of row weights (same bootstrap);
    - ``user``: ``fn(y_true, y_pred, proba)`` on resampled rows (Poisson counts).

    ``min_class_rows``: the interval is refused on a slice where some class has fewer true rows
    (a macro average over classes of one or two rows does not hold its level; the value is still
    reported). ``coverage``: what dev/bench/bench_coverage.py measured, for the docs.
    """

    name: str
    form: Literal["proportion", "count", "auc", "mean", "weighted", "user"]
    task: str | None = None  # None: any task (a user metric)
    higher_is_better: bool = True
    per_row: Callable[[np.ndarray, Any], np.ndarray] | None = None
    finish: Callable[[np.ndarray], np.ndarray] | None = None
    weighted: Callable[..., np.ndarray] | None = None
    fn: Callable[[np.ndarray, np.ndarray, np.ndarray | None], float] | None = None
    needs: Literal["proba", "loss"] | None = None
    min_class_rows: int = 0
    coverage: str = ""

    def methods(self, k: int) -> dict[str, str]:
        """How its intervals are computed (recorded in the evaluation and its lineage facet)."""
        if self.form == "proportion":
            return {"model": I.CLOPPER_PEARSON, "difference": I.TANGO}
        if self.form == "count":
            return {"model": I.BAYES_BCA, "difference": I.BAYES_BCA}
        if self.form == "auc":
            return {"model": I.BAYES_GROUPS, "difference": I.BAYES_GROUPS}
        return {"model": I.BAYES, "difference": I.BAYES}


_METRICS: dict[str, Metric] = {}


def register_metric(
    metric: Metric | str,
    fn: Callable[[np.ndarray, np.ndarray, np.ndarray | None], float] | None = None,
    *,
    higher_is_better: bool = True,
) -> Metric:
    """Make a metric known to EvaluationConfig.metrics and the gate: a :class:`Metric` record (as
    the built-in ones are registered), or a name and ``fn(y_true, y_pred, proba) -> float``. A name
    is registered once: a second registration under it is a ConfigError unless it is the same."""
    if not isinstance(metric, Metric):
        if fn is None:
            raise ConfigError(f"register_metric({metric!r}): give fn(y_true, y_pred, proba) -> float")
        metric = Metric(str(metric), "user", fn=fn, higher_is_better=higher_is_better)
    known = _METRICS.get(metric.name)
    if known is not None and known != metric:
        what = "built in" if known.form != "user" else "registered already, with another function"
        raise ConfigError(f"metric name {metric.name!r} is {what}; choose another name")
    _METRICS[metric.name] = metric
    return metric


def metric_of(name: str) -> Metric:
    try:
        return _METRICS[name]
    except KeyError:
        raise ConfigError(f"unknown metric {name!r}; known: {', '.join(_METRICS)}") from None


def known_metrics(task: str) -> list[str]:
    return [m.name for m in _METRICS.values() if m.task in (task, None)]


def lower_is_better(names: list[str]) -> list[str]:
    return sorted(n for n in names if n in _METRICS and not _METRICS[n].higher_is_better)


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


def _undefined(reason: str) -> dict[str, Any]:
    return {"value": None, "low": None, "high": None, "reason": reason}


class _Slice:
    """One slice's rows: truth, the models' predictions, and what the metrics share."""

    def __init__(self, truth: np.ndarray, models: list[Predictions], labels: list[str], cols: int):
        self.t, self.ms, self.labels, self.k, self.cols = truth, models, labels, len(labels), cols
        self.support = np.bincount(truth, minlength=self.k) if self.k else None

    def undefined(self, metric: Metric) -> str | None:
        """Why ``metric`` has no value on these rows, or None."""
        if not len(self.t):
            return "the slice is empty"
        if metric.form == "auc":
            if self.k == 2 and self.support.min() == 0:
                return "ROC AUC needs both classes, and this slice has one"
            absent = [self.labels[i] for i in np.flatnonzero(self.support == 0)]
            if absent:
                return f"one-vs-rest ROC AUC needs every class, and this slice has no {some(absent)} rows"
        return None

    def no_interval(self, metric: Metric) -> str | None:
        """Why ``metric`` gets a value but no interval on these rows (its interval would not hold
        its level here), or None."""
        if metric.min_class_rows and self.k and self.support.min() < metric.min_class_rows:
            thin = [
                f"{self.labels[i]} ({int(self.support[i])})"
                for i in np.flatnonzero(self.support < metric.min_class_rows)
            ]
            shown = ", ".join(thin[:5]) + (f" and {len(thin) - 5} more" if len(thin) > 5 else "")
            return (
                f"{metric.name}'s interval needs at least {metric.min_class_rows} true rows of every class on a slice, "
                f"and here {shown} {'has' if len(thin) == 1 else 'have'} fewer: with so few its interval does not hold "
                "its level, so none is given (gate this slice on accuracy, or collect more rows)"
            )
        return None

    def point(self, metric: Metric, p: Predictions) -> float:
        t = self.t
        if metric.form == "count":
            return float(M.from_counts(M.confusion(t, p.pred, self.k, self.cols))[metric.name])
        if metric.form == "auc":
            return float(M.roc_auc(t, p.proba[:, 1]) if self.k == 2 else M.roc_auc_ovr(t, p.proba))
        if metric.form == "weighted":
            return float(metric.weighted(t, p, None))
        if metric.form == "user":
            return float(metric.fn(t, p.pred, p.proba))
        mean = np.asarray(metric.per_row(t, p), dtype=float).mean()
        return float(metric.finish(mean) if metric.finish else mean)


_PRIOR_ATOMS = 20  # stick-breaking atoms of one prior draw; they leave 2^-20 of its mass on average


def _prior_atoms(rng, replicates: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(mass, true class) of the prior's atoms in each replicate: for each true class, a Dirichlet
    process of mass one row, uniform over what the models predict, drawn by stick-breaking. One
    row per class, not one in all: a rare class of five rows then gets a prior that matters, and
    the paired difference of macro recall covered 0.955 instead of 0.895 with classes at
    0.80/0.15/0.05 and n=100 (dev/bench/bench_coverage.py)."""
    masses, truths = [], []
    for c in range(k):
        sticks = rng.uniform(size=(replicates, _PRIOR_ATOMS))
        left = np.cumprod(np.concatenate([np.ones((replicates, 1)), 1 - sticks[:, :-1]], axis=1), axis=1)
        mass = sticks * left
        mass[:, -1] += left[:, -1] * (1 - sticks[:, -1])
        masses.append(mass * rng.gamma(1.0, size=(replicates, 1)))
        truths.append(np.full(mass.shape, c))
    return np.concatenate(masses, axis=1), np.concatenate(truths, axis=1)


def _count_intervals(cfg: EvaluationConfig, sl: _Slice, metrics: list[Metric], rng) -> dict[str, tuple[list, Any]]:
    """Per metric: [interval of each model], interval of the difference (or None). The union of

    - a Bayesian bootstrap of the joint (truth, candidate[, baseline]) cells: Gamma draws of the
      observed cells' counts, plus a Dirichlet-process prior of mass one row per true class, spread
      over what the models predict (stick-breaking atoms, :func:`_prior_atoms`), so an interval
      never collapses when every row is right, whatever the number of classes; and
    - a BCa Poisson bootstrap of the observed cells (jackknife over them).

    Only observed cells are held (at most one per row), so 20 or 200 classes cost what 3 do."""
    t, ms, k, cols = sl.t, sl.ms, sl.k, sl.cols
    joint = t.astype(np.int64)
    for p in ms:
        joint = joint * cols + np.where(p.pred < 0, k, p.pred)
    cells, counts = np.unique(joint, return_counts=True)
    # each observed cell's truth and each model's prediction column, decoded from the joint index
    decoded, rest = [], cells.copy()
    for _ in ms:
        decoded.insert(0, rest % cols)
        rest //= cols
    conf = [rest * cols + c for c in decoded]  # each observed cell's index in each model's K x cols
    size = k * cols
    B = cfg.replicates

    def confusions(weights: np.ndarray, atoms: tuple[np.ndarray, np.ndarray] | None) -> list[np.ndarray]:
        """Each model's (B, K, cols) weighted confusion from (B, cells) weights of the observed
        cells, plus the prior's atoms ((B, A) masses, (models, B, A) confusion indices)."""
        offset = (np.arange(B) * size)[:, None]
        out = []
        for i in range(len(ms)):
            idx, w = offset + conf[i][None, :], weights
            if atoms is not None:
                idx = np.concatenate([idx, offset + atoms[1][i]], axis=1)
                w = np.concatenate([w, atoms[0]], axis=1)
            out.append(np.bincount(idx.ravel(), weights=w.ravel(), minlength=B * size).reshape(B, k, cols))
        return out

    bayes_w = rng.gamma(counts.astype(float), size=(B, len(cells)))
    # the prior: a Dirichlet process of mass 1 with a uniform base over every joint cell, drawn by
    # stick-breaking (20 atoms leave 2^-20 of the mass on average, given to the last one)
    mass, atom_truth = _prior_atoms(rng, B, k)
    atom_conf = np.stack([atom_truth * cols + rng.integers(0, cols, size=atom_truth.shape) for _ in ms])
    bayes = [M.from_counts(c) for c in confusions(bayes_w, (mass, atom_conf))]
    poisson = [M.from_counts(c) for c in confusions(rng.poisson(counts, size=(B, len(cells))).astype(float), None)]
    point = [M.from_counts(M.confusion(t, p.pred, k, cols)) for p in ms]

    def jackknife(i: int) -> dict[str, np.ndarray]:
        """Model i's metrics with one row of each observed joint cell left out: computed once per
        distinct confusion cell of that model (at most K x cols of them), then mapped back."""
        full = M.confusion(t, ms[i].pred, k, cols)
        distinct, back = np.unique(conf[i], return_inverse=True)
        parts: dict[str, list[np.ndarray]] = {}
        for start in range(0, len(distinct), 256):  # bounded memory at many classes
            chunk = distinct[start : start + 256]
            loo = np.repeat(full[None], len(chunk), axis=0)
            loo[np.arange(len(chunk)), chunk // cols, chunk % cols] -= 1
            for name, v in M.from_counts(loo).items():
                parts.setdefault(name, []).append(v)
        return {name: np.concatenate(v)[back] for name, v in parts.items()}

    jack = [jackknife(i) for i in range(len(ms))]
    weights = counts.astype(float)
    out: dict[str, tuple[list, Any]] = {}
    for metric in metrics:
        m = metric.name

        def both(pick):
            return I.union(
                I.percentile(pick(bayes), cfg.confidence),
                I.bca(pick(poisson), float(pick(point)), pick(jack), weights, cfg.confidence),
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


def _auc_intervals(cfg: EvaluationConfig, sl: _Slice, rng) -> tuple[list, Any]:
    """ROC AUC depends on the row weights only through their sums per (score group, class). A
    Bayesian bootstrap draws the rows' weights (shared by the models, so the difference is
    paired), sums them per score group of each class's one-vs-rest problem, and adds a prior of
    total mass one row per class problem and model, spread over its groups and both sides: a
    perfect ranking still gets an interval below 1, at any class count. Binary: one problem
    (class 1 against class 0); more classes: the macro mean over the one-vs-rest problems."""
    t, ms, B = sl.t, sl.ms, cfg.replicates
    problems = [1] if sl.k == 2 else list(range(sl.k))
    draws = [np.zeros(B) for _ in ms]  # with the prior
    plain = [np.zeros(B) for _ in ms]  # without it: a perfect ranking's draws reach 1
    chunk = max(1, min(B, _CHUNK_VALUES // max(len(t), 1)))
    for start in range(0, B, chunk):
        w = rng.standard_exponential((min(chunk, B - start), len(t)))
        for c in problems:
            positive = t == c
            # each model's prior comes from the same seed: two models with the same scores get the
            # same prior and differ by exactly 0, as on every resample of the rows
            seed = int(rng.integers(2**62))
            for i, p in enumerate(ms):
                inv, groups = M.score_groups(p.proba[:, c], _AUC_GROUPS)
                prior = np.random.default_rng(seed)
                sums, with_prior = [], []
                for side in (positive, ~positive):
                    g = np.zeros((len(w), groups))
                    cols = np.flatnonzero(side)
                    if len(cols):
                        order = cols[np.argsort(inv[cols], kind="stable")]
                        present, first = np.unique(inv[order], return_index=True)
                        g[:, present] = np.add.reduceat(w[:, order], first, axis=1)
                    sums.append(g)
                    with_prior.append(g + prior.standard_gamma(0.5 / groups, size=g.shape))  # mass 1/2 a side
                draws[i][start : start + len(w)] += M.auc_from_groups(*with_prior) / len(problems)
                plain[i][start : start + len(w)] += M.auc_from_groups(*sums) / len(problems)
    # the union of the two, as for count metrics: the prior keeps a perfect ranking's interval
    # below 1, the plain bootstrap keeps it reaching the observed value
    models = [
        I.union(I.percentile(d, cfg.confidence), I.percentile(q, cfg.confidence))
        for d, q in zip(draws, plain, strict=True)
    ]
    diff = None
    if len(ms) == 2:
        diff = I.union(
            I.percentile(draws[0] - draws[1], cfg.confidence), I.percentile(plain[0] - plain[1], cfg.confidence)
        )
    return models, diff


def _row_intervals(cfg: EvaluationConfig, sl: _Slice, metrics: list[Metric], rng) -> dict[str, tuple[list, Any]]:
    """Bayesian bootstrap of the rows (Dirichlet weights, shared by the models), percentile; a user
    metric, which sees rows rather than weights, gets Poisson counts of each row."""
    t, ms, B = sl.t, sl.ms, cfg.replicates
    n = len(t)
    cached = {m.name: [np.asarray(m.per_row(t, p), dtype=float) for p in ms] for m in metrics if m.form == "mean"}
    parts: dict[str, list[list[np.ndarray]]] = {m.name: [[] for _ in ms] for m in metrics}
    chunk = max(1, min(B, _CHUNK_VALUES // max(n, 1)))
    for start in range(0, B, chunk):
        size = (min(chunk, B - start), n)
        w = rng.standard_exponential(size)
        counts = rng.poisson(1.0, size=size) if any(m.form == "user" for m in metrics) else None
        total = w.sum(axis=1)
        for m in metrics:
            for i, p in enumerate(ms):
                if m.form == "weighted":
                    v = m.weighted(t, p, w)
                elif m.form == "user":
                    v = np.array([_user_on(m, t, p, row) for row in counts])
                else:
                    with np.errstate(invalid="ignore", divide="ignore"):
                        mean = (w @ cached[m.name][i]) / total
                        v = m.finish(mean) if m.finish else mean
                parts[m.name][i].append(np.asarray(v, dtype=float))
    out = {}
    for m in metrics:
        d = [np.concatenate(x) for x in parts[m.name]]
        models = [I.percentile(x, cfg.confidence) for x in d]
        out[m.name] = (models, I.percentile(d[0] - d[1], cfg.confidence) if len(ms) == 2 else None)
    return out


def _user_on(metric: Metric, truth: np.ndarray, p: Predictions, weights: np.ndarray) -> float:
    rows = np.repeat(np.arange(len(truth)), weights.astype(int))
    if not len(rows):
        return np.nan
    q = p.take(rows)
    return float(metric.fn(truth[rows], q.pred, q.proba))


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


def _slice_result(cfg: EvaluationConfig, metrics: list[Metric], sl: Any, data: _Slice, majority: int | None, rng):
    ms = data.ms
    result: dict[str, Any] = {"name": sl.name, "spec": sl.spec, "n": len(sl.rows)}
    result["gated"] = len(sl.rows) >= cfg.min_slice_size
    undefined = {m.name: data.undefined(m) for m in metrics}
    refused = {m.name: data.no_interval(m) for m in metrics if undefined[m.name] is None}
    wanted = [m for m in metrics if undefined[m.name] is None and refused.get(m.name) is None]
    intervals: dict[str, tuple[list, Any]] = {}
    if wanted:
        count = [m for m in wanted if m.form == "count"]
        if count:
            intervals.update(_count_intervals(cfg, data, count, rng))
        for m in (m for m in wanted if m.form == "proportion"):
            intervals[m.name] = _proportion_intervals(cfg, [np.asarray(m.per_row(data.t, p), dtype=float) for p in ms])
        if any(m.form == "auc" for m in wanted):
            intervals["roc_auc"] = _auc_intervals(cfg, data, rng)
        rows = [m for m in wanted if m.form in ("mean", "weighted", "user")]
        if rows:
            intervals.update(_row_intervals(cfg, data, rows, rng))
    for role, i in (("candidate", 0), ("baseline", 1)):
        if i >= len(ms):
            result[role] = None
            continue
        result[role] = {}
        for m in metrics:
            reason = undefined[m.name]
            value = None if reason else _clean(data.point(m, ms[i]))
            if value is None:
                result[role][m.name] = _undefined(reason or "the metric is not finite on this slice")
                continue
            low, high = intervals[m.name][0][i] if m.name in intervals else (None, None)
            result[role][m.name] = {"value": value, "low": low, "high": high}
            if refused.get(m.name):
                result[role][m.name]["reason"] = refused[m.name]
    if len(ms) == 2:
        result["difference"] = {}
        for m in metrics:
            c, b = result["candidate"][m.name], result["baseline"][m.name]
            if c["value"] is None or b["value"] is None:
                result["difference"][m.name] = _undefined(c.get("reason") or b.get("reason"))
                continue
            low, high, *discordant = intervals[m.name][1] if m.name in intervals else (None, None)
            d = result["difference"][m.name] = {"value": c["value"] - b["value"], "low": low, "high": high}
            if refused.get(m.name):
                d["reason"] = refused[m.name]
            if low is not None and high is not None:  # the smallest margin this slice could clear
                d["half_width"] = (high - low) / 2
            if discordant:  # rows only the candidate / only the baseline got right: p-values (Holm)
                d["discordant"] = discordant[0]
    else:
        result["difference"] = None
    if majority is not None and len(data.t):
        result["majority"] = _majority(cfg, data.t, ms[0], majority)
    if any(p.truncated is not None for p in ms) and len(data.t):
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
    metrics = [metric_of(m) for m in names]
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
    missing = {
        m.name: f"needs predicted {'probabilities' if m.needs == 'proba' else 'per-row losses'}"
        for p in models
        for m in metrics
        if (m.needs == "proba" and p.proba is None) or (m.needs == "loss" and p.loss is None)
    }
    if missing:
        raise ConfigError(f"metric(s) {sorted(missing)} cannot be computed: {', '.join(sorted(set(missing.values())))}")
    unparsed = cfg.task == "classification" and any((p.pred == UNPARSED).any() for p in models)
    cols = k + 1 if unparsed else k
    # classification: the eval set's majority class, the constant answer a useful model must beat
    majority = int(np.argmax(np.bincount(truth, minlength=k))) if cfg.task == "classification" else None
    rng = np.random.default_rng(cfg.seed)
    out_slices = [
        _slice_result(
            cfg,
            metrics,
            sl,
            _Slice(truth[sl.rows], [p.take(sl.rows) for p in models], labels or [], cols),
            majority,
            rng,
        )
        for sl in (slices if slices is not None else build_slices(frame, cfg.slices))
    ]
    report: dict[str, Any] = {
        "task": cfg.task,
        "metrics": names,
        "lower_is_better": lower_is_better(names),
        "labels": labels,
        "rows": len(truth),
        "replicates": cfg.replicates,
        "confidence": cfg.confidence,
        "interval_methods": {m.name: m.methods(k) for m in metrics},
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
        report["per_class"] = {role: M.per_class(M.confusion(truth, p.pred, k, cols), labels) for role, p in roles}
        # how often each model answers each class: a class never answered is flagged by the gate
        report["prediction_rates"] = {
            role: {
                **{label: float(np.mean(p.pred == i)) for i, label in enumerate(labels)},
                **({"(unparsed)": float(np.mean(p.pred == UNPARSED))} if unparsed else {}),
            }
            for role, p in roles
        }
        report["majority"] = {"label": labels[majority], "share": float(np.mean(truth == majority))}
    return report


def _clean(value: float | None) -> float | None:
    return None if value is None or not np.isfinite(value) else value


# ---- the built-in metrics, registered like a user's ------------------------------------------


def _log_loss_rows(t: np.ndarray, p: Predictions) -> np.ndarray:
    eps = np.finfo(p.proba.dtype).eps
    return -np.log(np.clip(p.proba[np.arange(len(t)), t], eps, 1 - eps))


def _text_rows(fn: Callable[[str, str], float]) -> Callable[[np.ndarray, Predictions], np.ndarray]:
    return lambda t, p: np.array([fn(str(a), str(b)) for a, b in zip(t, p.pred, strict=True)], dtype=float)


# Below this many true rows of a class on a slice, the interval missed its level in
# dev/bench/bench_coverage.py's grid (docs/benchmarks.md), so it is refused there. Weighted F1 has
# no such floor: it weights classes by their rows, and refusing it on thin classes selected slices
# whose class mix is far from the population's, which is what then missed (0.79 in the grid).
_CLASS_ROWS = 5
_AUC_CLASS_ROWS = 50
for _m in (
    Metric("accuracy", "proportion", "classification", per_row=lambda t, p: p.pred == t),
    Metric("macro_f1", "count", "classification", min_class_rows=_CLASS_ROWS),
    Metric("weighted_f1", "count", "classification"),
    Metric("macro_precision", "count", "classification", min_class_rows=_CLASS_ROWS),
    Metric("macro_recall", "count", "classification", min_class_rows=_CLASS_ROWS),
    Metric(
        "unparsed_rate", "proportion", "classification", higher_is_better=False, per_row=lambda t, p: p.pred == UNPARSED
    ),
    Metric("log_loss", "mean", "classification", higher_is_better=False, per_row=_log_loss_rows, needs="proba"),
    Metric(
        "ece",
        "weighted",
        "classification",
        higher_is_better=False,
        weighted=lambda t, p, w: M.expected_calibration_error(t, p.proba, w),
        needs="proba",
    ),
    Metric("roc_auc", "auc", "classification", needs="proba", min_class_rows=_AUC_CLASS_ROWS),
    Metric("exact_match", "proportion", "generation", per_row=_text_rows(M.exact_match)),
    Metric("token_f1", "mean", "generation", per_row=_text_rows(M.token_f1)),
    Metric("rouge_l", "mean", "generation", per_row=_text_rows(M.rouge_l)),
    Metric("loss", "mean", "generation", higher_is_better=False, per_row=lambda t, p: p.loss, needs="loss"),
    Metric(
        "perplexity",
        "mean",
        "generation",
        higher_is_better=False,
        per_row=lambda t, p: p.loss,
        finish=np.exp,
        needs="loss",
    ),
    Metric(
        "mae",
        "mean",
        "regression",
        higher_is_better=False,
        per_row=lambda t, p: np.abs(t.astype(float) - p.pred.astype(float)),
    ),
    Metric(
        "rmse",
        "mean",
        "regression",
        higher_is_better=False,
        per_row=lambda t, p: (t.astype(float) - p.pred.astype(float)) ** 2,
        finish=np.sqrt,
    ),
):
    register_metric(_m)
