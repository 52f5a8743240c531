"""Pure per-record text operations used by the Beam transforms (deterministic in every process)."""

from __future__ import annotations

import hashlib
import struct

import numpy as np

_MERSENNE = np.uint64((1 << 61) - 1)


def stable_hash(value: str) -> int:
    """64-bit hash that is the same in every process and run (Python's hash() is salted)."""
    return struct.unpack("<Q", hashlib.blake2b(value.encode("utf-8"), digest_size=8).digest())[0]


def _permutations(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng([seed, 0x6D696E68])
    a = rng.integers(1, int(_MERSENNE), n, dtype=np.uint64)
    b = rng.integers(0, int(_MERSENNE), n, dtype=np.uint64)
    return a, b


_PERM_CACHE: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}


def shingles(text: str, size: int = 3) -> set[str]:
    words = text.lower().split()
    if len(words) < size:
        return {" ".join(words)} if words else set()
    return {" ".join(words[i : i + size]) for i in range(len(words) - size + 1)}


def minhash(text: str, num_perm: int = 128, seed: int = 0) -> np.ndarray:
    """MinHash signature over word 3-shingles (universal hashing modulo 2**61 - 1)."""
    key = (num_perm, seed)
    if key not in _PERM_CACHE:
        _PERM_CACHE[key] = _permutations(num_perm, seed)
    a, b = _PERM_CACHE[key]
    sh = shingles(text)
    if not sh:
        return np.full(num_perm, np.iinfo(np.uint64).max, dtype=np.uint64)
    x = np.fromiter((stable_hash(s) & 0xFFFFFFFF for s in sh), dtype=np.uint64, count=len(sh))
    with np.errstate(over="ignore"):
        values = (a[:, None] * x[None, :] + b[:, None]) % _MERSENNE
    return values.min(axis=1)


def lsh_bands(num_perm: int, threshold: float) -> tuple[int, int]:
    """(bands, rows) with bands * rows = num_perm whose S-curve midpoint (1/b)**(1/r) is closest
    to the threshold, leaning towards recall."""
    best = None
    for rows in range(1, num_perm + 1):
        if num_perm % rows:
            continue
        bands = num_perm // rows
        midpoint = (1 / bands) ** (1 / rows)
        score = abs(midpoint - threshold) + (0.02 if midpoint > threshold else 0.0)
        if best is None or score < best[0]:
            best = (score, bands, rows)
    return best[1], best[2]  # type: ignore[index]


def jaccard_estimate(sig_a: np.ndarray, sig_b: np.ndarray) -> float:
    return float(np.mean(sig_a == sig_b))
