"""Batch operations on pyarrow RecordBatches: the per-element work of the Beam pipeline.

Elements are Arrow record batches, not single records, so Beam's per-element overhead is paid
once per thousands of rows and the work runs in Arrow's C++ kernels or batched tokenizer calls.
Every function is deterministic in every process (hashes: pandas' fixed-key SipHash).
"""

from __future__ import annotations

from typing import Any

import numpy as np

DEDUP_BUCKETS = 64


def normalize_array(arr: Any, lowercase: bool = False) -> Any:
    """Unicode NFKC, whitespace runs -> one space, trimmed (and lowercased)."""
    import pyarrow.compute as pc

    out = pc.utf8_normalize(arr, form="NFKC")
    out = pc.utf8_trim_whitespace(pc.replace_substring_regex(out, r"\s+", " "))
    return pc.utf8_lower(out) if lowercase else out


def replace_column(batch: Any, name: str, values: Any) -> Any:
    import pyarrow as pa

    if name in batch.schema.names:
        i = batch.schema.get_field_index(name)
        return batch.set_column(i, pa.field(name, values.type), values)
    return batch.append_column(pa.field(name, values.type), values)


def text_hashes(arr: Any) -> np.ndarray:
    from airflow_mlcrit.core.validation.sketches import hash_array

    return hash_array(arr)


def row_hashes(batch: Any) -> np.ndarray:
    """One 64-bit hash per row over every column (total order for picking dedup survivors)."""
    from airflow_mlcrit.core.validation.sketches import hash_array, mix64

    h = np.zeros(batch.num_rows, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for col in batch.columns:
            h = mix64(h * np.uint64(1_000_003) + hash_array(col))
    return h


def content_hashes(batch: Any) -> np.ndarray:
    """Like :func:`row_hashes`, for any column type: nested values (token id lists) are hashed
    through their JSON text. Orders the rows of an output shard by content."""
    import json

    import pyarrow as pa

    from airflow_mlcrit.core.validation.sketches import hash_array, mix64

    h = np.zeros(batch.num_rows, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for col in batch.columns:
            if pa.types.is_nested(col.type):
                col = pa.array([json.dumps(v) for v in col.to_pylist()], pa.string())
            h = mix64(h * np.uint64(1_000_003) + hash_array(col))
    return h


def split_points(keys: Any, seed: int) -> np.ndarray:
    """Uniform [0, 1) per key, a pure function of (seed, key)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from airflow_mlcrit.core.validation.sketches import hash_array, mix64

    as_text = (
        keys if pa.types.is_string(keys.type) or pa.types.is_large_string(keys.type) else pc.cast(keys, pa.string())
    )
    with np.errstate(over="ignore"):
        h = mix64(hash_array(as_text) + np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15))
    return (h >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def split_indices(points: np.ndarray, fractions: list[float]) -> np.ndarray:
    edges = np.cumsum(fractions)[:-1]
    return np.searchsorted(edges, points, side="right")


def take(batch: Any, mask: np.ndarray) -> Any:
    import pyarrow as pa

    return batch.filter(pa.array(mask))


def dedup_bucket(rows: list[Any]) -> Any:
    """Concatenated sub-batches of one hash bucket -> one batch without duplicates of ``_h``.
    The survivor of each group is the row with the smallest full-row hash (same on every runner)."""
    import pyarrow as pa

    table = pa.Table.from_batches(rows).combine_chunks()
    if table.num_rows == 0:
        return None
    h = table.column("_h").to_numpy()
    rh = table.column("_rh").to_numpy()
    order = np.lexsort((rh, h))
    first = np.ones(len(order), dtype=bool)
    first[1:] = h[order][1:] != h[order][:-1]
    keep = np.sort(order[first])
    out = table.take(pa.array(keep)).drop_columns(["_h", "_rh"])
    return out.to_batches()[0] if out.num_rows else None
