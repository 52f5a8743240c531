"""The artifact store: immutable versions committed by manifest, CAS aliases with history.

Layout under the root (see docs/concepts.md)::

    <kind>/<name>/v000003/<payload files>   the version's files
    <kind>/<name>/v000003/_CLAIM.json       version number taken (exclusive create)
    <kind>/<name>/v000003/_MANIFEST.json    written last: the commit point
    <kind>/<name>/_aliases/<alias>/h000001.json   alias history; the newest entry is the alias
    <kind>/<name>/_aliases/<alias>/HEAD.json      the newest entry's number and digest
    _mlcrit/signing.json                          present once a keyed writer signed a record
    <kind>/<name>/_idempotency/<sha256>.json      idempotency key -> version
    <kind>/<name>/_children/v000003/<kind>/<name>/v000005   downstream index
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import platform
import re
import socket
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from airflow_mlcrit.core.artifacts.backends import Backend, LocalBackend, S3Backend, check_key
from airflow_mlcrit.core.artifacts.ledger import AliasLedger, AliasMove
from airflow_mlcrit.core.artifacts.records import default_producer, digest_except, dumps, utcnow
from airflow_mlcrit.core.artifacts.refs import (
    KINDS,
    ArtifactRef,
    parse_key,
    parse_ref,
    validate_kind,
    validate_name,
)
from airflow_mlcrit.core.artifacts.signing import Signer
from airflow_mlcrit.exceptions import (
    ArtifactConflictError,
    ArtifactError,
    ArtifactIntegrityError,
    ArtifactNotFoundError,
    ConfigError,
    FencedError,
    InvalidReferenceError,
)

MANIFEST = "_MANIFEST.json"
_RECLAIMED = "reclaimed_by"  # the key of gc's tombstone in place of a manifest
CLAIM = "_CLAIM.json"
SIGNED_MARKER = "_mlcrit/signing.json"  # written by the first signed write: keyless clients then refuse
RESERVED_FILES = frozenset({MANIFEST, CLAIM})
STAGING = "_staging"  # <kind>/<name>/vN/_staging/: writers' control records of a staged version
# 2: manifest_digest covers every field. Format 1 (airflow-mlcrit 0.1) hashed only the file list,
# so its other fields could be edited unnoticed: it is refused, not trusted.
MANIFEST_FORMAT = 2
_VERSION_DIR = re.compile(r"v([0-9]{6,})")
_UNSET: Any = object()
# Heavy libraries whose versions go into a manifest when the producing process has loaded them.
_TRACKED_LIBRARIES = ("torch", "transformers", "peft", "apache_beam", "great_expectations", "pyarrow", "numpy")


def _vdir(version: int) -> str:
    return f"v{version:06d}"


def _attempt_key(idempotency_key: str, parent_list: list[dict[str, str]]) -> str:
    # Same key + same inputs = a retry. Changed inputs (a cleared task re-run after a fix
    # upstream) make a new version rather than returning a stale one.
    inputs = hashlib.sha256(json.dumps(parent_list, sort_keys=True).encode()).hexdigest()[:16]
    return f"{idempotency_key}|inputs:{inputs}"


def _strict_json(metadata: Mapping[str, Any] | None, key: str) -> dict[str, Any]:
    """Metadata as strict JSON (no NaN / Infinity, which other readers reject): fail before writing."""
    try:
        return json.loads(json.dumps(dict(metadata or {}), allow_nan=False))
    except ValueError as exc:
        raise ArtifactError(f"metadata of {key} is not strict JSON: {exc}") from None


def content_digest(files: Iterable[Mapping[str, Any]]) -> str:
    """The version's identity: SHA-256 over the sorted (path, sha256, size) list."""
    canonical = [[f["path"], f["sha256"], f["size"]] for f in sorted(files, key=lambda f: f["path"])]
    return "sha256:" + hashlib.sha256(json.dumps(canonical, separators=(",", ":")).encode()).hexdigest()


def manifest_digest(fields: Mapping[str, Any]) -> str:
    """SHA-256 over every field of a manifest except ``manifest_digest`` itself (canonical JSON):
    editing any of them (producer, parents, metadata, created_at, libraries, its own kind, name
    or version, ...) changes it."""
    return digest_except(fields, "manifest_digest")


def library_versions(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    from importlib import metadata

    from airflow_mlcrit import __version__

    versions = {"airflow_mlcrit": __version__, "python": platform.python_version()}
    for mod in _TRACKED_LIBRARIES:
        if mod in sys.modules:
            versions[mod] = str(getattr(sys.modules[mod], "__version__", "unknown"))
    if "airflow" in sys.modules:
        try:
            versions["apache-airflow"] = metadata.version("apache-airflow")
        except metadata.PackageNotFoundError:
            pass
    versions.update(extra or {})
    return versions


@dataclass(frozen=True)
class Manifest:
    """The committed description of one artifact version."""

    kind: str
    name: str
    version: int
    digest: str
    files: list[dict[str, Any]]
    parents: list[dict[str, str]]
    producer: dict[str, Any]
    created_at: str
    libraries: dict[str, str]
    metadata: dict[str, Any]
    idempotency_key: str | None
    uri: str = ""

    @property
    def ref(self) -> ArtifactRef:
        return ArtifactRef(self.kind, self.name, version=self.version)

    @property
    def size(self) -> int:
        return sum(f["size"] for f in self.files)

    def file(self, path: str) -> dict[str, Any]:
        for f in self.files:
            if f["path"] == path:
                return f
        raise ArtifactNotFoundError(
            f"{self.ref} has no file {path!r}; it has: {', '.join(f['path'] for f in self.files)}"
        )

    def to_dict(self) -> dict[str, Any]:
        fields = {
            "format": MANIFEST_FORMAT,
            "ref": str(self.ref),
            "kind": self.kind,
            "name": self.name,
            "version": self.version,
            "digest": self.digest,
            "files": self.files,
            "size": self.size,
            "parents": self.parents,
            "producer": self.producer,
            "created_at": self.created_at,
            "libraries": self.libraries,
            "metadata": self.metadata,
            "idempotency_key": self.idempotency_key,
        }
        return {**fields, "manifest_digest": manifest_digest(fields)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], uri: str = "") -> Manifest:
        if data.get("format") != MANIFEST_FORMAT:
            raise ArtifactIntegrityError(
                f"manifest at {uri} has format {data.get('format')!r}; this airflow-mlcrit reads format "
                f"{MANIFEST_FORMAT} only, whose manifest_digest covers every field (format 1 covered only the files)"
            )
        manifest = cls(
            kind=data["kind"],
            name=data["name"],
            version=int(data["version"]),
            digest=data["digest"],
            files=list(data["files"]),
            parents=list(data.get("parents", [])),
            producer=dict(data.get("producer", {})),
            created_at=data["created_at"],
            libraries=dict(data.get("libraries", {})),
            metadata=dict(data.get("metadata", {})),
            idempotency_key=data.get("idempotency_key"),
            uri=uri,
        )
        if content_digest(manifest.files) != manifest.digest:
            raise ArtifactIntegrityError(
                f"manifest of {manifest.ref} at {uri} is corrupt: its file list does not hash to its digest"
            )
        if data.get("manifest_digest") != manifest_digest(data):
            raise ArtifactIntegrityError(
                f"manifest of {manifest.ref} at {uri} does not hash to its manifest_digest: a field (producer, "
                "parents, metadata, created_at, libraries, ...) was edited after it was committed"
            )
        return manifest

    def summary(self) -> dict[str, Any]:
        """The small JSON operators push to XCom."""
        return {"ref": str(self.ref), "uri": self.uri, "digest": self.digest}


@dataclass(frozen=True)
class StagedVersion:
    """A claimed, uncommitted version whose files others write in place (see ArtifactStore.stage)."""

    kind: str
    name: str
    version: int
    location: str  # where writers put its files: s3://bucket/prefix/<kind>/<name>/v000003, or a local path

    @property
    def ref(self) -> ArtifactRef:
        return ArtifactRef(self.kind, self.name, version=self.version)

    @property
    def staging(self) -> str:
        """Where writers keep control records (not payload) until the commit removes them."""
        return f"{self.location}/{STAGING}"


@dataclass(frozen=True)
class GcCandidate:
    ref: str
    claimed_at: str
    age_seconds: float
    idempotency_key: str | None
    problem: str | None = None  # why gc names it whatever its age (a claim far beyond the others)


# Versions are claimed one after another, so claims sit next to each other; a claim this far past
# the one before it was not made by a writer of this store (a forged or stray _CLAIM.json). It
# does not move the next version number, and gc names it.
MAX_CLAIM_GAP = 1000


def _split_far_claims(claimed: list[int]) -> tuple[list[int], list[int]]:
    """(the claims that follow one another from the first, the ones far beyond them)."""
    near: list[int] = []
    for i, v in enumerate(claimed):
        if v - (near[-1] if near else 0) > MAX_CLAIM_GAP:
            return near, claimed[i:]
        near.append(v)
    return near, []


RUN_PINS = "_mlcrit/run-pins"  # <run digest>/<ref digest>.json: what a run's @latest / alias resolved to
FENCES = "_mlcrit/fences"  # <step>/t000002.json per task try, <step>/claims/<kind>~<name>~v000003~t000001


def fence_of(producer: Mapping[str, Any] | None) -> tuple[str, int, str] | None:
    """(step, try number, who) of a task try's producer record, or None where it names no task
    try (a CLI put, a script): the fencing token of DESIGN.md. The step is the task instance
    (dag, run, task, map index), whatever it writes."""
    p = producer or {}
    ids = [p.get(k) for k in ("dag_id", "run_id", "task_id", "map_index")]
    try_number = p.get("try_number")
    if None in ids or not isinstance(try_number, int) or isinstance(try_number, bool):
        return None
    step = hashlib.sha256(json.dumps(ids, separators=(",", ":")).encode()).hexdigest()[:32]
    return step, try_number, f"{ids[2]} of {ids[0]} run {ids[1]}" + (f"[{ids[3]}]" if ids[3] not in (-1, None) else "")


def _walk_payload(src: Path, follow_symlinks: bool) -> list[tuple[str, Path]]:
    """Every regular file under ``src``. A symlink is stored (as the file it points to) only
    with ``follow_symlinks`` and only when it resolves to a regular file inside ``src``; anything
    else that is not a regular file or a directory (a link out, a dangling or looping link, a
    linked directory, a FIFO, a device, a socket) is refused, naming it: nothing is left out
    silently, and nothing outside the payload is ever copied in."""
    import stat

    root = src.resolve()
    pairs = []
    for dirpath, dirs, files in os.walk(src, followlinks=False):
        for name in sorted(dirs + files):
            path = Path(dirpath) / name
            rel = path.relative_to(src).as_posix()
            mode = path.lstat().st_mode
            if stat.S_ISDIR(mode):
                continue
            if stat.S_ISLNK(mode):
                try:
                    target = path.resolve(strict=True)
                except (OSError, RuntimeError):
                    raise ArtifactError(f"payload {rel!r} is a dangling or looping symlink; remove it") from None
                inside = target == root or root in target.parents
                if not inside:
                    raise ArtifactError(
                        f"payload {rel!r} is a symlink to {target}, outside the payload: copy the file in instead"
                    )
                if not target.is_file():
                    raise ArtifactError(f"payload {rel!r} is a symlink to a directory; store the directory itself")
                if not follow_symlinks:
                    raise ArtifactError(
                        f"payload {rel!r} is a symlink (to {target.relative_to(root).as_posix()}); store what it "
                        "points to with follow_symlinks=True (mlcrit artifacts put --follow-symlinks)"
                    )
                pairs.append((rel, target))
            elif stat.S_ISREG(mode):
                pairs.append((rel, path))
            else:
                raise ArtifactError(f"payload {rel!r} is not a regular file (a FIFO, device or socket); remove it")
    return sorted(pairs)


def _payload_files(
    source: str | os.PathLike[str] | Mapping[str, str | os.PathLike[str]], follow_symlinks: bool = False
) -> list[tuple[str, Path]]:
    """(relative posix path, local file) pairs for a file, a directory or an explicit mapping."""
    if isinstance(source, Mapping):
        pairs = [(str(rel), Path(p)) for rel, p in source.items()]
    else:
        src = Path(source)
        if src.is_symlink():  # the payload path itself: `put dataset/b L` where L -> /etc/passwd
            if not follow_symlinks:
                raise ConfigError(
                    f"payload {src} is a symlink (to {os.readlink(src)}): pass the file or directory itself, or "
                    "follow_symlinks=True (mlcrit artifacts put --follow-symlinks) to store what it points to"
                )
            name, src = src.name, src.resolve(strict=True)
            if src.is_file():
                return _payload_files({name: src})
        if src.is_file():
            pairs = [(src.name, src)]
        elif src.is_dir():
            pairs = _walk_payload(src, follow_symlinks)
            if not pairs:
                raise ArtifactError(f"directory {src} is empty: an artifact version needs at least one file")
        else:
            raise ArtifactNotFoundError(f"no such file or directory: {src}")
    seen = set()
    for rel, path in pairs:
        try:
            rel.encode("utf-8")
        except UnicodeEncodeError:
            raise ArtifactError(
                f"payload file name {rel.encode('utf-8', 'replace').decode()!r} is not valid UTF-8; rename it"
            ) from None
        try:
            check_key(rel)
        except InvalidReferenceError as exc:
            raise ArtifactError(f"payload file path {rel!r} is not allowed: {exc}") from None
        if rel in RESERVED_FILES:
            raise ArtifactError(f"payload file name {rel!r} is reserved by the store; rename the file")
        if not path.is_file():
            raise ArtifactNotFoundError(f"payload file {path} does not exist or is not a regular file")
        if rel in seen:
            raise ArtifactError(f"payload file path {rel!r} appears twice")
        seen.add(rel)
    return pairs


def _file_identity(path: Path) -> tuple[int, int, int, int, int]:
    st = os.stat(path)
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)


class _VerifyingReader:
    """Stream a stored file; raise ArtifactIntegrityError at EOF if the bytes do not match."""

    def __init__(self, raw: IO[bytes], entry: Mapping[str, Any], where: str):
        self._raw, self._entry, self._where = raw, entry, where
        self._hash = hashlib.sha256()
        self._size = 0
        self._checked = False

    def read(self, n: int = -1) -> bytes:
        data = self._raw.read() if n is None or n < 0 else self._raw.read(n)
        self._hash.update(data)
        self._size += len(data)
        if (not data or n is None or n < 0) and not self._checked:
            self._checked = True
            if self._hash.hexdigest() != self._entry["sha256"] or self._size != self._entry["size"]:
                raise ArtifactIntegrityError(
                    f"file {self._entry['path']!r} of {self._where} does not match its manifest digest "
                    f"(expected sha256 {self._entry['sha256'][:12]}..., {self._entry['size']} bytes): "
                    "the stored copy is corrupt; restore it or use another version"
                )
        return data

    def close(self) -> None:
        self._raw.close()

    def __enter__(self) -> _VerifyingReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ArtifactStore:
    """Versioned, immutable artifacts on a :class:`Backend`."""

    def __init__(self, backend: Backend, signer: Signer | None = None, witness: Any = None):
        self.backend = backend
        self.signer = signer
        self.witness = witness  # alias moves mirrored outside the store (witness.py), or None
        self._fences_entered: set[tuple[str, int]] = set()
        self._signing_checked = False
        self._ledger = AliasLedger(self)

    def check_signing(self, writing: bool = False) -> None:
        """A keyed store marks the store signed on its first write; a keyless one refuses a
        signed store (it could neither check what it reads nor write what keyed readers accept)."""
        if self._signing_checked:
            return
        if self.signer is None:
            marker = self._read_json(SIGNED_MARKER)
            if marker is not None:
                raise ConfigError(
                    f"the artifact store {self.root_uri} holds signed records (since {marker.get('since', '?')}), "
                    "and this client has no signing key: set [mlcrit] signing_conn_id in Airflow, or "
                    "MLCRIT_SIGNING_KEY for the mlcrit CLI"
                )
        elif writing:
            if not self.backend.exists(SIGNED_MARKER):
                self.backend.create_exclusive(SIGNED_MARKER, dumps({"since": utcnow(), "key_id": self.signer.key_id}))
        else:
            return  # a keyed reader needs no marker: it checks every record's signature
        self._signing_checked = True

    def sign_record(self, record: str, data: dict[str, Any], digest: str) -> dict[str, Any]:
        return {**data, "signature": self.signer.sign(record, digest)} if self.signer else data

    def signature_problem(self, record: str, data: Mapping[str, Any], digest: str) -> str | None:
        return None if self.signer is None else self.signer.problem(record, digest, data.get("signature"))

    def __repr__(self) -> str:
        return f"ArtifactStore({self.backend.root_uri!r})"

    @property
    def root_uri(self) -> str:
        return self.backend.root_uri

    # ---- reading -----------------------------------------------------------------------

    def _versions_claimed(self, kind: str, name: str) -> list[int]:
        found = []
        for child in self.backend.list_children(f"{kind}/{name}"):
            m = _VERSION_DIR.fullmatch(child)
            if m:
                found.append(int(m.group(1)))
        return sorted(found)

    def _load_manifest(self, kind: str, name: str, version: int) -> Manifest | None:
        self.check_signing()
        key = f"{kind}/{name}/{_vdir(version)}/{MANIFEST}"
        try:
            raw = self.backend.read_bytes(key)
        except FileNotFoundError:
            return None
        where = self.backend.uri(key)
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise ArtifactIntegrityError(f"manifest {where} is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ArtifactIntegrityError(f"manifest {where} is a JSON {type(data).__name__}, not an object: corrupt")
        if _RECLAIMED in data:
            return None  # gc's tombstone: this number was taken by a put that never committed
        try:
            manifest = Manifest.from_dict(data, uri=self.backend.uri(f"{kind}/{name}/{_vdir(version)}"))
        except KeyError as exc:
            raise ArtifactIntegrityError(f"manifest {where} lacks the field {exc}: corrupt") from None
        except (TypeError, ValueError) as exc:
            raise ArtifactIntegrityError(f"manifest {where} has a malformed field ({exc}): corrupt") from None
        # bound to where it lives: a manifest copied from another artifact or version is refused
        for attr, stored in (("kind", kind), ("name", name), ("version", version)):
            if getattr(manifest, attr) != stored:
                raise ArtifactIntegrityError(
                    f"manifest {where} names {attr} {getattr(manifest, attr)!r}, but it is stored as "
                    f"{kind}/{name}@v{version}: it was moved or forged"
                )
        problem = self.signature_problem("manifest", data, data["manifest_digest"])
        if problem:
            raise ArtifactIntegrityError(f"manifest {where} {problem}")
        return manifest

    def versions(self, key: str) -> list[int]:
        """Committed version numbers of ``kind/name``, ascending."""
        kind, name = parse_key(key)
        return [v for v in self._versions_claimed(kind, name) if self._committed(kind, name, v)]

    def versions_window(self, key: str, count: int, skip: int = 0) -> tuple[list[int], int]:
        """Up to ``count`` committed version numbers of ``kind/name``, newest first, after the
        ``skip`` newest committed ones; and how many version numbers were ever claimed (an upper
        bound on the committed ones, for paging). One listing and the checks of the versions it
        walks: a page of versions costs what it shows, not the length of the history."""
        kind, name = parse_key(key)
        claimed = self._versions_claimed(kind, name)
        out: list[int] = []
        for v in reversed(claimed):
            if len(out) == skip + count:
                break
            if self._committed(kind, name, v):
                out.append(v)
        return out[skip:], len(claimed)

    def latest_version(self, key: str) -> int | None:
        """The newest committed version number of ``kind/name`` (None: none), checking versions
        newest first: one listing and usually one version's checks, whatever the history's length."""
        kind, name = parse_key(key)
        return next((v for v in reversed(self._versions_claimed(kind, name)) if self._committed(kind, name, v)), None)

    def catalog(self, kind: str | None = None) -> list[tuple[str, int]]:
        """(``kind/name``, newest committed version) of every artifact with one, by kind and name."""
        kinds = [validate_kind(kind)] if kind else [k for k in self.backend.list_children("") if not k.startswith("_")]
        found = []
        for k in kinds:
            for name in self.backend.list_children(k):
                try:
                    key = f"{validate_kind(k)}/{validate_name(name)}"
                except InvalidReferenceError:
                    continue  # foreign files under the root are not artifacts
                latest = self.latest_version(key)
                if latest is not None:
                    found.append((key, latest))
        return found

    def _committed(self, kind: str, name: str, version: int) -> bool:
        """A manifest and its claim: gc reclaims a version by taking the manifest's place with a
        tombstone, then removing the claim (see gc)."""
        vprefix = f"{kind}/{name}/{_vdir(version)}"
        return self.backend.exists(f"{vprefix}/{MANIFEST}") and self.backend.exists(f"{vprefix}/{CLAIM}")

    def _manifest_key(self, kind: str, name: str, version: int) -> str:
        return f"{kind}/{name}/{_vdir(version)}/{MANIFEST}"

    def resolve(self, ref: str | ArtifactRef) -> Manifest:
        """Return the committed manifest a reference points to (``@vN``, ``@latest`` or an alias)."""
        r = parse_ref(ref)
        if r.version is not None:
            manifest = self._load_manifest(r.kind, r.name, r.version)
            if manifest is None:
                known = self.versions(r.key)
                raise ArtifactNotFoundError(
                    f"{r} does not exist; committed versions of {r.key}: "
                    + (", ".join(f"v{v}" for v in known) or "none")
                )
            return manifest
        if r.alias is not None:
            current = self.alias_version(r.key, r.alias)
            if current is None:
                raise ArtifactNotFoundError(
                    f"alias {r.alias!r} of {r.key} is not set; aliases: "
                    + (", ".join(f"{a}->v{v}" for a, v in self.aliases(r.key).items()) or "none")
                )
            return self.resolve(r.at(current))
        for version in reversed(self._versions_claimed(r.kind, r.name)):
            manifest = self._load_manifest(r.kind, r.name, version)
            if manifest is not None:
                return manifest
        raise ArtifactNotFoundError(f"{r.key} has no committed version")

    def resolve_for_run(self, ref: str | ArtifactRef, run: str) -> tuple[Manifest, str | None]:
        """``ref`` as the run ``run`` (e.g. ``dag_id/run_id``) sees it, and the floating reference
        it was resolved from (None for a pinned ``@vN``). ``@latest`` and aliases are resolved once
        per run: the first resolution is recorded (an exclusive create, so two tasks racing agree)
        and every later one in the run, a re-run of a finished task included, gets that version.
        A golden set that lands mid-run does not change what the run evaluates. A record whose
        version no longer has the digest it recorded is refused (IntegrityError)."""
        r = parse_ref(ref)
        if r.version is not None:
            return self.resolve(r), None
        floating = str(r)
        key = (
            f"{RUN_PINS}/{hashlib.sha256(run.encode()).hexdigest()[:32]}/"
            f"{hashlib.sha256(floating.encode()).hexdigest()[:32]}.json"
        )
        try:
            record = json.loads(self.backend.read_bytes(key))
        except FileNotFoundError:
            manifest = self.resolve(r)
            record = {
                "ref": floating,
                "run": run,
                "version": manifest.version,
                "digest": manifest.digest,
                "at": utcnow(),
            }
            if self.backend.create_exclusive(key, dumps(record)):
                return manifest, floating
            record = json.loads(self.backend.read_bytes(key))  # another task of the run was first
        if not isinstance(record, dict) or record.get("ref") != floating or record.get("run") != run:
            raise ArtifactIntegrityError(f"the run pin {key} does not record {floating} for run {run}: refusing it")
        manifest = self.resolve(r.at(int(record["version"])))
        if manifest.digest != record.get("digest"):
            raise ArtifactIntegrityError(
                f"run {run} pinned {floating} to {manifest.ref} with digest {record.get('digest')}, which now has "
                f"digest {manifest.digest}: refusing to read a different version than the run's other tasks"
            )
        return manifest, floating

    def exists(self, ref: str | ArtifactRef) -> bool:
        try:
            self.resolve(ref)
            return True
        except ArtifactNotFoundError:
            return False

    def list_artifacts(self, kind: str | None = None) -> list[str]:
        """``kind/name`` of every artifact with at least one committed version."""
        return [key for key, _ in self.catalog(kind)]

    def open(self, ref: str | ArtifactRef, path: str) -> _VerifyingReader:
        """Stream one payload file; the digest is checked when the stream is read to its end."""
        manifest = self.resolve(ref)
        entry = manifest.file(path)
        raw = self.backend.open_read(f"{manifest.kind}/{manifest.name}/{_vdir(manifest.version)}/{path}")
        return _VerifyingReader(raw, entry, str(manifest.ref))

    def read_bytes(self, ref: str | ArtifactRef, path: str) -> bytes:
        with self.open(ref, path) as f:
            return f.read()

    def get(self, ref: str | ArtifactRef, dest: str | os.PathLike[str]) -> Manifest:
        """Download every file of a version into directory ``dest``, verifying each digest."""
        manifest = self.resolve(ref)
        dest = Path(dest)
        for entry in manifest.files:  # every path checked before anything is written
            path = entry["path"]
            parts = Path(path).parts
            if not parts or Path(path).is_absolute() or ".." in parts or "\\" in path:
                raise ArtifactIntegrityError(
                    f"{manifest.ref} lists the file {path[:200]!r}, which would land outside the destination: "
                    "the manifest is forged or corrupt; nothing was written"
                )
        for entry in manifest.files:
            target = dest / entry["path"]
            target.parent.mkdir(parents=True, exist_ok=True)
            key = f"{manifest.kind}/{manifest.name}/{_vdir(manifest.version)}/{entry['path']}"
            try:
                digest, size = self.backend.download_file(key, target)
            except FileNotFoundError:
                raise ArtifactIntegrityError(
                    f"file {entry['path']!r} of {manifest.ref} is listed in its manifest but missing from the store"
                ) from None
            if digest != entry["sha256"] or size != entry["size"]:
                target.unlink(missing_ok=True)
                raise ArtifactIntegrityError(
                    f"file {entry['path']!r} of {manifest.ref} does not match its manifest digest "
                    f"(expected sha256 {entry['sha256'][:12]}..., {entry['size']} bytes; got {digest[:12]}..., "
                    f"{size} bytes): the stored copy is corrupt; restore it or use another version"
                )
        return manifest

    def verify(self, ref: str | ArtifactRef) -> Manifest:
        """Re-hash every stored file of a version and check its parents' digests; raise
        ArtifactIntegrityError naming the first bad file or parent."""
        manifest = self.resolve(ref)
        prefix = f"{manifest.kind}/{manifest.name}/{_vdir(manifest.version)}"
        for entry in manifest.files:  # the manifest is resolved once: linear in the number of files
            try:
                raw = self.backend.open_read(f"{prefix}/{entry['path']}")
                with _VerifyingReader(raw, entry, str(manifest.ref)) as f:
                    while f.read(8 * 1024 * 1024):
                        pass
            except FileNotFoundError:
                raise ArtifactIntegrityError(
                    f"file {entry['path']!r} of {manifest.ref} is listed in its manifest but missing from the store"
                ) from None
        for recorded in manifest.parents:
            self._parent(manifest, recorded)
        return manifest

    # ---- writing -----------------------------------------------------------------------

    def _resolve_parents(self, parents: Iterable[str | ArtifactRef]) -> list[dict[str, str]]:
        resolved = []
        for p in parents:
            m = self.resolve(p)
            resolved.append({"ref": str(m.ref), "digest": m.digest})
        return resolved

    @staticmethod
    def _claim_record(attempt_key: str | None) -> dict[str, Any]:
        return {
            "idempotency_key": attempt_key,
            "claimed_at": utcnow(),
            "claimed_at_epoch": time.time(),
            "host": socket.gethostname(),
            "pid": os.getpid(),
        }

    def _claim(self, kind: str, name: str, claim: dict[str, Any]) -> int:
        claimed, _far = _split_far_claims(self._versions_claimed(kind, name))
        version = (claimed[-1] if claimed else 0) + 1
        for _ in range(10_000):
            if self.backend.create_exclusive(f"{kind}/{name}/{_vdir(version)}/{CLAIM}", dumps(claim)):
                return version
            version += 1
        raise ArtifactConflictError(f"could not allocate a version of {kind}/{name}: too many concurrent writers")

    def _idempotency_key_path(self, kind: str, name: str, key: str) -> str:
        return f"{kind}/{name}/_idempotency/{hashlib.sha256(key.encode()).hexdigest()}.json"

    def _read_json(self, key: str) -> dict[str, Any] | None:
        """A small JSON record of the store (claim, idempotency marker, index entry), or None if
        absent; an unreadable one is an integrity error naming it, never a raw parse error."""
        try:
            data = json.loads(self.backend.read_bytes(key))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise ArtifactIntegrityError(f"{self.backend.uri(key)} is not readable JSON ({exc}): corrupt") from None
        if not isinstance(data, dict):
            raise ArtifactIntegrityError(
                f"{self.backend.uri(key)} is a JSON {type(data).__name__}, not an object: corrupt"
            )
        return data

    def _version_for_key(self, kind: str, name: str, idem_key: str) -> int | None:
        """The version a previous attempt with this idempotency key took, if its claim is still ours."""
        marker = self._read_json(self._idempotency_key_path(kind, name, idem_key))
        if marker is None:
            return None
        if not isinstance(marker.get("version"), int):
            raise ArtifactIntegrityError(
                f"idempotency marker {self.backend.uri(self._idempotency_key_path(kind, name, idem_key))} names no "
                f"version: corrupt; delete it and retry (the task then writes a new version)"
            )
        claim = self._read_json(f"{kind}/{name}/{_vdir(marker['version'])}/{CLAIM}")
        if claim is None or claim.get("idempotency_key") != idem_key:
            return None  # stale marker: gc removed that attempt's version
        return marker["version"]

    def committed(
        self, key: str, idempotency_key: str, *, parents: Iterable[str | ArtifactRef] = ()
    ) -> Manifest | None:
        """The version an earlier attempt with this idempotency key and these parents committed,
        or None: lets a retried task skip work whose result is already stored."""
        kind, name = parse_key(key)
        parent_list = self._resolve_parents(parents)
        version = self._version_for_key(kind, name, _attempt_key(idempotency_key, parent_list))
        return None if version is None else self._attempt_manifest(kind, name, version, idempotency_key, parent_list)

    def _attempt_manifest(
        self, kind: str, name: str, version: int, idempotency_key: str, parent_list: list[dict[str, str]]
    ) -> Manifest | None:
        """The committed manifest of an earlier attempt, checked to be that attempt's: the marker and
        the claim are plain records, the manifest is the one that is hashed (and signed)."""
        manifest = self._load_manifest(kind, name, version)
        if manifest is not None and (manifest.idempotency_key, manifest.parents) != (idempotency_key, parent_list):
            raise ArtifactIntegrityError(
                f"the idempotency marker of {kind}/{name} for key {idempotency_key!r} points at {manifest.ref}, "
                "which another attempt (another key or other parents) committed: the marker or claim was forged"
            )
        return manifest

    def put(
        self,
        key: str,
        source: str | os.PathLike[str] | Mapping[str, str | os.PathLike[str]],
        *,
        parents: Iterable[str | ArtifactRef] = (),
        metadata: Mapping[str, Any] | None = None,
        producer: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        libraries: Mapping[str, str] | None = None,
        follow_symlinks: bool = False,
    ) -> Manifest:
        """Commit ``source`` (a file, a directory, or {relative path: file}) as a new version of ``key``.

        With an ``idempotency_key`` a retry returns the version the first attempt committed, or
        finishes the version the first attempt took but never committed. ``follow_symlinks``:
        store links that resolve to files inside the payload (others are always refused).
        """
        kind, name = parse_key(key)
        files = _payload_files(source, follow_symlinks)
        meta = _strict_json(metadata, key)
        self.check_signing(writing=True)
        parent_list = self._resolve_parents(parents)
        self._enter_fence(producer)  # before the lookup: an older try's uncommitted version is not taken over
        version = None
        attempt_key = None
        if idempotency_key is not None:
            attempt_key = _attempt_key(idempotency_key, parent_list)
            version = self._version_for_key(kind, name, attempt_key)
            if version is not None:
                existing = self._attempt_manifest(kind, name, version, idempotency_key, parent_list)
                if existing is not None:
                    return existing
                # The earlier attempt died before its commit: take its version over, from scratch.
                vprefix = f"{kind}/{name}/{_vdir(version)}"
                for k in self.backend.list_keys(vprefix):
                    if not k.endswith("/" + CLAIM):
                        self.backend.delete(k)
        if version is None:
            version = self._claim(kind, name, self._claim_record(attempt_key))
            if attempt_key is not None:
                self.backend.write_bytes(
                    self._idempotency_key_path(kind, name, attempt_key),
                    dumps({"idempotency_key": attempt_key, "version": version}),
                )
        self._register_claim(producer, kind, name, version)
        self._check_fence(producer, kind, name, version)  # before any byte is uploaded
        vprefix = f"{kind}/{name}/{_vdir(version)}"
        entries = []
        for rel, path in files:
            before = _file_identity(path)
            try:
                digest, size = self.backend.upload_file(f"{vprefix}/{rel}", path)
            except (OSError, ArtifactError) as exc:
                # gc may have reclaimed the version under us (a local upload then finds its folder gone)
                self._refuse_if_reclaimed(vprefix, f"{kind}/{name}@v{version}", exc)
                raise
            if _file_identity(path) != before or size != before[0]:
                # The hash and the stored copy may disagree (or hold a torn mix): refuse.
                raise ArtifactError(
                    f"payload file {path} changed while it was being stored (its size, mtime, ctime or inode moved); "
                    f"put it again once whatever writes it has finished"
                )
            entries.append({"path": rel, "sha256": digest, "size": size})
        entries.sort(key=lambda e: e["path"])
        try:
            self.backend.persist(vprefix)
        except OSError as exc:
            self._refuse_if_reclaimed(vprefix, f"{kind}/{name}@v{version}", exc)
            raise
        return self._commit(kind, name, version, entries, parent_list, meta, producer, idempotency_key, libraries)

    def _commit(
        self,
        kind: str,
        name: str,
        version: int,
        entries: list[dict[str, Any]],
        parent_list: list[dict[str, str]],
        meta: dict[str, Any],
        producer: Mapping[str, Any] | None,
        idempotency_key: str | None,
        libraries: Mapping[str, str] | None,
    ) -> Manifest:
        """Write the manifest of a version whose files are in place: the commit point."""
        vprefix = f"{kind}/{name}/{_vdir(version)}"
        manifest = Manifest(
            kind=kind,
            name=name,
            version=version,
            digest=content_digest(entries),
            files=entries,
            parents=parent_list,
            producer=dict(producer or default_producer()),
            created_at=utcnow(),
            libraries=library_versions(libraries),
            metadata=meta,
            idempotency_key=idempotency_key,
            uri=self.backend.uri(vprefix),
        )
        # Downstream index before the commit, so every committed child is indexed; readers
        # ignore entries whose child never committed (or whose digest differs).
        for parent in parent_list:
            p = parse_ref(parent["ref"])
            self.backend.write_bytes(
                f"{p.kind}/{p.name}/_children/{_vdir(p.version)}/{kind}/{name}/{_vdir(version)}",
                dumps({"digest": manifest.digest}),
            )
        data = manifest.to_dict()
        self._check_fence(producer, kind, name, version)
        if not self.backend.create_exclusive(
            f"{vprefix}/{MANIFEST}", dumps(self.sign_record("manifest", data, data["manifest_digest"]))
        ):
            self._refuse_if_reclaimed(vprefix, str(manifest.ref))
            winner = self._load_manifest(kind, name, version)
            if winner is not None and winner.idempotency_key == idempotency_key and idempotency_key is not None:
                return winner  # a concurrent retry of the same attempt committed first
            raise ArtifactConflictError(f"{manifest.ref} was committed by another writer")
        return manifest

    def stage(self, key: str, *, producer: Mapping[str, Any] | None = None) -> StagedVersion:
        """Claim the next version of ``key`` for files that others write in place (Beam workers,
        through ``StagedVersion.location``); :meth:`commit_staged` commits it from their records.
        Until then no reader sees it, and a version never committed is ``mlcrit gc``'s to remove.
        ``producer``: the task try that claims it (its fencing token)."""
        kind, name = parse_key(key)
        self.check_signing(writing=True)
        self._enter_fence(producer)
        version = self._claim(kind, name, self._claim_record(None))
        self._register_claim(producer, kind, name, version)
        vprefix = f"{kind}/{name}/{_vdir(version)}"
        location = self.backend.uri(vprefix)
        if isinstance(self.backend, LocalBackend):
            location = str(self.backend.root / vprefix)
        return StagedVersion(kind, name, version, location)

    def staged_bytes(self, staged: StagedVersion, rel: str) -> bytes:
        """A file of a staged version (a writer's control record), read by the committer."""
        return self.backend.read_bytes(f"{staged.kind}/{staged.name}/{_vdir(staged.version)}/{check_key(rel)}")

    def write_staged(self, staged: StagedVersion, rel: str, text: str) -> dict[str, Any]:
        """Add a small file the committer makes itself (a summary) to a staged version; returns
        its record for :meth:`commit_staged`."""
        data = text.encode()
        self.backend.write_bytes(f"{staged.kind}/{staged.name}/{_vdir(staged.version)}/{check_key(rel)}", data)
        return {"path": rel, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}

    def commit_staged(
        self,
        staged: StagedVersion,
        entries: Iterable[Mapping[str, Any]],
        *,
        parents: Iterable[str | ArtifactRef] = (),
        metadata: Mapping[str, Any] | None = None,
        producer: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        libraries: Mapping[str, str] | None = None,
    ) -> Manifest:
        """Commit a staged version from the writers' records ({path, size, sha256} per file),
        reading none of its bytes: one listing checks that exactly the recorded files are there,
        each with its recorded size. Files under ``_staging/`` (the writers' control records) are
        removed first. With an ``idempotency_key``, a retry finds this version as it finds a put's."""
        kind, name, version = staged.kind, staged.name, staged.version
        vprefix = f"{kind}/{name}/{_vdir(version)}"
        meta = _strict_json(metadata, f"{kind}/{name}")
        files: list[dict[str, Any]] = []
        for record in entries:
            path, size, digest = record.get("path"), record.get("size"), record.get("sha256")
            if not isinstance(path, str) or not isinstance(size, int) or not re.fullmatch(r"[0-9a-f]{64}", str(digest)):
                raise ArtifactError(f"a file record of {staged.ref} is malformed: {dict(record)!r}")
            check_key(path)
            if path in RESERVED_FILES or path.split("/")[0] == STAGING:
                raise ArtifactError(f"a file record of {staged.ref} names the reserved path {path!r}")
            files.append({"path": path, "sha256": digest, "size": size})
        files.sort(key=lambda e: e["path"])
        for before, after in itertools.pairwise(files):
            if before["path"] == after["path"]:
                raise ArtifactError(f"two writers recorded {before['path']!r} in {staged.ref}")
        self.backend.delete_prefix(f"{vprefix}/{STAGING}")
        found = self.backend.list_sizes(vprefix)
        found.pop(f"{vprefix}/{CLAIM}", None)
        if f"{vprefix}/{MANIFEST}" in found:
            self._refuse_if_reclaimed(vprefix, str(staged.ref))
            raise ArtifactConflictError(f"{staged.ref} was committed by another writer")
        for f in files:
            size = found.pop(f"{vprefix}/{f['path']}", None)
            if size is None:
                raise ArtifactError(
                    f"{f['path']!r} was recorded by a writer of {staged.ref} but is not in the store: "
                    "the writer failed after recording it, or another process removed it; run the step again"
                )
            if size != f["size"]:
                raise ArtifactIntegrityError(
                    f"{f['path']!r} of {staged.ref} holds {size} bytes, but its writer recorded {f['size']}: "
                    "it was overwritten after it was written; run the step again"
                )
        if found:
            stray = sorted(k[len(vprefix) + 1 :] for k in found)
            raise ArtifactError(
                f"{staged.ref} holds {len(stray)} file(s) no writer recorded ({', '.join(stray[:3])}): another "
                "process wrote into this version; run the step again (gc removes this one)"
            )
        parent_list = self._resolve_parents(parents)
        if idempotency_key is not None:
            attempt_key = _attempt_key(idempotency_key, parent_list)
            claim_key = f"{vprefix}/{CLAIM}"
            claim = self._read_json(claim_key) or {}
            self.backend.write_bytes(claim_key, dumps({**claim, "idempotency_key": attempt_key}))
            self.backend.write_bytes(
                self._idempotency_key_path(kind, name, attempt_key),
                dumps({"idempotency_key": attempt_key, "version": version}),
            )
        return self._commit(kind, name, version, files, parent_list, meta, producer, idempotency_key, libraries)

    # ---- fencing: a process that outlived its task try cannot commit after the retry began ---

    def _enter_fence(self, producer: Mapping[str, Any] | None) -> None:
        """Before this task try's first claim: record that it began, then reclaim (tombstone) every
        version an older try of the same task instance claimed and did not commit. Its commit then
        fails at the commit point, and so does any it makes later (``_check_fence``)."""
        fence = fence_of(producer)
        if fence is None or fence[:2] in self._fences_entered:
            return
        step, try_number, who = fence
        prefix = f"{FENCES}/{step}"
        self.backend.create_exclusive(f"{prefix}/t{try_number:06d}.json", dumps({"task": who, "at": utcnow()}))
        for record in self.backend.list_children(f"{prefix}/claims"):
            kind, name, vdir, tdir = record.split("~")
            version, older = int(vdir[1:]), int(tdir[1:])
            if older >= try_number:
                continue
            claim = self._read_json(f"{kind}/{name}/{vdir}/{CLAIM}")
            if claim is not None and not self.backend.exists(f"{kind}/{name}/{vdir}/{MANIFEST}"):
                self._reclaim(kind, name, version, claim, f"try {try_number} of {who} (fencing try {older})")
        self._fences_entered.add(fence[:2])

    def _register_claim(self, producer: Mapping[str, Any] | None, kind: str, name: str, version: int) -> None:
        """Note a version this task try claimed, for a newer try's sweep (``_enter_fence``)."""
        fence = fence_of(producer)
        if fence is not None:
            step, try_number, _ = fence
            record = f"{FENCES}/{step}/claims/{kind}~{name}~{_vdir(version)}~t{try_number:06d}"
            self.backend.create_exclusive(record, b"{}")

    def _check_fence(self, producer: Mapping[str, Any] | None, kind: str, name: str, version: int) -> None:
        """Refuse, and reclaim the version, if a newer try of this task instance has begun: right
        after a claim and right before the commit point."""
        fence = fence_of(producer)
        if fence is None:
            return
        step, try_number, who = fence
        tries = [
            int(t[1:7]) for t in self.backend.list_children(f"{FENCES}/{step}") if re.fullmatch(r"t\d{6}\.json", t)
        ]
        newer = max([t for t in tries if t > try_number], default=None)
        if newer is not None:
            claim = self._read_json(f"{kind}/{name}/{_vdir(version)}/{CLAIM}")
            if claim is not None:  # nothing of it is left behind for gc
                self._reclaim(kind, name, version, claim, f"try {try_number} of {who} itself (fenced by try {newer})")
            raise FencedError(
                f"{kind}/{name}@v{version} is not committed: try {newer} of {who} has begun, and this is try "
                f"{try_number} (a process that outlived its task try): fencing refuses its writes"
            )

    def _refuse_if_reclaimed(self, vprefix: str, ref: str, cause: BaseException | None = None) -> None:
        """Raise the error that says so if gc reclaimed this version (its tombstone holds the
        manifest's place)."""
        try:
            tombstone = self._read_json(f"{vprefix}/{MANIFEST}") or {}
        except ArtifactIntegrityError:
            return
        if _RECLAIMED in tombstone and "fencing" in str(tombstone[_RECLAIMED]):
            raise FencedError(
                f"{ref} was reclaimed by {tombstone[_RECLAIMED]} while this try was writing it: a newer try of the "
                "task has begun, so nothing this one writes is committed"
            ) from cause
        if _RECLAIMED in tombstone:
            raise ArtifactError(
                f"{ref} was reclaimed by `mlcrit gc` while this put was writing it (its claim was older than "
                "gc's grace period): nothing was committed; put it again"
            ) from cause

    # ---- aliases: kept by the ledger (ledger.py); these are its public face ------------

    @property
    def ledger(self) -> AliasLedger:
        return self._ledger

    def alias_version(self, key: str, alias: str) -> int | None:
        return self._ledger.version(key, alias)

    def aliases(self, key: str, damaged: list[str] | None = None) -> dict[str, int]:
        return self._ledger.aliases(key, damaged)

    def alias_names(self, key: str) -> list[str]:
        return self._ledger.names(key)

    def alias_history(self, key: str, alias: str) -> list[AliasMove]:
        return self._ledger.history(key, alias)

    def verify_aliases(self) -> list[tuple[str, str, str | None]]:
        return self._ledger.verify()

    def move_alias(self, ref: str | ArtifactRef, alias: str, **kwargs: Any) -> AliasMove:
        return self._ledger.move(ref, alias, **kwargs)

    def set_alias_policy(self, key: str, alias: str, policy: Mapping[str, Any] | None, **kwargs: Any) -> AliasMove:
        return self._ledger.set_policy(key, alias, policy, **kwargs)

    def repair_alias(self, key: str, alias: str, **kwargs: Any) -> AliasMove:
        return self._ledger.repair(key, alias, **kwargs)

    def rollback(self, key: str, alias: str, **kwargs: Any) -> AliasMove:
        return self._ledger.rollback(key, alias, **kwargs)

    def last_sound_policy(self, key: str, alias: str) -> dict[str, Any] | None:
        return self._ledger.last_sound_policy(key, alias)

    def purge(self, key: str) -> int:
        """Delete every version of a ``checkpoint`` artifact (transient by nature; other kinds are
        immutable and can only be garbage-collected before they commit). Returns versions removed."""
        kind, name = parse_key(key)
        if kind != "checkpoint":
            raise ConfigError(f"only checkpoint artifacts can be purged, not {key!r}: committed versions are immutable")
        removed = len(self.versions(key))
        self.backend.delete_prefix(f"{kind}/{name}")
        return removed

    # ---- lineage -----------------------------------------------------------------------

    def parents(self, ref: str | ArtifactRef) -> list[Manifest]:
        """The versions ``ref`` was made from, each checked against the digest it recorded."""
        child = self.resolve(ref)
        return [self._parent(child, p) for p in child.parents]

    def _parent(self, child: Manifest, recorded: Mapping[str, Any]) -> Manifest:
        parent = self.resolve(recorded["ref"])
        if parent.digest != recorded.get("digest"):
            raise ArtifactIntegrityError(
                f"{child.ref} records its parent {parent.ref} with digest {recorded.get('digest')}, but "
                f"{parent.ref} has {parent.digest}: one of them was altered after {child.ref} was made"
            )
        return parent

    def children(self, ref: str | ArtifactRef) -> list[Manifest]:
        """Committed versions that list ``ref`` as a parent (from the downstream index)."""
        m = self.resolve(ref)
        prefix = f"{m.kind}/{m.name}/_children/{_vdir(m.version)}"
        out = []
        for key in self.backend.list_keys(prefix):
            ckind, cname, cdir = key[len(prefix) + 1 :].split("/")
            match = _VERSION_DIR.fullmatch(cdir)
            entry = self._read_json(key)
            child = self._load_manifest(ckind, cname, int(match.group(1))) if match and entry else None
            if child is not None and child.digest == entry.get("digest"):
                out.append(child)
        return out

    # ---- garbage collection ------------------------------------------------------------

    def gc(
        self, *, grace_seconds: float = 24 * 3600, dry_run: bool = True, now: float | None = None
    ) -> list[GcCandidate]:
        """Find (and unless ``dry_run`` remove) versions claimed longer ago than the grace period
        but never committed: the leftovers of crashed writers."""
        now = time.time() if now is None else now
        found = []
        for kind in self.backend.list_children(""):
            if kind not in KINDS:
                continue
            for name in self.backend.list_children(kind):
                claimed = self._versions_claimed(kind, name)
                near, far = _split_far_claims(claimed)
                for version in far:
                    if self.backend.exists(f"{kind}/{name}/{_vdir(version)}/{MANIFEST}"):
                        continue  # committed: a reader checks it like any other version
                    claim = self._read_json(f"{kind}/{name}/{_vdir(version)}/{CLAIM}") or {}
                    problem = (
                        f"claimed {version - (near[-1] if near else 0)} versions past the one before it "
                        f"(v{near[-1] if near else 0}): not a claim this store's writers make"
                    )
                    age = now - float(claim.get("claimed_at_epoch", now)) if isinstance(claim, dict) else 0.0
                    found.append(
                        GcCandidate(f"{kind}/{name}@v{version}", str(claim.get("claimed_at", "")), age, None, problem)
                    )
                    if not dry_run:
                        self.backend.delete_prefix(f"{kind}/{name}/{_vdir(version)}")
                for version in near:
                    vprefix = f"{kind}/{name}/{_vdir(version)}"
                    if self.backend.exists(f"{vprefix}/{MANIFEST}"):
                        if not dry_run and not self.backend.exists(f"{vprefix}/{CLAIM}"):
                            # reclaimed: remove files a dying writer added since
                            for key in self.backend.list_keys(vprefix):
                                if not key.endswith("/" + MANIFEST):
                                    self.backend.delete(key)
                        continue
                    claim = self._read_json(f"{vprefix}/{CLAIM}")
                    if claim is None:
                        continue  # being created this instant; the claim is the first object written
                    age = now - float(claim.get("claimed_at_epoch", now))
                    if age < grace_seconds:
                        continue
                    idem = claim.get("idempotency_key")
                    found.append(GcCandidate(f"{kind}/{name}@v{version}", claim.get("claimed_at", ""), age, idem))
                    if dry_run:
                        continue
                    # Reclaim through the commit point: a tombstone takes the manifest's place by the
                    # same compare-and-swap a writer commits with. Exactly one of the two wins: a
                    # writer that commits first keeps its version (gc removes nothing); one that
                    # comes later fails to commit instead of committing a manifest without files.
                    if not self._reclaim(kind, name, version, claim, "mlcrit gc"):
                        found.pop()
        return found

    def _reclaim(self, kind: str, name: str, version: int, claim: Mapping[str, Any], by: str) -> bool:
        """Take an uncommitted version's commit point with a tombstone, then remove its files;
        False if a writer committed it first."""
        vprefix = f"{kind}/{name}/{_vdir(version)}"
        tombstone = {_RECLAIMED: by, "at": utcnow(), "claim": dict(claim)}
        if not self.backend.create_exclusive(f"{vprefix}/{MANIFEST}", dumps(tombstone)):
            return False
        self.backend.delete(f"{vprefix}/{CLAIM}")
        if claim.get("idempotency_key") is not None:
            self.backend.delete(self._idempotency_key_path(kind, name, claim["idempotency_key"]))
        for key in self.backend.list_keys(vprefix):
            if not key.endswith("/" + MANIFEST):  # the tombstone stays: the number is never reused
                self.backend.delete(key)
        return True

    def abandon(self, staged: StagedVersion, why: str) -> None:
        """Give up a staged version that will not be committed (its step failed): its files go
        now rather than at the next gc, and its number is never reused."""
        claim = self._read_json(f"{staged.kind}/{staged.name}/{_vdir(staged.version)}/{CLAIM}") or {}
        self._reclaim(staged.kind, staged.name, staged.version, claim, f"abandoned: {why}"[:500])


def open_store(
    root: str | os.PathLike[str], *, signer: Signer | None = None, witness: Any = None, **s3_options: Any
) -> ArtifactStore:
    """A store on ``root``: ``s3://bucket/prefix`` (boto3 options as keywords) or a local directory.
    With a ``signer``, every record written is signed and every record read must be. With a
    ``witness`` (witness.py: a SQL URL, or a SqlWitness), every alias move is mirrored outside
    the store and every read of an alias is checked against it."""
    store = _open(str(root), signer, s3_options)
    if isinstance(witness, str):
        from airflow_mlcrit.core.artifacts.witness import SqlWitness

        witness = SqlWitness(witness, store.root_uri)
    store.witness = witness
    return store


def _open(root: str, signer: Signer | None, s3_options: dict[str, Any]) -> ArtifactStore:
    if not root:
        raise ConfigError("artifact root is empty: set [mlcrit] artifact_root, MLCRIT_ARTIFACT_ROOT or --root")
    if root.startswith("s3://"):
        return ArtifactStore(S3Backend(root, **s3_options), signer)
    if "://" in root and not root.startswith("file://"):
        raise ConfigError(f"unsupported artifact root {root!r}: use a local path, file:///path or s3://bucket/prefix")
    if s3_options:
        raise ConfigError(f"S3 options {sorted(s3_options)} given for the local artifact root {root!r}")
    path = root[len("file://") :] if root.startswith("file://") else root
    return ArtifactStore(LocalBackend(path), signer)
