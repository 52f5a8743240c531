"""Slicing specs: overall, column values, feature crosses, numeric and time buckets, text predicates.

A spec is a *feature* or a list of features (a cross). A feature is a column name (one slice per
value) or a dict that transforms a column first:

- ``{"column": "ts", "hour_of_day": true}`` / ``{"column": "ts", "day_of_week": true}``
- ``{"column": "amount", "buckets": [0, 10, 100]}`` -> ``[0, 10)``, ``[10, 100)``, ``>= 100``, ``< 0``
- ``{"column": "text", "regex": "refund|return", "name": "mentions_refund"}`` -> true / false
- ``{"column": "text", "length_buckets": [0, 50, 200]}`` (characters)
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from airflow_mlcrit.exceptions import ConfigError, DataValidationError, some

OVERALL = "overall"
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_TRANSFORMS = ("hour_of_day", "day_of_week", "buckets", "regex", "length_buckets")


@dataclass
class Slice:
    name: str  # "overall", "region=CA", "region=CA, hour(ts)=15"
    spec: str  # "overall", "region", "region x hour(ts)"
    rows: np.ndarray  # row indices


def _bucket_labels(edges: list[float]) -> list[str]:
    return [f"< {edges[0]:g}"] + [f"[{a:g}, {b:g})" for a, b in itertools.pairwise(edges)] + [f">= {edges[-1]:g}"]


def feature_name(feature: Any, where: str) -> str:
    """The name a slicing feature gives its slices ("region", "hour(ts)", "len(text)", ...),
    from the spec alone: gate thresholds are checked against it before any data is read."""
    if isinstance(feature, str):
        feature = {"column": feature}
    if not isinstance(feature, dict) or "column" not in feature:
        raise ConfigError(f"{where}: a slicing feature is a column name or a dict with 'column', got {feature!r}")
    kinds = [k for k in _TRANSFORMS if k in feature]
    unknown = sorted(set(feature) - {"column", "name", *_TRANSFORMS})
    if unknown or len(kinds) > 1:
        raise ConfigError(f"{where}: unknown or conflicting slicing options {unknown or kinds}; one of {_TRANSFORMS}")
    column = feature["column"]
    if feature.get("name"):
        return str(feature["name"])
    kind = kinds[0] if kinds else None
    if kind == "hour_of_day":
        return f"hour({column})"
    if kind == "day_of_week":
        return f"weekday({column})"
    if kind == "regex":
        return f"{column}~/{feature['regex']}/"
    if kind == "length_buckets":
        return f"len({column})"
    return str(column)


def spec_name(spec: Any, where: str = "slices") -> str:
    """The ``spec`` of the slices a slicing spec makes ("overall", "region", "channel x daypart")."""
    if spec == OVERALL:
        return OVERALL
    features = spec if isinstance(spec, list) else [spec]
    if not features:
        raise ConfigError(f"{where} is an empty cross")
    return " x ".join(feature_name(f, where) for f in features)


def _feature(frame: Any, feature: Any, where: str) -> tuple[str, np.ndarray]:
    """(feature name, one string key per row)."""
    import pandas as pd

    name = feature_name(feature, where)
    if isinstance(feature, str):
        feature = {"column": feature}
    column = feature["column"]
    if column not in frame.columns:
        raise DataValidationError(
            f"{where}: slice column {column!r} is not in the eval dataset; columns: {some(frame.columns)}"
        )
    values = frame[column]
    kinds = [k for k in _TRANSFORMS if k in feature]
    if not kinds:
        keys = values.astype("string").fillna("<null>").to_numpy(dtype=object)
        return name, keys
    kind = kinds[0]
    if kind in ("hour_of_day", "day_of_week"):
        ts = pd.to_datetime(values, errors="coerce", utc=True)
        if ts.isna().all():
            raise DataValidationError(f"{where}: column {column!r} holds no timestamps for {kind}")
        part = ts.dt.hour if kind == "hour_of_day" else ts.dt.dayofweek
        fmt = (lambda v: f"{int(v):02d}") if kind == "hour_of_day" else (lambda v: _DAYS[int(v)])
        keys = np.array(["<null>" if pd.isna(v) else fmt(v) for v in part], dtype=object)
        return name, keys
    if kind == "regex":
        try:
            pattern = re.compile(feature["regex"])
        except re.error as exc:
            raise ConfigError(f"{where}: invalid regex {feature['regex']!r}: {exc}") from None
        keys = np.array(["true" if isinstance(v, str) and pattern.search(v) else "false" for v in values], dtype=object)
        return name, keys
    edges = sorted(float(e) for e in feature[kind])
    if not edges:
        raise ConfigError(f"{where}: {kind} needs at least one edge")
    if kind == "length_buckets":
        numbers = np.array([len(v) if isinstance(v, str) else np.nan for v in values], dtype=float)
    else:
        numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
    labels = np.array(_bucket_labels(edges), dtype=object)
    keys = labels[np.searchsorted(edges, np.nan_to_num(numbers, nan=-np.inf), side="right")]
    keys[np.isnan(numbers)] = "<null>"
    return name, keys


def build_slices(frame: Any, specs: list[Any]) -> list[Slice]:
    """``overall`` first, then every non-empty slice of each spec, in spec order and sorted keys."""
    out = [Slice(OVERALL, OVERALL, np.arange(len(frame)))]
    for i, spec in enumerate(specs):
        if spec == OVERALL:
            continue
        features = spec if isinstance(spec, list) else [spec]
        if not features:
            raise ConfigError(f"slices[{i}] is an empty cross")
        parts = [_feature(frame, f, f"slices[{i}]") for f in features]
        names = [n for n, _ in parts]
        out.extend(_groups(names, [k for _, k in parts], len(frame)))
    return out


def _groups(names: list[str], keys: list[np.ndarray], n: int) -> list[Slice]:
    """One slice per distinct combination of the features' keys, sorted by slice name. Rows are
    grouped by integer codes (factorized per feature); names are built per group, not per row:
    a 1,000,000-row eval set is sliced in well under a second."""
    import pandas as pd

    if not n:
        return []
    factorized = [pd.factorize(k) for k in keys]
    combined = np.zeros(n, dtype=np.int64)
    for codes, uniques in factorized:  # compacted after each feature: a cross never overflows
        combined = pd.factorize(combined * len(uniques) + codes)[0].astype(np.int64)
    uniq, first, inverse = np.unique(combined, return_index=True, return_inverse=True)
    labels = [
        ", ".join(f"{name}={uniques[codes[row]]}" for name, (codes, uniques) in zip(names, factorized, strict=True))
        for row in first
    ]
    order = np.argsort(inverse, kind="stable")
    rows_of = np.split(order, np.cumsum(np.bincount(inverse, minlength=len(uniq)))[:-1])
    return sorted(
        (Slice(label, " x ".join(names), np.sort(rows)) for label, rows in zip(labels, rows_of, strict=True)),
        key=lambda s: s.name,
    )
