"""Mergeable, bounded-memory summaries fed batch by batch: the streaming core of statistics."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
NULL_HASH = np.uint64(0x9E3779B97F4A7C15)


def mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: spreads any uint64 keys (e.g. float bits) over all 64 bits."""
    x = x.astype(np.uint64, copy=True)
    with np.errstate(over="ignore"):
        x ^= x >> np.uint64(30)
        x *= _M1
        x ^= x >> np.uint64(27)
        x *= _M2
        x ^= x >> np.uint64(31)
    return x


def count_distinct(hashes: list[np.ndarray]) -> int:
    """Distinct values among 64-bit hashes (sort + count: far faster than np.unique here)."""
    if not hashes:
        return 0
    s = np.sort(np.concatenate(hashes))
    return int(1 + np.count_nonzero(s[1:] != s[:-1])) if len(s) else 0


def hash_array(arr: Any, low_cardinality: bool = False) -> np.ndarray:
    """64-bit hash of every value of a pyarrow array (nulls hash to one constant).

    ``low_cardinality``: dictionary-encode strings first, so each distinct value is hashed once.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    if low_cardinality and (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        arr = pc.dictionary_encode(arr)
    if pa.types.is_dictionary(arr.type):
        indices = arr.indices.fill_null(0).to_numpy(zero_copy_only=False)
        return _with_nulls(hash_array(arr.dictionary)[indices], arr)
    if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type) or pa.types.is_binary(arr.type):
        import pandas as pd

        values = arr.to_numpy(zero_copy_only=False)
        return _with_nulls(pd.util.hash_array(values.astype(object), categorize=False), arr)
    if pa.types.is_boolean(arr.type):
        bits = arr.fill_null(False).to_numpy(zero_copy_only=False).astype(np.uint64)
    elif pa.types.is_floating(arr.type):
        vals = arr.cast(pa.float64()).fill_null(0.0).to_numpy(zero_copy_only=False)
        bits = (vals + 0.0).view(np.uint64)  # +0.0 folds -0.0 into 0.0
    elif pa.types.is_integer(arr.type) or pa.types.is_temporal(arr.type):
        bits = pc.cast(arr, pa.int64(), safe=False).fill_null(0).to_numpy(zero_copy_only=False).view(np.uint64)
    else:
        import pandas as pd

        return _with_nulls(pd.util.hash_array(np.asarray(arr.to_pylist(), dtype=object).astype(str)), arr)
    return _with_nulls(mix64(bits), arr)


def _with_nulls(hashes: np.ndarray, arr: Any) -> np.ndarray:
    if arr.null_count:
        hashes = hashes.copy()
        hashes[arr.is_null().to_numpy(zero_copy_only=False)] = NULL_HASH
    return hashes


class HyperLogLog:
    """Distinct-count estimate with 2**p registers (p=14: about 0.8% standard error)."""

    def __init__(self, p: int = 14):
        if not 11 <= p <= 18:
            raise ValueError(f"HyperLogLog precision p must be in 11..18, got {p}")
        self.p = p
        self.registers = np.zeros(1 << p, dtype=np.uint8)

    def add_hashes(self, hashes: np.ndarray) -> None:
        if len(hashes) == 0:
            return
        idx = (hashes >> np.uint64(64 - self.p)).astype(np.int64)
        rest_bits = 64 - self.p
        rest = hashes & np.uint64((1 << rest_bits) - 1)
        # floor(log2(rest)) = exponent - 1; exact because rest < 2**(64 - p) <= 2**53.
        _, exponent = np.frexp(rest.astype(np.float64))
        rank = np.where(rest == 0, rest_bits + 1, rest_bits - (exponent - 1)).astype(np.uint8)
        np.maximum.at(self.registers, idx, rank)

    def merge(self, other: HyperLogLog) -> None:
        np.maximum(self.registers, other.registers, out=self.registers)

    def estimate(self) -> int:
        m = len(self.registers)
        alpha = 0.7213 / (1 + 1.079 / m)
        raw = alpha * m * m / float(np.sum(np.power(2.0, -self.registers.astype(np.float64))))
        zeros = int(np.count_nonzero(self.registers == 0))
        if raw <= 2.5 * m and zeros:
            return round(m * math.log(m / zeros))
        return round(raw)


class DistinctCounter:
    """Exact distinct count of 64-bit hashes up to ``max_exact`` rows seen, then HyperLogLog."""

    def __init__(self, max_exact: int):
        self.max_exact = max_exact
        self.rows = 0
        self.hashes: list[np.ndarray] = []
        self.hll: HyperLogLog | None = None

    def add(self, hashes: np.ndarray) -> None:
        self.rows += len(hashes)
        if self.hll is None and self.rows <= self.max_exact:
            self.hashes.append(hashes)
            return
        self._to_estimate()
        self.hll.add_hashes(hashes)  # type: ignore[union-attr]

    def _to_estimate(self) -> None:
        if self.hll is None:
            self.hll = HyperLogLog()
            for h in self.hashes:
                self.hll.add_hashes(h)
            self.hashes = []

    def merge(self, other: DistinctCounter) -> None:
        if self.hll is None and other.hll is None and self.rows + other.rows <= self.max_exact:
            self.hashes += other.hashes
            self.rows += other.rows
            return
        self._to_estimate()
        self.rows += other.rows
        if other.hll is not None:
            self.hll.merge(other.hll)  # type: ignore[union-attr]
        for h in other.hashes:
            self.hll.add_hashes(h)  # type: ignore[union-attr]

    @property
    def exact(self) -> bool:
        return self.hll is None

    def count(self) -> int:
        return count_distinct(self.hashes) if self.hll is None else self.hll.estimate()


class Reservoir:
    """A uniform sample of at most ``k`` values (priority sampling: keep the k smallest random keys)."""

    def __init__(self, k: int, seed: int = 0):
        self.k = k
        # Salted so the sampling keys never replay a user's own default_rng(seed) stream.
        self.rng = np.random.default_rng([seed, 0x6D6C6372])
        self.keys = np.empty(0)
        self.values = np.empty(0)

    def add(self, values: np.ndarray) -> None:
        if len(values) == 0:
            return
        keys = np.concatenate([self.keys, self.rng.random(len(values))])
        vals = np.concatenate([self.values, values.astype(np.float64, copy=False)])
        if len(keys) > self.k:
            keep = np.argpartition(keys, self.k - 1)[: self.k]
            keys, vals = keys[keep], vals[keep]
        self.keys, self.values = keys, vals

    def merge(self, other: Reservoir) -> None:
        """Union of two samples drawn with independent keys: still a uniform sample (priority sampling)."""
        keys = np.concatenate([self.keys, other.keys])
        vals = np.concatenate([self.values, other.values])
        if len(keys) > self.k:
            keep = np.argpartition(keys, self.k - 1)[: self.k]
            keys, vals = keys[keep], vals[keep]
        self.keys, self.values = keys, vals

    def sorted(self) -> np.ndarray:
        return np.sort(self.values)


class Moments:
    """count / mean / M2 merged with Chan et al.'s parallel update (numerically stable)."""

    def __init__(self) -> None:
        self.n = 0
        self.mean = 0.0
        self.m2 = 0.0
        self.min = math.inf
        self.max = -math.inf

    def add(self, values: np.ndarray) -> None:
        n_b = len(values)
        if n_b == 0:
            return
        mean_b = float(values.mean())
        m2_b = float(((values - mean_b) ** 2).sum())
        n = self.n + n_b
        delta = mean_b - self.mean
        self.mean += delta * n_b / n
        self.m2 += m2_b + delta * delta * self.n * n_b / n
        self.n = n
        self.min = min(self.min, float(values.min()))
        self.max = max(self.max, float(values.max()))

    def merge(self, other: Moments) -> None:
        if other.n == 0:
            return
        n = self.n + other.n
        delta = other.mean - self.mean
        self.mean += delta * other.n / n
        self.m2 += other.m2 + delta * delta * self.n * other.n / n
        self.n = n
        self.min, self.max = min(self.min, other.min), max(self.max, other.max)

    @property
    def std(self) -> float | None:
        return math.sqrt(self.m2 / (self.n - 1)) if self.n > 1 else None
