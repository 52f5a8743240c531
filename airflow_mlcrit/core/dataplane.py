"""Where Beam steps move data: the workers read inputs and write outputs in the store themselves.

The launcher (the Airflow task) only lists: a dataset artifact's files come from its manifest,
an ``s3://`` prefix from one listing. Workers open each file themselves: ``s3://`` through one
boto3 client per process (:func:`s3_client`), any other URI through Beam's filesystems (the
store's S3 endpoint and credentials travel with the steps' arguments, see :func:`worker_io`),
check it against the manifest digest as they read it, and write output shards straight into a
staged version of the store, recording each shard's path, size and SHA-256; the launcher
commits the version from those records without reading a byte of data. No heavy import at
module level.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from airflow_mlcrit.core.artifacts import ArtifactStore, LocalBackend, Manifest, S3Backend
from airflow_mlcrit.exceptions import ArtifactIntegrityError, ConfigError, DataValidationError

SUFFIXES = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
# Beam 2.77's DaskRunner runs, but silently drops what it does not translate (a second output of
# with_outputs, a second sink) and loses elements of RunInference: refused, not trusted.
REFUSED_RUNNERS = {
    "DaskRunner": "Beam's DaskRunner (as of 2.77) silently drops transforms it does not translate "
    "(extra outputs, a second sink) and loses elements, so a pipeline can commit wrong data without "
    "an error; use FnApiRunner, PortableRunner, FlinkRunner, SparkRunner or DataflowRunner",
}
_SPOOL_IN_MEMORY = 64 << 20  # a worker keeps a file this small in memory, a larger one on its own disk


@dataclass(frozen=True)
class DataFile:
    """One input file as a worker opens it: a URI Beam's filesystems read (``s3://...`` or a
    local path), and the digest to check it against when it is an artifact's file."""

    uri: str
    label: str  # for messages: "train/part-0.parquet of dataset/x@v3"
    sha256: str | None = None
    size: int | None = None
    key: str | None = None  # its key in the artifact store, for readers that go through the store

    @property
    def name(self) -> str:
        return self.uri.rsplit("/", 1)[-1]

    @property
    def suffix(self) -> str:
        return Path(self.name).suffix.lower()


def check_runner(runner: str | None) -> None:
    """A ConfigError for a runner that cannot run these pipelines correctly."""
    short = (runner or "").rsplit(".", 1)[-1]
    if short in REFUSED_RUNNERS:
        raise ConfigError(f"runner {runner!r} is refused: {REFUSED_RUNNERS[short]}")


def artifact_files(store: ArtifactStore, manifest: Manifest) -> list[DataFile]:
    """The data files of a committed version, where workers read them (no byte read here)."""
    prefix = f"{manifest.kind}/{manifest.name}/v{manifest.version:06d}"
    out = []
    for f in manifest.files:
        if Path(f["path"]).suffix.lower() not in SUFFIXES:
            continue
        key = f"{prefix}/{f['path']}"
        uri = str(store.backend.root / key) if isinstance(store.backend, LocalBackend) else store.backend.uri(key)
        out.append(DataFile(uri, f"{f['path']} of {manifest.ref}", f["sha256"], f["size"], key))
    return out


def s3_prefix_files(uri: str, s3_options: dict[str, Any]) -> list[DataFile]:
    """The data files under an ``s3://bucket/prefix`` (one listing; nothing downloaded)."""
    import boto3

    bucket, _, key = uri[len("s3://") :].partition("/")
    client = boto3.client("s3", **s3_options)
    return [
        DataFile(f"s3://{bucket}/{o['Key']}", f"s3://{bucket}/{o['Key']}", None, o["Size"])
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key)
        for o in page.get("Contents", [])
        if Path(o["Key"]).suffix.lower() in SUFFIXES
    ]


_S3_SETTINGS = {
    "endpoint_url": "s3_endpoint_url",
    "region_name": "s3_region_name",
    "aws_access_key_id": "s3_access_key_id",
    "aws_secret_access_key": "s3_secret_access_key",
    "aws_session_token": "s3_session_token",
}


def worker_io(store: ArtifactStore | None, pipeline_options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The S3 settings workers open files with (Beam's S3Options names): the store's endpoint,
    region and keys, overridden by ``s3_*`` entries of the step's pipeline options. Empty for a
    local store, or an S3 connection without keys (the workers' own role then applies).

    They travel with the pipeline's functions, as Beam ships any argument of a DoFn, not as
    pipeline options: runners display those (Dataflow's job page), and FnApiRunner's and an
    external pool's workers never hand them to Beam's FileSystems. Never log them."""
    io = {}
    if store is not None and isinstance(store.backend, S3Backend):
        io = {_S3_SETTINGS[k]: v for k, v in store.backend.client_options.items() if k in _S3_SETTINGS}
    io.update({k: v for k, v in (pipeline_options or {}).items() if k in _S3_SETTINGS.values() and v})
    return io


_CLIENTS: dict[tuple, Any] = {}
_CLIENTS_LOCK = threading.Lock()


def s3_client(io: Mapping[str, Any] | None) -> Any:
    """The boto3 S3 client for these settings (``worker_io``; none: the process's own credentials
    and region), one per process: clients are thread-safe. Beam's S3 filesystem builds a session
    and a client for every file it opens (0.15 to 0.2 s each), which was most of what the data
    plane cost over the download-first path (docs/benchmarks.md, "Beam data plane")."""
    key = (os.getpid(), *sorted((io or {}).items()))  # a forked child builds its own
    with _CLIENTS_LOCK:
        if key not in _CLIENTS:
            import boto3

            settings = dict(key[1:])
            kwargs = {boto: settings[beam] for boto, beam in _S3_SETTINGS.items() if beam in settings}
            _CLIENTS[key] = boto3.session.Session().client("s3", **kwargs)
        return _CLIENTS[key]


def _s3_object(uri: str) -> tuple[str, str]:
    bucket, _, key = uri[len("s3://") :].partition("/")
    return bucket, key


def _open_source(uri: str, io: Mapping[str, Any] | None) -> Any:
    """A stream of the file at ``uri``, or None where there is none."""
    if uri.startswith("s3://"):
        from botocore.exceptions import ClientError

        bucket, key = _s3_object(uri)
        try:
            return s3_client(io).get_object(Bucket=bucket, Key=key)["Body"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
                return None
            raise
    from apache_beam.io.filesystem import CompressionTypes
    from apache_beam.io.filesystems import FileSystems

    try:
        return FileSystems.open(uri, compression_type=CompressionTypes.UNCOMPRESSED)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if "Not Found" not in str(exc) and "404" not in str(exc):
            raise
        return None


def open_verified(f: DataFile, io: Mapping[str, Any] | None = None) -> IO[bytes]:
    """The whole file, read once where this runs and checked against its digest as it is read
    (see :func:`spool_verified`)."""
    src = _open_source(f.uri, io)
    if src is None:
        if f.sha256 is not None:
            raise ArtifactIntegrityError(f"{f.label} is listed in its manifest but missing from the store") from None
        raise DataValidationError(f"{f.label} does not exist (any more)") from None
    return spool_verified(src, f)


def spool_verified(src: Any, f: DataFile) -> IO[bytes]:
    """Copy the stream ``src`` (closed after) into a spool, hashing it; a file whose digest or
    size differs from its manifest's is an ArtifactIntegrityError naming it. The spool stays in
    memory up to 64 MiB, beyond that on this machine's disk, so a format that seeks (Parquet) can
    read it: disk use is bounded by the largest file, not the dataset."""
    spool = tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY, prefix="mlcrit-in-")
    digest, size = hashlib.sha256(), 0
    try:
        with contextlib.closing(src):
            while chunk := src.read(8 << 20):
                digest.update(chunk)
                spool.write(chunk)
                size += len(chunk)
    except BaseException:
        spool.close()
        raise
    if f.sha256 is not None and (digest.hexdigest() != f.sha256 or size != f.size):
        spool.close()
        raise ArtifactIntegrityError(
            f"{f.label} does not match its manifest digest (expected sha256 {f.sha256[:12]}..., {f.size} bytes; "
            f"read {digest.hexdigest()[:12]}..., {size} bytes): the stored copy is corrupt; restore it or use "
            "another version"
        )
    spool.seek(0)
    return spool


class HashingWriter:
    """A write-only stream that hashes and counts what passes through it."""

    closed = False  # the file-object protocol pyarrow checks

    def __init__(self, raw: Any):
        self.raw, self.sha256, self.size = raw, hashlib.sha256(), 0

    def write(self, data: bytes) -> int:
        data = bytes(data)
        self.raw.write(data)
        self.sha256.update(data)
        self.size += len(data)
        return len(data)

    def tell(self) -> int:
        return self.size

    def writable(self) -> bool:
        return True

    def flush(self) -> None:
        pass

    def close(self) -> None:  # the caller closes the underlying stream
        pass


def write_file(location: str, rel: str, fill: Any, io: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Write ``location/rel`` with ``fill(stream)``, and return its record {path, size, sha256}:
    what the commit is built from. To S3 the bytes go through a spool (in memory up to 64 MiB,
    beyond that on this worker's disk), then boto3's threaded multipart upload; elsewhere through
    Beam's filesystems."""
    uri = f"{location.rstrip('/')}/{rel}"
    if uri.startswith("s3://"):
        with tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY, prefix="mlcrit-out-") as spool:
            out = HashingWriter(spool)
            fill(out)
            spool.seek(0)
            bucket, key = _s3_object(uri)
            s3_client(io).upload_fileobj(spool, bucket, key)
    else:
        from apache_beam.io.filesystems import FileSystems

        if "://" not in uri:
            Path(uri).parent.mkdir(parents=True, exist_ok=True)
        with FileSystems.create(uri) as raw:
            out = HashingWriter(raw)
            fill(out)
    return {"path": rel, "size": out.size, "sha256": out.sha256.hexdigest()}
