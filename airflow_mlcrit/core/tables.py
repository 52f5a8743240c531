"""Tabular inputs (Parquet, CSV, JSONL) from a path, an S3 URI or a dataset artifact, read in
bounded record batches with pyarrow. Bad input becomes one clear DataValidationError."""

from __future__ import annotations

import contextlib
import os
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from airflow_mlcrit.core.artifacts import ArtifactStore, Manifest
from airflow_mlcrit.core.artifacts.refs import KINDS
from airflow_mlcrit.core.dataplane import SUFFIXES, DataFile
from airflow_mlcrit.exceptions import ArtifactIntegrityError, ConfigError, DataValidationError, MissingDependencyError

FORMATS = ("parquet", "csv", "jsonl")
_SUFFIXES = SUFFIXES


def _pyarrow():
    try:
        import pyarrow

        return pyarrow
    except ImportError:
        raise MissingDependencyError("pyarrow", "validation") from None


def is_artifact_ref(source: str) -> bool:
    head = source.split("/", 1)[0]
    return "://" not in source and head in KINDS and source.count("/") == 1


@dataclass
class TableSource:
    """The files of one table, with where they came from: local paths, or DataFiles that are read
    (and checked against their digests) where this runs, a Beam worker included."""

    files: list[Path] | list[DataFile]
    fmt: str
    description: str
    manifest: Manifest | None = None  # set when the source is an artifact
    io: dict[str, Any] = field(default_factory=dict, repr=False)  # S3 settings of DataFiles (dataplane.worker_io)
    # opens a DataFile here (store or boto3); None: through Beam's filesystems, as a worker does
    reader: Any = field(default=None, repr=False)

    def close(self) -> None:
        """Nothing is held between reads; kept so that a table is a context manager."""

    def __enter__(self) -> TableSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _detect_format(files: list[Path], fmt: str, description: str) -> str:
    if fmt != "auto":
        if fmt not in FORMATS:
            raise ConfigError(f"format must be one of auto, {', '.join(FORMATS)}; got {fmt!r}")
        return fmt
    found = {_SUFFIXES.get(f.suffix.lower()) for f in files}
    found.discard(None)
    if len(found) != 1:
        raise ConfigError(
            f"cannot tell the format of {description} from its file names "
            f"({', '.join(sorted(f.name for f in files)[:5])}): set format to one of {', '.join(FORMATS)}"
        )
    return found.pop()


def locate_table(
    source: str, *, store: ArtifactStore | None = None, fmt: str = "auto", s3_options: dict[str, Any] | None = None
) -> TableSource:
    """Like :func:`open_table`, but nothing is downloaded: the table's files as DataFiles that a
    worker reads (artifact files from the manifest, an ``s3://`` prefix from one listing)."""
    from airflow_mlcrit.core.dataplane import artifact_files, s3_prefix_files

    if not isinstance(source, str) or not source:
        raise ConfigError(f"data source must be a path, an s3:// URI or an artifact reference; got {source!r}")
    if is_artifact_ref(source.split("@")[0]):
        if store is None:
            raise ConfigError(f"{source!r} is an artifact reference but no artifact store was given")
        manifest = store.resolve(source)
        files = artifact_files(store, manifest)
        if not files:
            raise DataValidationError(
                f"{manifest.ref} has no .parquet, .csv or .jsonl files: {', '.join(f['path'] for f in manifest.files)}"
            )
        return TableSource(files, _detect_format(files, fmt, str(manifest.ref)), str(manifest.ref), manifest)
    if source.startswith("s3://"):
        files = s3_prefix_files(source, s3_options or {})
        if not files:
            raise DataValidationError(f"no .parquet, .csv or .jsonl objects at {source}")
        return TableSource(files, _detect_format(files, fmt, source), source)
    local = open_table(source, fmt=fmt)
    return TableSource([DataFile(str(p), str(p)) for p in local.files], local.fmt, local.description)


def _data_files(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in _SUFFIXES)
    return files


def open_table(
    source: str, *, store: ArtifactStore | None = None, fmt: str = "auto", s3_options: dict[str, Any] | None = None
) -> TableSource:
    """Resolve ``source`` (a local path, ``s3://bucket/key`` or ``kind/name@selector``) to a table
    that :func:`iter_batches` streams here: an artifact's files through the store, checked
    against their digests, and an ``s3://`` prefix's objects, one file at a time. Nothing is
    copied first; local disk holds at most one file beyond 64 MiB (dataplane.open_verified)."""
    if not isinstance(source, str) or not source:
        raise ConfigError(f"data source must be a path, an s3:// URI or an artifact reference; got {source!r}")
    if is_artifact_ref(source.split("@")[0]) or source.startswith("s3://"):
        located = locate_table(source, store=store, fmt=fmt, s3_options=s3_options)
        if located.manifest is not None:
            located.reader = _store_reader(store)
        else:
            located.reader = _s3_reader(s3_options or {})
        return located
    path = Path(source)
    if not path.exists():
        raise DataValidationError(f"data source {source} does not exist: check the path (or the artifact reference)")
    files = _data_files(path)
    if not files:
        raise DataValidationError(f"directory {source} has no .parquet, .csv or .jsonl files")
    return TableSource(files, _detect_format(files, fmt, source), source)


def _store_reader(store: ArtifactStore) -> Any:
    from airflow_mlcrit.core.dataplane import spool_verified

    def read(f: DataFile) -> IO[bytes]:
        try:
            return spool_verified(store.backend.open_read(f.key), f)
        except FileNotFoundError:
            raise ArtifactIntegrityError(f"{f.label} is listed in its manifest but missing from the store") from None

    return read


def _s3_reader(s3_options: dict[str, Any]) -> Any:
    import boto3

    from airflow_mlcrit.core.dataplane import spool_verified

    client = boto3.client("s3", **s3_options)

    def read(f: DataFile) -> IO[bytes]:
        bucket, _, key = f.uri[len("s3://") :].partition("/")
        return spool_verified(client.get_object(Bucket=bucket, Key=key)["Body"], f)

    return read


def iter_batches(table: TableSource, batch_size: int = 65_536, columns: list[str] | None = None) -> Iterator[Any]:
    """Yield pyarrow RecordBatches of at most about ``batch_size`` rows, file after file.

    Every file must have the same columns and types as the first; problems name the file. A
    DataFile is read where this runs and checked against its digest first.
    """
    pa = _pyarrow()
    import pyarrow.csv as pcsv
    import pyarrow.json as pjson
    import pyarrow.parquet as pq

    expected = None
    total = 0
    for f in table.files:
        where = _where(table, f)
        with _opened(f, table) as src:
            if _size(src) == 0:
                raise DataValidationError(f"{where} is empty (0 bytes): nothing to read")
            try:
                if table.fmt == "parquet":
                    reader = pq.ParquetFile(src).iter_batches(batch_size=batch_size, columns=columns)
                elif table.fmt == "csv":
                    reader = pcsv.open_csv(
                        src,
                        read_options=pcsv.ReadOptions(block_size=1 << 22),
                        convert_options=pcsv.ConvertOptions(include_columns=columns or []),
                    )
                else:
                    reader = pjson.open_json(src, read_options=jsonl_read_options(src, where))
                for batch in reader:
                    if table.fmt == "jsonl" and columns:
                        batch = batch.select(columns)
                    _check_utf8(batch, where, total)
                    if expected is None:
                        _check_names(batch.schema.names, where)
                        expected = batch.schema
                    elif not batch.schema.equals(expected):
                        raise DataValidationError(schema_diff(where, expected, batch.schema))
                    total += batch.num_rows
                    if batch.num_rows > batch_size and table.fmt != "parquet":
                        for offset in range(0, batch.num_rows, batch_size):
                            yield batch.slice(offset, batch_size)
                    else:
                        yield batch
            except DataValidationError:
                raise
            except (pa.ArrowInvalid, pa.ArrowTypeError, UnicodeDecodeError, OSError) as exc:
                raise DataValidationError(f"cannot read {where} as {table.fmt}: {_clean(exc)}") from None
    if total == 0:
        raise DataValidationError(f"{table.description} has no rows")


@contextlib.contextmanager
def _opened(f: Path | DataFile, table: TableSource) -> Iterator[Any]:
    """A local path as it is; a DataFile read whole and checked against its digest."""
    if not isinstance(f, DataFile):
        yield f
        return
    from airflow_mlcrit.core.dataplane import open_verified

    spool = table.reader(f) if table.reader is not None else open_verified(f, table.io)
    try:
        yield spool
    finally:
        spool.close()


def _size(src: Any) -> int:
    if isinstance(src, (str, Path)):
        return os.path.getsize(src)
    size = src.seek(0, os.SEEK_END)
    src.seek(0)
    return size


_NOT_AN_OBJECT = re.compile(rb"(?:^|\n)[ \t\r]*([^{ \t\r\n])")
JSON_BLOCK = 1 << 22


def jsonl_read_options(path: str | Path | IO[bytes], where: str | None = None) -> Any:
    """pyarrow JSON read options for ``path`` (or an open binary file, rewound after), after
    checking that every non-blank line starts a JSON object (pyarrow 25's reader crashes the
    process, SIGSEGV, on a block that starts with `null`). The block size fits the longest line:
    pyarrow cannot read a row across blocks."""
    import numpy as np
    import pyarrow.json as pjson

    where = where or str(path)
    line, rest, longest = 1, b"", 0
    opened = isinstance(path, (str, Path))
    with open(path, "rb") if opened else contextlib.nullcontext(path) as f:
        while block := f.read(JSON_BLOCK):
            data = rest + block
            cut = data.rfind(b"\n") + 1
            data, rest = (data[:cut], data[cut:]) if cut else (b"", data)
            if data:
                _find_non_object(data, line, where)
                ends = np.flatnonzero(np.frombuffer(data, np.uint8) == 10)
                longest = max(longest, int(np.diff(ends, prepend=-1).max()))
                line += len(ends)
    if not opened:
        path.seek(0)
    _find_non_object(rest, line, where)
    longest = max(longest, len(rest))
    return pjson.ReadOptions(block_size=max(JSON_BLOCK, 1 << int(longest).bit_length()))


def _find_non_object(data: bytes, line: int, where: str) -> None:
    m = _NOT_AN_OBJECT.search(data)
    if m:
        at = line + data.count(b"\n", 0, m.start(1))
        text = data[m.start(1) : m.start(1) + 40].split(b"\n")[0].decode("utf-8", "replace")
        raise DataValidationError(f"{where} line {at} is not a JSON object ({text!r}): JSONL needs one object per line")


def _check_names(names: list[str], where: str) -> None:
    dups = sorted(n for n, count in Counter(names).items() if count > 1)
    if dups:
        raise DataValidationError(f"{where} has duplicated column names {dups}: give every column a unique name")


def _check_utf8(batch: Any, where: str, offset: int) -> None:
    """pyarrow reads CSV text with invalid UTF-8 as binary, and JSON text unchecked as strings,
    instead of failing: turn both into an error naming the column and row."""
    import pyarrow as pa

    for index, field_ in enumerate(batch.schema):
        column, kind = batch.column(index), field_.type
        if pa.types.is_string(kind) or pa.types.is_large_string(kind):
            try:
                column.validate(full=True)
                continue
            except pa.ArrowInvalid:
                column = column.cast(pa.binary() if pa.types.is_string(kind) else pa.large_binary(), safe=False)
        elif pa.types.is_nested(kind):
            try:
                column.validate(full=True)
            except pa.ArrowInvalid as exc:
                raise DataValidationError(
                    f"{where}: column {field_.name!r} holds invalid values ({_clean(exc)}); re-export the file as UTF-8"
                ) from None
            continue
        elif not (pa.types.is_binary(kind) or pa.types.is_large_binary(kind)):
            continue
        for i, value in enumerate(column.to_pylist()):
            try:
                value is None or value.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataValidationError(
                    f"{where} is not valid UTF-8: column {field_.name!r}, data row "
                    f"{offset + i + 1}: {exc.reason} at byte {exc.start}; re-export the file as UTF-8"
                ) from None


def _where(table: TableSource, path: Path | DataFile) -> str:
    if isinstance(path, DataFile):
        return path.label
    if table.manifest is not None:
        return f"{path.name} of {table.description}"
    return str(path) if len(table.files) > 1 or str(path) != table.description else table.description


def _clean(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def schema_diff(where: str, expected: Any, got: Any) -> str:
    exp = {f.name: str(f.type) for f in expected}
    cur = {f.name: str(f.type) for f in got}
    parts = [f"missing column {c!r}" for c in exp if c not in cur]
    parts += [f"unexpected column {c!r}" for c in cur if c not in exp]
    parts += [f"column {c!r} is {cur[c]}, expected {exp[c]}" for c in exp if c in cur and cur[c] != exp[c]]
    return (
        f"{where} does not match the schema of the first file: {'; '.join(parts)}; "
        "write all files of a table with the same columns and types"
    )
