"""Power of the gate's paired and one-model accuracy checks, exactly (no simulation): the chance
that a candidate passes a check at a slice size, and the size at which it passes with a stated
power. The model and its assumptions are in :mod:`airflow_mlcrit.core.gating.plan`, which adds
these up over a gate's slices; the gate's own "rows needed" message uses them too."""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np

from airflow_mlcrit.core.evaluation.intervals import clopper_pearson, tango_score, z_of

_TAIL = 1e-12  # probability mass left out of each enumerated binomial
_MAX_D = 400  # discordant counts enumerated one by one; beyond, pooled into this many bins


def _binomial(n: int, p: float) -> tuple[np.ndarray, np.ndarray]:
    """(values, probabilities) of Binomial(n, p), without the two tails of mass below _TAIL."""
    from scipy.stats import binom

    if p <= 0 or p >= 1 or n == 0:
        value = 0 if p <= 0 or n == 0 else n
        return np.array([value]), np.array([1.0])
    lo, hi = int(binom.ppf(_TAIL, n, p)), int(binom.isf(_TAIL, n, p))
    values = np.arange(max(lo - 1, 0), min(hi + 1, n) + 1)
    return values, binom.pmf(values, n, p)


@functools.lru_cache(maxsize=4096)
def change_power(
    n: int, margin: float, *, discordance: float, change: str = "non_inferiority", confidence: float = 0.95
) -> float:
    """Chance that an equivalent candidate passes ``{"change": change, "margin": margin}`` on a
    slice of ``n`` rows where a share ``discordance`` of rows is right for exactly one model."""
    from scipy.stats import binom

    if n <= 0:
        return 0.0
    limit = margin if change == "superiority" else -margin
    discordant, p_d = _binomial(n, discordance)
    if len(discordant) > _MAX_D:  # large n: the power varies smoothly in d; pool d into bins
        edges = np.linspace(0, len(discordant), _MAX_D + 1).astype(int)
        weights = np.add.reduceat(p_d, edges[:-1])
        centres = np.add.reduceat(p_d * discordant, edges[:-1]) / np.where(weights > 0, weights, 1)
        discordant, p_d = np.rint(centres).astype(int), weights
    # b (rows only the candidate gets right) given d discordant rows: Binomial(d, 1/2), enumerated
    # within 8 standard deviations of d/2 for every d at once
    reach = math.ceil(4 * math.sqrt(max(int(discordant.max()), 1))) + 1
    d = discordant[:, None]
    b = np.rint(d / 2).astype(int) + np.arange(-reach, reach + 1)[None, :]
    inside = (b >= 0) & (b <= d)
    p_b = np.where(inside, binom.pmf(np.clip(b, 0, d), d, 0.5), 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        score = tango_score(b.astype(float), (d - b).astype(float), float(n), limit)
    # no discordant row: the difference is 0 with no spread, so it clears any limit below 0
    score = np.where(d == 0, np.inf if limit < 0 else -np.inf, score)
    passes = inside & (score > z_of(confidence))
    return min(float(np.sum(p_d[:, None] * p_b * passes)), 1.0)


def absolute_power(n: int, accuracy: float, threshold: dict[str, Any], confidence: float = 0.95) -> float:
    """Chance that a model of true ``accuracy`` passes an absolute threshold on ``n`` rows."""
    if n <= 0:
        return 0.0
    right, p = _binomial(n, accuracy)
    if threshold.get("use_ci"):
        low, high = clopper_pearson(right, n, confidence)
    else:
        low = high = right / n
    ok = np.ones(len(right), dtype=bool)
    if "min" in threshold:
        ok &= low >= float(threshold["min"])
    if "max" in threshold:
        ok &= high <= float(threshold["max"])
    return float(np.sum(p[ok]))


def rows_needed(power: float, target: float, grow: Any, start: int = 10, cap: int = 10_000_000) -> int | None:
    """The smallest slice size at which ``grow(n)`` (the power at n) reaches ``target``, found by
    doubling then bisection; None if even ``cap`` rows do not."""
    if power >= target:
        return None
    lo, hi = start, start
    while grow(hi) < target:
        lo, hi = hi, hi * 2
        if hi > cap:
            return None
    while hi - lo > max(1, lo // 200):  # to half a percent: power is not exactly monotone in n
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if grow(mid) < target else (lo, mid)
    return hi


def needed_for_change(
    n: int, margin: float, discordance: float, target: float, change: str, confidence: float
) -> int | None:
    """Rows an equivalent candidate needs on a slice to pass a change check with power ``target``."""
    if change == "superiority" or margin <= 0:
        return None  # an equivalent candidate is not better: no size makes it pass (by design)
    return rows_needed(
        change_power(n, margin, discordance=discordance, change=change, confidence=confidence),
        target,
        lambda m: change_power(m, margin, discordance=discordance, change=change, confidence=confidence),
    )


def needed_by_width(n: int, half_width: float, margin: float, target: float, confidence: float) -> int:
    """For metrics without an exact power: the normal approximation. The interval's half-width
    shrinks as 1/sqrt(n); an equivalent candidate clears -margin with power ``target`` once the
    half-width is z * margin / (z + z_power)."""
    from statistics import NormalDist

    z = z_of(confidence)
    z_power = NormalDist().inv_cdf(target)
    return math.ceil(n * (half_width * (z + z_power) / (z * margin)) ** 2)
