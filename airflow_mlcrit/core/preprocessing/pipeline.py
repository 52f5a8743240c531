"""The built-in preprocessing pipeline on Apache Beam, and the runner around it.

Elements are Arrow record batches (see batchops). Everything a worker runs is a module-level
function (picklable, deterministic in every process: no salted hash(), seeded sampling).
"""

from __future__ import annotations

import importlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from airflow_mlcrit.core.preprocessing.batchops import (
    DEDUP_BUCKETS,
    content_hashes,
    dedup_bucket,
    normalize_array,
    replace_column,
    row_hashes,
    split_indices,
    split_points,
    take,
    text_hashes,
)
from airflow_mlcrit.core.preprocessing.config import PreprocessConfig
from airflow_mlcrit.core.preprocessing.textops import jaccard_estimate, lsh_bands, minhash, stable_hash
from airflow_mlcrit.exceptions import (
    ConfigError,
    DataValidationError,
    MissingDependencyError,
    PipelineIntegrityError,
    some,
)

# What the workers report (shard records, row counts, schemas, analyzers), beside the shards; a
# commit removes it (ArtifactStore.commit_staged), so it is never part of a version.
CONTROL_FILE = "_staging/control.json"


@dataclass
class PreprocessResult:
    output_dir: Path | None  # the local output directory (None: the shards are in the staged version)
    row_counts: dict[str, int]
    analyzers: dict[str, Any]
    input_rows: int
    seconds: float
    runner: str
    input_fields: list[dict[str, str]]  # OpenLineage schema facet fields of the input ...
    output_fields: list[dict[str, str]]  # ... and of every output split
    files: list[dict[str, Any]]  # {path, size, sha256} of every shard, as its worker wrote it


def schema_fields(schema: Any) -> list[dict[str, str]]:
    return [{"name": f.name, "type": str(f.type)} for f in schema]


# ---- reading (in the workers) -------------------------------------------------------------------

READ_BATCH = 8192


def read_file(f: Any, fmt: str, expected: Any, io: dict) -> Any:
    """Record batches of one input file, read where this runs (a worker) and checked against its
    digest; every file must have the first file's schema (``expected``)."""
    from airflow_mlcrit.core.tables import TableSource, iter_batches

    for batch in iter_batches(TableSource([f], fmt, f.label, io=io), READ_BATCH):
        if not batch.schema.equals(expected):
            from airflow_mlcrit.core.tables import schema_diff

            raise DataValidationError(schema_diff(f.label, expected, batch.schema))
        yield batch


def input_schema(f: Any, fmt: str, cfg: dict, io: dict) -> Any:
    """The input's schema from its first file (in a worker), checked against the config."""
    from airflow_mlcrit.core.tables import TableSource, iter_batches

    schema = next(iter_batches(TableSource([f], fmt, f.label, io=io), 1024)).schema
    check_inputs(PreprocessConfig.from_dict(cfg), schema)
    return schema


class FormatAndTokenize:
    """DoFn-like: loads the tokenizer and template once per worker (setup), then per batch.

    The driver loads the Hugging Face tokenizer once (:meth:`prepare`: checks it and ships the
    serialized Rust tokenizer with this object); workers rebuild it with the ``tokenizers``
    library alone and never import transformers, unless they must render a chat template.
    """

    def __init__(self, cfg: dict):
        self.cfg = cfg
        self.shipped: dict[str, Any] = {}  # serialized tokenizer + pad token, set by prepare()
        self.tokenizer = None  # transformers tokenizer: only for chat templates
        self.rust = None
        self.template = None
        self.ready = False

    def __getstate__(self) -> dict:
        return {
            "cfg": self.cfg,
            "shipped": self.shipped,
            "tokenizer": None,
            "rust": None,
            "template": None,
            "ready": False,
        }

    def prepare(self) -> FormatAndTokenize:
        """Driver side: fail early on a bad template or tokenizer; capture what workers need."""
        if self.cfg["template"] is not None:
            from airflow_mlcrit.core.preprocessing.templates import compile_template

            compile_template(self.cfg["template"], "PreprocessConfig.template")
        if self.cfg["tokenizer"]:
            tok = self._load_hf()
            self.shipped = {
                "json": tok.backend_tokenizer.to_str(),
                "pad_id": tok.pad_token_id,
                "pad_token": tok.pad_token,
            }
        return self

    def _load_hf(self) -> Any:
        from airflow_mlcrit.core.validation.textchecks import load_tokenizer

        tok = load_tokenizer(self.cfg["tokenizer"])
        if not getattr(tok, "is_fast", False):
            raise ConfigError(
                f"tokenizer {self.cfg['tokenizer']!r} is not a fast tokenizer (no tokenizer.json); "
                "preprocessing needs a Hugging Face fast tokenizer"
            )
        return tok

    def setup(self) -> None:
        import os

        # parallelism is Beam's (its workers); the tokenizer's own threads would oversubscribe the cores
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        if self.cfg["template"] is not None:
            from airflow_mlcrit.core.preprocessing.templates import compile_template

            self.template = compile_template(self.cfg["template"], "PreprocessConfig.template")
        if self.cfg["tokenizer"]:
            if not self.shipped:
                self.prepare()
            if self.cfg["prompt_column"] and self.template is None:
                self.tokenizer = self._load_hf()  # the chat template needs transformers
            self.rust = self._rust_tokenizer()
        self.ready = True

    def _rust_tokenizer(self) -> Any:
        """The Rust tokenizer, configured like ``tokenizer(texts, truncation=.., padding=..)``:
        calling it directly skips transformers' per-text Python conversion (a third of the cost)."""
        from tokenizers import Tokenizer

        rust = Tokenizer.from_str(self.shipped["json"])
        rust.no_truncation()
        rust.no_padding()
        if self.cfg["truncation"]:
            rust.enable_truncation(self.cfg["max_length"])
        if self.cfg["padding"] == "max_length":
            rust.enable_padding(
                length=self.cfg["max_length"], pad_id=self.shipped["pad_id"], pad_token=self.shipped["pad_token"]
            )
        return rust

    def encode(self, texts: list[str], add_special_tokens: bool) -> tuple[list[list[int]], list[list[int]]]:
        encodings = self.rust.encode_batch(texts, add_special_tokens=add_special_tokens)
        return [e.ids for e in encodings], [e.attention_mask for e in encodings]

    def render(self, prompt: str, response: str) -> tuple[str, str]:
        """(full text, prompt part) of one instruction example."""
        if self.template is not None:
            head = self.template.render(prompt=prompt, response="")
            return self.template.render(prompt=prompt, response=response), head
        messages = [{"role": "user", "content": prompt}]
        head = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        full = self.tokenizer.apply_chat_template(
            [*messages, {"role": "assistant", "content": response}], tokenize=False
        )
        return full, head

    def process_batch(self, batch: Any) -> Any:
        """Format and/or tokenize a record batch column-wise (no per-record dicts)."""
        import pyarrow as pa

        cfg = self.cfg
        heads: list[str] | None = None
        if cfg["prompt_column"]:
            prompts = batch.column(cfg["prompt_column"]).to_pylist()
            responses = batch.column(cfg["response_column"]).to_pylist()
            rendered = [self.render(p or "", r or "") for p, r in zip(prompts, responses, strict=True)]
            batch = replace_column(batch, cfg["text_column"], pa.array([f for f, _ in rendered], pa.string()))
            heads = [h for _, h in rendered]
        if self.rust is None:
            return batch
        texts = pc_fill_empty(batch.column(cfg["text_column"]))
        ids, mask = self.encode(texts, add_special_tokens=heads is None)
        batch = replace_column(batch, "input_ids", pa.array(ids, pa.list_(pa.int64())))
        batch = replace_column(batch, "attention_mask", pa.array(mask, pa.list_(pa.int64())))
        if heads is not None:
            # attention_mask, not len(ids): with padding="max_length" the prompt encodings are padded too
            prompt_lens = [sum(e.attention_mask) for e in self.rust.encode_batch(heads, add_special_tokens=False)]
            # response-only loss: prompt and padding tokens carry the ignore index
            labels = [
                [-100 if (j < n or m[j] == 0) else t for j, t in enumerate(row)]
                for row, m, n in zip(ids, mask, prompt_lens, strict=True)
            ]
            batch = replace_column(batch, "labels", pa.array(labels, pa.list_(pa.int64())))
        return batch


def pc_fill_empty(arr: Any) -> list[str]:
    import pyarrow.compute as pc

    return pc.fill_null(arr, "").to_pylist()


# ---- per-batch steps ----------------------------------------------------------------------------


def has_text(batch: Any, cfg: dict) -> bool:
    """The text steps (normalize .. near dedup) work on an input text column; instruction data
    without one gets its text from the formatting step, and passes through them."""
    return cfg["text_column"] in batch.schema.names


def normalize_batch(batch: Any, cfg: dict) -> Any:
    col = cfg["text_column"]
    if not has_text(batch, cfg):
        return batch
    return replace_column(batch, col, normalize_array(batch.column(col), cfg["lowercase"]))


def length_filter(batch: Any, cfg: dict) -> Any:
    """The rows within the length bounds, and (tagged "dropped") how many it removed."""
    import pyarrow.compute as pc

    if not has_text(batch, cfg):
        yield batch
        return
    n = pc.fill_null(pc.utf8_length(batch.column(cfg["text_column"])), 0).to_numpy(zero_copy_only=False)
    keep = np.ones(len(n), dtype=bool)
    if cfg["min_chars"] is not None:
        keep &= n >= cfg["min_chars"]
    if cfg["max_chars"] is not None:
        keep &= n <= cfg["max_chars"]
    yield _dropped(len(keep) - keep.sum())
    if keep.any():
        yield take(batch, keep)


def to_dedup_buckets(batch: Any, cfg: dict) -> Any:
    """(bucket, sub-batch tagged with its text hash ``_h`` and full-row hash ``_rh``)."""
    import pyarrow as pa

    h = text_hashes(batch.column(cfg["text_column"]))
    tagged = batch.append_column("_h", pa.array(h)).append_column("_rh", pa.array(row_hashes(batch)))
    buckets = (h % np.uint64(DEDUP_BUCKETS)).astype(np.int64)
    for b in np.unique(buckets):
        yield int(b), take(tagged, buckets == b)


def dedup_group(item: tuple[int, Any]) -> Any:
    """The bucket without its duplicates, and (tagged "dropped") how many rows that removed."""
    rows = list(item[1])
    out = dedup_bucket(rows)
    yield _dropped(sum(b.num_rows for b in rows) - (out.num_rows if out is not None else 0))
    if out is not None:
        yield out


def _dropped(n: Any) -> Any:
    """A step's count of the rows it removed on purpose, beside its output (tag "dropped")."""
    from apache_beam import pvalue

    return pvalue.TaggedOutput("dropped", int(n))


def _num_rows(element: Any) -> int:
    """Rows of a batch, a (key, batch) pair or a written shard's record."""
    if isinstance(element, dict):
        return element["rows"]
    return (element[1] if isinstance(element, tuple) else element).num_rows


def _total(beam: Any, pcoll: Any, label: str) -> Any:
    return pcoll | f"{label}Rows" >> beam.Map(_num_rows) | f"{label}Sum" >> beam.CombineGlobally(sum)


def check_rows(done: dict[str, Any], runner: str) -> None:
    """Every row read is written or was dropped on purpose (a filter, dedup), counted where it
    happened; after a user pipeline, every row it returned is written. Beam 2.77's FnApiRunner
    with two workers, and the portable job service, lost whole elements between stages at about
    500 MB without an error (docs/benchmarks.md): such a run is refused and commits nothing."""
    written = done["count:written"]
    if "count:sent" in done:
        expected, between = done["count:sent"], "the user pipeline's output and the written shards"
    else:
        expected = done["input_rows"] - done.get("count:dropped", 0)
        between = "the input and the written shards, after the rows the steps dropped on purpose"
    if written != expected:
        raise PipelineIntegrityError(
            f"the {runner} runner wrote {written:,} rows where {expected:,} were due ({between}): it lost or "
            "duplicated data, so nothing was committed. Retry; if it recurs, run FnApiRunner with one worker "
            "(pipeline_options direct_num_workers=1, the default) or on a cluster runner"
        )


def record_ids(batch: Any) -> np.ndarray:
    return row_hashes(batch)


def band_entries(batch: Any, cfg: dict, bands: int, rows: int) -> Any:
    if not has_text(batch, cfg):
        return
    ids = record_ids(batch)
    texts = batch.column(cfg["text_column"]).to_pylist()
    for rid, text in zip(ids.tolist(), texts, strict=True):
        sig = minhash(text or "", cfg["minhash_permutations"], cfg["seed"])
        for b in range(bands):
            yield (b, stable_hash(sig[b * rows : (b + 1) * rows].tobytes().hex())), (rid, sig.tobytes())


def near_duplicates(bucket: tuple[Any, Any], threshold: float) -> Any:
    """Within one LSH bucket, every id that is near a smaller id is a duplicate (the smallest stays)."""
    members = sorted(set(bucket[1]))
    if len(members) < 2:
        return
    sigs = [(rid, np.frombuffer(sig, dtype=np.uint64)) for rid, sig in members]
    for j in range(1, len(sigs)):
        for i in range(j):
            if jaccard_estimate(sigs[i][1], sigs[j][1]) >= threshold:
                yield sigs[j][0]
                break


def drop_ids(batch: Any, ids: list[int]) -> Any:
    if not ids:
        yield batch
        return
    keep = ~np.isin(record_ids(batch), np.fromiter(ids, dtype=np.uint64, count=len(ids)))
    yield _dropped(len(keep) - keep.sum())
    if keep.any():
        yield take(batch, keep)


def batch_labels(batch: Any, cfg: dict) -> Any:
    import pyarrow as pa
    import pyarrow.compute as pc

    col = batch.column(cfg["label_column"])
    yield from pc.unique(pc.cast(col, pa.string())).drop_null().to_pylist()


def encode_labels(batch: Any, cfg: dict, vocabulary: list[str]) -> Any:
    import pyarrow as pa
    import pyarrow.compute as pc

    col = pc.cast(batch.column(cfg["label_column"]), pa.string())
    ids = pc.fill_null(pc.index_in(col, value_set=pa.array(vocabulary, pa.string())), -1)
    return replace_column(batch, "label_id", pc.cast(ids, pa.int64()))


def tokenize_batch(batch: Any, fn: FormatAndTokenize) -> Any:
    if not fn.ready:
        fn.setup()
    return fn.process_batch(batch)


def keyed_by_split(batch: Any, cfg: dict) -> Any:
    key = cfg["key_column"] or cfg["text_column"]
    names = list(cfg["splits"])
    idx = split_indices(split_points(batch.column(key), cfg["seed"]), [cfg["splits"][n] for n in names])
    for i, name in enumerate(names):
        mask = idx == i
        if mask.any():
            yield name, take(batch, mask)


def to_table(batch: Any) -> Any:
    import pyarrow as pa

    return pa.Table.from_batches([batch])


# ---- analyzers (combined from per-batch partials: no per-record elements) ------------------------


def numeric_partial(batch: Any, column: str, seed: int) -> Any:
    import pyarrow as pa

    from airflow_mlcrit.core.validation.sketches import Moments, Reservoir

    values = batch.column(column).cast(pa.float64(), safe=False).drop_null().to_numpy(zero_copy_only=False)
    values = values[np.isfinite(values)]
    moments, reservoir = Moments(), Reservoir(20_000, seed)
    moments.add(values)
    reservoir.add(values)
    return moments, reservoir


def merge_numeric(partials: Any) -> Any:
    from airflow_mlcrit.core.validation.sketches import Moments, Reservoir

    moments, reservoir = Moments(), Reservoir(20_000, 0)
    for m, r in partials:
        moments.merge(m)
        reservoir.merge(r)
    return moments, reservoir


def numeric_summary(partial: Any) -> dict[str, Any]:
    moments, reservoir = partial
    sample = reservoir.sorted()
    return {
        "count": moments.n,
        "mean": moments.mean if moments.n else None,
        "std": moments.std,
        "min": moments.min if moments.n else None,
        "max": moments.max if moments.n else None,
        "quantiles": np.quantile(sample, np.linspace(0, 1, 11)).tolist() if len(sample) else [],
    }


def word_counts_partial(batch: Any, cfg: dict) -> dict[str, int]:
    import pyarrow.compute as pc

    words = pc.list_flatten(pc.ascii_split_whitespace(batch.column(cfg["text_column"])))
    vc = pc.value_counts(words)
    return dict(zip(vc.field("values").to_pylist(), vc.field("counts").to_pylist(), strict=True))


def merge_counts(partials: Any) -> dict[str, int]:
    total: dict[str, int] = {}
    for p in partials:
        for k, v in p.items():
            total[k] = total.get(k, 0) + v
    return total


def top_words(counts: dict[str, int], n: int) -> list[list[Any]]:
    return [[w, c] for w, c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n] if w]


def _write_json(value: Any, location: str, rel: str, io: dict) -> None:
    from airflow_mlcrit.core.dataplane import write_file

    write_file(location, rel, lambda f: f.write(json.dumps(value, sort_keys=True, default=str).encode()), io)


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
                f"PreprocessConfig.{field_name} is {column!r}, but the input has no such column; columns: {some(names)}"
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
    cfg: PreprocessConfig | dict[str, Any],
    *,
    store: Any = None,
    workdir: str | Path | None = None,
    output: Any = None,
    on_started: Any = None,
) -> PreprocessResult:
    """Check what can be checked here, build the pipeline, run it on the configured runner.

    The workers read the input where it is (verified against its manifest) and write the output
    shards to ``output`` (a StagedVersion of ``store``) or, without one, to ``workdir/output``;
    this process reads neither. ``on_started`` gets the PipelineResult as soon as the runner
    returns one (a remote runner's job to cancel), before waiting for it to finish."""
    try:
        import apache_beam as beam
    except ImportError:
        raise MissingDependencyError("apache-beam", "beam") from None
    from airflow_mlcrit.core.beam import pipeline_options, run_pipeline, worker_errors
    from airflow_mlcrit.core.dataplane import check_runner, worker_io
    from airflow_mlcrit.core.tables import locate_table

    cfg = PreprocessConfig.coerce(cfg)
    check_runner(cfg.runner)
    if output is None:
        if workdir is None:
            raise ConfigError("run_preprocess needs an output (a staged version) or a workdir")
        location = str(Path(workdir) / "output")
        Path(location).mkdir(parents=True, exist_ok=True)
    else:
        location = output.location
    user_fn = load_user_pipeline(cfg.user_pipeline) if cfg.user_pipeline else None
    table = locate_table(cfg.source, store=store)
    if table.fmt not in ("parquet", "jsonl"):
        raise DataValidationError(f"{table.description} is {table.fmt}; preprocessing reads Parquet or JSONL")
    for f in table.files:
        if f.size == 0:
            raise DataValidationError(f"{f.label} is empty (0 bytes): nothing to read")
    if all("://" not in f.uri for f in table.files):
        _check_local_input(cfg, table)
    fmt_fn = FormatAndTokenize(cfg.to_dict()).prepare()  # fails here, not in a worker, on a bad tokenizer
    c = cfg.to_dict()
    started = time.monotonic()
    io = worker_io(store, cfg.pipeline_options)
    options = pipeline_options(cfg.runner, cfg.pipeline_options)
    p = beam.Pipeline(options=options)
    schema = p | "First" >> beam.Create(table.files[:1]) | "Schema" >> beam.Map(input_schema, table.fmt, c, io)
    schema_si = beam.pvalue.AsSingleton(schema)
    batches = (
        p
        | "Read" >> beam.Create(table.files, reshuffle=True)
        | "Batches" >> beam.FlatMap(read_file, table.fmt, schema_si, io)
    )
    if user_fn is not None:
        outputs = user_fn(batches | "Records" >> beam.FlatMap(lambda b: b.to_pylist()), c)
        if not isinstance(outputs, dict):
            outputs = {"train": outputs}
        out_schema = schema
        outputs = {
            name: pc
            | f"ToBatch_{name}" >> beam.BatchElements(min_batch_size=1024, max_batch_size=8192)
            | f"Table_{name}" >> beam.Map(_records_to_table, schema_si)
            for name, pc in outputs.items()
        }
        analyzers: dict[str, Any] = {}
    else:
        out_schema = schema | "OutSchema" >> beam.Map(output_schema, cfg)
        outputs, analyzers, dropped = _builtin(beam, batches, cfg, c, beam.pvalue.AsSingleton(out_schema), fmt_fn)
    shards = cfg.shards_per_split
    # one shuffle for every split's shards: (split, shard) keys them apart
    sharded = [
        tables | f"Shard_{name}" >> beam.FlatMap(shard_tables, name, shards) for name, tables in outputs.items()
    ] | "AllShards" >> beam.Flatten()
    written = sharded | "Group" >> beam.GroupByKey() | "Write" >> beam.Map(write_shard, location, shards, io)
    # what must add up (check_rows): rows written against rows read less those dropped on purpose
    counts = {"written": _total(beam, written, "Written")}
    counts |= {"sent": _total(beam, sharded, "Sent")} if user_fn is not None else {"dropped": dropped}
    control = [
        written | "Files" >> beam.combiners.ToList() | "TagFiles" >> beam.Map(_tag, "files"),
        _total(beam, batches, "Input") | "TagRows" >> beam.Map(_tag, "input_rows"),
        schema | "InFields" >> beam.Map(schema_fields) | "TagIn" >> beam.Map(_tag, "input_fields"),
        out_schema | "OutFields" >> beam.Map(schema_fields) | "TagOut" >> beam.Map(_tag, "output_fields"),
        *(pc | f"Tag_{k}" >> beam.Map(_tag, f"analyzer:{k}") for k, pc in analyzers.items()),
        *(pc | f"TagCount_{k}" >> beam.Map(_tag, f"count:{k}") for k, pc in counts.items()),
    ]
    _ = (
        control
        | "AllControl" >> beam.Flatten()
        | "Control" >> beam.combiners.ToDict()
        | "WriteControl" >> beam.Map(_write_json, location, CONTROL_FILE, io)
    )
    with worker_errors():
        run_pipeline(p, on_started)
    if output is None:
        done = json.loads(Path(location, CONTROL_FILE).read_text())
    else:
        done = json.loads(store.staged_bytes(output, CONTROL_FILE))
    check_rows(done, cfg.runner or "FnApiRunner")
    if not done["input_rows"]:
        raise DataValidationError(f"{table.description} has no rows")
    row_counts = {name: 0 for name in outputs}
    for f in done["files"]:
        row_counts[f["split"]] += f["rows"]
    return PreprocessResult(
        Path(location) if output is None else None,
        row_counts,
        {k.split(":", 1)[1]: v for k, v in done.items() if k.startswith("analyzer:")},
        done["input_rows"],
        time.monotonic() - started,
        cfg.runner or "FnApiRunner",
        done["input_fields"],
        done["output_fields"],
        sorted(({k: f[k] for k in ("path", "size", "sha256")} for f in done["files"]), key=lambda f: f["path"]),
    )


def _check_local_input(cfg: PreprocessConfig, table: Any) -> None:
    """Input on this machine's own disk (a path, a local store) is checked here before any worker
    starts, as cheaply as before the data plane: the columns from the first batch, and every line
    of JSONL (a bad line would otherwise fail a worker, and FnApiRunner can hang shutting its
    workers down after a failure). Input in S3 is checked by the workers that read it."""
    from airflow_mlcrit.core.tables import TableSource, iter_batches

    local = TableSource([Path(f.uri) for f in table.files], table.fmt, table.description, table.manifest)
    batches = iter_batches(local, 1024)
    check_inputs(cfg, next(batches).schema)
    if table.fmt == "jsonl":
        for _ in batches:
            pass


def _tag(value: Any, key: str) -> tuple[str, Any]:
    return key, value


def shard_tables(table: Any, split: str, shards: int) -> Any:
    """((split, shard), rows of the table in that shard): a row's shard is a function of its
    content, so every runner puts the same rows in the same file."""
    if table.num_rows == 0:
        return
    if shards == 1:
        yield (split, 0), table
        return
    batch = table.combine_chunks().to_batches()[0]
    shard = content_hashes(batch) % np.uint64(shards)
    for s in np.unique(shard):
        yield (split, int(s)), take(batch, shard == s)


def write_shard(item: tuple[tuple[str, int], Any], location: str, shards: int, io: dict) -> dict[str, Any]:
    """Write one shard where the output goes (the store's staged version), its rows ordered by
    their hash: the same rows give the same bytes, whichever runner and bundling. Returns the
    record the commit is built from."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from airflow_mlcrit.core.dataplane import write_file

    (split, shard), tables = item
    table = pa.concat_tables([pa.Table.from_batches([t]) if isinstance(t, pa.RecordBatch) else t for t in tables])
    table = table.combine_chunks()
    if table.num_rows:
        table = table.take(np.argsort(content_hashes(table.to_batches()[0]), kind="stable"))
    rel = f"{split}/part-{shard:05d}-of-{shards:05d}.parquet"
    record = write_file(location, rel, lambda out: pq.write_table(table, out), io)
    return {**record, "split": split, "rows": table.num_rows}


def _records_to_table(records: list[dict], schema: Any) -> Any:
    import pyarrow as pa

    return pa.Table.from_pylist(records, schema=schema)


def _builtin(
    beam: Any, batches: Any, cfg: PreprocessConfig, c: dict, out_schema: Any, fmt_fn: FormatAndTokenize
) -> tuple[dict, dict, Any]:
    """The built-in steps: ({split: tables}, {analyzer: value}, rows dropped on purpose). The
    text steps (normalize .. near dedup) work on the input's text column; batches without one
    (instruction data, whose text the formatting step makes) pass through them."""
    dropped = []  # each filtering step's count of the rows it removed
    if cfg.normalize:
        batches = batches | "Normalize" >> beam.Map(normalize_batch, c)
    if cfg.min_chars is not None or cfg.max_chars is not None:
        filtered = batches | "LengthFilter" >> beam.FlatMap(length_filter, c).with_outputs("dropped", main="kept")
        batches = filtered.kept
        dropped.append(filtered.dropped)
    if cfg.exact_dedup:
        text, other = batches | "HasText" >> beam.Partition(lambda b, n, c=c: 0 if has_text(b, c) else 1, 2)
        picked = (
            text
            | "DedupBuckets" >> beam.FlatMap(to_dedup_buckets, c)
            | "DedupGroup" >> beam.GroupByKey()
            | "DedupPick" >> beam.FlatMap(dedup_group).with_outputs("dropped", main="kept")
        )
        dropped.append(picked.dropped)
        batches = (picked.kept, other) | "Deduped" >> beam.Flatten()
    if cfg.near_dedup_threshold is not None:
        bands, rows = lsh_bands(cfg.minhash_permutations, cfg.near_dedup_threshold)
        dup_ids = (
            batches
            | "Bands" >> beam.FlatMap(band_entries, c, bands, rows)
            | "Buckets" >> beam.GroupByKey()
            | "Candidates" >> beam.FlatMap(near_duplicates, cfg.near_dedup_threshold)
            | "DupIds" >> beam.Distinct()
        )
        near = batches | "DropNear" >> beam.FlatMap(drop_ids, beam.pvalue.AsList(dup_ids)).with_outputs(
            "dropped", main="kept"
        )
        batches = near.kept
        dropped.append(near.dropped)
    analyzers: dict[str, Any] = {}
    if cfg.label_column:
        vocab = (
            batches
            | "Labels" >> beam.FlatMap(batch_labels, c)
            | "LabelSet" >> beam.Distinct()
            | "LabelVocab" >> beam.combiners.ToList()
            | "Sorted" >> beam.Map(sorted)
        )
        analyzers["label_vocabulary"] = vocab
        batches = batches | "EncodeLabel" >> beam.Map(encode_labels, c, beam.pvalue.AsSingleton(vocab))
    if cfg.instruction or cfg.tokenizer:
        batches = batches | "FormatTokenize" >> beam.Map(tokenize_batch, fmt_fn)
    for i, column in enumerate(cfg.analyze_numeric):
        summary = (
            batches
            | f"Partial_{column}" >> beam.Map(numeric_partial, column, cfg.seed + i)
            | f"Merge_{column}" >> beam.CombineGlobally(merge_numeric)
            | f"Summary_{column}" >> beam.Map(numeric_summary)
        )
        for key in ("mean", "std", "quantiles"):
            analyzers[f"{column}.{key}"] = summary | f"{key}_{column}" >> beam.Map(lambda s, key=key: s[key])
    if cfg.vocabulary_size:
        analyzers["word_vocabulary"] = (
            batches
            | "WordCounts" >> beam.Map(word_counts_partial, c)
            | "MergeWords" >> beam.CombineGlobally(merge_counts)
            | "TopWords" >> beam.Map(top_words, cfg.vocabulary_size)
        )
    keyed = batches | "Split" >> beam.FlatMap(keyed_by_split, c)
    names = list(cfg.splits)
    parts = keyed | "Partition" >> beam.Partition(lambda kv, n, names=names: names.index(kv[0]), len(names))
    return (
        {
            name: parts[i] | f"Unkey_{name}" >> beam.Values() | f"Cast_{name}" >> beam.Map(_cast_table, out_schema)
            for i, name in enumerate(names)
        },
        analyzers,
        # no filtering step at all: an empty flatten, whose sum is 0
        tuple(dropped)
        | "AllDropped" >> beam.Flatten(pipeline=batches.pipeline)
        | "DroppedSum" >> beam.CombineGlobally(sum),
    )


def _cast_table(batch: Any, schema: Any) -> Any:
    import pyarrow as pa

    return pa.Table.from_batches([batch]).select(schema.names).cast(schema)


def sum_triples(triples: Any) -> tuple[float, float, float]:
    """Elementwise sum of (count, sum, sum of squares): associative, so Beam can combine partials."""
    n = s = q = 0.0
    for a, b, c in triples:
        n, s, q = n + a, s + b, q + c
    return n, s, q


def std_of(triple: tuple[float, float, float]) -> float | None:
    n, s, q = triple
    return max(0.0, (q - s * s / n) / (n - 1)) ** 0.5 if n >= 2 else None
