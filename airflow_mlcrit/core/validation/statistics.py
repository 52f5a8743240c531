"""Dataset statistics in one streaming pass over pyarrow record batches.

Memory is bounded by the batch size plus fixed-size sketches per column (a uniform sample for
quantiles and histograms, exact value counts up to a bound and then HyperLogLog), except the
exact duplicate counts, which keep one 8-byte hash per row up to ``max_exact_rows``.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from airflow_mlcrit.core.configbase import Config, require
from airflow_mlcrit.core.validation.sketches import (
    DistinctCounter,
    HyperLogLog,
    Moments,
    Reservoir,
    hash_array,
    mix64,
)
from airflow_mlcrit.core.validation.textchecks import word_counts
from airflow_mlcrit.exceptions import DataValidationError, some

STATISTICS_FILE = "statistics.json"
STATISTICS_FORMAT = 1


@dataclass
class StatisticsConfig(Config):
    """What to profile and how (all fields JSON-able, so operators can template them)."""

    source: str = field(metadata={"help": "local path, s3:// URI or dataset artifact reference"})
    format: Literal["auto", "parquet", "csv", "jsonl"] = field(default="auto", metadata={"help": "input format"})
    columns: list[str] | None = field(default=None, metadata={"help": "profile only these columns"})
    text_columns: list[str] | None = field(
        default=None, metadata={"help": "string columns profiled as free text; None = detect from the first batch"}
    )
    categorical_columns: list[str] | None = field(
        default=None, metadata={"help": "string columns always profiled as categories"}
    )
    batch_size: int = field(default=65_536, metadata={"help": "rows per record batch: bounds memory"})
    top_k: int = field(default=20, metadata={"help": "most frequent values kept per categorical column"})
    quantiles: list[float] = field(
        default_factory=lambda: [0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99],
        metadata={"help": "quantiles reported per numeric column, each in [0, 1]"},
    )
    histogram_bins: int = field(default=20, metadata={"help": "equal-width bins of numeric histograms"})
    sample_size: int = field(default=10_000, metadata={"help": "uniform sample per numeric column (quantiles, drift)"})
    max_columns: int = field(
        default=10_000,
        metadata={"help": "a wider table is refused before any work: profile a subset with `columns`, or raise it"},
    )
    max_exact_distinct: int = field(default=100_000, metadata={"help": "exact distinct counts up to this many values"})
    max_exact_rows: int = field(default=20_000_000, metadata={"help": "exact duplicate counts up to this many rows"})
    max_domain_values: int = field(default=1_000, metadata={"help": "full frequency table kept up to this many values"})
    tokenizer: str | None = field(default=None, metadata={"help": "HF tokenizer path for token-length statistics"})
    seed: int = field(default=0, metadata={"help": "seed of the sampling: same data + seed = same statistics"})
    engine: Literal["arrow", "beam"] = field(
        default="arrow",
        metadata={"help": "arrow: one process, streaming; beam: a Beam pipeline over file/row-group splits"},
    )
    runner: str | None = field(default=None, metadata={"help": "Beam runner (engine='beam'); default FnApiRunner"})
    pipeline_options: dict[str, Any] = field(
        default_factory=dict, metadata={"help": "Beam pipeline options, passed verbatim as --key=value"}
    )

    def __post_init__(self) -> None:
        require(isinstance(self.source, str) and bool(self.source), "StatisticsConfig.source must name the data")
        require(self.batch_size >= 1, f"StatisticsConfig.batch_size must be >= 1, got {self.batch_size}")
        require(self.sample_size >= 10, f"StatisticsConfig.sample_size must be >= 10, got {self.sample_size}")
        require(self.histogram_bins >= 1, f"StatisticsConfig.histogram_bins must be >= 1, got {self.histogram_bins}")
        require(
            all(0 <= q <= 1 for q in self.quantiles), f"StatisticsConfig.quantiles must lie in [0, 1]: {self.quantiles}"
        )
        require(
            self.engine in ("arrow", "beam"), f"StatisticsConfig.engine must be 'arrow' or 'beam', got {self.engine!r}"
        )
        overlap = set(self.text_columns or ()) & set(self.categorical_columns or ())
        require(not overlap, f"columns {sorted(overlap)} are in both text_columns and categorical_columns")


def _histogram(sample: np.ndarray, lo: float, hi: float, bins: int) -> tuple[np.ndarray, np.ndarray]:
    try:
        return np.histogram(sample, bins=bins, range=(lo, hi))
    except ValueError:
        # A span too wide (overflows) or too narrow (fewer floats than bins, e.g. one value near
        # 1e15) for numpy: the same equal-width edges, computed without overflow, duplicates merged.
        t = np.linspace(0.0, 1.0, bins + 1)
        edges = np.unique(lo * (1 - t) + hi * t)
        edges = edges if len(edges) > 1 else np.array([lo, hi])
        index = np.clip(np.searchsorted(edges, sample, side="right") - 1, 0, len(edges) - 2)
        return np.bincount(index, minlength=len(edges) - 1), edges


def _numeric_summary(moments: Moments, reservoir: Reservoir, cfg: StatisticsConfig) -> dict[str, Any]:
    if moments.n == 0:
        return {"count": 0}
    sample = reservoir.sorted()
    qs = np.quantile(sample, cfg.quantiles) if len(sample) else []
    counts, edges = _histogram(sample, moments.min, moments.max, cfg.histogram_bins)
    scale = moments.n / len(sample)
    return {
        "count": moments.n,
        "min": moments.min,
        "max": moments.max,
        "mean": moments.mean,
        "std": moments.std,
        "quantiles": {str(q): float(v) for q, v in zip(cfg.quantiles, qs, strict=True)},
        "histogram": {
            "edges": edges.tolist(),
            "counts": [round(c * scale) for c in counts.tolist()],
            "estimated": scale != 1,
        },
        "sample": sample.tolist(),
    }


class _Numeric:
    kind = "numeric"

    def __init__(self, cfg: StatisticsConfig, seed: int):
        self.moments, self.reservoir = Moments(), Reservoir(cfg.sample_size, seed)
        self.nan = self.inf = self.zeros = 0
        self.cfg = cfg

    def add(self, arr: Any) -> None:
        import pyarrow as pa

        # unsafe: integers beyond 2**53 round to the nearest float instead of raising
        values = arr.cast(pa.float64(), safe=False).drop_null().to_numpy(zero_copy_only=False)
        nan = np.isnan(values)
        inf = np.isinf(values)
        self.nan += int(nan.sum())
        self.inf += int(inf.sum())
        finite = values[~(nan | inf)]
        self.zeros += int((finite == 0).sum())
        self.moments.add(finite)
        self.reservoir.add(finite)

    def merge(self, other: _Numeric) -> None:
        self.nan, self.inf, self.zeros = self.nan + other.nan, self.inf + other.inf, self.zeros + other.zeros
        self.moments.merge(other.moments)
        self.reservoir.merge(other.reservoir)

    def result(self) -> dict[str, Any]:
        return {
            "nan": self.nan,
            "inf": self.inf,
            "zeros": self.zeros,
            **_numeric_summary(self.moments, self.reservoir, self.cfg),
        }


class _Categorical:
    kind = "categorical"

    def __init__(self, cfg: StatisticsConfig, seed: int):
        self.cfg = cfg
        self.counts: dict[Any, int] = {}
        self.exact = True
        self.hll: HyperLogLog | None = None
        self.lengths = Moments()

    def add(self, arr: Any) -> None:
        import pyarrow as pa
        import pyarrow.compute as pc

        arr = arr.drop_null()
        if pa.types.is_dictionary(arr.type):
            arr = arr.dictionary_decode()
        if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
            self.lengths.add(pc.utf8_length(arr).to_numpy(zero_copy_only=False).astype(np.float64))
        vc = pc.value_counts(arr)
        for value, count in zip(vc.field("values").to_pylist(), vc.field("counts").to_numpy(), strict=True):
            self.counts[value] = self.counts.get(value, 0) + int(count)
        if self.hll is not None:
            self.hll.add_hashes(hash_array(arr))
        self._bound()

    def _bound(self) -> None:
        import pyarrow as pa

        if len(self.counts) > self.cfg.max_exact_distinct:
            self._to_estimate(pa)
            keep = sorted(self.counts.items(), key=lambda kv: -kv[1])[: self.cfg.max_exact_distinct // 2]
            self.counts = dict(keep)  # lossy counting: frequent values survive, rare ones drop

    def _to_estimate(self, pa: Any) -> None:
        if self.hll is None:  # switch to an estimate; seed it with every value seen so far
            self.hll = HyperLogLog()
            self.hll.add_hashes(hash_array(pa.array(list(self.counts))))
        self.exact = False

    def merge(self, other: _Categorical) -> None:
        import pyarrow as pa

        if not (self.exact and other.exact):
            self._to_estimate(pa)
            other._to_estimate(pa)
            self.hll.merge(other.hll)  # type: ignore[union-attr]
        for value, count in other.counts.items():
            self.counts[value] = self.counts.get(value, 0) + count
        self.lengths.merge(other.lengths)
        self._bound()

    def result(self) -> dict[str, Any]:
        ordered = sorted(self.counts.items(), key=lambda kv: (-kv[1], str(kv[0])))
        out: dict[str, Any] = {
            "distinct": len(self.counts) if self.exact else self.hll.estimate(),  # type: ignore[union-attr]
            "distinct_exact": self.exact,
            "top": [[_jsonable(v), c] for v, c in ordered[: self.cfg.top_k]],
        }
        if self.exact and len(ordered) <= self.cfg.max_domain_values:
            out["frequencies"] = {str(_jsonable(v)): c for v, c in ordered}
        if self.lengths.n:
            out["avg_length"] = self.lengths.mean
        return out


class _Text:
    kind = "text"

    def __init__(self, cfg: StatisticsConfig, seed: int):
        self.cfg = cfg
        self.chars = (Moments(), Reservoir(cfg.sample_size, seed))
        self.words = (Moments(), Reservoir(cfg.sample_size, seed + 1))
        self.tokens = (Moments(), Reservoir(cfg.sample_size, seed + 2)) if cfg.tokenizer else None
        self.empty = self.blank = 0
        self.distinct = DistinctCounter(cfg.max_exact_rows)
        self._tokenizer = None

    def add(self, arr: Any) -> None:
        import pyarrow.compute as pc

        arr = arr.drop_null()
        chars = pc.utf8_length(arr).to_numpy(zero_copy_only=False).astype(np.float64)
        words = word_counts(arr).astype(np.float64)
        self.empty += int((chars == 0).sum())
        self.blank += int(((words == 0) & (chars > 0)).sum())
        for (m, r), values in ((self.chars, chars), (self.words, words)):
            m.add(values)
            r.add(values)
        if self.tokens is not None:
            lengths = np.asarray([len(ids) for ids in self._tokenize(arr.to_pylist())], dtype=np.float64)
            self.tokens[0].add(lengths)
            self.tokens[1].add(lengths)
        self.distinct.add(hash_array(arr))

    def merge(self, other: _Text) -> None:
        for mine, theirs in ((self.chars, other.chars), (self.words, other.words), (self.tokens, other.tokens)):
            if mine is not None and theirs is not None:
                mine[0].merge(theirs[0])
                mine[1].merge(theirs[1])
        self.empty, self.blank = self.empty + other.empty, self.blank + other.blank
        self.distinct.merge(other.distinct)

    def _tokenize(self, texts: list[str]) -> list[list[int]]:
        if self._tokenizer is None:
            from airflow_mlcrit.core.validation.textchecks import load_tokenizer

            self._tokenizer = load_tokenizer(self.cfg.tokenizer)
        return self._tokenizer(texts, add_special_tokens=False)["input_ids"]

    def result(self) -> dict[str, Any]:
        distinct = self.distinct.count()
        out = {
            "chars": _numeric_summary(*self.chars, self.cfg),
            "words": _numeric_summary(*self.words, self.cfg),
            "empty": self.empty,
            "whitespace_only": self.blank,
            "distinct": distinct,
            "duplicates": self.distinct.rows - distinct,
            "duplicates_exact": self.distinct.exact,
        }
        if self.tokens is not None:
            out["tokens"] = _numeric_summary(*self.tokens, self.cfg)
        return out


class _Other:
    kind = "other"

    def __init__(self, cfg: StatisticsConfig, seed: int):
        self.distinct = DistinctCounter(cfg.max_exact_rows)

    def add(self, arr: Any) -> None:
        self.distinct.add(hash_array(arr.drop_null()))

    def merge(self, other: _Other) -> None:
        self.distinct.merge(other.distinct)

    def result(self) -> dict[str, Any]:
        return {"distinct": self.distinct.count(), "distinct_exact": self.distinct.exact}


def _jsonable(value: Any) -> Any:
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    return str(value)


def classify(field_: Any, first: Any, cfg: StatisticsConfig) -> str:
    """numeric | categorical | text | other, from the Arrow type (and, for strings, the first batch)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    t = field_.type
    if pa.types.is_dictionary(t):
        t = t.value_type
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        return "numeric"
    if pa.types.is_boolean(t):
        return "categorical"
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        if field_.name in (cfg.text_columns or ()):
            return "text"
        if field_.name in (cfg.categorical_columns or ()) or cfg.text_columns is not None:
            return "categorical"
        col = first.column(field_.name).drop_null()
        if pa.types.is_dictionary(col.type):
            return "categorical"
        if len(col) == 0:
            return "categorical"
        mean_len = pc.mean(pc.utf8_length(col)).as_py()
        distinct_ratio = len(pc.unique(col)) / len(col)
        return "text" if mean_len >= 20 and distinct_ratio > 0.2 else "categorical"
    return "other"


_ACCUMULATORS = {"numeric": _Numeric, "categorical": _Categorical, "text": _Text, "other": _Other}


class TableProfiler:
    """Feed record batches with :meth:`add`; :meth:`result` returns the statistics dict."""

    def __init__(self, cfg: StatisticsConfig, kinds: dict[str, str] | None = None, split: int = 0):
        """``kinds`` fixes each column's kind up front (parallel splits must agree); ``split``
        decorrelates the sampling of splits profiled in parallel."""
        self.cfg = cfg
        self.split = split
        self.rows = 0
        self.batches = 0
        self.schema = None
        self.columns: dict[str, Any] = {}
        self.kinds: dict[str, str] = dict(kinds or {})
        self.missing: dict[str, int] = {}
        self.duplicates = DistinctCounter(cfg.max_exact_rows)
        self.started = time.monotonic()

    def add(self, batch: Any) -> np.ndarray:
        """Profile one batch; returns its row hashes (callers reuse them for duplicate checks)."""
        if self.schema is None:
            check_width(batch.schema.names, self.cfg.max_columns)
            self.schema = batch.schema
            for i, f in enumerate(batch.schema):
                kind = self.kinds.get(f.name) or classify(f, batch, self.cfg)
                self.kinds[f.name] = kind
                seed = self.cfg.seed + 7919 * i + 1_000_003 * self.split
                self.columns[f.name] = _ACCUMULATORS[kind](self.cfg, seed)
                self.missing[f.name] = 0
        self.rows += batch.num_rows
        self.batches += 1
        row_hash = np.zeros(batch.num_rows, dtype=np.uint64)
        for name, acc in self.columns.items():
            col = batch.column(name)
            self.missing[name] += col.null_count
            acc.add(col)
            with np.errstate(over="ignore"):
                col_hash = hash_array(col, low_cardinality=self.kinds[name] == "categorical")
                row_hash = mix64(row_hash * np.uint64(1_000_003) + col_hash)
        self.duplicates.add(row_hash)
        return row_hash

    def merge(self, other: TableProfiler) -> TableProfiler:
        """Fold in the profile of another split of the same table (Beam's combine step)."""
        if other.schema is None:
            return self
        if self.schema is None:
            return other
        if not self.schema.equals(other.schema):
            raise DataValidationError("splits of one table have different schemas; cannot merge their statistics")
        self.rows += other.rows
        self.batches += other.batches
        for name, acc in self.columns.items():
            self.missing[name] += other.missing[name]
            acc.merge(other.columns[name])
        self.duplicates.merge(other.duplicates)
        return self

    def result(self, **extra: Any) -> dict[str, Any]:
        distinct = self.duplicates.count()
        columns = {}
        for name, acc in self.columns.items():
            col = columns[name] = {
                "kind": self.kinds[name],
                "arrow_type": str(self.schema.field(name).type),  # type: ignore[union-attr]
                "rows": self.rows,
                "missing": self.missing[name],
                **acc.result(),
            }
            col["identifier"] = is_identifier(name, col)
            if col["identifier"]:  # one row per value: a distribution of it means nothing
                for key in ("frequencies", "top", "sample"):
                    col.pop(key, None)
        return {
            "format": STATISTICS_FORMAT,
            "rows": self.rows,
            "batches": self.batches,
            "duplicate_rows": self.rows - distinct,
            "duplicate_rows_exact": self.duplicates.exact,
            "columns": columns,
            "seconds": round(time.monotonic() - self.started, 3),
            **extra,
        }


_ID_NAME = re.compile(r"(?:^|[_\-\s.])(?:id|uuid|guid|key)$|[a-z0-9]Id$|^ID$", re.IGNORECASE)
_ID_MIN_ROWS = 20  # below this many values, "every value distinct" says nothing


def is_identifier(name: str, col: dict[str, Any]) -> bool:
    """Whether a column identifies rows rather than describing them (``message_id``, ``order_key``,
    a UUID): drift and distributions of it are meaningless (each week's ids are new; a PSI of 21.7
    on message_id was reported as drift). A string column whose values are (nearly) all distinct,
    or an integer or string column named like an id whose values are mostly distinct."""
    present = col["rows"] - col["missing"]
    if present < _ID_MIN_ROWS or (col["kind"] == "numeric" and "int" not in col["arrow_type"]):
        return False
    ratio = col.get("distinct", 0) / present if "distinct" in col else None
    if _ID_NAME.search(name) and col["kind"] in ("numeric", "categorical", "text", "other"):
        return ratio is None or ratio >= 0.9
    return col["kind"] in ("categorical", "other") and ratio is not None and ratio >= 0.99


@dataclass
class StatisticsResult:
    statistics: dict[str, Any]
    source: Any  # the TableSource (its manifest, if an artifact, is the lineage parent)

    @property
    def summary(self) -> dict[str, Any]:
        s = self.statistics
        return {
            "rows": s["rows"],
            "columns": len(s["columns"]),
            "duplicate_rows": s["duplicate_rows"],
            "columns_with_missing": sorted(c for c, v in s["columns"].items() if v["missing"]),
        }


def check_width(names: list[str], limit: int) -> None:
    """Refuse a table wider than ``limit`` columns before any per-column work (a 100,000-column
    header took 26 s and a per-column profile nobody asked for)."""
    if len(names) > limit:
        raise DataValidationError(
            f"the table has {len(names):,} columns, more than max_columns={limit:,}: profile only the columns "
            f"you need with `columns=[...]`, or raise max_columns. Columns: {some(names, 10)}"
        )


def compute_statistics(
    cfg: StatisticsConfig | dict[str, Any], *, store: Any = None, output: Any = None
) -> StatisticsResult:
    """Profile ``cfg.source`` in one streaming pass. With ``engine="beam"`` the Beam workers read
    the data where it is (nothing is downloaded here) and report through ``output``, a staged
    version of ``store`` (see beam_stats.compute_with_beam)."""
    from airflow_mlcrit.core.tables import iter_batches, locate_table, open_table

    cfg = StatisticsConfig.coerce(cfg)
    if cfg.engine == "beam":
        from airflow_mlcrit.core.validation.beam_stats import compute_with_beam

        located = locate_table(cfg.source, store=store, fmt=cfg.format)
        extra = {"source": located.description, "source_format": located.fmt, "config": cfg.to_dict()}
        stats = compute_with_beam(cfg, located, cfg.runner, cfg.pipeline_options, store=store, output=output)
        return StatisticsResult({**stats, **extra, "engine": "beam"}, located)
    table = open_table(cfg.source, store=store, fmt=cfg.format)
    try:
        extra = {"source": table.description, "source_format": table.fmt, "config": cfg.to_dict()}
        profiler = TableProfiler(cfg)
        for batch in iter_batches(table, cfg.batch_size, cfg.columns):
            profiler.add(batch)
        return StatisticsResult(profiler.result(**extra, engine="arrow"), table)
    finally:
        table.close()
