"""The alias history is a hash chain with a head record: a deleted, edited, injected or corrupt
entry is an ArtifactIntegrityError naming the alias and the entry, moves refuse until an operator
repairs the alias, and sequence numbers are never reused. Local store and S3 (moto)."""

import json
import re
import subprocess
import sys

import pytest

from airflow_mlcrit.core.artifacts.ledger import HEAD, entry_digest
from airflow_mlcrit.exceptions import ArtifactIntegrityError

KEY, PREFIX = "model/m", "model/m/_aliases/production"


@pytest.fixture
def moved(store, tmp_path):
    """model/m v1..v3, production moved to v1, v2, v3 (entries 1-3)."""
    src = tmp_path / "w.bin"
    for i in range(3):
        src.write_bytes(bytes([i]) * 8)
        store.put(KEY, src)
    for v in (1, 2, 3):
        store.move_alias(f"{KEY}@v{v}", "production", reason=f"release {v}")
    return store


def _entry(store, seq: int) -> dict:
    return json.loads(store.backend.read_bytes(f"{PREFIX}/h{seq:06d}.json"))


def _write(store, seq: int, data) -> None:
    store.backend.write_bytes(
        f"{PREFIX}/h{seq:06d}.json", data if isinstance(data, bytes) else json.dumps(data).encode()
    )


def _refused(store, problem: str, *, bounded: bool) -> None:
    """Every full read and every move refuses naming the problem; bounded reads of the alias too."""
    expected = re.escape(f"alias 'production' of {KEY}: {problem}")
    reads = [
        lambda: store.alias_history(KEY, "production"),
        lambda: store.move_alias(f"{KEY}@v1", "production", reason="x"),
    ]
    reads.append(lambda: store.rollback(KEY, "production", reason="back"))
    if bounded:
        reads += [lambda: store.alias_version(KEY, "production"), lambda: store.resolve(f"{KEY}@production")]
    for read in reads:
        with pytest.raises(ArtifactIntegrityError, match=expected):
            read()
    reported = {(key, alias): found for key, alias, found in store.verify_aliases()}
    assert problem in reported.pop((KEY, "production")) and set(reported.values()) <= {None}


def test_each_entry_links_to_the_one_before_and_the_head_names_the_newest(moved):
    history = moved.alias_history(KEY, "production")
    assert [(m.seq, m.to_version) for m in history] == [(1, 1), (2, 2), (3, 3)]
    assert history[0].prev_digest is None
    assert [m.prev_digest for m in history[1:]] == [m.digest for m in history[:-1]]
    assert all(m.digest == entry_digest(_entry(moved, m.seq)) for m in history)
    assert json.loads(moved.backend.read_bytes(f"{PREFIX}/{HEAD}")) == {
        "seq": 3,
        "digest": history[-1].digest,
        "base": 1,
    }
    assert moved.verify_aliases() == [(KEY, "production", None)]


def test_deleting_the_newest_entry_does_not_silently_revert_the_alias(moved):
    moved.backend.delete(f"{PREFIX}/h000003.json")
    _refused(moved, "its head record names entry 3, but the newest is 2: entries were deleted", bounded=True)


def test_a_deleted_middle_entry_is_found_by_full_reads_and_verify(moved):
    moved.backend.delete(f"{PREFIX}/h000002.json")
    assert moved.alias_version(KEY, "production") == 3  # a bounded read checks from the head record forward
    _refused(moved, "history entry 2 is missing", bounded=False)


@pytest.mark.parametrize("field, value", [("actor", "mallory"), ("reason", "approved by the board"), ("to_version", 1)])
def test_an_edited_entry_is_refused(moved, field, value):
    _write(moved, 3, {**_entry(moved, 3), field: value})
    _refused(moved, "history entry 3 does not hash to its entry_digest: it was edited", bounded=True)


def test_injected_entries_are_refused(moved):
    forged = {**_entry(moved, 3), "seq": 999999, "to_version": 1}
    _write(moved, 999999, {**forged, "entry_digest": entry_digest(forged)})  # even with its digest recomputed
    _refused(moved, "history entry 4 is missing", bounded=True)
    moved.backend.delete(f"{PREFIX}/h999999.json")
    forged = {**_entry(moved, 3), "seq": 4, "to_version": 1, "prev_digest": _entry(moved, 1)["entry_digest"]}
    _write(moved, 4, {**forged, "entry_digest": entry_digest(forged)})  # next in line, linked to the wrong entry
    _refused(moved, "history entry 4 does not link to entry 3: inserted or rewritten", bounded=True)


@pytest.mark.parametrize(
    "body, problem",
    [
        (b"{bad", "history entry 3 is not readable JSON"),
        (b"[]", "history entry 3 is a JSON list, not a format 2 entry"),
    ],
)
def test_a_corrupt_entry_spoils_only_its_alias(moved, tmp_path, body, problem):
    src = tmp_path / "other.bin"
    src.write_bytes(b"other")
    other = moved.put("model/other", src)
    moved.move_alias(other.ref, "production", reason="fine")
    _write(moved, 3, body)
    _refused(moved, problem, bounded=True)
    assert moved.alias_version("model/other", "production") == 1 and moved.resolve(f"{KEY}@v2").version == 2


def test_the_cli_lists_the_rest_of_the_store_and_reports_the_damage_in_one_line(store_spec, tmp_path):
    from airflow_mlcrit.core.artifacts import open_store

    root, options = store_spec
    store = open_store(root, **options)
    src = tmp_path / "w.bin"
    src.write_bytes(b"w")
    for key in ("model/m", "model/other"):
        store.move_alias(store.put(key, src).ref, "production", reason="first")
    store.backend.write_bytes(f"{PREFIX}/h000001.json", b"{bad")
    env = {"MLCRIT_ARTIFACT_ROOT": root, **({"AWS_ENDPOINT_URL": options["endpoint_url"]} if options else {})}

    def cli(*args):
        import os

        cmd = [sys.executable, "-m", "airflow_mlcrit.core.cli", *args]
        return subprocess.run(cmd, env={**os.environ, **env}, capture_output=True, text=True)

    listed = cli("artifacts", "list")
    assert listed.returncode == 1 and "model/other" in listed.stdout and "production=v1" in listed.stdout
    assert listed.stderr.count("\n") == 1 and "Traceback" not in listed.stderr
    assert listed.stderr.startswith("mlcrit: integrity error: alias 'production' of model/m: history entry 1 is not")
    checked = cli("aliases", "verify")
    assert checked.returncode == 1 and "model/other@production: OK" in checked.stdout
    assert "model/m@production: alias 'production' of model/m: history entry 1 is not readable JSON" in checked.stdout
    promoted = cli("promote", "model/m@v1", "--alias", "production", "--reason", "again", "--force")
    assert promoted.returncode == 1 and promoted.stderr.count("\n") == 1
    assert "mlcrit aliases repair model/m production" in promoted.stderr


def test_repair_starts_an_audited_chain_and_never_reuses_a_number(moved):
    moved.backend.delete(f"{PREFIX}/h000003.json")  # the newest move, v3, erased
    with pytest.raises(ArtifactIntegrityError):
        moved.move_alias(f"{KEY}@v2", "production", reason="x")
    move = moved.repair_alias(
        KEY, "production", to_version=3, reason="h3 was deleted; v3 was production per the release log"
    )
    assert move.seq == 4 and move.prev_digest is None and move.forced  # 3 is never used again
    assert "its head record names entry 3, but the newest is 2" in move.extra["repair"]["problem"]
    assert moved.alias_version(KEY, "production") == 3 and moved.verify_aliases() == [(KEY, "production", None)]
    assert [m.seq for m in moved.alias_history(KEY, "production")] == [4]  # the chain since the repair
    after = moved.move_alias(f"{KEY}@v2", "production", reason="moves work again")
    assert (after.seq, after.prev_digest) == (5, move.digest)
    assert moved.backend.exists(f"{PREFIX}/h000001.json")  # the damaged chain stays for forensics
    with pytest.raises(Exception, match="is intact: nothing to repair"):
        moved.repair_alias(KEY, "production", to_version=1, reason="no damage")


def test_a_head_record_behind_the_newest_entry_is_a_lag_not_damage(moved):
    """A writer can die between its entry and the head record (or a slower writer overwrite it):
    readers check the chain from the head record forward."""
    two = _entry(moved, 2)
    moved.backend.write_bytes(
        f"{PREFIX}/{HEAD}", json.dumps({"seq": 2, "digest": two["entry_digest"], "base": 1}).encode()
    )
    assert moved.alias_version(KEY, "production") == 3
    assert moved.move_alias(f"{KEY}@v1", "production", reason="next").seq == 4


def test_a_move_that_lands_between_a_reader_s_two_reads_is_not_taken_for_tampering(moved, store_spec, monkeypatch):
    """A reader reads the head record and lists the entries; another writer's move (entry, then
    head) lands between the two reads. Seen in CI on SeaweedFS when the listing came first: the new
    head with the old listing read as "entries were deleted". The head is read first now."""
    from airflow_mlcrit.core.artifacts import open_store

    root, options = store_spec
    other = open_store(root, **options)
    ledger = moved.ledger
    reads = {"head": ledger.head_record, "list": ledger.seqs}
    done = []

    def first_read_then_a_move(which):
        def read(*args):
            out = reads[which](*args)
            if not done:
                done.append(which)
                other.move_alias(f"{KEY}@v1", "production", reason="concurrent rollback")
            return out

        return read

    monkeypatch.setattr(ledger, "head_record", first_read_then_a_move("head"))
    monkeypatch.setattr(ledger, "seqs", first_read_then_a_move("list"))
    history = moved.alias_history(KEY, "production")
    assert done and [(m.seq, m.to_version) for m in history][-2:] == [(3, 3), (4, 1)]
