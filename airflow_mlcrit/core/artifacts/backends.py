"""Storage backends behind the artifact store: a local directory and S3 (boto3).

Keys are '/'-separated paths relative to the store root. Every backend offers the same small
set of primitives; the store builds versions, aliases and history from them. The one primitive
that needs care is ``create_exclusive``: it is the compare-and-swap everything else relies on
(local: ``link(2)`` of a fully written temp file, which fails if the target exists; S3: a
conditional ``PutObject`` with ``If-None-Match: *``).
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Protocol
from urllib.parse import urlparse

from airflow_mlcrit.exceptions import ArtifactError, ConfigError, InvalidReferenceError


@functools.cache
def _umask() -> int:
    """The process umask, read without changing it (os.umask sets it, racing other threads)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


CHUNK = 8 * 1024 * 1024


def sha256_file(path: str | os.PathLike[str]) -> tuple[str, int]:
    """Stream ``path`` through SHA-256; return (hex digest, size)."""
    with open(path, "rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()  # type: ignore[attr-defined]
    return digest, os.path.getsize(path)


def _copy_and_hash(
    src: str | os.PathLike[str], dst: str | os.PathLike[str], *, durable: bool = False
) -> tuple[str, int]:
    """Copy with the kernel's fast path (then fsync when ``durable``) while a second thread
    hashes the source.

    Hashing runs on the other core, so a put or get costs about max(copy + fsync, SHA-256), not
    their sum; SHA-256 (one core, about 1-1.4 GB/s) is the floor. See docs/benchmarks.md.
    """
    with ThreadPoolExecutor(1) as pool:
        hashed = pool.submit(sha256_file, src)
        shutil.copyfile(src, dst)
        if durable:
            _fsync(dst)
        return hashed.result()


def _fsync(path: str | os.PathLike[str]) -> None:
    """fsync a file or a directory (a directory's fsync makes the names in it durable)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def check_key(key: str) -> str:
    """Reject keys that could escape the root: empty parts, '.', '..', backslashes, absolute paths."""
    parts = key.split("/")
    if not key or key.startswith("/") or "\\" in key or "\x00" in key or any(p in ("", ".", "..") for p in parts):
        raise InvalidReferenceError(f"unsafe storage key {key!r}: keys are relative paths without '.', '..' or '//'")
    return key


class Backend(Protocol):
    root_uri: str
    namespace: str  # OpenLineage dataset namespace
    path_prefix: str  # OpenLineage dataset name prefix

    def uri(self, key: str) -> str: ...
    def read_bytes(self, key: str) -> bytes: ...  # FileNotFoundError if absent
    def write_bytes(self, key: str, data: bytes) -> None: ...  # atomic overwrite
    def create_exclusive(self, key: str, data: bytes) -> bool: ...  # False if the key exists
    def exists(self, key: str) -> bool: ...
    def list_keys(self, prefix: str) -> list[str]: ...  # every key under prefix/, sorted
    def list_sizes(self, prefix: str) -> dict[str, int]: ...  # {key: size} under prefix/ (one listing)
    def list_children(self, prefix: str) -> list[str]: ...  # immediate child names under prefix/
    def delete(self, key: str) -> None: ...
    def delete_prefix(self, prefix: str) -> None: ...
    def upload_file(self, key: str, src: Path) -> tuple[str, int]: ...  # returns (sha256, size)
    def persist(self, prefix: str) -> None: ...  # make everything under prefix durable
    def download_file(self, key: str, dest: Path) -> tuple[str, int]: ...
    def open_read(self, key: str) -> IO[bytes]: ...


class LocalBackend:
    """A directory on a local or shared (NFS) filesystem."""

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root).expanduser().resolve()
        self.root_uri = self.root.as_uri()
        self.namespace = f"file://{socket.gethostname()}"
        self.path_prefix = str(self.root).lstrip("/")

    def __repr__(self) -> str:
        return f"LocalBackend({str(self.root)!r})"

    def _path(self, key: str) -> Path:
        path = self.root / check_key(key)
        # Defense in depth: a symlink inside the root must not lead outside it either.
        if not path.resolve().is_relative_to(self.root):
            raise InvalidReferenceError(f"storage key {key!r} resolves outside the store root {self.root}")
        return path

    def _prefix_path(self, prefix: str) -> Path:
        return self._path(prefix) if prefix else self.root

    def uri(self, key: str) -> str:
        return self._path(key).as_uri()

    def read_bytes(self, key: str) -> bytes:
        return self._path(key).read_bytes()

    def _temp_beside(self, path: Path, data: bytes) -> str:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        # mkstemp makes 0600; a store shared by several service accounts needs the umask's mode
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        return tmp

    def write_bytes(self, key: str, data: bytes) -> None:
        path = self._path(key)
        os.replace(self._temp_beside(path, data), path)
        _fsync(path.parent)

    def create_exclusive(self, key: str, data: bytes) -> bool:
        path = self._path(key)
        tmp = self._temp_beside(path, data)
        try:
            os.link(tmp, path)  # atomic, and readers never see a half-written file
        except FileExistsError:
            return False
        finally:
            os.unlink(tmp)
        _fsync(path.parent)  # the new name survives a power loss once we say it exists
        return True

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list_keys(self, prefix: str) -> list[str]:
        base = self._prefix_path(prefix)
        if not base.is_dir():
            return []
        keys = []
        for dirpath, _dirs, files in os.walk(base):
            rel = Path(dirpath).relative_to(self.root).as_posix()
            keys.extend(f"{rel}/{f}" for f in files if not f.startswith(".tmp-"))
        return sorted(keys)

    def list_sizes(self, prefix: str) -> dict[str, int]:
        return {key: (self.root / key).stat().st_size for key in self.list_keys(prefix)}

    def list_children(self, prefix: str) -> list[str]:
        base = self._prefix_path(prefix)
        try:
            return sorted(n for n in os.listdir(base) if not n.startswith(".tmp-"))
        except (FileNotFoundError, NotADirectoryError):
            return []

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def delete_prefix(self, prefix: str) -> None:
        shutil.rmtree(self._path(prefix), ignore_errors=True)

    def upload_file(self, key: str, src: Path) -> tuple[str, int]:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        # fsync here, overlapped with hashing: the manifest (the commit) must never reach the
        # disk before the bytes it vouches for.
        return _copy_and_hash(src, path, durable=True)

    def persist(self, prefix: str) -> None:
        """fsync every directory under ``prefix`` and its parent: payload files are synced by
        upload_file, but their names live in the directories."""
        base = self._path(prefix)
        for dirpath, _dirs, _files in os.walk(base, topdown=False):
            _fsync(dirpath)
        _fsync(base.parent)

    def download_file(self, key: str, dest: Path) -> tuple[str, int]:
        return _copy_and_hash(self._path(key), dest)

    def open_read(self, key: str) -> IO[bytes]:
        return open(self._path(key), "rb")


# A refused conditional write. 412: the key exists; 409: a concurrent conditional write to it is in flight.
_KEY_EXISTS = ("PreconditionFailed", "ConditionalRequestConflict")


class S3Backend:
    """An S3 bucket and prefix, through boto3 (AWS, MinIO or any S3-compatible store).

    Requires conditional writes (``If-None-Match``), which AWS S3 has supported since 2024 and
    MinIO for longer. Before its first write the backend checks, on a probe key of its own, that
    the server enforces them, and refuses every write if it does not: without them two writers
    could both be told they committed the same version.
    """

    PROBE_PREFIX = "_mlcrit/conditional-write-probe"
    # (endpoint, bucket, prefix) -> None when the server enforces If-None-Match, else the error
    _probed: dict[tuple[str, str, str], str | None] = {}

    def __init__(
        self,
        uri: str,
        *,
        endpoint_url: str | None = None,
        region_name: str | None = None,
        aws_access_key_id: str | None = None,
        aws_secret_access_key: str | None = None,
        aws_session_token: str | None = None,
        max_attempts: int = 5,
        client=None,
    ):
        parsed = urlparse(uri)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise ConfigError(f"S3 artifact root must look like 's3://bucket/prefix', got {uri!r}")
        self.bucket = parsed.netloc
        self.prefix = parsed.path.strip("/")
        if self.prefix:
            check_key(self.prefix)
        self.root_uri = f"s3://{self.bucket}/{self.prefix}".rstrip("/")
        self.namespace = f"s3://{self.bucket}"
        self.path_prefix = self.prefix
        self.max_attempts = max_attempts
        # what Beam workers need to reach the same server (core/dataplane.py); never in repr or logs
        self.client_options = {
            k: v
            for k, v in {
                "endpoint_url": endpoint_url,
                "region_name": region_name,
                "aws_access_key_id": aws_access_key_id,
                "aws_secret_access_key": aws_secret_access_key,
                "aws_session_token": aws_session_token,
            }.items()
            if v
        }
        if client is None:
            import boto3
            from botocore.config import Config

            config = Config(
                retries={"mode": "standard", "max_attempts": max_attempts},
                s3={"addressing_style": "path" if endpoint_url else "auto"},
                connect_timeout=10,
                read_timeout=60,
            )
            client = boto3.session.Session().client(
                "s3",
                endpoint_url=endpoint_url,
                region_name=region_name,
                aws_access_key_id=aws_access_key_id,
                aws_secret_access_key=aws_secret_access_key,
                aws_session_token=aws_session_token,
                config=config,
            )
        self.client = client
        self.endpoint = getattr(client.meta, "endpoint_url", None) or endpoint_url or "S3"

    def __repr__(self) -> str:
        return f"S3Backend({self.root_uri!r})"

    def require_conditional_writes(self) -> None:
        """Fail closed, once per bucket, prefix and process, on a server that ignores
        ``If-None-Match: *``: write a probe key twice; the second write must be refused."""
        import uuid

        from botocore.exceptions import BotoCoreError, ClientError

        where = (self.endpoint, self.bucket, self.prefix)
        if where not in self._probed:
            key = f"{self.PROBE_PREFIX}/{uuid.uuid4().hex}"

            def put(body: bytes) -> bool:
                """Whether the write went through; False: refused as the key exists."""
                try:
                    self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=body, IfNoneMatch="*")
                    return True
                except ClientError as exc:
                    if exc.response.get("Error", {}).get("Code") in _KEY_EXISTS:
                        return False
                    raise self._error(exc, key) from exc
                except BotoCoreError as exc:
                    raise self._error(exc, key) from exc

            try:
                put(b"first")  # refused only if a retry met our own first attempt: the key is new
                problem = None
                if put(b"second"):
                    problem = (
                        f"the S3 server at {self.endpoint} ignores conditional writes (If-None-Match: *): a second "
                        f"PutObject of the probe key {self.uri(key)} succeeded where it must fail with 412 "
                        "Precondition Failed"
                    )
            finally:
                try:
                    self.delete(key)
                except ArtifactError:
                    pass  # a probe key left behind holds no artifact; gc lists nothing under it
            self._probed[where] = problem
        if self._probed[where]:
            raise ArtifactError(
                f"refusing to write to {self.root_uri}: {self._probed[where]}. Versions, manifests and alias moves "
                "rely on compare-and-swap: without it two writers could both commit the same version. Use a "
                "server that enforces If-None-Match (AWS S3, MinIO, SeaweedFS, recent Ceph RGW) or a local store"
            )

    def _key(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _dir(self, prefix: str) -> str:
        return self._key(prefix) + "/" if prefix else (self.prefix + "/" if self.prefix else "")

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"

    def _error(self, exc: Exception, key: str) -> Exception:
        from botocore.exceptions import ClientError

        if isinstance(exc, ClientError):
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("NoSuchKey", "404", "NotFound"):
                return FileNotFoundError(self.uri(key))
            message = exc.response.get("Error", {}).get("Message", "")
            attempts = exc.response.get("ResponseMetadata", {}).get("RetryAttempts", 0) + 1
            return ArtifactError(
                f"S3 request for {self.uri(key)} failed after {attempts} attempts: {code}: {message}".rstrip(": ")
            )
        # Connection errors: botocore has retried them max_attempts times (its retries, not
        # counting the first try) by now.
        return ArtifactError(f"S3 request for {self.uri(key)} failed after {self.max_attempts + 1} attempts: {exc}")

    def _call(self, key: str, fn, **kwargs):
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn(Bucket=self.bucket, **kwargs)
        except (ClientError, BotoCoreError) as exc:
            raise self._error(exc, key) from exc

    def read_bytes(self, key: str) -> bytes:
        return self._call(key, self.client.get_object, Key=self._key(key))["Body"].read()

    def write_bytes(self, key: str, data: bytes) -> None:
        self.require_conditional_writes()
        self._call(key, self.client.put_object, Key=self._key(key), Body=data)

    def create_exclusive(self, key: str, data: bytes) -> bool:
        from botocore.exceptions import ClientError

        self.require_conditional_writes()
        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, IfNoneMatch="*")
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in _KEY_EXISTS:
                raise self._error(exc, key) from exc
            if exc.response.get("ResponseMetadata", {}).get("RetryAttempts", 0) == 0:
                return False
        # A retried write met an object: our first attempt may have landed with its answer lost.
        # Our bytes are unique (claims, manifests and alias moves carry writer and time), so
        # equal bytes mean the key is ours.
        try:
            return self.read_bytes(key) == data
        except FileNotFoundError:
            return False  # a 409 on the retry, and the other writer has not finished yet

    def exists(self, key: str) -> bool:
        try:
            self._call(key, self.client.head_object, Key=self._key(key))
            return True
        except FileNotFoundError:
            return False

    def _list(self, prefix: str, delimiter: bool) -> Iterator[dict]:
        from botocore.exceptions import BotoCoreError, ClientError

        kwargs = {"Bucket": self.bucket, "Prefix": self._dir(prefix)}
        if delimiter:
            kwargs["Delimiter"] = "/"
        try:
            yield from self.client.get_paginator("list_objects_v2").paginate(**kwargs)
        except (ClientError, BotoCoreError) as exc:
            raise self._error(exc, prefix) from exc

    def list_keys(self, prefix: str) -> list[str]:
        strip = len(self.prefix) + 1 if self.prefix else 0
        return sorted(o["Key"][strip:] for page in self._list(prefix, False) for o in page.get("Contents", []))

    def list_sizes(self, prefix: str) -> dict[str, int]:
        strip = len(self.prefix) + 1 if self.prefix else 0
        return {o["Key"][strip:]: o["Size"] for page in self._list(prefix, False) for o in page.get("Contents", [])}

    def list_children(self, prefix: str) -> list[str]:
        start = len(self._dir(prefix))
        names = set()
        for page in self._list(prefix, True):
            names.update(p["Prefix"][start:].rstrip("/") for p in page.get("CommonPrefixes", []))
            names.update(o["Key"][start:] for o in page.get("Contents", []))
        return sorted(names)

    def delete(self, key: str) -> None:
        self._call(key, self.client.delete_object, Key=self._key(key))

    def delete_prefix(self, prefix: str) -> None:
        keys = self.list_keys(prefix)
        for i in range(0, len(keys), 1000):
            batch = [{"Key": self._key(k)} for k in keys[i : i + 1000]]
            self._call(prefix, self.client.delete_objects, Delete={"Objects": batch, "Quiet": True})

    @staticmethod
    def _transfer_config(part_mb: int):
        from boto3.s3.transfer import TransferConfig

        # Uploads: 16 MiB parts; downloads: 64 MiB ranged GETs (fewer requests). Measured in
        # dev/bench/bench_artifacts.py; see docs/benchmarks.md.
        return TransferConfig(multipart_threshold=part_mb * 1024 * 1024, multipart_chunksize=part_mb * 1024 * 1024)

    def upload_file(self, key: str, src: Path) -> tuple[str, int]:
        from boto3.exceptions import S3UploadFailedError
        from botocore.exceptions import BotoCoreError, ClientError

        self.require_conditional_writes()
        # Hash on a second thread while s3transfer streams multipart uploads: no whole-file reads.
        with ThreadPoolExecutor(1) as pool:
            hashed = pool.submit(sha256_file, src)
            try:
                self.client.upload_file(str(src), self.bucket, self._key(key), Config=self._transfer_config(16))
            except (ClientError, BotoCoreError, S3UploadFailedError) as exc:
                raise self._error(exc, key) from exc
            return hashed.result()

    def persist(self, prefix: str) -> None:
        """Nothing to do: S3 acknowledges a PUT only once the object is stored durably."""

    def download_file(self, key: str, dest: Path) -> tuple[str, int]:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.download_file(self.bucket, self._key(key), str(dest), Config=self._transfer_config(64))
        except (ClientError, BotoCoreError) as exc:
            raise self._error(exc, key) from exc
        return sha256_file(dest)

    def open_read(self, key: str) -> IO[bytes]:
        return self._call(key, self.client.get_object, Key=self._key(key))["Body"]
