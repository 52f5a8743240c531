"""The witness of alias moves outside the bucket (core/artifacts/witness.py): a table in
PostgreSQL (a database of the test's own on 127.0.0.1) mirrors each history entry. Rollback by
deletion (the head record and entries 2..N removed, leaving an intact entry 1) is reported by
`aliases verify` and refused on read, on the local store and on S3; a client without the
witness refuses a witnessed store; a repair numbers past what the witness saw."""

from __future__ import annotations

import re

import pytest

from airflow_mlcrit.core.artifacts import open_store
from airflow_mlcrit.core.artifacts.ledger import HEAD, WITNESS_MARKER
from airflow_mlcrit.exceptions import ArtifactIntegrityError, ConfigError
from tests.helpers.services import postgres_database

KEY = "model/clf"


@pytest.fixture(scope="module")
def witness_url():
    with postgres_database("mlcrit_witness") as where:
        yield f"postgresql+psycopg2://{where}"


@pytest.fixture
def witnessed(store_spec, witness_url, tmp_path):
    """model/clf v1..v3 moved into production three times, each move witnessed."""
    root, options = store_spec
    store = open_store(root, witness=witness_url, **options)
    payload = tmp_path / "m.json"
    for v in (1, 2, 3):
        payload.write_text(f'{{"v": {v}}}')
        store.put(KEY, payload)
        store.move_alias(f"{KEY}@v{v}", "production", reason=f"move {v}")
    return store


def test_deleting_the_newest_entries_and_the_head_is_reported_and_refused(
    witnessed, store_spec, witness_url, capsys, monkeypatch
):
    store = witnessed
    prefix = f"{KEY}/_aliases/production"
    for key in (f"{prefix}/{HEAD}", f"{prefix}/h000002.json", f"{prefix}/h000003.json"):
        store.backend.delete(key)
    # without the witness, what is left is an intact one-entry chain: production "is" v1
    message = (
        "alias 'production' of model/clf: the witness outside the store saw entry 3, but the store's newest is 1: "
        "its head went backwards (entries were deleted)"
    )
    with pytest.raises(ArtifactIntegrityError, match=re.escape(message)):
        store.alias_version(KEY, "production")  # reading fails closed
    with pytest.raises(ArtifactIntegrityError, match=re.escape(message)):
        store.move_alias(f"{KEY}@v2", "production", reason="on top of the damage")
    assert [(k, a, p is not None and "went backwards" in p) for k, a, p in store.verify_aliases()] == [
        (KEY, "production", True)
    ]
    from airflow_mlcrit.core.cli import main

    root, options = store_spec
    if options:
        monkeypatch.setenv("AWS_ENDPOINT_URL", options["endpoint_url"])
    monkeypatch.setenv("MLCRIT_WITNESS_URL", witness_url)
    assert main(["--root", root, "aliases", "verify"]) == 1
    assert capsys.readouterr().out.strip().startswith(f"{KEY}@production: {message}")
    # what the witness is for: an attacker who also deletes the store's marker fools any client
    # that has no witness configured (docs/reliability.md says so)
    store.backend.delete(WITNESS_MARKER)
    assert open_store(root, **options).alias_version(KEY, "production") == 1


def test_a_client_without_the_witness_refuses_a_witnessed_store(witnessed, store_spec):
    root, options = store_spec
    bare = open_store(root, **options)
    with pytest.raises(ConfigError, match=re.escape("are witnessed outside the store, and this client has no witness")):
        bare.alias_version(KEY, "production")
    with pytest.raises(ConfigError, match="has no witness"):
        bare.move_alias(f"{KEY}@v1", "production", reason="unseen")


def test_a_rewritten_entry_and_a_deleted_alias_are_reported(witnessed):
    store = witnessed
    [(_, _, ok)] = store.verify_aliases()
    assert ok is None
    store.backend.delete_prefix(f"{KEY}/_aliases/production")  # the whole history gone
    [(key, alias, problem)] = store.verify_aliases()
    assert (key, alias) == (KEY, "production")
    assert "the witness outside the store saw entry 3, but the store's newest is none" in problem


def test_a_repair_numbers_past_what_the_witness_saw_and_reads_again(witnessed):
    store = witnessed
    prefix = f"{KEY}/_aliases/production"
    store.backend.delete(f"{prefix}/{HEAD}")
    store.backend.delete(f"{prefix}/h000003.json")
    with pytest.raises(ArtifactIntegrityError, match="its head record is missing"):
        store.alias_history(KEY, "production")
    entry = store.repair_alias(KEY, "production", to_version=2, reason="checked: v3 was never released")
    assert entry.seq == 4 and store.alias_version(KEY, "production") == 2
    assert [p for _, _, p in store.verify_aliases()] == [None]
