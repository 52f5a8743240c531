"""The promotion rule: blessed digests only, unless forced (and recorded as forced)."""

import json
import re
import subprocess
import sys

import pytest

from airflow_mlcrit.core.artifacts import open_store
from airflow_mlcrit.core.gating import find_blessing, promote, rollback
from airflow_mlcrit.exceptions import GateFailedError


def _adapter(store, tmp_path, tag):
    d = tmp_path / f"adapter-{tag}"
    d.mkdir()
    (d / "adapter_model.safetensors").write_bytes(tag.encode() * 16)
    return store.put("adapter/clf", d)


def _bless(store, tmp_path, manifest, decision="BLESSED"):
    f = tmp_path / f"blessing-{manifest.version}-{decision}.json"
    f.write_text(json.dumps({"decision": decision}))
    return store.put(
        "blessing/clf",
        f,
        parents=[manifest.ref],
        metadata={"decision": decision, "candidate_digest": manifest.digest},
    )


def test_a_blessing_for_digest_a_does_not_promote_digest_b(tmp_path):
    store = open_store(tmp_path / "store")
    a, b = _adapter(store, tmp_path, "a"), _adapter(store, tmp_path, "b")
    blessing_a = _bless(store, tmp_path, a)
    _bless(store, tmp_path, b, decision="NOT_BLESSED")
    assert find_blessing(store, a.ref).ref == blessing_a.ref and find_blessing(store, b.ref) is None
    with pytest.raises(
        GateFailedError,
        match=re.escape(f"blessing/clf@v1 does not bless adapter/clf@v2: it is BLESSED for digest {a.digest}"),
    ):
        promote(store, b.ref, "production", reason="try", blessing=blessing_a.ref)
    with pytest.raises(GateFailedError, match=re.escape("no BLESSED blessing exists for adapter/clf@v2")):
        promote(store, b.ref, "production", reason="try")
    move, proof = promote(store, a.ref, "production", reason="gate passed")
    assert proof.ref == blessing_a.ref and move.extra["blessing"] == "blessing/clf@v1" and not move.forced
    forced, _ = promote(store, b.ref, "production", reason="hotfix, approved by on-call", force=True)
    assert forced.forced and forced.to_version == 2
    # rollback walks back to the previous blessed version only
    back = rollback(store, "adapter/clf", "production", reason="hotfix regressed")
    assert back.to_version == 1 and back.extra["rollback"] is True
    with pytest.raises(GateFailedError, match=re.escape("adapter/clf@v2 has no BLESSED blessing")):
        rollback(store, "adapter/clf", "production", reason="x", to_version=2)


def test_cli_promote_obeys_the_rule(tmp_path):
    store = open_store(tmp_path / "store")
    a = _adapter(store, tmp_path, "a")
    mlcrit = [sys.executable, "-m", "airflow_mlcrit.core.cli", "--root", str(tmp_path / "store")]
    refused = subprocess.run(
        [*mlcrit, "promote", str(a.ref), "--alias", "production", "--reason", "r"], capture_output=True, text=True
    )
    assert refused.returncode != 0 and "no BLESSED blessing exists for adapter/clf@v1" in refused.stderr
    forced = subprocess.run(
        [*mlcrit, "promote", str(a.ref), "--alias", "production", "--reason", "emergency", "--force"],
        capture_output=True,
        text=True,
    )
    assert forced.returncode == 0, forced.stderr
    [move] = store.alias_history("adapter/clf", "production")
    assert move.forced and move.reason == "emergency" and move.extra["via"] == "mlcrit promote"
