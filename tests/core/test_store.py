"""The artifact store's contract, run against the local backend and S3 (moto server on 127.0.0.1)."""

import hashlib
import json
import re
from pathlib import Path

import pytest

from airflow_mlcrit.core.artifacts import open_store
from airflow_mlcrit.core.artifacts.store import content_digest, manifest_digest
from airflow_mlcrit.exceptions import (
    ArtifactConflictError,
    ArtifactError,
    ArtifactIntegrityError,
    ArtifactNotFoundError,
    ConfigError,
    InvalidReferenceError,
)


@pytest.fixture
def payload(tmp_path) -> Path:
    d = tmp_path / "payload"
    (d / "sub").mkdir(parents=True)
    (d / "data.csv").write_text("a,b\n1,2\n")
    (d / "sub" / "weights.bin").write_bytes(bytes(range(256)) * 10)
    return d


def raw_keys(store, prefix):
    return store.backend.list_keys(prefix)


def test_put_then_get_round_trip(store, payload, tmp_path):
    m = store.put("dataset/reviews", payload, metadata={"rows": 1}, producer={"tool": "test"})
    assert str(m.ref) == "dataset/reviews@v1"
    assert [f["path"] for f in m.files] == ["data.csv", "sub/weights.bin"]
    assert [f["size"] for f in m.files] == [8, 2560]
    assert m.files[0]["sha256"] == hashlib.sha256(b"a,b\n1,2\n").hexdigest()
    assert m.files[1]["sha256"] == hashlib.sha256(bytes(range(256)) * 10).hexdigest()
    assert m.digest == content_digest(m.files)
    assert m.producer == {"tool": "test"}
    assert m.metadata == {"rows": 1}
    assert m.libraries["airflow_mlcrit"] == "0.1.0"
    out = tmp_path / "out"
    got = store.get("dataset/reviews@latest", out)
    assert got == store.resolve("dataset/reviews@v1")
    assert (out / "data.csv").read_text() == "a,b\n1,2\n"
    assert (out / "sub" / "weights.bin").read_bytes() == bytes(range(256)) * 10
    assert store.read_bytes("dataset/reviews@v1", "data.csv") == b"a,b\n1,2\n"


def test_manifest_is_written_last_and_versions_increase(store, payload):
    store.put("dataset/reviews", payload)
    store.put("dataset/reviews", payload / "data.csv")
    assert store.versions("dataset/reviews") == [1, 2]
    assert [f["path"] for f in store.resolve("dataset/reviews").files] == ["data.csv"]
    manifest = json.loads(store.backend.read_bytes("dataset/reviews/v000002/_MANIFEST.json"))
    assert manifest["ref"] == "dataset/reviews@v2"
    assert manifest["format"] == 2 and manifest["manifest_digest"] == manifest_digest(manifest)
    assert store.list_artifacts() == ["dataset/reviews"]
    assert store.list_artifacts("model") == []


def test_idempotent_retry_returns_same_version_and_writes_nothing(store, payload):
    first = store.put("model/m", payload, idempotency_key="dag/run/task/-1")
    before = {k: store.backend.read_bytes(k) for k in raw_keys(store, "model/m")}
    again = store.put("model/m", payload / "data.csv", idempotency_key="dag/run/task/-1")
    assert again == first
    assert {k: store.backend.read_bytes(k) for k in raw_keys(store, "model/m")} == before
    other = store.put("model/m", payload, idempotency_key="dag/run2/task/-1")
    assert other.version == 2


def test_changed_inputs_with_the_same_key_make_a_new_version(store, payload):
    d1 = store.put("dataset/d", payload / "data.csv")
    m1 = store.put("model/m", payload, parents=[d1.ref], idempotency_key="k")
    d2 = store.put("dataset/d", payload / "sub" / "weights.bin")
    m2 = store.put("model/m", payload, parents=[d2.ref], idempotency_key="k")
    assert (m1.version, m2.version) == (1, 2)
    assert store.put("model/m", payload, parents=[d2.ref], idempotency_key="k") == m2


def test_flipped_byte_fails_get_and_verify_naming_the_file(store, payload, tmp_path):
    store.put("model/m", payload)
    key = "model/m/v000001/sub/weights.bin"
    data = bytearray(store.backend.read_bytes(key))
    data[100] ^= 0xFF
    store.backend.write_bytes(key, bytes(data))
    with pytest.raises(ArtifactIntegrityError, match=re.escape("file 'sub/weights.bin' of model/m@v1 does not match")):
        store.get("model/m@v1", tmp_path / "out")
    assert not (tmp_path / "out" / "sub" / "weights.bin").exists()
    with pytest.raises(ArtifactIntegrityError, match=re.escape("file 'sub/weights.bin' of model/m@v1")):
        store.verify("model/m@v1")
    with pytest.raises(ArtifactIntegrityError, match=re.escape("file 'sub/weights.bin' of model/m@v1")):
        store.read_bytes("model/m@v1", "sub/weights.bin")
    assert store.read_bytes("model/m@v1", "data.csv") == b"a,b\n1,2\n"


def test_tampered_manifest_is_detected(store, payload):
    store.put("model/m", payload)
    key = "model/m/v000001/_MANIFEST.json"
    manifest = json.loads(store.backend.read_bytes(key))
    manifest["files"][0]["sha256"] = "0" * 64
    store.backend.write_bytes(key, json.dumps(manifest).encode())
    with pytest.raises(ArtifactIntegrityError, match="its file list does not hash to its digest"):
        store.resolve("model/m@v1")


def test_missing_file_is_an_integrity_error(store, payload):
    store.put("model/m", payload)
    store.backend.delete("model/m/v000001/data.csv")
    with pytest.raises(
        ArtifactIntegrityError, match=re.escape("file 'data.csv' of model/m@v1 is listed in its manifest but missing")
    ):
        store.verify("model/m@v1")


@pytest.mark.parametrize("name", ["../x", "a/b", "", "x" * 300])
def test_hostile_names_are_rejected(store, payload, name):
    with pytest.raises(InvalidReferenceError, match=re.escape("[a-z0-9][a-z0-9._-]*")):
        store.put(f"dataset/{name}", payload)
    assert store.backend.list_keys("") == []


def test_hostile_payload_paths_are_rejected(store, tmp_path):
    f = tmp_path / "f.txt"
    f.write_text("x")
    for rel in ("../escape.txt", "/abs.txt", "a/../../b", "_MANIFEST.json"):
        with pytest.raises(ArtifactError, match=re.escape(repr(rel))):
            store.put("dataset/d", {rel: f})
    assert store.backend.list_keys("") == []


def test_not_found_messages(store, payload):
    with pytest.raises(ArtifactNotFoundError, match=re.escape("dataset/nope has no committed version")):
        store.resolve("dataset/nope")
    store.put("dataset/d", payload)
    with pytest.raises(
        ArtifactNotFoundError, match=re.escape("dataset/d@v7 does not exist; committed versions of dataset/d: v1")
    ):
        store.resolve("dataset/d@v7")
    with pytest.raises(
        ArtifactNotFoundError, match=re.escape("alias 'production' of dataset/d is not set; aliases: none")
    ):
        store.resolve("dataset/d@production")
    with pytest.raises(ArtifactNotFoundError, match="no such file or directory"):
        store.put("dataset/d", payload / "missing.csv")


def test_parents_must_exist_and_are_pinned(store, payload):
    with pytest.raises(ArtifactNotFoundError):
        store.put("model/m", payload, parents=["dataset/absent"])
    d = store.put("dataset/d", payload)
    m = store.put("model/m", payload, parents=["dataset/d@latest"])
    assert m.parents == [{"ref": "dataset/d@v1", "digest": d.digest}]
    assert [str(c.ref) for c in store.children("dataset/d@v1")] == ["model/m@v1"]
    assert [str(p.ref) for p in store.parents("model/m")] == ["dataset/d@v1"]


def test_aliases_cas_and_history(store, payload):
    for _ in range(3):
        store.put("model/m", payload)
    store.move_alias("model/m@v1", "production", reason="first", actor="alice", expected=None)
    store.move_alias("model/m@v2", "production", reason="better", actor="bob", expected=1)
    assert store.resolve("model/m@production").version == 2
    with pytest.raises(ArtifactConflictError, match=re.escape("points at v2, not the expected v1")):
        store.move_alias("model/m@v3", "production", reason="stale", expected=1)
    with pytest.raises(ConfigError, match="needs a reason"):
        store.move_alias("model/m@v3", "production", reason=" ")
    with pytest.raises(ArtifactNotFoundError):
        store.move_alias("model/m@v9", "production", reason="absent")
    history = store.alias_history("model/m", "production")
    assert [(h.seq, h.from_version, h.to_version, h.actor, h.reason) for h in history] == [
        (1, None, 1, "alice", "first"),
        (2, 1, 2, "bob", "better"),
    ]
    assert store.aliases("model/m") == {"production": 2}


def test_rollback_walks_back_and_records_it(store, payload):
    for _ in range(3):
        store.put("model/m", payload)
    for v in (1, 2, 3):
        store.move_alias(f"model/m@v{v}", "production", reason=f"promote v{v}")
    assert store.rollback("model/m", "production", reason="v3 regressed").to_version == 2
    assert store.rollback("model/m", "production", reason="v2 regressed too").to_version == 1
    with pytest.raises(ArtifactNotFoundError, match="no earlier version to roll back to"):
        store.rollback("model/m", "production", reason="again")
    move = store.rollback("model/m", "production", reason="v3 fixed after all", to_version=3)
    assert (move.from_version, move.to_version, move.extra) == (1, 3, {"rollback": True})
    assert [h.to_version for h in store.alias_history("model/m", "production")] == [1, 2, 3, 2, 1, 3]


def test_crash_before_manifest_leaves_no_version_and_gc_removes_it(store, payload):
    """Simulated crash: payload uploaded, then the process dies before the commit."""
    real = store.backend.create_exclusive

    def crash_on_commit(key, data):
        if key.endswith("_MANIFEST.json"):
            raise KeyboardInterrupt("simulated crash")
        return real(key, data)

    store.backend.create_exclusive = crash_on_commit
    with pytest.raises(KeyboardInterrupt):
        store.put("dataset/d", payload, idempotency_key="k1")
    with pytest.raises(KeyboardInterrupt):
        store.put("dataset/d", payload, idempotency_key="k2")
    store.backend.create_exclusive = real
    assert store.versions("dataset/d") == []
    assert store.list_artifacts() == []
    with pytest.raises(ArtifactNotFoundError):
        store.resolve("dataset/d")
    assert "dataset/d/v000001/data.csv" in raw_keys(store, "dataset/d")
    # The retry of attempt k1 takes its version over and commits it whole.
    assert store.put("dataset/d", payload, idempotency_key="k1").version == 1
    # gc: within the grace period nothing goes; after it, exactly the dead v2 does.
    assert store.gc(grace_seconds=3600, dry_run=False) == []
    found = store.gc(grace_seconds=0, dry_run=True)
    assert [c.ref for c in found] == ["dataset/d@v2"]
    assert "dataset/d/v000002/data.csv" in raw_keys(store, "dataset/d")
    assert [c.ref for c in store.gc(grace_seconds=0, dry_run=False)] == ["dataset/d@v2"]
    # what stays of v2 is gc's tombstone in its manifest's place: the number is never reused
    assert [k for k in raw_keys(store, "dataset/d") if "v000002" in k] == ["dataset/d/v000002/_MANIFEST.json"]
    assert store.versions("dataset/d") == [1] and store.resolve("dataset/d@latest").version == 1
    assert store.put("dataset/d", payload, idempotency_key="k2").version == 3


def test_empty_directory_and_bad_metadata_write_nothing(store, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ArtifactError, match="is empty"):
        store.put("dataset/d", tmp_path / "empty")
    f = tmp_path / "f"
    f.write_text("x")
    with pytest.raises(TypeError):
        store.put("dataset/d", f, metadata={"x": object()})
    assert store.backend.list_keys("") == []


def test_open_store_roots(tmp_path):
    assert open_store(f"file://{tmp_path}/s").root_uri == (tmp_path / "s").as_uri()
    with pytest.raises(ConfigError, match="unsupported artifact root 'gs://b'"):
        open_store("gs://b")
    with pytest.raises(ConfigError, match="artifact root is empty"):
        open_store("")
    with pytest.raises(ConfigError, match=re.escape("S3 artifact root must look like 's3://bucket/prefix'")):
        open_store("s3://")


def test_a_writer_killed_after_upload_leaves_nothing_and_mlcrit_gc_cleans_up(store_spec, tmp_path):
    """A real SIGKILL between the payload upload and the manifest, then `mlcrit gc`."""
    import os
    import subprocess
    import sys

    root, options = store_spec
    src = tmp_path / "data.csv"
    src.write_text("a,b\n1,2\n")
    code = f"""
import os, signal
from airflow_mlcrit.core.artifacts import open_store
store = open_store({root!r}, **{options!r})
real = store.backend.create_exclusive
def die_at_commit(key, data):
    if key.endswith("_MANIFEST.json"):
        os.kill(os.getpid(), signal.SIGKILL)
    return real(key, data)
store.backend.create_exclusive = die_at_commit
store.put("dataset/d", {str(src)!r})
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == -9, result.stderr
    store = open_store(root, **options)
    assert "dataset/d/v000001/data.csv" in store.backend.list_keys("dataset/d")
    assert store.versions("dataset/d") == [] and store.list_artifacts() == []
    env = dict(os.environ, MLCRIT_ARTIFACT_ROOT=root)
    if "endpoint_url" in options:
        env["AWS_ENDPOINT_URL"] = options["endpoint_url"]
    cli = [sys.executable, "-m", "airflow_mlcrit.core.cli"]
    dry = subprocess.run([*cli, "--json", "gc", "--grace-hours", "0"], env=env, capture_output=True, text=True)
    assert json.loads(dry.stdout) == {"would_remove": ["dataset/d@v1"]}
    assert store.backend.list_keys("dataset/d") != []
    done = subprocess.run([*cli, "gc", "--grace-hours", "0", "--delete"], env=env, capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.startswith("removed: 1 uncommitted version(s)")
    assert store.backend.list_keys("dataset/d") == ["dataset/d/v000001/_MANIFEST.json"]  # gc's tombstone


def test_a_payload_file_written_to_during_put_is_refused(store, tmp_path):
    """A producer still appending to the file: the digest and the stored copy could disagree."""
    import threading

    src = tmp_path / "growing.bin"
    src.write_bytes(b"\0" * (32 << 20))
    stop = threading.Event()

    def append():
        with open(src, "ab") as f:
            while not stop.is_set():
                f.write(b"x")
                f.flush()

    writer = threading.Thread(target=append)
    writer.start()
    try:
        with pytest.raises(
            ArtifactError, match=f"payload file {re.escape(str(src))} changed while it was being stored"
        ):
            store.put("dataset/growing", src)
    finally:
        stop.set()
        writer.join()
    assert store.versions("dataset/growing") == []
    assert store.put("dataset/growing", src).version == 2  # quiet again: v1's claim stays dead


def test_local_payload_and_names_are_synced_before_the_manifest_links(tmp_path, payload, monkeypatch):
    """Power loss cannot be simulated here; instead spy on the order of fsync(2) and the
    manifest's link(2): nothing the manifest vouches for may be only in the page cache."""
    import os

    store = open_store(str(tmp_path / "store"))
    events = []
    real_fsync, real_link = os.fsync, os.link

    def fsync(fd):
        events.append(("fsync", os.fstat(fd).st_ino))
        return real_fsync(fd)

    def link(src, dst, **kw):
        real_link(src, dst, **kw)
        events.append(("link", os.path.basename(dst)))

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "link", link)
    m = store.put("dataset/d", payload)
    monkeypatch.undo()
    vdir = Path(m.uri.removeprefix("file://"))
    commit = events.index(("link", "_MANIFEST.json"))
    synced_before = {ino for what, ino in events[:commit] if what == "fsync"}
    must = [vdir / "data.csv", vdir / "sub" / "weights.bin", vdir / "sub", vdir, vdir.parent]
    assert [p for p in must if p.stat().st_ino not in synced_before] == []
    assert ("fsync", vdir.stat().st_ino) in events[commit:]  # the manifest's name itself


def test_a_forged_path_outside_the_destination_writes_nothing_anywhere(store, payload, tmp_path):
    """A manifest whose file list (and digest, recomputed) names '../../x': get refuses before
    it creates a single directory, inside or outside the destination."""
    store.put("model/m", payload)
    key = "model/m/v000001/_MANIFEST.json"
    manifest = json.loads(store.backend.read_bytes(key))
    manifest["files"][1]["path"] = "../../escaped/weights.bin"
    manifest["digest"] = content_digest(manifest["files"])
    manifest["manifest_digest"] = manifest_digest(manifest)
    store.backend.write_bytes(key, json.dumps(manifest).encode())
    dest = tmp_path / "deep" / "er" / "dest"
    with pytest.raises(ArtifactIntegrityError, match=re.escape("which would land outside the destination")):
        store.get("model/m@v1", dest)
    assert not (tmp_path / "deep").exists() and not (tmp_path / "deep" / "escaped").exists()


def test_stored_files_follow_the_umask_so_a_shared_store_stays_readable(tmp_path, payload):
    import os
    import stat

    from airflow_mlcrit.core.artifacts import open_store
    from airflow_mlcrit.core.artifacts.backends import _umask

    store = open_store(tmp_path / "local")  # file modes: the local backend
    store.put("model/m", payload)
    modes = {stat.S_IMODE(p.stat().st_mode) for p in Path(store.backend.root).rglob("*") if p.is_file()}
    assert modes == {0o666 & ~_umask()} and _umask() == os.umask(_umask())  # read without changing it


def test_payload_symlinks_fifos_and_odd_names_are_refused_before_any_claim(store, tmp_path):
    import os

    secret = tmp_path / "outside.txt"
    secret.write_text("not part of the payload")

    def payload_with(name, make):
        d = tmp_path / name
        d.mkdir()
        (d / "real.txt").write_text("data")
        make(d)
        return d

    cases = [
        ("out", lambda d: (d / "link").symlink_to(secret), "payload 'link' is a symlink to"),
        ("dangling", lambda d: (d / "link").symlink_to(d / "gone"), "payload 'link' is a dangling or looping symlink"),
        ("loop", lambda d: (d / "link").symlink_to(d / "link"), "payload 'link' is a dangling or looping symlink"),
        ("dirlink", lambda d: (d / "link").symlink_to(d), "payload 'link' is a symlink to a directory"),
        ("fifo", lambda d: os.mkfifo(d / "pipe"), "payload 'pipe' is not a regular file (a FIFO, device or socket)"),
        ("inside", lambda d: (d / "link").symlink_to(d / "real.txt"), "store what it points to with follow_symlinks"),
    ]
    for name, make, expected in cases:
        with pytest.raises(ArtifactError, match=re.escape(expected)):
            store.put(f"dataset/{name}", payload_with(name, make))
    assert store.list_artifacts() == [] and not [k for k in store.backend.list_keys("") if "dataset" in k]
    # the payload path itself a symlink (`mlcrit artifacts put dataset/b L`, L -> a file elsewhere)
    (tmp_path / "L").symlink_to(secret)
    with pytest.raises(ConfigError, match=re.escape(f"payload {tmp_path / 'L'} is a symlink (to {secret})")):
        store.put("dataset/b", tmp_path / "L")
    assert store.versions("dataset/b") == []
    m = store.put("dataset/inside", tmp_path / "inside", follow_symlinks=True)  # a link inside: stored as its file
    assert [f["path"] for f in m.files] == ["link", "real.txt"] and store.read_bytes(m.ref, "link") == b"data"
    odd = tmp_path / "odd"
    odd.mkdir()
    (odd / os.fsdecode(b"caf\xe9.txt")).write_text("latin-1 name")
    with pytest.raises(ArtifactError, match=re.escape("is not valid UTF-8; rename it")):
        store.put("dataset/odd", odd)
    with pytest.raises(ArtifactError, match=re.escape("metadata of dataset/meta is not strict JSON")):
        store.put("dataset/meta", tmp_path / "outside.txt", metadata={"loss": float("nan")})
    assert store.versions("dataset/odd") == [] and store.versions("dataset/meta") == []


def test_a_manifest_is_bound_to_where_it_lives_and_malformed_ones_are_integrity_errors(store, payload):
    store.put("model/other", payload)
    store.put("model/m", payload)
    store.put("model/m", payload)
    other = store.backend.read_bytes("model/other/v000001/_MANIFEST.json")
    store.backend.write_bytes("model/m/v000002/_MANIFEST.json", other)  # copied in from another artifact
    with pytest.raises(ArtifactIntegrityError, match=re.escape("names name 'other', but it is stored as model/m@v2")):
        store.resolve("model/m@latest")
    own = json.loads(store.backend.read_bytes("model/m/v000001/_MANIFEST.json"))
    store.backend.write_bytes("model/m/v000002/_MANIFEST.json", json.dumps(own).encode())  # v2 says version 1
    with pytest.raises(ArtifactIntegrityError, match=re.escape("names version 1, but it is stored as model/m@v2")):
        store.resolve("model/m@v2")
    for body, expected in (
        (b"[]", "is a JSON list, not an object: corrupt"),
        (json.dumps({k: v for k, v in own.items() if k != "files"}).encode(), "lacks the field 'files': corrupt"),
        (json.dumps({**own, "version": "two"}).encode(), "has a malformed field"),
    ):
        store.backend.write_bytes("model/m/v000002/_MANIFEST.json", body)
        with pytest.raises(ArtifactIntegrityError, match=re.escape(expected)):
            store.resolve("model/m@v2")
    assert store.resolve("model/m@v1").version == 1  # the damage stays with its version


@pytest.mark.parametrize(
    "field, value",
    [
        ("producer", {"dag_id": "forged", "run_id": "r", "task_id": "t", "try_number": 1}),
        ("parents", []),
        ("metadata", {"accuracy": 0.99}),
        ("created_at", "2020-01-01T00:00:00Z"),
        ("libraries", {"torch": "0.0.1"}),
        ("idempotency_key", "someone-else"),
    ],
)
def test_every_manifest_field_is_covered_by_its_digest(store, payload, tmp_path, field, value):
    """An edit to any field, not just the file list, is an integrity error on every read, and
    verify says so."""
    src = tmp_path / "parent.txt"
    src.write_text("parent")
    store.put("dataset/d", src)
    store.put("model/m", payload, parents=["dataset/d@v1"], metadata={"accuracy": 0.81})
    key = "model/m/v000001/_MANIFEST.json"
    manifest = json.loads(store.backend.read_bytes(key))
    assert manifest[field] != value
    store.backend.write_bytes(key, json.dumps({**manifest, field: value}).encode())
    expected = "does not hash to its manifest_digest: a field (producer, parents, metadata"
    for read in (store.resolve, store.verify, lambda ref: store.get(ref, tmp_path / "out")):
        with pytest.raises(ArtifactIntegrityError, match=re.escape(expected)):
            read("model/m@v1")


def test_a_manifest_of_an_older_format_is_refused_not_trusted(store, payload):
    store.put("model/m", payload)
    key = "model/m/v000001/_MANIFEST.json"
    manifest = json.loads(store.backend.read_bytes(key))
    old = {k: v for k, v in manifest.items() if k != "manifest_digest"} | {"format": 1}  # a downgrade
    store.backend.write_bytes(key, json.dumps(old).encode())
    with pytest.raises(ArtifactIntegrityError, match=re.escape("has format 1; this airflow-mlcrit reads format 2")):
        store.resolve("model/m@v1")


def test_a_parent_whose_digest_differs_from_the_recorded_one_is_reported(store, payload, tmp_path):
    """A forger who rewrites a parent consistently (its files, digest and manifest_digest) still
    cannot make its children agree: verify and parents() name both digests."""
    src = tmp_path / "train.csv"
    src.write_text("text,label\ngood,1\n")
    store.put("dataset/d", src)
    child = store.put("model/m", payload, parents=["dataset/d@v1"])
    assert store.verify(child.ref).parents[0]["digest"] == store.resolve("dataset/d@v1").digest
    key = "dataset/d/v000001/_MANIFEST.json"
    parent = json.loads(store.backend.read_bytes(key))
    store.backend.write_bytes("dataset/d/v000001/train.csv", b"text,label\nevil,1\n")
    parent["files"][0]["sha256"] = hashlib.sha256(b"text,label\nevil,1\n").hexdigest()
    parent["digest"] = content_digest(parent["files"])
    parent["manifest_digest"] = manifest_digest(parent)
    store.backend.write_bytes(key, json.dumps(parent).encode())
    assert store.verify("dataset/d@v1").digest == parent["digest"]  # consistent on its own
    expected = (
        f"model/m@v1 records its parent dataset/d@v1 with digest {child.parents[0]['digest']}, "
        f"but dataset/d@v1 has {parent['digest']}: one of them was altered"
    )
    for read in (store.verify, store.parents):
        with pytest.raises(ArtifactIntegrityError, match=re.escape(expected)):
            read("model/m@v1")


@pytest.mark.parametrize(
    "body, expected",
    [(b"{bad", "is not readable JSON"), (b"[]", "is a JSON list, not an object"), (b"{}", "names no version")],
)
def test_a_corrupt_idempotency_marker_is_an_integrity_error_naming_it(store, payload, body, expected):
    store.put("model/m", payload, idempotency_key="dag/run/task/-1")
    [marker] = [k for k in store.backend.list_keys("model/m/_idempotency")]
    store.backend.write_bytes(marker, body)
    with pytest.raises(ArtifactIntegrityError, match=re.escape(expected)) as err:
        store.put("model/m", payload, idempotency_key="dag/run/task/-1")
    assert marker in str(err.value) and store.versions("model/m") == [1]
    assert store.put("model/m", payload, idempotency_key="another-task").version == 2  # only that key is affected


def test_gc_during_a_put_reclaims_through_the_commit_point(store_spec, payload, tmp_path):
    """gc (grace 0) runs while a put is uploading: it takes the manifest's place with a tombstone,
    so the put fails to commit instead of committing a manifest whose files gc removed."""
    from airflow_mlcrit.core.artifacts import open_store

    root, options = store_spec
    writer, collector = open_store(root, **options), open_store(root, **options)
    upload, collected = writer.backend.upload_file, []

    def upload_then_gc(key, src):
        result = upload(key, src)
        if not collected:
            collected.extend(collector.gc(grace_seconds=0, dry_run=False))
        return result

    writer.backend.upload_file = upload_then_gc
    with pytest.raises(ArtifactError, match=re.escape("dataset/d@v1 was reclaimed by `mlcrit gc` while this put")):
        writer.put("dataset/d", payload)
    assert [c.ref for c in collected] == ["dataset/d@v1"]
    assert writer.versions("dataset/d") == [] and not writer.exists("dataset/d@latest")
    collector.gc(grace_seconds=0, dry_run=False)  # the files the put wrote after the reclaim
    assert raw_keys(writer, "dataset/d") == ["dataset/d/v000001/_MANIFEST.json"]
    writer.backend.upload_file = upload
    assert writer.put("dataset/d", payload).version == 2  # v1 is never reused
    writer.get("dataset/d@v2", tmp_path / "out")


def test_racing_puts_and_gc_never_leave_a_version_without_its_files(store_spec, payload):
    """Puts and gc --grace 0 --delete in two threads, 30 rounds: every put either commits a
    version that verifies whole or fails saying gc reclaimed it."""
    import threading

    from airflow_mlcrit.core.artifacts import open_store

    root, options = store_spec
    writer, collector = open_store(root, **options), open_store(root, **options)
    done, outcomes = threading.Event(), []

    def collect():
        while not done.is_set():
            collector.gc(grace_seconds=0, dry_run=False)

    gc_thread = threading.Thread(target=collect)
    gc_thread.start()
    try:
        for _ in range(30):
            try:
                outcomes.append(writer.put("dataset/race", payload).version)
            except ArtifactError as exc:
                assert "was reclaimed by `mlcrit gc` while this put was writing it" in str(exc)
                outcomes.append(None)
    finally:
        done.set()
        gc_thread.join()
    committed = [v for v in outcomes if v is not None]
    assert writer.versions("dataset/race") == committed and len(committed) + outcomes.count(None) == 30
    for v in committed:
        writer.verify(f"dataset/race@v{v}")
    print(f"{outcomes.count(None)} of 30 puts reclaimed by gc, {len(committed)} committed whole")


def test_latest_version_skips_claims_that_never_committed(store, tmp_path):
    """The index's newest version: an uncommitted claim above the newest committed version (a
    writer still uploading, or one that died) is not it, and an artifact with only such a claim
    is not listed."""
    (tmp_path / "a.txt").write_text("a")
    store.put("dataset/a", tmp_path / "a.txt")
    store.put("dataset/a", tmp_path / "a.txt", metadata={"second": True})
    store.stage("dataset/a")  # v3 claimed, never committed
    store.stage("dataset/only-claimed")
    assert store.latest_version("dataset/a") == 2 and store.latest_version("dataset/only-claimed") is None
    assert store.catalog() == [("dataset/a", 2)] and store.list_artifacts() == ["dataset/a"]
    assert store.resolve("dataset/a@latest").version == 2


def test_a_window_of_versions_walks_only_as_far_as_it_shows(store, tmp_path):
    """versions_window: the newest committed versions, newest first, skipping uncommitted claims,
    and the count of claims (for paging). It checks no more versions than it returns."""
    (tmp_path / "a.txt").write_text("a")
    for i in range(5):
        store.put("dataset/a", tmp_path / "a.txt", metadata={"i": i})
    store.stage("dataset/a")  # v6 claimed, never committed
    assert store.versions_window("dataset/a", 2) == ([5, 4], 6)
    assert store.versions_window("dataset/a", 2, skip=2) == ([3, 2], 6)
    assert store.versions_window("dataset/a", 2, skip=4) == ([1], 6)
    assert store.versions_window("dataset/a", 2, skip=6) == ([], 6)
    checked = []
    committed = store._committed
    store._committed = lambda kind, name, v: checked.append(v) or committed(kind, name, v)
    try:
        assert store.versions_window("dataset/a", 2)[0] == [5, 4] and checked == [6, 5, 4]
    finally:
        del store._committed


def test_a_claim_far_beyond_the_others_is_flagged_by_gc_and_does_not_move_the_next_version(store, payload):
    """A stray or forged _CLAIM.json at v1000000: the next put is v3, not v1000001, and gc names it
    whatever its age (and removes it with --delete)."""
    store.put("dataset/d", payload)
    store.put("dataset/d", payload)
    store.backend.create_exclusive("dataset/d/v1000000/_CLAIM.json", b'{"claimed_at_epoch": 0}')
    assert store.put("dataset/d", payload).version == 3
    [flagged] = store.gc(grace_seconds=10**9)
    assert (flagged.ref, flagged.problem) == (
        "dataset/d@v1000000",
        "claimed 999997 versions past the one before it (v3): not a claim this store's writers make",
    )
    store.gc(grace_seconds=10**9, dry_run=False)
    assert store.gc(grace_seconds=0) == [] and store.versions("dataset/d") == [1, 2, 3]
