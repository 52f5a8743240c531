"""Classification metrics, vectorized over bootstrap replicates.

Confusion-matrix metrics (accuracy, precision, recall, F1) are functions of the cell counts, so a
Poisson bootstrap needs only Poisson draws of the counts (a sum of n Poisson(1) row weights is
Poisson(n)): B replicates of a K x K matrix instead of B x n row weights. Rank and per-row
metrics (ROC AUC, log loss) take per-row weights.
"""

from __future__ import annotations

import numpy as np

from airflow_mlcrit.exceptions import ConfigError, DataValidationError

COUNT_METRICS = ("accuracy", "macro_f1", "weighted_f1", "macro_precision", "macro_recall")
ROW_METRICS = ("roc_auc", "log_loss")
METRICS = COUNT_METRICS + ROW_METRICS


def check_inputs(y_true: np.ndarray, y_pred: np.ndarray, proba: np.ndarray | None = None) -> None:
    if len(y_true) != len(y_pred):
        raise DataValidationError(f"{len(y_pred)} predictions for {len(y_true)} labels: every eval row needs one")
    if proba is not None and len(proba) != len(y_true):
        raise DataValidationError(f"{len(proba)} probability rows for {len(y_true)} labels")


def confusion(y_true: np.ndarray, y_pred: np.ndarray, k: int, cols: int | None = None) -> np.ndarray:
    """K x K counts, rows = true class, columns = predicted class (integer labels 0..k-1). With
    ``cols = k + 1``, K x (K + 1): the last column counts the rows with no label (prediction -1,
    an unparsed generation), which are wrong for every class and predict none."""
    cols = cols or k
    if cols > k:
        y_pred = np.where(y_pred < 0, k, y_pred)
    return np.bincount(y_true * cols + y_pred, minlength=k * cols).reshape(k, cols).astype(np.float64)


def from_counts(counts: np.ndarray) -> dict[str, np.ndarray]:
    """Metrics from (..., K, K) confusion counts, or (..., K, K + 1) with unparsed rows in the last
    column (see :func:`confusion`); every leading dimension is kept (replicates)."""
    total = counts.sum(axis=(-2, -1))
    diag = np.diagonal(counts, axis1=-2, axis2=-1)
    support = counts.sum(axis=-1)  # true per class
    predicted = counts.sum(axis=-2)[..., : counts.shape[-2]]
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(predicted > 0, diag / predicted, 0.0)
        recall = np.where(support > 0, diag / support, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
        weights = support / support.sum(axis=-1, keepdims=True)
        return {
            "accuracy": diag.sum(axis=-1) / total,
            "macro_f1": f1.mean(axis=-1),
            "weighted_f1": (f1 * weights).sum(axis=-1),
            "macro_precision": precision.mean(axis=-1),
            "macro_recall": recall.mean(axis=-1),
        }


def roc_auc(y_true: np.ndarray, score: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Binary ROC AUC with ties counted half; ``weights`` may be (B, n) for B replicates at once."""
    order = np.argsort(score, kind="mergesort")
    y, s = y_true[order], score[order]
    w = np.ones((1, len(y))) if weights is None else np.atleast_2d(weights)[:, order]
    pos, neg = w * (y == 1), w * (y == 0)
    # negatives strictly below each score, plus half of the negatives tied with it
    _, starts, counts = np.unique(s, return_index=True, return_counts=True)
    group = np.repeat(np.arange(len(starts)), counts)
    neg_by_group = np.add.reduceat(neg, starts, axis=1)
    below = np.cumsum(neg_by_group, axis=1) - neg_by_group
    credit = (below + 0.5 * neg_by_group)[:, group]
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = (pos * credit).sum(axis=1) / (pos.sum(axis=1) * neg.sum(axis=1))
    return auc if weights is not None and np.ndim(weights) == 2 else auc[0]


def roc_auc_ovr(y_true: np.ndarray, proba: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """One-vs-rest macro ROC AUC (scikit-learn's ``multi_class="ovr", average="macro"``): the mean
    over classes of the AUC of that class's probability against the rest."""
    per_class = [roc_auc((y_true == c).astype(np.int64), proba[:, c], weights) for c in range(proba.shape[1])]
    return np.mean(per_class, axis=0)


def auc_groups(y_true: np.ndarray, score: np.ndarray, max_groups: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """Positive and negative counts per score group, in ascending score order. Groups are the
    distinct scores, or (beyond ``max_groups``) quantile bins of them, whose ties count half."""
    inv, groups = score_groups(score, max_groups)
    pos = np.bincount(inv, weights=(y_true == 1).astype(float), minlength=groups)
    neg = np.bincount(inv, weights=(y_true == 0).astype(float), minlength=groups)
    return pos, neg


def score_groups(score: np.ndarray, max_groups: int) -> tuple[np.ndarray, int]:
    """(group of each row, number of groups): distinct scores, or quantile bins beyond max_groups."""
    uniq, inv = np.unique(score, return_inverse=True)
    if len(uniq) <= max_groups:
        return inv, len(uniq)
    edges = np.quantile(score, np.linspace(0, 1, max_groups + 1)[1:-1])
    return np.searchsorted(edges, score, side="right"), max_groups


def auc_from_groups(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """AUC from (..., G) group counts in ascending score order."""
    below = np.cumsum(neg, axis=-1) - neg
    with np.errstate(invalid="ignore", divide="ignore"):
        return (pos * (below + 0.5 * neg)).sum(axis=-1) / (pos.sum(axis=-1) * neg.sum(axis=-1))


def log_loss(y_true: np.ndarray, proba: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Mean negative log-likelihood of the true class (probabilities clipped like scikit-learn)."""
    eps = np.finfo(proba.dtype).eps
    p = np.clip(proba[np.arange(len(y_true)), y_true], eps, 1 - eps)
    nll = -np.log(p)
    if weights is None:
        return nll.mean()
    w = np.atleast_2d(weights)
    return (w @ nll) / w.sum(axis=1)


def point_metrics(y_true: np.ndarray, y_pred: np.ndarray, k: int, proba: np.ndarray | None = None) -> dict[str, float]:
    check_inputs(y_true, y_pred, proba)
    out = {m: float(v) for m, v in from_counts(confusion(y_true, y_pred, k)).items()}
    if proba is not None:
        out["log_loss"] = float(log_loss(y_true, proba))
        if k == 2 and len(np.unique(y_true)) == 2:
            out["roc_auc"] = float(roc_auc(y_true, proba[:, 1]))
    return out


def bootstrap(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    k: int,
    *,
    proba: np.ndarray | None = None,
    metrics: tuple[str, ...] = ("accuracy",),
    replicates: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    chunk: int = 100,
) -> dict[str, dict[str, float]]:
    """Point value and percentile interval per metric (Poisson bootstrap): the v0.1 method, kept
    as the named baseline of dev/bench/bench_coverage.py. The gate reads
    ``compute.evaluate_predictions``, whose intervals hold their level at small n."""
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ConfigError(f"unknown metric(s) {unknown}; known: {', '.join(METRICS)}")
    check_inputs(y_true, y_pred, proba)
    rng = np.random.default_rng(seed)
    point = point_metrics(y_true, y_pred, k, proba)
    draws: dict[str, np.ndarray] = {}
    count_metrics = [m for m in metrics if m in COUNT_METRICS]
    if count_metrics:
        cells = rng.poisson(confusion(y_true, y_pred, k), size=(replicates, k, k)).astype(np.float64)
        values = from_counts(cells)
        draws.update({m: values[m] for m in count_metrics})
    row_metrics = [m for m in metrics if m in ROW_METRICS]
    if row_metrics:
        if proba is None:
            raise ConfigError(f"{row_metrics} need predicted probabilities")
        if "roc_auc" in row_metrics:
            # AUC depends on row weights only through their sums per (score group, class), and a sum
            # of c Poisson(1) weights is Poisson(c): draw per group, not per row
            pos, neg = auc_groups(y_true, proba[:, 1])
            draws["roc_auc"] = auc_from_groups(
                rng.poisson(pos, size=(replicates, len(pos))), rng.poisson(neg, size=(replicates, len(neg)))
            )
        if "log_loss" in row_metrics:
            parts = []
            for start in range(0, replicates, chunk):
                w = rng.poisson(1.0, size=(min(chunk, replicates - start), len(y_true))).astype(np.float64)
                parts.append(log_loss(y_true, proba, w))
            draws["log_loss"] = np.concatenate(parts)
    alpha = (1 - confidence) / 2
    return {
        m: {
            "value": point[m],
            "low": float(np.nanquantile(draws[m], alpha)),
            "high": float(np.nanquantile(draws[m], 1 - alpha)),
        }
        for m in metrics
    }


def expected_calibration_error(
    y_true: np.ndarray, proba: np.ndarray, weights: np.ndarray | None = None, bins: int = 15
) -> np.ndarray:
    """ECE: |confidence - accuracy| per equal-width confidence bin, weighted by the bin's share."""
    conf = proba.max(axis=1)
    gap = conf - (proba.argmax(axis=1) == y_true)
    which = np.minimum((conf * bins).astype(int), bins - 1)
    w = np.ones((1, len(y_true))) if weights is None else np.atleast_2d(weights)
    total = np.zeros(len(w))
    for b in np.unique(which):
        rows = which == b
        total += np.abs(w[:, rows] @ gap[rows])
    ece = total / w.sum(axis=1)
    return ece if weights is not None and np.ndim(weights) == 2 else ece[0]


def per_class(counts: np.ndarray, labels: list[str]) -> dict[str, dict[str, float]]:
    """Precision, recall and support of each class from one K x K (or K x (K + 1)) confusion."""
    diag, support, predicted = np.diag(counts), counts.sum(axis=1), counts.sum(axis=0)
    return {
        label: {
            "precision": float(diag[i] / predicted[i]) if predicted[i] else 0.0,
            "recall": float(diag[i] / support[i]) if support[i] else 0.0,
            "support": int(support[i]),
        }
        for i, label in enumerate(labels)
    }


# ---- generation: per-row scores, averaged ----------------------------------------------------


def _tokens(text: str) -> list[str]:
    import re

    return re.findall(r"\w+", text.lower())


def exact_match(reference: str, prediction: str) -> float:
    return float(" ".join(_tokens(reference)) == " ".join(_tokens(prediction)))


def token_f1(reference: str, prediction: str) -> float:
    """SQuAD-style token F1 (lowercased word tokens, multiset overlap)."""
    from collections import Counter

    ref, pred = _tokens(reference), _tokens(prediction)
    if not ref or not pred:
        return float(ref == pred)
    common = sum((Counter(ref) & Counter(pred)).values())
    if not common:
        return 0.0
    p, r = common / len(pred), common / len(ref)
    return 2 * p * r / (p + r)


def rouge_l(reference: str, prediction: str) -> float:
    """ROUGE-L F1 from the longest common subsequence of word tokens."""
    ref, pred = _tokens(reference), _tokens(prediction)
    if not ref or not pred:
        return float(ref == pred)
    prev = [0] * (len(pred) + 1)
    for a in ref:
        cur = [0]
        for j, b in enumerate(pred):
            cur.append(prev[j] + 1 if a == b else max(prev[j + 1], cur[j]))
        prev = cur
    lcs = prev[-1]
    if not lcs:
        return 0.0
    p, r = lcs / len(pred), lcs / len(ref)
    return 2 * p * r / (p + r)
