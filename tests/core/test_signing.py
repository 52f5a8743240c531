"""Signed stores: a writer that can rewrite files but holds no key cannot make a keyed reader accept
an edited manifest, history entry or head record, even with every digest recomputed (which the hash
chain alone does not stop). Keys rotate; keyless clients refuse a signed store. Local and S3 (moto)."""

import json
import re

import pytest

from airflow_mlcrit.core.artifacts import ArtifactStore, Signer
from airflow_mlcrit.core.artifacts.ledger import HEAD, entry_digest, head_digest
from airflow_mlcrit.core.artifacts.signing import key_id, signer_from_text
from airflow_mlcrit.core.artifacts.store import manifest_digest
from airflow_mlcrit.core.cli import main
from airflow_mlcrit.exceptions import ArtifactIntegrityError, ConfigError

KEY_A, KEY_B = "a" * 16 + "-first-signing-key-0123456789", "b" * 16 + "-second-signing-key-987654321"
KEY, ENTRIES = "model/m", "model/m/_aliases/production"


def _keyed(store, *keys: str) -> ArtifactStore:
    return ArtifactStore(store.backend, Signer(keys))


@pytest.fixture
def signed(store, tmp_path):
    """model/m v1, v2 signed with key A; production moved to v1 then v2."""
    keyed = _keyed(store, KEY_A)
    src = tmp_path / "w.bin"
    for i in range(2):
        src.write_bytes(bytes([i]) * 8)
        keyed.put(KEY, src, metadata={"auc": 0.9 + i / 100})
    for v in (1, 2):
        keyed.move_alias(f"{KEY}@v{v}", "production", reason=f"release {v}")
    return keyed


def _json(store, key):
    return json.loads(store.backend.read_bytes(key))


def _put_json(store, key, data):
    store.backend.write_bytes(key, json.dumps(data).encode())


def test_every_record_is_signed_by_the_active_key_and_reads_back(signed):
    manifest = _json(signed, "model/m/v000002/_MANIFEST.json")
    entry = _json(signed, f"{ENTRIES}/h000002.json")
    head = _json(signed, f"{ENTRIES}/{HEAD}")
    for record in (manifest, entry, head):
        assert set(record["signature"]) == {"alg", "key_id", "value"}
        assert (record["signature"]["alg"], record["signature"]["key_id"]) == ("hmac-sha256", key_id(KEY_A.encode()))
    # the digest excludes the signature, so signing leaves the digests (and unsigned readers) unchanged
    assert manifest["manifest_digest"] == manifest_digest(manifest)
    assert signed.resolve(f"{KEY}@production").metadata == {"auc": 0.91}
    assert [m.to_version for m in signed.alias_history(KEY, "production")] == [1, 2]
    assert signed.verify(f"{KEY}@v2").version == 2
    assert signed.verify_aliases() == [(KEY, "production", None)]
    assert json.loads(signed.backend.read_bytes("_mlcrit/signing.json"))["key_id"] == key_id(KEY_A.encode())


def test_an_edit_with_every_digest_recomputed_is_refused(signed):
    """The attack the hash chain cannot stop: rewrite a record and recompute its digest (and the head)."""
    path = "model/m/v000002/_MANIFEST.json"
    manifest = _json(signed, path)
    manifest["metadata"] = {"auc": 0.99}
    manifest["manifest_digest"] = manifest_digest(manifest)
    _put_json(signed, path, manifest)
    with pytest.raises(ArtifactIntegrityError, match=re.escape("_MANIFEST.json has a bad signature: it was edited")):
        signed.resolve(f"{KEY}@v2")

    entry = _json(signed, f"{ENTRIES}/h000002.json")
    entry.update(actor="someone-else", reason="approved by the board")
    entry["entry_digest"] = entry_digest(entry)
    _put_json(signed, f"{ENTRIES}/h000002.json", entry)
    head = _json(signed, f"{ENTRIES}/{HEAD}")
    head["digest"] = entry["entry_digest"]
    _put_json(signed, f"{ENTRIES}/{HEAD}", head)  # the old signature no longer matches the head
    with pytest.raises(ArtifactIntegrityError, match="alias 'production' of model/m: its head record has a bad sig"):
        signed.alias_version(KEY, "production")
    head["signature"] = None
    _put_json(signed, f"{ENTRIES}/{HEAD}", {k: v for k, v in head.items() if k != "signature"})
    with pytest.raises(ArtifactIntegrityError, match="its head record is not signed"):
        signed.alias_history(KEY, "production")
    head = {"seq": 2, "digest": entry["entry_digest"], "base": 1}
    head["signature"] = Signer([KEY_A]).sign("alias-head", head_digest("model", "m", "production", head))
    _put_json(signed, f"{ENTRIES}/{HEAD}", head)  # a genuine head: now the entry's own signature fails
    with pytest.raises(ArtifactIntegrityError, match="history entry 2 has a bad signature"):
        signed.alias_history(KEY, "production")
    with pytest.raises(ArtifactIntegrityError, match="history entry 2 has a bad signature"):
        signed.move_alias(f"{KEY}@v1", "production", reason="x")


def test_without_signing_the_same_recomputed_edit_is_accepted(store, tmp_path):
    """What signing adds, shown: an unsigned store cannot tell a recomputed edit from the original."""
    src = tmp_path / "w.bin"
    src.write_bytes(b"x")
    store.put(KEY, src, metadata={"auc": 0.9})
    manifest = _json(store, "model/m/v000001/_MANIFEST.json")
    manifest["metadata"] = {"auc": 0.99}
    manifest["manifest_digest"] = manifest_digest(manifest)
    _put_json(store, "model/m/v000001/_MANIFEST.json", manifest)
    assert store.resolve(f"{KEY}@v1").metadata == {"auc": 0.99}


def test_a_record_signed_by_another_key_or_not_signed_is_refused(signed, tmp_path):
    stranger = _keyed(signed, KEY_B)
    with pytest.raises(ArtifactIntegrityError, match=r"is signed by key '[0-9a-f]{16}', which is not one of"):
        stranger.resolve(f"{KEY}@v1")
    with pytest.raises(ArtifactIntegrityError, match="its head record is signed by key"):
        stranger.alias_version(KEY, "production")
    path = "model/m/v000001/_MANIFEST.json"
    manifest = _json(signed, path)
    del manifest["signature"]
    _put_json(signed, path, manifest)
    with pytest.raises(
        ArtifactIntegrityError, match=re.escape("v000001/_MANIFEST.json is not signed, although the store is")
    ):
        signed.resolve(f"{KEY}@v1")
    manifest["signature"] = Signer([KEY_A]).sign("alias-entry", manifest["manifest_digest"])
    _put_json(signed, path, manifest)  # a valid MAC, but for another record type: no reuse across types
    with pytest.raises(ArtifactIntegrityError, match="has a bad signature"):
        signed.verify(f"{KEY}@v1")


def test_keys_rotate_new_signs_and_both_are_accepted_until_the_old_is_dropped(signed, tmp_path):
    rotating = _keyed(signed, KEY_B, KEY_A)
    assert rotating.resolve(f"{KEY}@production").version == 2  # records signed by A
    src = tmp_path / "w3.bin"
    src.write_bytes(b"3")
    rotating.put(KEY, src)
    rotating.move_alias(f"{KEY}@v3", "production", reason="release 3")
    assert _json(signed, "model/m/v000003/_MANIFEST.json")["signature"]["key_id"] == key_id(KEY_B.encode())
    assert [m.to_version for m in rotating.alias_history(KEY, "production")] == [1, 2, 3]
    only_b = _keyed(signed, KEY_B)
    assert only_b.resolve(f"{KEY}@production").version == 3  # the bounded read: head and newest entry, both B
    with pytest.raises(ArtifactIntegrityError, match="history entry 1 is signed by key"):
        only_b.alias_history(KEY, "production")
    with pytest.raises(ArtifactIntegrityError, match="is signed by key"):
        only_b.resolve(f"{KEY}@v1")


def test_a_keyless_client_refuses_a_signed_store(signed, tmp_path):
    keyless = ArtifactStore(signed.backend)
    expected = "holds signed records (since 20"
    with pytest.raises(ConfigError, match=re.escape(expected)):
        keyless.resolve(f"{KEY}@v1")
    src = tmp_path / "w.bin"
    src.write_bytes(b"z")
    with pytest.raises(ConfigError, match="MLCRIT_SIGNING_KEY for the mlcrit CLI"):
        ArtifactStore(signed.backend).put(KEY, src)
    with pytest.raises(ConfigError, match=re.escape(expected)):
        ArtifactStore(signed.backend).move_alias(f"{KEY}@v1", "production", reason="x")
    assert _keyed(signed, KEY_A).versions(KEY) == [1, 2]  # nothing was written


def test_a_forged_idempotency_marker_cannot_redirect_a_retry(signed, tmp_path):
    src = tmp_path / "w.bin"
    src.write_bytes(b"run-1")
    first = signed.put("dataset/d", src, idempotency_key="run-1")
    src.write_bytes(b"other")
    other = signed.put("dataset/d", src, idempotency_key="run-2")
    # point run-1's marker (and forge the claim) at run-2's version
    markers = signed.backend.list_keys("dataset/d/_idempotency")
    by_version = {_json(signed, k)["version"]: k for k in markers}
    forged = _json(signed, by_version[first.version])
    _put_json(signed, by_version[first.version], {**forged, "version": other.version})
    claim = _json(signed, "dataset/d/v000002/_CLAIM.json")
    _put_json(signed, "dataset/d/v000002/_CLAIM.json", {**claim, "idempotency_key": forged["idempotency_key"]})
    with pytest.raises(ArtifactIntegrityError, match="for key 'run-1' points at dataset/d@v2, which another attempt"):
        signed.committed("dataset/d", "run-1")
    with pytest.raises(ArtifactIntegrityError, match="the marker or claim was forged"):
        signed.put("dataset/d", src, idempotency_key="run-1")


def test_keys_are_checked_when_configured():
    with pytest.raises(ConfigError, match="the signing key is 5 bytes; use at least 32 random bytes"):
        Signer(["short"])
    with pytest.raises(ConfigError, match="previous signing key #1 is 3 bytes"):
        signer_from_text(KEY_A, ["old"])
    with pytest.raises(ConfigError, match="previous signing keys are configured, but no signing key"):
        signer_from_text("", [KEY_A])
    assert signer_from_text("  \n") is None
    assert signer_from_text(KEY_A + "\n").key_id == key_id(KEY_A.encode())
    assert KEY_A not in repr(Signer([KEY_A]))


def test_the_cli_signs_with_the_key_from_the_environment(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MLCRIT_ARTIFACT_ROOT", str(tmp_path / "store"))
    (tmp_path / "w.bin").write_bytes(b"w")
    keyfile = tmp_path / "key"
    keyfile.write_text(f"{KEY_B}\n{KEY_A}\n")
    monkeypatch.setenv("MLCRIT_SIGNING_KEY", KEY_A)
    assert main(["artifacts", "put", KEY, str(tmp_path / "w.bin")]) == 0
    monkeypatch.delenv("MLCRIT_SIGNING_KEY")
    capsys.readouterr()
    assert main(["artifacts", "show", f"{KEY}@v1"]) == 1
    err = capsys.readouterr().err
    assert "holds signed records" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    monkeypatch.setenv("MLCRIT_SIGNING_KEY_FILE", str(keyfile))
    assert (
        main(["promote", f"{KEY}@v1", "--alias", "production", "--create-alias", "--reason", "first", "--force"]) == 0
    )
    assert main(["aliases", "verify"]) == 0
    assert "production" in capsys.readouterr().out
    entry = json.loads((tmp_path / "store" / ENTRIES / "h000001.json").read_text())
    assert entry["signature"]["key_id"] == key_id(KEY_B.encode())
    monkeypatch.setenv("MLCRIT_SIGNING_KEY", KEY_A)
    assert main(["artifacts", "list"]) == 1
    assert (
        capsys.readouterr().err.strip() == "mlcrit: error: set MLCRIT_SIGNING_KEY or MLCRIT_SIGNING_KEY_FILE, not both"
    )
