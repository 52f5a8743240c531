"""One validation pass: schema conformance, drift and skew, text/LLM checks and a Great
Expectations suite, each under a policy (fail, warn or quarantine)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from airflow_mlcrit.core.configbase import Config, require
from airflow_mlcrit.core.validation import drift as drift_mod
from airflow_mlcrit.core.validation.schema import ENVIRONMENTS, load_schema
from airflow_mlcrit.core.validation.statistics import StatisticsConfig, TableProfiler
from airflow_mlcrit.core.validation.textchecks import PII_KINDS, normalize, pii_masks, word_counts
from airflow_mlcrit.exceptions import ConfigError, DataValidationError

REPORT_FILE = "report.json"
POLICIES = ("fail", "warn", "quarantine")
ROW_CHECKS = ("missing", "domain", "range", "duplicates", "empty_text", "pii", "contamination")
DATASET_CHECKS = ("schema", "drift", "skew", "text_length", "expectations")
CHECKS = ROW_CHECKS + DATASET_CHECKS


@dataclass
class ValidationConfig(Config):
    """What to check and what to do about each finding."""

    source: str = field(metadata={"help": "local path, s3:// URI or dataset artifact reference"})
    format: Literal["auto", "parquet", "csv", "jsonl"] = field(
        default="auto", metadata={"help": "input format; auto: from the file extension"}
    )
    schema: Any = field(default=None, metadata={"help": "schema artifact ref, YAML path or dict; None: no schema"})
    environment: str = field(default="TRAINING", metadata={"help": "schema environment: TRAINING or SERVING"})
    suite: Any = field(default=None, metadata={"help": "GX suite: JSON path, dict, or 'from_schema'"})
    baseline_statistics: Any = field(default=None, metadata={"help": "statistics to measure drift against"})
    training_statistics: Any = field(default=None, metadata={"help": "training statistics to measure skew against"})
    drift_thresholds: dict[str, float] = field(
        default_factory=lambda: {"js_divergence": 0.1, "linf": 0.1},
        metadata={"help": "limits of the drift and skew measures: js_divergence, linf, psi"},
    )
    column_thresholds: dict[str, dict[str, float]] = field(
        default_factory=dict, metadata={"help": "per-column overrides of drift_thresholds"}
    )
    text_columns: list[str] | None = field(default=None, metadata={"help": "None: detect from the data"})
    text_length_limits: dict[str, float] = field(
        default_factory=dict, metadata={"help": "column -> max length at length_percentile"}
    )
    length_unit: Literal["chars", "words", "tokens"] = field(
        default="words", metadata={"help": "unit of text_length_limits"}
    )
    length_percentile: float = field(
        default=0.99, metadata={"help": "percentile of the text length compared with text_length_limits"}
    )
    tokenizer: str | None = field(default=None, metadata={"help": "local HF tokenizer for length_unit='tokens'"})
    pii_columns: list[str] | None = field(default=None, metadata={"help": "None: every text column"})
    contamination_reference: str | None = field(
        default=None, metadata={"help": "dataset (ref or path) whose texts must not appear here, e.g. eval data"}
    )
    max_duplicate_fraction: float = field(default=0.0, metadata={"help": "largest allowed fraction of duplicated rows"})
    max_empty_fraction: float = field(
        default=0.0, metadata={"help": "largest allowed fraction of empty texts per text column"}
    )
    policies: dict[str, str] = field(default_factory=dict, metadata={"help": "check -> fail | warn | quarantine"})
    default_policy: Literal["fail", "warn"] = field(
        default="fail", metadata={"help": "policy of a check that policies does not name"}
    )
    batch_size: int = field(default=65_536, metadata={"help": "rows per streamed batch"})
    max_columns: int = field(
        default=10_000, metadata={"help": "a wider table is refused before any check runs (as in statistics)"}
    )
    sample_row_ids: int = field(default=5, metadata={"help": "failing row ids quoted per finding"})

    def __post_init__(self) -> None:
        require(isinstance(self.source, str) and bool(self.source), "ValidationConfig.source must name the data")
        require(
            self.environment in ENVIRONMENTS,
            f"ValidationConfig.environment must be one of {ENVIRONMENTS}, got {self.environment!r}",
        )
        require(
            self.default_policy in ("fail", "warn"),
            f"ValidationConfig.default_policy must be 'fail' or 'warn', got {self.default_policy!r}",
        )
        measures = ("js_divergence", "linf", "psi")
        for where, limits in [("drift_thresholds", self.drift_thresholds)] + [
            (f"column_thresholds[{c!r}]", v) for c, v in self.column_thresholds.items()
        ]:
            unknown = sorted(set(limits) - set(measures))
            require(not unknown, f"ValidationConfig.{where} has unknown measure(s) {unknown}; measures: {measures}")
        for check, policy in self.policies.items():
            require(check in CHECKS, f"ValidationConfig.policies: unknown check {check!r}; checks: {', '.join(CHECKS)}")
            require(
                policy in POLICIES,
                f"ValidationConfig.policies[{check!r}] must be one of {', '.join(POLICIES)}, got {policy!r}",
            )
            require(
                policy != "quarantine" or check in ROW_CHECKS,
                f"ValidationConfig.policies[{check!r}] = 'quarantine' is not possible: {check} judges the whole "
                f"dataset, not rows; quarantine works for {', '.join(ROW_CHECKS)}",
            )
        require(
            0 < self.length_percentile <= 1,
            f"ValidationConfig.length_percentile must be in (0, 1], got {self.length_percentile}",
        )
        require(
            self.length_unit != "tokens" or bool(self.tokenizer),
            "ValidationConfig.length_unit='tokens' needs tokenizer (a local Hugging Face tokenizer path)",
        )

    def policy(self, check: str) -> str:
        return self.policies.get(check, self.default_policy)

    @property
    def quarantines(self) -> bool:
        return "quarantine" in self.policies.values()


@dataclass
class Finding:
    check: str
    column: str | None
    policy: str
    message: str
    observed: Any = None
    expected: Any = None
    rows: int | None = None
    sample_rows: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None and v != []}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Finding:
        """The inverse of ``to_dict`` (which drops empty fields), for a stored report."""
        return cls(**{"column": None, **data})

    def line(self) -> str:
        where = f" column {self.column!r}" if self.column else ""
        return f"[{self.check}]{where}: {self.message} (observed {self.observed}, expected {self.expected})"


@dataclass
class ValidationResult:
    report: dict[str, Any]
    statistics: dict[str, Any]
    findings: list[Finding]
    clean_path: Path | None = None
    quarantine_path: Path | None = None
    data_docs_dir: Path | None = None

    @property
    def failed(self) -> list[Finding]:
        return [f for f in self.findings if f.policy == "fail"]

    def raise_for_failures(self) -> None:
        if self.failed:
            raise DataValidationError(
                f"data validation failed {len(self.failed)} check(s) on {self.report['source']}:\n  "
                + "\n  ".join(f.line() for f in self.failed)
            )


class _RowFindings:
    """Counts and sample row ids of row-level check hits, per (check, column)."""

    def __init__(self, samples: int):
        self.samples = samples
        self.counts: dict[tuple[str, str | None], int] = {}
        self.rows: dict[tuple[str, str | None], list[int]] = {}

    def add(self, check: str, column: str | None, mask: np.ndarray, offset: int) -> None:
        hits = np.flatnonzero(mask)
        if len(hits) == 0:
            return
        key = (check, column)
        self.counts[key] = self.counts.get(key, 0) + len(hits)
        kept = self.rows.setdefault(key, [])
        kept.extend(int(offset + i) for i in hits[: max(0, self.samples - len(kept))])


def _spec_text(spec: Any, store: Any, filename: str, what: str) -> str:
    """The text of a file given as a path, or of ``filename`` inside an artifact reference."""
    from airflow_mlcrit.core.tables import is_artifact_ref

    if is_artifact_ref(str(spec).split("@")[0]):
        if store is None:
            raise ConfigError(f"{what} {spec!r} is an artifact reference but no artifact store was given")
        text = store.read_bytes(spec, filename).decode()
    else:
        path = Path(spec)
        if not path.is_file():
            raise ConfigError(f"{what} {spec!r} is neither a file nor an artifact reference")
        text = path.read_text()
    return text


def _reference_hashes(ref: str, columns: list[str], store: Any, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted unique (exact, normalised) text hashes of ``columns`` in another dataset."""
    from airflow_mlcrit.core.tables import iter_batches, open_table
    from airflow_mlcrit.core.validation.sketches import hash_array

    exact, norm = [], []
    with open_table(ref, store=store) as table:
        for batch in iter_batches(table, batch_size):
            for col in columns:
                if col in batch.schema.names:
                    arr = batch.column(col).drop_null()
                    exact.append(hash_array(arr))
                    norm.append(hash_array(normalize(arr)))
    if not exact:
        raise ConfigError(f"contamination_reference {ref!r} has none of the text columns {columns}")
    return np.unique(np.concatenate(exact)), np.unique(np.concatenate(norm))


def validate(cfg: ValidationConfig | dict[str, Any], *, store: Any = None, workdir: str | Path) -> ValidationResult:
    """Run every configured check in one pass over the data (plus one for a GX suite)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from airflow_mlcrit.core.tables import iter_batches, open_table
    from airflow_mlcrit.core.validation.sketches import hash_array

    cfg = ValidationConfig.coerce(cfg)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    schema = _load_schema(cfg.schema, store)
    baseline = _load_stats(cfg.baseline_statistics, store, "baseline_statistics")
    training = _load_stats(cfg.training_statistics, store, "training_statistics")
    stats_cfg = StatisticsConfig(
        source=cfg.source,
        text_columns=cfg.text_columns,
        tokenizer=cfg.tokenizer if cfg.length_unit == "tokens" else None,
        batch_size=cfg.batch_size,
        max_columns=cfg.max_columns,
    )
    profiler = TableProfiler(stats_cfg)
    rows = _RowFindings(cfg.sample_row_ids)
    columns = {c["name"]: c for c in schema["columns"]} if schema else {}
    seen_rows: set[int] = set()
    ref_hashes = None
    writers: dict[str, Any] = {}
    quarantined_rows = 0
    offset = 0
    table = open_table(cfg.source, store=store, fmt=cfg.format)
    try:
        for batch in iter_batches(table, cfg.batch_size):
            if offset == 0 and schema:
                _check_declared_types(batch.schema, columns, table.description)
            row_hash = profiler.add(batch)
            n = batch.num_rows
            text_cols = [c for c, k in profiler.kinds.items() if k == "text"]
            hit = _BatchHits(rows, cfg, n, offset)

            for name, spec in columns.items():
                if name not in batch.schema.names or cfg.environment not in spec.get("environments", ENVIRONMENTS):
                    continue
                col = batch.column(name)
                if spec.get("required") and col.null_count:
                    hit("missing", name, col.is_null().to_numpy(zero_copy_only=False))
                if "domain" in spec:
                    domain = pa.array([str(v) for v in spec["domain"]])
                    as_text = pc.cast(col, pa.string()) if not pa.types.is_string(col.type) else col
                    # nulls are the `missing` check's business, not the domain's
                    outside = pc.and_(pc.invert(pc.is_in(as_text, value_set=domain)), pc.is_valid(col))
                    hit("domain", name, outside.to_numpy(zero_copy_only=False))
                if "range" in spec and profiler.kinds.get(name) == "numeric":
                    values = pc.cast(col, pa.float64(), safe=False)  # ints beyond 2**53 round, not raise
                    lo, hi = spec["range"]["min"], spec["range"]["max"]
                    bad = pc.fill_null(pc.or_(pc.less(values, lo), pc.greater(values, hi)), False)
                    hit("range", name, bad.to_numpy(zero_copy_only=False))
            dup = np.zeros(n, dtype=bool)
            for i, h in enumerate(row_hash.tolist()):
                if h in seen_rows:
                    dup[i] = True
                else:
                    seen_rows.add(h)
            hit("duplicates", None, dup)
            for name in text_cols:
                col = batch.column(name)
                hit("empty_text", name, word_counts(col) == 0)
            for name in cfg.pii_columns if cfg.pii_columns is not None else text_cols:
                if name not in batch.schema.names:
                    raise ConfigError(f"pii_columns names {name!r}, which is not a column: {batch.schema.names}")
                for kind, mask in pii_masks(batch.column(name)).items():
                    hit("pii", f"{name}:{kind}", mask)
            if cfg.contamination_reference:
                if ref_hashes is None:
                    ref_hashes = _reference_hashes(cfg.contamination_reference, text_cols, store, cfg.batch_size)
                overlap = np.zeros(n, dtype=bool)
                for name in text_cols:
                    col = batch.column(name)
                    overlap |= np.isin(hash_array(col), ref_hashes[0])
                    overlap |= np.isin(hash_array(normalize(col)), ref_hashes[1])
                hit("contamination", None, overlap)
            if cfg.quarantines:
                q = hit.quarantine
                quarantined_rows += int(q.sum())
                _write(writers, "clean", workdir / "clean.parquet", batch.filter(pa.array(~q)))
                bad = (
                    batch.filter(pa.array(q))
                    .append_column("_mlcrit_row", pa.array(np.flatnonzero(q) + offset, pa.int64()))
                    .append_column("_mlcrit_reasons", pa.array(hit.quarantined_reasons(), pa.string()))
                )
                _write(writers, "quarantine", workdir / "quarantine.parquet", bad)
            offset += n
    finally:
        table.close()
        for w in writers.values():
            w.close()
    stats = profiler.result(source=table.description, source_format=table.fmt, config=stats_cfg.to_dict())
    findings = _row_findings(cfg, rows, stats, columns)
    findings += _dataset_findings(cfg, stats, columns, baseline, training)
    data_docs = None
    expectations: list[dict[str, Any]] = []
    if cfg.suite is not None:
        from airflow_mlcrit.core.validation.gx import run_suite

        expectations, data_docs = run_suite(cfg.suite, cfg.source, store, schema, workdir / "gx", fmt=cfg.format)
        for e in expectations:
            if not e["success"]:
                findings.append(
                    Finding(
                        "expectations",
                        e.get("column"),
                        cfg.policy("expectations"),
                        f"{e['expectation_type']} failed",
                        observed=e.get("observed"),
                        expected=e.get("kwargs"),
                    )
                )
    has_text = any(k == "text" for k in profiler.kinds.values())
    ran = {
        "schema": bool(schema),
        "missing": bool(schema),
        "domain": bool(schema),
        "range": bool(schema),
        "duplicates": True,
        "empty_text": has_text,
        "pii": has_text or bool(cfg.pii_columns),
        "contamination": bool(cfg.contamination_reference),
        "drift": baseline is not None,
        "skew": training is not None,
        "text_length": bool(cfg.text_length_limits),
        "expectations": cfg.suite is not None,
    }
    report = {
        "format": 1,
        "source": table.description,
        "checks_run": [c for c in CHECKS if ran[c]],
        "rows": stats["rows"],
        "status": "FAILED" if any(f.policy == "fail" for f in findings) else "PASSED",
        "findings": [f.to_dict() for f in findings],
        "expectations": expectations,
        "environment": cfg.environment,
        "config": cfg.to_dict(),
    }
    if cfg.quarantines:
        report["quarantine"] = {
            "input_rows": stats["rows"],
            "clean_rows": stats["rows"] - quarantined_rows,
            "quarantined_rows": quarantined_rows,
        }
    (workdir / REPORT_FILE).write_text(json.dumps(report, indent=2, sort_keys=True, default=str))
    return ValidationResult(
        report,
        stats,
        findings,
        clean_path=workdir / "clean.parquet" if cfg.quarantines else None,
        quarantine_path=workdir / "quarantine.parquet" if cfg.quarantines else None,
        data_docs_dir=data_docs,
    )


def type_family(arrow_type: str) -> str:
    """numeric | string | boolean | other: types that may differ between writers but mean the same."""
    t = arrow_type.lower()
    if t.startswith(("int", "uint", "float", "double", "halffloat", "decimal")):
        return "numeric"
    if t.startswith(("string", "large_string", "utf8", "large_utf8")) or t.startswith("dictionary<values=string"):
        return "string"
    return "boolean" if t == "bool" else "other"


def _check_declared_types(arrow_schema: Any, columns: dict[str, Any], where: str) -> None:
    """Input whose columns have other types than the schema declares is unreadable for validation."""
    wrong = [
        f"column {name!r} is {f.type}, the schema declares {columns[name]['arrow_type']}"
        for f in arrow_schema
        if (name := f.name) in columns
        and "arrow_type" in columns[name]
        and type_family(str(f.type)) != type_family(columns[name]["arrow_type"])
    ]
    if wrong:
        raise DataValidationError(
            f"{where} does not match the declared schema: {'; '.join(wrong)}. Fix the producer of the data, or "
            "update the schema if the change is intended"
        )


class _BatchHits:
    """Row-level hits of one batch: counted for the report and, under quarantine, marked for removal."""

    def __init__(self, rows: _RowFindings, cfg: ValidationConfig, n: int, offset: int):
        self.rows, self.cfg, self.offset = rows, cfg, offset
        self.quarantine = np.zeros(n, dtype=bool)
        self.reasons: list[list[str]] = [[] for _ in range(n)] if cfg.quarantines else []

    def __call__(self, check: str, column: str | None, mask: np.ndarray) -> None:
        self.rows.add(check, column, mask, self.offset)
        if self.cfg.policy(check) == "quarantine" and mask.any():
            self.quarantine[mask] = True
            for i in np.flatnonzero(mask):
                self.reasons[i].append(f"{check}:{column}" if column else check)

    def quarantined_reasons(self) -> list[str]:
        return [";".join(r) for r, q in zip(self.reasons, self.quarantine, strict=True) if q]


def _write(writers: dict[str, Any], key: str, path: Path, batch: Any) -> None:
    import pyarrow.parquet as pq

    if key not in writers:
        writers[key] = pq.ParquetWriter(path, batch.schema)
    writers[key].write_batch(batch)


def _load_schema(spec: Any, store: Any) -> dict[str, Any] | None:
    from airflow_mlcrit.core.validation.schema import SCHEMA_FILE, check_schema

    if spec is None:
        return None
    if isinstance(spec, dict):
        return check_schema(spec, "schema")
    return load_schema(_spec_text(spec, store, SCHEMA_FILE, "schema"), str(spec))


def _load_stats(spec: Any, store: Any, what: str) -> dict[str, Any] | None:
    from airflow_mlcrit.core.validation.statistics import STATISTICS_FILE

    if spec is None or isinstance(spec, dict):
        return spec
    try:
        stats = json.loads(_spec_text(spec, store, STATISTICS_FILE, what))
    except ValueError as exc:
        raise ConfigError(f"{what} {spec!r} is not a statistics JSON file: {exc}") from None
    if "columns" not in stats:
        raise ConfigError(f"{what} {spec!r} is not statistics (no 'columns')")
    return stats


_ROW_MESSAGES = {
    "missing": "required column has missing values",
    "domain": "values outside the schema's domain",
    "range": "values outside the schema's range",
    "duplicates": "exact duplicate rows",
    "empty_text": "empty or whitespace-only texts",
    "pii": "personal data pattern found",
    "contamination": "rows also present in the contamination reference",
}


def _row_findings(
    cfg: ValidationConfig, rows: _RowFindings, stats: dict[str, Any], columns: dict[str, Any]
) -> list[Finding]:
    findings = []
    total = stats["rows"]
    for (check, column), count in sorted(rows.counts.items(), key=lambda kv: (kv[0][0], str(kv[0][1]))):
        allowed = {"duplicates": cfg.max_duplicate_fraction, "empty_text": cfg.max_empty_fraction}.get(check, 0.0)
        policy = cfg.policy(check)
        if policy != "quarantine" and count / total <= allowed:
            continue
        expected: Any = f"at most {allowed:.2%} of rows" if allowed else "no rows"
        observed: Any = f"{count} of {total} rows ({count / total:.2%})"
        if check == "domain" and column in columns:
            expected = f"one of {columns[column]['domain']}"
        if check == "range" and column in columns:
            expected = f"within [{columns[column]['range']['min']:.6g}, {columns[column]['range']['max']:.6g}]"
            col = stats["columns"][column]
            observed += f"; data range [{col['min']:.6g}, {col['max']:.6g}]"
        findings.append(
            Finding(
                check,
                column,
                policy,
                _ROW_MESSAGES[check],
                observed=observed,
                expected=expected,
                rows=count,
                sample_rows=rows.rows[(check, column)],
            )
        )
    return findings


def _dataset_findings(
    cfg: ValidationConfig,
    stats: dict[str, Any],
    columns: dict[str, Any],
    baseline: dict[str, Any] | None,
    training: dict[str, Any] | None,
) -> list[Finding]:
    findings = []
    present = stats["columns"]
    for name, spec in columns.items():
        in_env = cfg.environment in spec.get("environments", ENVIRONMENTS)
        if name not in present:
            if in_env:
                findings.append(
                    Finding(
                        "schema",
                        name,
                        cfg.policy("schema"),
                        "column is missing",
                        observed="absent",
                        expected=f"present in {cfg.environment}",
                    )
                )
            continue
        if not in_env:
            findings.append(
                Finding(
                    "schema",
                    name,
                    cfg.policy("schema"),
                    f"column must be absent in {cfg.environment}",
                    observed="present",
                    expected="absent",
                )
            )
        if present[name]["kind"] != spec["type"]:
            findings.append(
                Finding(
                    "schema",
                    name,
                    cfg.policy("schema"),
                    "type mismatch",
                    observed=f"{present[name]['kind']} ({present[name]['arrow_type']})",
                    expected=f"{spec['type']} ({spec.get('arrow_type', '?')})",
                )
            )
        if not spec.get("required") and "max_missing_fraction" in spec:
            frac = present[name]["missing"] / max(1, stats["rows"])
            if frac > spec["max_missing_fraction"]:
                findings.append(
                    Finding(
                        "missing",
                        name,
                        cfg.policy("missing"),
                        "too many missing values",
                        observed=f"{frac:.2%}",
                        expected=f"at most {spec['max_missing_fraction']:.2%}",
                    )
                )
    for name in present:
        if columns and name not in columns:
            findings.append(
                Finding(
                    "schema",
                    name,
                    cfg.policy("schema"),
                    "new column not in the schema",
                    observed="present",
                    expected="absent (add it to the schema if intended)",
                )
            )
    for check, reference in (("drift", baseline), ("skew", training)):
        if reference is None:
            continue
        # a column the schema marks as an identifier has no distribution to drift
        compared = [name for name in present if not columns.get(name, {}).get("identifier")]
        for hit in drift_mod.exceeded(reference, stats, compared, cfg.drift_thresholds, cfg.column_thresholds):
            findings.append(
                Finding(
                    check,
                    hit["column"],
                    cfg.policy(check),
                    f"{hit['measure']} vs the {'baseline' if check == 'drift' else 'training'} "
                    "statistics is above the threshold",
                    observed=round(hit["value"], 6),
                    expected=f"<= {hit['limit']}",
                )
            )
    for name, limit in cfg.text_length_limits.items():
        col = present.get(name)
        if col is None or col["kind"] != "text":
            raise ConfigError(f"text_length_limits names {name!r}, which is not a text column of the data")
        lengths = col[{"chars": "chars", "words": "words", "tokens": "tokens"}[cfg.length_unit]]
        value = float(np.quantile(lengths.get("sample", [0]), cfg.length_percentile))
        if value > limit:
            findings.append(
                Finding(
                    "text_length",
                    name,
                    cfg.policy("text_length"),
                    f"p{cfg.length_percentile * 100:g} length in {cfg.length_unit} is above the limit",
                    observed=value,
                    expected=f"<= {limit}",
                )
            )
    return findings


__all__ = ["CHECKS", "PII_KINDS", "Finding", "ValidationConfig", "ValidationResult", "validate"]
