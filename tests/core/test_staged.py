"""Staged versions: files written in place by others (Beam workers) are committed from their
(path, size, sha256) records without the committer reading a byte; exactly the recorded files
must be there; an uncommitted one is invisible and gc removes it. Local store and S3 (moto)."""

import hashlib
import re

import pytest

from airflow_mlcrit.core.artifacts.store import MANIFEST
from airflow_mlcrit.exceptions import ArtifactError, ArtifactIntegrityError, ArtifactNotFoundError


def _write(store, staged, rel: str, data: bytes) -> dict:
    """What a worker does: write the file into the version, and record it."""
    store.backend.write_bytes(f"{staged.kind}/{staged.name}/v{staged.version:06d}/{rel}", data)
    return {"path": rel, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


@pytest.fixture
def staged(store):
    return store.stage("dataset/shards")


def test_staged_files_commit_from_the_writers_records(store, staged, tmp_path):
    assert (staged.version, str(staged.ref)) == (1, "dataset/shards@v1")
    expected = store.backend.uri("dataset/shards/v000001")
    assert staged.location == (expected if expected.startswith("s3://") else expected[len("file://") :])
    records = [_write(store, staged, f"train/part-{i:05d}.parquet", bytes([i]) * (10 + i)) for i in range(3)]
    store.backend.write_bytes("dataset/shards/v000001/_staging/row_counts.json", b"{}")  # control, not payload
    with pytest.raises(ArtifactNotFoundError):
        store.resolve("dataset/shards@latest")  # invisible until committed
    m = store.commit_staged(staged, records, metadata={"rows": 3}, idempotency_key="run-1")
    assert [(f["path"], f["size"]) for f in m.files] == [(f"train/part-{i:05d}.parquet", 10 + i) for i in range(3)]
    assert store.verify("dataset/shards@v1").digest == m.digest
    assert not store.backend.list_keys("dataset/shards/v000001/_staging")
    assert store.read_bytes("dataset/shards@v1", "train/part-00002.parquet") == b"\x02" * 12
    assert store.committed("dataset/shards", "run-1") == m  # a retry finds it as it finds a put's


def test_a_missing_resized_or_unrecorded_file_refuses_the_commit(store, staged):
    a = _write(store, staged, "a.parquet", b"aaaa")
    with pytest.raises(
        ArtifactError, match=re.escape("'b.parquet' was recorded by a writer of dataset/shards@v1 but is not")
    ):
        store.commit_staged(staged, [a, {"path": "b.parquet", "size": 1, "sha256": "0" * 64}])
    with pytest.raises(
        ArtifactIntegrityError, match=re.escape("'a.parquet' of dataset/shards@v1 holds 4 bytes, but its wri")
    ):
        store.commit_staged(staged, [{**a, "size": 5}])
    _write(store, staged, "stray.parquet", b"s")
    with pytest.raises(ArtifactError, match=r"holds 1 file\(s\) no writer recorded \(stray.parquet\)"):
        store.commit_staged(staged, [a])
    for bad, message in [
        ({"path": "../x", "size": 1, "sha256": "0" * 64}, "x"),
        ({"path": MANIFEST, "size": 1, "sha256": "0" * 64}, "reserved path"),
        ({"path": "a.parquet", "size": "4", "sha256": "0" * 64}, "malformed"),
    ]:
        with pytest.raises(Exception, match=message):
            store.commit_staged(staged, [bad])
    with pytest.raises(ArtifactError, match=re.escape("two writers recorded 'a.parquet'")):
        store.commit_staged(staged, [a, a])
    assert store.versions("dataset/shards") == []


def test_an_abandoned_staged_version_is_gcs_to_remove(store, staged):
    _write(store, staged, "a.parquet", b"aaaa")
    store.backend.write_bytes("dataset/shards/v000001/_staging/shard-0.json", b"{}")
    [found] = store.gc(grace_seconds=0, dry_run=False)
    assert found.ref == "dataset/shards@v1"
    assert store.backend.list_keys("dataset/shards/v000001") == [f"dataset/shards/v000001/{MANIFEST}"]
    with pytest.raises(ArtifactError, match="was reclaimed by `mlcrit gc`"):
        store.commit_staged(staged, [])
    assert store.stage("dataset/shards").version == 2  # the number is never reused
