"""The built-in preprocessing pipeline on Apache Beam, and the runner around it.

Everything a worker runs is a module-level function or DoFn (picklable, deterministic in every
process): hashing uses blake2b, never Python's salted hash().
"""

from __future__ import annotations

import importlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from airflow_mlcrit.core.preprocessing.config import PreprocessConfig
from airflow_mlcrit.core.preprocessing.textops import (
    jaccard_estimate,
    lsh_bands,
    minhash,
    normalize_text,
    split_of,
    stable_hash,
)
from airflow_mlcrit.exceptions import ConfigError, DataValidationError, MissingDependencyError

COUNTS_FILE = "_row_counts.json"
ANALYZERS_FILE = "_analyzers.json"


@dataclass
class PreprocessResult:
    output_dir: Path
    row_counts: dict[str, int]
    analyzers: dict[str, Any]
    input_rows: int
    seconds: float
    runner: str


# ---- reading --------------------------------------------------------------------------------


def _splits_of(files: list[Path], fmt: str) -> list[tuple[str, str, int | None]]:
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return [(str(f), fmt, g) for f in files for g in range(pq.ParquetFile(f).metadata.num_row_groups)]
    return [(str(f), fmt, None) for f in files]


def read_split(split: tuple[str, str, int | None]) -> Any:
    """Records (dicts) of one Parquet row group or one JSONL file."""
    path, fmt, group = split
    if fmt == "parquet":
        import pyarrow.parquet as pq

        table = pq.ParquetFile(path).read_row_groups([group])
    else:
        import pyarrow.json as pj

        table = pj.read_json(path)
    yield from table.to_pylist()


# ---- per-record steps -------------------------------------------------------------------------


def normalize_record(record: dict, cfg: dict) -> dict:
    text = record.get(cfg["text_column"])
    if text is not None and cfg["normalize"]:
        record = {**record, cfg["text_column"]: normalize_text(text, cfg["lowercase"])}
    return record


def length_ok(record: dict, cfg: dict) -> bool:
    n = len(record.get(cfg["text_column"]) or "")
    return (cfg["min_chars"] is None or n >= cfg["min_chars"]) and (cfg["max_chars"] is None or n <= cfg["max_chars"])


def canonical(record: dict) -> str:
    return json.dumps(record, sort_keys=True, default=str)


def dedup_key(record: dict, cfg: dict) -> tuple[int, dict]:
    return stable_hash(record.get(cfg["text_column"]) or ""), record


def first_of(records: Any) -> dict:
    """The deterministic survivor of a group of duplicates: the smallest canonical form."""
    return min(records, key=canonical)


def record_id(record: dict) -> str:
    return format(stable_hash(canonical(record)), "016x")


def band_keys(item: tuple[str, dict], cfg: dict, bands: int, rows: int) -> Any:
    rid, record = item
    sig = minhash(record.get(cfg["text_column"]) or "", cfg["minhash_permutations"], cfg["seed"])
    for b in range(bands):
        band = sig[b * rows : (b + 1) * rows]
        yield (b, stable_hash(band.tobytes().hex())), (rid, sig.tobytes())


def near_duplicates(bucket: tuple[Any, Any], threshold: float) -> Any:
    """Within one LSH bucket, every id that is near a smaller id is a duplicate (the smallest stays)."""
    import numpy as np

    members = sorted(set(bucket[1]))
    if len(members) < 2:
        return
    sigs = [(rid, np.frombuffer(sig, dtype=np.uint64)) for rid, sig in members]
    for j in range(1, len(sigs)):
        for i in range(j):
            if jaccard_estimate(sigs[i][1], sigs[j][1]) >= threshold:
                yield sigs[j][0]
                break


def drop_marked(item: tuple[str, dict]) -> Any:
    _rid, grouped = item
    if not list(grouped["dup"]):
        yield from grouped["rec"]


def encode_label(record: dict, cfg: dict, vocabulary: list) -> dict:
    value = record.get(cfg["label_column"])
    index = {v: i for i, v in enumerate(vocabulary)}
    return {**record, "label_id": index.get(str(value), -1) if value is not None else -1}


def add_split(record: dict, cfg: dict) -> tuple[str, dict]:
    key = record.get(cfg["key_column"]) if cfg["key_column"] else record.get(cfg["text_column"])
    return split_of(str(key), cfg["splits"], cfg["seed"]), record


class FormatAndTokenize:
    """DoFn-like: loads the tokenizer and template once per worker (setup), then per batch."""

    def __init__(self, cfg: dict):
        self.cfg = cfg
        self.tokenizer = None
        self.template = None
        self.ready = False

    def __getstate__(self) -> dict:
        return {"cfg": self.cfg, "tokenizer": None, "template": None, "ready": False}  # workers load their own

    def setup(self) -> None:
        self.ready = True
        if self.cfg["template"] is not None:
            from airflow_mlcrit.core.preprocessing.templates import compile_template

            self.template = compile_template(self.cfg["template"])
        if self.cfg["tokenizer"]:
            from airflow_mlcrit.core.validation.textchecks import load_tokenizer

            self.tokenizer = load_tokenizer(self.cfg["tokenizer"])

    def render(self, record: dict) -> tuple[str, str]:
        """(full text, prompt part) of an instruction record."""
        prompt, response = record[self.cfg["prompt_column"]], record[self.cfg["response_column"]]
        if self.template is not None:
            head = self.template.render(prompt=prompt, response="")
            return self.template.render(prompt=prompt, response=response), head
        messages = [{"role": "user", "content": prompt}]
        head = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        full = self.tokenizer.apply_chat_template(
            [*messages, {"role": "assistant", "content": response}], tokenize=False
        )
        return full, head

    def process_batch(self, records: list[dict]) -> list[dict]:
        cfg = self.cfg
        out = [dict(r) for r in records]
        heads: list[str] | None = None
        if cfg["prompt_column"]:
            rendered = [self.render(r) for r in out]
            for r, (full, _) in zip(out, rendered, strict=True):
                r[cfg["text_column"]] = full
            heads = [h for _, h in rendered]
        if self.tokenizer is None:
            return out
        texts = [r.get(cfg["text_column"]) or "" for r in out]
        enc = self.tokenizer(
            texts,
            truncation=cfg["truncation"],
            max_length=cfg["max_length"],
            padding=cfg["padding"],
            add_special_tokens=heads is None,
        )
        for i, r in enumerate(out):
            ids = list(enc["input_ids"][i])
            r["input_ids"] = ids
            r["attention_mask"] = list(enc["attention_mask"][i])
            if heads is not None:
                prompt_len = len(self.tokenizer(heads[i], add_special_tokens=False)["input_ids"])
                # response-only loss: prompt and padding tokens carry the ignore index
                r["labels"] = [
                    -100 if (j < prompt_len or r["attention_mask"][j] == 0) else t for j, t in enumerate(ids)
                ]
        return out


def _format_batches(batch: list[dict], fn: FormatAndTokenize) -> Any:
    if not fn.ready:
        fn.setup()
    yield from fn.process_batch(batch)


# ---- analyzers ----------------------------------------------------------------------------------


def _numeric_values(record: dict, columns: list[str]) -> Any:
    for c in columns:
        v = record.get(c)
        if isinstance(v, (int, float)) and v == v:
            yield c, float(v)


def _words(record: dict, cfg: dict) -> Any:
    yield from (record.get(cfg["text_column"]) or "").split()


def _write_json(value: Any, path: str) -> None:
    from apache_beam.io.filesystems import FileSystems

    with FileSystems.create(path) as f:
        f.write(json.dumps(value, sort_keys=True, default=str).encode())


# ---- the pipeline ----------------------------------------------------------------------------


def output_schema(input_schema: Any, cfg: PreprocessConfig) -> Any:
    import pyarrow as pa

    fields = list(input_schema)
    if cfg.label_column:
        fields.append(pa.field("label_id", pa.int64()))
    if cfg.tokenizer:
        fields += [pa.field("input_ids", pa.list_(pa.int64())), pa.field("attention_mask", pa.list_(pa.int64()))]
        if cfg.instruction:
            fields.append(pa.field("labels", pa.list_(pa.int64())))
    if cfg.instruction and cfg.text_column not in input_schema.names:
        fields.append(pa.field(cfg.text_column, pa.string()))
    return pa.schema(fields)


def check_inputs(cfg: PreprocessConfig, schema: Any) -> None:
    """Everything that can be checked before a worker starts: columns exist and have usable types."""
    import pyarrow as pa

    names = schema.names
    needed = {
        "text_column": cfg.text_column if not cfg.instruction else None,
        "key_column": cfg.key_column,
        "label_column": cfg.label_column,
        "prompt_column": cfg.prompt_column,
        "response_column": cfg.response_column,
    }
    for field_name, column in needed.items():
        if column is not None and column not in names:
            raise DataValidationError(
                f"PreprocessConfig.{field_name} is {column!r}, but the input has no such column; columns: {names}"
            )
    for column in [cfg.text_column, cfg.prompt_column, cfg.response_column]:
        if column in names and not (
            pa.types.is_string(schema.field(column).type) or pa.types.is_large_string(schema.field(column).type)
        ):
            raise DataValidationError(
                f"column {column!r} must hold text, but its type is {schema.field(column).type}; "
                "cast it to string before preprocessing"
            )
    for column in cfg.analyze_numeric:
        if column not in names:
            raise DataValidationError(f"analyze_numeric names {column!r}, which is not a column: {names}")
        t = schema.field(column).type
        if not (pa.types.is_integer(t) or pa.types.is_floating(t)):
            raise DataValidationError(f"analyze_numeric column {column!r} must be numeric, but its type is {t}")


def load_user_pipeline(spec: str) -> Any:
    module_name, sep, func_name = spec.partition(":")
    if not sep or not module_name or not func_name:
        raise ConfigError(f"user_pipeline must look like 'package.module:function', got {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise ConfigError(f"user_pipeline {spec!r}: cannot import {module_name!r}: {exc}") from None
    fn = getattr(module, func_name, None)
    if not callable(fn):
        raise ConfigError(f"user_pipeline {spec!r}: {module_name} has no function {func_name!r}")
    return fn


def run_preprocess(
    cfg: PreprocessConfig | dict[str, Any], *, store: Any = None, workdir: str | Path
) -> PreprocessResult:
    """Validate inputs, build the pipeline, run it on the configured runner, return the outputs."""
    try:
        import apache_beam as beam
        from apache_beam.options.pipeline_options import PipelineOptions
    except ImportError:
        raise MissingDependencyError("apache-beam", "beam") from None
    from airflow_mlcrit.core.tables import iter_batches, open_table
    from airflow_mlcrit.core.validation.beam_stats import pipeline_args

    cfg = PreprocessConfig.coerce(cfg)
    workdir = Path(workdir)
    out_dir = workdir / "output"
    out_dir.mkdir(parents=True, exist_ok=True)
    user_fn = load_user_pipeline(cfg.user_pipeline) if cfg.user_pipeline else None
    table = open_table(cfg.source, store=store)
    try:
        if table.fmt not in ("parquet", "jsonl"):
            raise DataValidationError(f"{table.description} is {table.fmt}; preprocessing reads Parquet or JSONL")
        first = next(iter_batches(table, 1024))  # raises on empty or unreadable input
        input_rows = sum(b.num_rows for b in iter_batches(table)) if table.fmt == "jsonl" else _parquet_rows(table)
        schema = first.schema
        check_inputs(cfg, schema)
        fmt_fn = FormatAndTokenize(cfg.to_dict())
        if cfg.tokenizer or cfg.template is not None:
            FormatAndTokenize(cfg.to_dict()).setup()  # fail here, not in a worker, on a bad tokenizer or template
        splits = _splits_of(table.files, table.fmt)
        c = cfg.to_dict()
        started = time.monotonic()
        try:
            options = PipelineOptions(pipeline_args(cfg.runner, cfg.pipeline_options))
        except SystemExit:
            raise ConfigError(f"invalid Beam pipeline options {cfg.pipeline_options!r}") from None
        with beam.Pipeline(options=options) as p:
            records = p | "Read" >> beam.Create(splits, reshuffle=True) | "Records" >> beam.FlatMap(read_split)
            if user_fn is not None:
                outputs = user_fn(records, c)
                if not isinstance(outputs, dict):
                    outputs = {"train": outputs}
                out_schema = schema
            else:
                outputs, out_schema = _builtin(beam, records, cfg, c, schema, out_dir, fmt_fn)
            for name, pcoll in outputs.items():
                _ = pcoll | f"Write_{name}" >> beam.io.WriteToParquet(
                    str(out_dir / name / "part"),
                    out_schema,
                    num_shards=cfg.shards_per_split,
                    file_name_suffix=".parquet",
                )
            counts = [
                pcoll
                | f"Count_{name}" >> beam.combiners.Count.Globally()
                | f"Key_{name}" >> beam.Map(lambda n, name=name: (name, n))
                for name, pcoll in outputs.items()
            ]
            _ = (
                counts
                | "AllCounts" >> beam.Flatten()
                | "CountsDict" >> beam.combiners.ToDict()
                | "WriteCounts" >> beam.Map(_write_json, str(out_dir / COUNTS_FILE))
            )
        row_counts = json.loads((out_dir / COUNTS_FILE).read_text())
        analyzers_path = out_dir / ANALYZERS_FILE
        analyzers = json.loads(analyzers_path.read_text()) if analyzers_path.exists() else {}
        for name in outputs:
            row_counts.setdefault(name, 0)
        return PreprocessResult(
            out_dir, row_counts, analyzers, input_rows, time.monotonic() - started, cfg.runner or "FnApiRunner"
        )
    finally:
        table.close()


def _parquet_rows(table: Any) -> int:
    import pyarrow.parquet as pq

    return sum(pq.ParquetFile(f).metadata.num_rows for f in table.files)


def _builtin(
    beam: Any, records: Any, cfg: PreprocessConfig, c: dict, schema: Any, out_dir: Path, fmt_fn: FormatAndTokenize
) -> tuple[dict[str, Any], Any]:
    if cfg.normalize:
        records = records | "Normalize" >> beam.Map(normalize_record, c)
    if cfg.min_chars is not None or cfg.max_chars is not None:
        records = records | "LengthFilter" >> beam.Filter(length_ok, c)
    if cfg.exact_dedup:
        records = (
            records
            | "DedupKey" >> beam.Map(dedup_key, c)
            | "DedupGroup" >> beam.GroupByKey()
            | "DedupPick" >> beam.MapTuple(lambda _k, rs: first_of(rs))
        )
    if cfg.near_dedup_threshold is not None:
        bands, rows = lsh_bands(cfg.minhash_permutations, cfg.near_dedup_threshold)
        keyed = records | "Id" >> beam.Map(lambda r: (record_id(r), r))
        dups = (
            keyed
            | "Bands" >> beam.FlatMap(band_keys, c, bands, rows)
            | "Buckets" >> beam.GroupByKey()
            | "Candidates" >> beam.FlatMap(near_duplicates, cfg.near_dedup_threshold)
            | "DupIds" >> beam.Distinct()
            | "DupMark" >> beam.Map(lambda rid: (rid, True))
        )
        records = {"rec": keyed, "dup": dups} | "Join" >> beam.CoGroupByKey() | "DropNear" >> beam.FlatMap(drop_marked)
    analyzers: dict[str, Any] = {}
    if cfg.label_column:
        vocab = (
            records
            | "Labels" >> beam.Map(lambda r, col=cfg.label_column: str(r.get(col)))
            | "LabelSet" >> beam.Distinct()
            | "LabelVocab" >> beam.combiners.ToList()
            | "Sorted" >> beam.Map(sorted)
        )
        analyzers["label_vocabulary"] = vocab
        records = records | "EncodeLabel" >> beam.Map(encode_label, c, beam.pvalue.AsSingleton(vocab))
    if cfg.instruction or cfg.tokenizer:
        records = (
            records
            | "Batch" >> beam.BatchElements(min_batch_size=64, max_batch_size=1024)
            | "FormatTokenize" >> beam.FlatMap(_format_batches, fmt_fn)
        )
    for column in cfg.analyze_numeric:
        values = records | f"Values_{column}" >> beam.FlatMap(
            lambda r, col=column: [v for _, v in _numeric_values(r, [col])]
        )
        analyzers[f"{column}.mean"] = values | f"Mean_{column}" >> beam.combiners.Mean.Globally()
        analyzers[f"{column}.quantiles"] = (
            values | f"Quantiles_{column}" >> beam.transforms.stats.ApproximateQuantiles.Globally(11)
        )
        analyzers[f"{column}.std"] = (
            values
            | f"Moments_{column}" >> beam.Map(lambda v: (1, v, v * v))
            | f"SumMoments_{column}" >> beam.CombineGlobally(sum_triples)
            | f"Std_{column}" >> beam.Map(std_of)
        )
    if cfg.vocabulary_size:
        analyzers["word_vocabulary"] = (
            records
            | "Words" >> beam.FlatMap(_words, c)
            | "WordCounts" >> beam.combiners.Count.PerElement()
            | "TopWords" >> beam.combiners.Top.Of(cfg.vocabulary_size, key=lambda kv: (kv[1], kv[0]))
        )
    if analyzers:
        merged = [pc | f"Tag_{k}" >> beam.Map(lambda v, k=k: (k, v)) for k, pc in analyzers.items()]
        _ = (
            merged
            | "AllAnalyzers" >> beam.Flatten()
            | "AnalyzersDict" >> beam.combiners.ToDict()
            | "WriteAnalyzers" >> beam.Map(_write_json, str(out_dir / ANALYZERS_FILE))
        )
    keyed_split = records | "Split" >> beam.Map(add_split, c)
    names = list(cfg.splits)
    parts = keyed_split | "Partition" >> beam.Partition(lambda kv, n, names=names: names.index(kv[0]), len(names))
    outputs = {name: parts[i] | f"Unkey_{name}" >> beam.Values() for i, name in enumerate(names)}
    return outputs, output_schema(schema, cfg)


def sum_triples(triples: Any) -> tuple[float, float, float]:
    """Elementwise sum of (count, sum, sum of squares): associative, so Beam can combine partials."""
    n = s = q = 0.0
    for a, b, c in triples:
        n, s, q = n + a, s + b, q + c
    return n, s, q


def std_of(triple: tuple[float, float, float]) -> float | None:
    n, s, q = triple
    return max(0.0, (q - s * s / n) / (n - 1)) ** 0.5 if n >= 2 else None
