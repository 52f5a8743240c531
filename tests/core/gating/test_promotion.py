"""The promotion rule: blessed digests only, unless forced (and recorded as forced)."""

import json
import re
import subprocess
import sys

import pytest

from airflow_mlcrit.core.artifacts import open_store
from airflow_mlcrit.core.gating import find_blessing, promote, rollback
from airflow_mlcrit.exceptions import ArtifactConflictError, GateFailedError


def _adapter(store, tmp_path, tag):
    d = tmp_path / f"adapter-{tag}"
    d.mkdir()
    (d / "adapter_model.safetensors").write_bytes(tag.encode() * 16)
    return store.put("adapter/clf", d)


def _bless(store, tmp_path, manifest, decision="BLESSED", **judged):
    f = tmp_path / f"blessing-{manifest.version}-{decision}.json"
    f.write_text(json.dumps({"decision": decision}))
    return store.put(
        "blessing/clf",
        f,
        parents=[manifest.ref],
        metadata={"decision": decision, "candidate_digest": manifest.digest, **judged},
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
        promote(store, b.ref, "production", create=True, reason="try", blessing=blessing_a.ref)
    with pytest.raises(GateFailedError, match=re.escape("no BLESSED blessing exists for adapter/clf@v2")):
        promote(store, b.ref, "production", create=True, reason="try")
    move, proof = promote(store, a.ref, "production", create=True, reason="gate passed")
    assert proof.ref == blessing_a.ref and move.extra["blessing"] == "blessing/clf@v1" and not move.forced
    forced, _ = promote(store, b.ref, "production", create=True, reason="hotfix, approved by on-call", force=True)
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
        [*mlcrit, "promote", str(a.ref), "--alias", "production", "--create-alias", "--reason", "r"],
        capture_output=True,
        text=True,
    )
    assert refused.returncode != 0 and "no BLESSED blessing exists for adapter/clf@v1" in refused.stderr
    forced = subprocess.run(
        [*mlcrit, "promote", str(a.ref), "--alias", "production", "--create-alias", "--reason", "emergency", "--force"],
        capture_output=True,
        text=True,
    )
    assert forced.returncode == 0, forced.stderr
    [move] = store.alias_history("adapter/clf", "production")
    assert move.forced and move.reason == "emergency" and move.extra["via"] == "mlcrit promote"


def test_a_blessing_judged_against_an_older_production_cannot_replace_a_newer_one(tmp_path):
    """Two candidates both beat production v1; the first is promoted. The second was never shown
    to beat the first, so its promotion is a conflict until it is evaluated again."""
    store = open_store(tmp_path / "store")
    v1, v2, v3 = (_adapter(store, tmp_path, t) for t in "abc")
    first_model = {"baseline": None, "baseline_alias": "production"}
    _bless(store, tmp_path, v1, **first_model)
    promote(store, v1.ref, "production", create=True, reason="first model")
    against_v1 = {"baseline": "adapter/clf@v1", "baseline_alias": "production"}
    _bless(store, tmp_path, v2, **against_v1)
    stale = _bless(store, tmp_path, v3, **against_v1)
    promote(store, v2.ref, "production", create=True, reason="beats v1")
    with pytest.raises(
        ArtifactConflictError,
        match=re.escape(
            "'production' of adapter/clf points at v2, but blessing/clf@v3 judged adapter/clf@v3 against v1: "
            "another promotion moved it since. Re-run the evaluation and gate against the new production"
        ),
    ):
        promote(store, v3.ref, "production", create=True, reason="beats v1")
    assert [m.to_version for m in store.alias_history("adapter/clf", "production")] == [1, 2]
    # an override is possible, and recorded as forced
    forced, _ = promote(store, v3.ref, "production", create=True, reason="incident 812, approved", force=True)
    assert forced.forced and (forced.from_version, forced.to_version) == (2, 3)
    store.move_alias(v2.ref, "production", reason="undo the drill")
    # the retry: evaluated again against v2, it is promoted
    _bless(store, tmp_path, v3, baseline="adapter/clf@v2", baseline_alias="production")
    move, proof = promote(store, v3.ref, "production", create=True, reason="beats v2")
    assert (move.from_version, move.to_version, proof.version) == (2, 3, 4) and proof.ref != stale.ref
    # a first-model blessing conflicts once the alias is set; a baseline given by reference or
    # through another alias does not tie the move to this alias
    with pytest.raises(ArtifactConflictError, match=re.escape("points at v3, but blessing/clf@v1 judged")):
        promote(store, v1.ref, "production", create=True, reason="again", blessing="blessing/clf@v1")
    _bless(store, tmp_path, v1, baseline="adapter/clf@v2", baseline_alias=None)
    assert promote(store, v1.ref, "production", create=True, reason="pinned baseline")[0].to_version == 1
    _bless(store, tmp_path, v2, baseline="adapter/clf@v1", baseline_alias="staging")
    assert promote(store, v2.ref, "production", create=True, reason="judged against staging")[0].to_version == 2


def test_the_newest_judgement_decides_and_re_promoting_changes_nothing(tmp_path):
    """Blessing shopping: a version that passed once, then failed five times, cannot be promoted
    on the old pass; forced, it is recorded as forced. Promoting the version already in place adds
    no history entry."""
    store = open_store(tmp_path / "store")
    v1 = _adapter(store, tmp_path, "a")
    judged = {"baseline": None, "baseline_alias": "production"}
    passed = _bless(store, tmp_path, v1, **judged)
    failures = []
    for i in range(5):
        f = tmp_path / f"failed-{i}.json"
        f.write_text("{}")
        failures.append(
            store.put(
                "blessing/clf",
                f,
                parents=[v1.ref],
                metadata={"decision": "NOT_BLESSED", "candidate_digest": v1.digest, **judged},
            )
        )
    newest = failures[-1]
    message = (
        f"the newest judgement of adapter/clf@v1 for 'production' is {newest.ref}, NOT_BLESSED, made after "
        f"{passed.ref} blessed it: the newest judgement decides"
    )
    with pytest.raises(GateFailedError, match=re.escape(message)):
        promote(store, v1.ref, "production", create=True, reason="it passed once")
    with pytest.raises(GateFailedError, match=re.escape(message)):  # naming the old pass does not help
        promote(store, v1.ref, "production", create=True, reason="it passed once", blessing=passed.ref)
    assert store.alias_history("adapter/clf", "production") == []
    # a judgement made for another alias does not count against this one
    other = tmp_path / "staging.json"
    other.write_text("{}")
    store.put(
        "blessing/clf",
        other,
        parents=[v1.ref],
        metadata={"decision": "NOT_BLESSED", "candidate_digest": v1.digest, "baseline_alias": "staging"},
    )
    with pytest.raises(GateFailedError, match=re.escape(message)):  # still the newest for production
        promote(store, v1.ref, "production", create=True, reason="it passed once")
    forced, proof = promote(store, v1.ref, "production", create=True, reason="approved by the on-call lead", force=True)
    assert forced.forced and proof is None and forced.to_version == 1
    # promoting what is already there: nothing moves, nothing is recorded
    again, _ = promote(store, v1.ref, "production", create=True, reason="again", force=True)
    assert again == forced and len(store.alias_history("adapter/clf", "production")) == 1
    # once it passes again, the newest judgement is a pass
    v2 = _adapter(store, tmp_path, "b")
    _bless(store, tmp_path, v2, baseline="adapter/clf@v1", baseline_alias="production")
    move, _ = promote(store, v2.ref, "production", create=True, reason="beats v1")
    assert (move.from_version, move.to_version, move.forced) == (1, 2, False)


def test_cli_says_when_nothing_moved_and_which_blessing_failed(tmp_path):
    store = open_store(tmp_path / "store")
    a = _adapter(store, tmp_path, "a")
    _bless(store, tmp_path, a, baseline=None, baseline_alias="production")
    mlcrit = [sys.executable, "-m", "airflow_mlcrit.core.cli", "--root", str(tmp_path / "store")]
    run = lambda *args: subprocess.run([*mlcrit, *args], capture_output=True, text=True)  # noqa: E731
    first = run("promote", str(a.ref), "--alias", "production", "--create-alias", "--reason", "gate passed")
    assert first.returncode == 0 and first.stdout.strip() == "adapter/clf@production: - -> v1"
    again = run("promote", str(a.ref), "--alias", "production", "--reason", "gate passed")
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == "adapter/clf@production is already v1 (move 1): nothing moved"
    assert len(store.alias_history("adapter/clf", "production")) == 1
