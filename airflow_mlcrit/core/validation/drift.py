"""Distribution distances between two statistics: drift (vs the previous span) and skew (vs training)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

_EPS = 1e-6


def _js(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon divergence, base 2 (0 = identical, 1 = disjoint)."""
    m = (p + q) / 2

    def kl(a: np.ndarray, b: np.ndarray) -> float:
        nz = a > 0
        return float(np.sum(a[nz] * np.log2(a[nz] / b[nz])))

    return 0.5 * kl(p, m) + 0.5 * kl(q, m)


def _psi(p: np.ndarray, q: np.ndarray) -> float:
    """Population stability index; empty bins floored at 1e-6."""
    p, q = np.maximum(p, _EPS), np.maximum(q, _EPS)
    return float(np.sum((q - p) * np.log(q / p)))


def numeric_distance(baseline_sample: list[float], current_sample: list[float], bins: int = 10) -> dict[str, Any]:
    """Histograms of both samples on the baseline's quantile edges, with JS divergence and PSI."""
    base = np.asarray(baseline_sample, dtype=np.float64)
    cur = np.asarray(current_sample, dtype=np.float64)
    if len(base) == 0 or len(cur) == 0:
        return {"js_divergence": None, "psi": None, "edges": [], "baseline": [], "current": []}
    edges = np.unique(np.quantile(base, np.linspace(0, 1, bins + 1)[1:-1]))
    counts_b = np.bincount(np.searchsorted(edges, base, side="right"), minlength=len(edges) + 1)
    counts_c = np.bincount(np.searchsorted(edges, cur, side="right"), minlength=len(edges) + 1)
    p, q = counts_b / counts_b.sum(), counts_c / counts_c.sum()
    return {
        "js_divergence": _js(p, q),
        "psi": _psi(p, q),
        "edges": edges.tolist(),
        "baseline": counts_b.tolist(),
        "current": counts_c.tolist(),
    }


def categorical_distance(baseline: dict[str, int], current: dict[str, int]) -> dict[str, Any]:
    """L-infinity distance between the value frequencies (TFDV's categorical drift measure), and PSI."""
    values = sorted(set(baseline) | set(current))
    b = np.asarray([baseline.get(v, 0) for v in values], dtype=np.float64)
    c = np.asarray([current.get(v, 0) for v in values], dtype=np.float64)
    if b.sum() == 0 or c.sum() == 0:
        return {"linf": None, "psi": None, "worst_value": None}
    p, q = b / b.sum(), c / c.sum()
    worst = int(np.argmax(np.abs(p - q)))
    return {"linf": float(np.abs(p - q).max()), "psi": _psi(p, q), "worst_value": values[worst]}


def frequencies(column_stats: dict[str, Any]) -> dict[str, int]:
    """Exact frequencies when the statistics kept them, else the top values (an approximation)."""
    if "frequencies" in column_stats:
        return dict(column_stats["frequencies"])
    return {str(v): c for v, c in column_stats.get("top", [])}


def compare(baseline: dict[str, Any], current: dict[str, Any], column: str) -> dict[str, Any] | None:
    """The distance for one column present in both statistics, by its kind; None if not comparable."""
    b, c = baseline["columns"].get(column), current["columns"].get(column)
    if b is None or c is None or b["kind"] != c["kind"]:
        return None
    if b.get("identifier") or c.get("identifier"):  # new ids every week are not drift
        return None
    if b["kind"] == "numeric":
        return {"measure": "js_divergence", **numeric_distance(b.get("sample", []), c.get("sample", []))}
    if b["kind"] == "categorical":
        return {"measure": "linf", **categorical_distance(frequencies(b), frequencies(c))}
    if b["kind"] == "text":
        return {
            "measure": "js_divergence",
            **numeric_distance(b["words"].get("sample", []), c["words"].get("sample", [])),
        }
    return None


def finite(x: float | None) -> bool:
    return x is not None and not math.isnan(x)


def exceeded(
    reference: dict[str, Any],
    current: dict[str, Any],
    columns: Iterable[str],
    thresholds: dict[str, float],
    column_thresholds: dict[str, dict[str, float]] | None = None,
) -> list[dict[str, Any]]:
    """Every column whose distance from ``reference`` is above its limit: the column kind's own
    measure (JS divergence for numbers and text, L-infinity for categories) and PSI, each where a
    limit is set (``thresholds``, overridden per column by ``column_thresholds``). One entry per
    measure over its limit: ``{column, measure, value, limit}``."""
    out = []
    for column in columns:
        distance = compare(reference, current, column)
        if distance is None:
            continue
        limits = {**thresholds, **(column_thresholds or {}).get(column, {})}
        for measure in (distance["measure"], "psi"):
            limit, value = limits.get(measure), distance.get(measure)
            if limit is not None and finite(value) and value > limit:
                out.append({"column": column, "measure": measure, "value": value, "limit": limit})
    return out
