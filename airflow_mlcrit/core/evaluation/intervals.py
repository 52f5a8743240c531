"""Confidence intervals whose coverage is measured, not assumed.

Each method was chosen because it holds its level where gated slices live (small n, accuracy near
0 or 1); the coverage and false-blessing figures come from dev/bench/bench_coverage.py and are in
docs/benchmarks.md. References are in docs/evaluation.md.

- A proportion of one model (accuracy, exact match): Clopper-Pearson, the exact binomial
  interval; its coverage is never below the nominal level.
- The paired difference of two proportions on the same rows: Tango's score interval, a function
  of the discordant counts (candidate right where the baseline is wrong, and the reverse).
- Other confusion-matrix metrics (F1, precision, recall): the union of a Bayesian bootstrap of the
  confusion cells (a Dirichlet posterior with prior mass one row, so it never collapses to zero
  width when every row is right) and a BCa Poisson bootstrap (which corrects the skew of a small
  class). Each alone missed its level in one regime; the union held in every measured cell.
- Every other metric: a Bayesian bootstrap of the rows (Dirichlet weights), percentile.
"""

from __future__ import annotations

from statistics import NormalDist

import numpy as np

CLOPPER_PEARSON = "clopper-pearson"
TANGO = "tango-score"
BAYES_BCA = "bayesian-bootstrap+bca"
BAYES = "bayesian-bootstrap"
BAYES_GROUPS = "bayesian-bootstrap-score-groups+prior"


def z_of(confidence: float) -> float:
    """Two-sided normal quantile: 1.959964 for 0.95."""
    return NormalDist().inv_cdf(1 - (1 - confidence) / 2)


def clopper_pearson(x: np.ndarray | float, n: np.ndarray | float, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """Exact binomial interval of x successes in n trials (vectorized; n > 0)."""
    from scipy.stats import beta

    x, n = np.broadcast_arrays(np.asarray(x, dtype=float), np.asarray(n, dtype=float))
    a = (1 - confidence) / 2
    low = np.where(x > 0, beta.ppf(a, np.maximum(x, 1), n - x + 1), 0.0)
    high = np.where(x < n, beta.ppf(1 - a, x + 1, np.maximum(n - x, 1)), 1.0)
    return low, high


def tango(b: np.ndarray | float, c: np.ndarray | float, n: np.ndarray | float, confidence: float):
    """Tango's (1998) score interval of p1 - p2 for paired proportions: ``b`` pairs where only the
    first is a success, ``c`` where only the second is, ``n`` pairs (vectorized, by bisection:
    the score statistic decreases in the difference)."""
    b, c, n = np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in (b, c, n)))
    z = z_of(confidence)
    estimate = (b - c) / n

    def solve(target: float, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        for _ in range(64):  # 2^-64 of the bracket: below float precision
            mid = (lo + hi) / 2
            right = tango_score(b, c, n, mid) > target
            lo, hi = np.where(right, mid, lo), np.where(right, hi, mid)
        return (lo + hi) / 2

    eps = 1e-12
    low = np.where(estimate <= -1 + eps, -1.0, solve(z, np.full_like(estimate, -1 + eps), estimate))
    high = np.where(estimate >= 1 - eps, 1.0, solve(-z, estimate, np.full_like(estimate, 1 - eps)))
    return low, high


def tango_score(b, c, n, d):
    """Tango's score statistic for H0: p1 - p2 = d (the restricted MLE of p21 in closed form)."""
    q_b = -b - c + (2 * n - b + c) * d
    q_c = -c * d * (1 - d)
    p21 = (np.sqrt(np.maximum(q_b * q_b - 8 * n * q_c, 0.0)) - q_b) / (4 * n)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (b - c - n * d) / np.sqrt(n * (2 * p21 + d * (1 - d)))


def tango_p_value(b: float, c: float, n: float, d: float) -> float:
    """One-sided p-value of H0: p1 - p2 <= d against p1 - p2 > d (Tango's score test)."""
    if d <= -1:
        return 0.0
    if d >= 1:
        return 1.0
    return 1 - NormalDist().cdf(float(tango_score(float(b), float(c), float(n), float(d))))


def holm(p_values: list[float], alpha: float) -> list[bool]:
    """Holm's (1979) step-down procedure: which hypotheses are rejected, family-wise error <= alpha."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    rejected = [False] * len(p_values)
    for rank, i in enumerate(order):
        if p_values[i] > alpha / (len(p_values) - rank):
            break
        rejected[i] = True
    return rejected


def percentile(draws: np.ndarray, confidence: float) -> tuple[float | None, float | None]:
    values = draws[np.isfinite(draws)]
    if not len(values):
        return None, None
    a = (1 - confidence) / 2
    return float(np.quantile(values, a)), float(np.quantile(values, 1 - a))


def bca(
    draws: np.ndarray, point: float, jackknife: np.ndarray, weights: np.ndarray, confidence: float
) -> tuple[float | None, float | None]:
    """Bias-corrected and accelerated percentile interval (Efron 1987). ``jackknife``: the metric
    with one row of each kind left out, ``weights``: how many rows of that kind there are."""
    values = draws[np.isfinite(draws)]
    if not len(values) or point is None or not np.isfinite(point):
        return None, None
    nd = NormalDist()
    share = (np.sum(values < point) + 0.5 * np.sum(values == point)) / len(values)
    z0 = nd.inv_cdf(min(max(share, 0.5 / len(values)), 1 - 0.5 / len(values)))
    ok = np.isfinite(jackknife)
    jack, w = jackknife[ok], weights[ok]
    accel = 0.0
    if w.sum() > 0:
        d = np.sum(w * jack) / w.sum() - jack
        den = 6 * np.sum(w * d**2) ** 1.5
        accel = float(np.sum(w * d**3) / den) if den > 0 else 0.0
    a = (1 - confidence) / 2
    qs = []
    for q in (a, 1 - a):
        zq = nd.inv_cdf(q)
        qs.append(nd.cdf(z0 + (z0 + zq) / (1 - accel * (z0 + zq))))
    return float(np.quantile(values, qs[0])), float(np.quantile(values, qs[1]))


def union(*intervals: tuple[float | None, float | None]) -> tuple[float | None, float | None]:
    lows = [lo for lo, _ in intervals if lo is not None]
    highs = [hi for _, hi in intervals if hi is not None]
    return (min(lows) if lows else None), (max(highs) if highs else None)
