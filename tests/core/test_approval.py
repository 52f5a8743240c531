"""Four-eyes promotion, the core rules (core/gating/approval.py, policy.py, promotion.py): the alias
policy names the approvers and how many approvals a move needs; a decision names its approver
from an identity they cannot choose (their own key listed in the policy, or Airflow's user,
confirmed by the door); a request binds a blessed candidate, its blessing and baseline; an
approval is consumed by the move that uses it. On the local store and on S3."""

from __future__ import annotations

import datetime as dt
import json
import re

import pytest

from airflow_mlcrit.core.gating import AliasPolicy, promote, rollback, set_policy
from airflow_mlcrit.core.gating.approval import (
    decide,
    decide_signed,
    expire,
    generate_key,
    pending,
    request_approval,
    request_policy_change,
)
from airflow_mlcrit.exceptions import ArtifactConflictError, ArtifactIntegrityError, ConfigError, GateFailedError
from tests.helpers.registry import FIRST, LENIENT, STRICT, add_adapter_version, judge

T0 = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)  # promote() checks against the clock
KEYS = {user: generate_key() for user in ("alice", "bob", "carol", "mallory")}  # (private, public) hex


def key(user: str) -> bytes:
    return KEYS[user][0].encode()


def policy(**changes) -> AliasPolicy:
    fields = {
        "approvals": 1,
        "approvers": ("alice", "bob", "carol"),
        "approver_keys": {u: KEYS[u][1] for u in ("alice", "bob", "carol")},
        "expires_after_hours": 24,
    }
    return AliasPolicy(**(fields | changes))


@pytest.fixture
def staged(store, tmp_path):
    """adapter/clf v1 in production under a one-approval policy; v2 blessed against it, and carol
    asks for its approval."""
    add_adapter_version(store, tmp_path, 16, baseline=None, base_right=0, gate=FIRST)
    promote(store, "adapter/clf@v1", "production", reason="first model", actor="pipeline", create=True)
    set_policy(store, "adapter/clf", "production", policy(), reason="four eyes on production", actor="owner")
    add_adapter_version(store, tmp_path, 17, baseline=1, base_right=16, gate=LENIENT)
    request = request_approval(store, "adapter/clf@v2", "production", requested_by="carol", now=T0)
    return store, request


def test_an_approved_candidate_is_promoted_and_the_history_names_the_approver(staged):
    store, request = staged
    assert request.ref.key == "approval/clf" and request.metadata["blessing"] == "blessing/clf@v2"
    assert (request.metadata["baseline"], request.metadata["current"]) == ("adapter/clf@v1", 1)
    assert request.metadata["approvers"] == ["alice", "bob", "carol"]  # from the alias policy
    assert [p["state"] for p in pending(store, now=T0)] == ["REQUESTED"]
    decision = decide_signed(store, str(request.ref), private_key=key("alice"), approve=True, reason="slices ok")
    assert (decision.metadata["decided_by"], decision.metadata["identity"]["source"]) == ("alice", "key")
    assert pending(store, now=T0) == []
    second = request_approval(store, "adapter/clf@v2", "production", requested_by="bob", now=T0)
    assert [p["ref"] for p in pending(store, now=T0)] == [str(second.ref)]
    move, _ = promote(
        store, "adapter/clf@v2", "production", reason="approved", actor="pipeline", approval=str(decision.ref)
    )
    assert (move.from_version, move.to_version, move.actor, move.forced) == (1, 2, "pipeline", False)
    assert pending(store, now=T0) == []  # production holds v2: bob's request is moot, not pending
    assert (move.extra["approvals"], move.extra["approved_by"], move.extra["approval_reason"]) == (
        ["approval/clf@v2"],
        "alice",
        "slices ok",
    )
    assert move.policy == policy().to_dict()  # the policy carries forward, in the chain
    assert [problem for _, _, problem in store.verify_aliases()] == [None]
    # promoting what is already there moves nothing, so it needs no approval and records nothing
    again, _ = promote(store, "adapter/clf@v2", "production", reason="again", actor="pipeline")
    assert again == move and len(store.alias_history("adapter/clf", "production")) == 3


def test_the_policy_requires_the_approval_at_every_move(staged):
    store, _ = staged
    with pytest.raises(
        GateFailedError,
        match=re.escape(
            "moving 'production' of adapter/clf needs 1 approval(s) by alice, bob, carol (its policy), 0 given"
        ),
    ):
        promote(store, "adapter/clf@v2", "production", reason="no approval")
    assert store.alias_version("adapter/clf", "production") == 1


def test_the_requester_an_unlisted_key_and_a_missing_reason_are_refused(staged):
    store, request = staged
    ref = str(request.ref)
    with pytest.raises(GateFailedError, match=re.escape("'carol' requested approval/clf@v1 and may not decide it")):
        decide_signed(store, ref, private_key=key("carol"), approve=True, reason="mine")
    with pytest.raises(GateFailedError, match=re.escape("is not listed in the policy of 'production' of adapter/clf")):
        decide_signed(store, ref, private_key=key("mallory"), approve=True, reason="trust me")
    with pytest.raises(ConfigError, match="a decision needs a reason"):
        decide_signed(store, ref, private_key=key("alice"), approve=True, reason=" ")
    with pytest.raises(GateFailedError, match=re.escape("'mallory' may not decide approval/clf@v1")):
        decide(
            store,
            ref,
            user="mallory",
            approve=True,
            reason="x",
            airflow_run={"dag_id": "d", "run_id": "r", "task_id": "t"},
        )
    assert [p["ref"] for p in pending(store, now=T0)] == [ref]


def test_a_rejection_is_recorded_and_nothing_can_promote_on_it(staged):
    store, request = staged
    rejected = decide_signed(store, str(request.ref), private_key=key("bob"), approve=False, reason="phone too close")
    assert (rejected.metadata["state"], rejected.metadata["decided_by"]) == ("REJECTED", "bob")
    with pytest.raises(
        ArtifactConflictError, match=re.escape("approval/clf@v1 was already decided: approval/clf@v2 is REJECTED")
    ):
        decide_signed(store, str(request.ref), private_key=key("alice"), approve=True, reason="overrule")
    with pytest.raises(GateFailedError, match=re.escape("approval/clf@v2 is not an approval: it is 'REJECTED'")):
        promote(store, "adapter/clf@v2", "production", reason="x", approval=str(rejected.ref))
    assert store.alias_version("adapter/clf", "production") == 1


def test_an_expired_request_cannot_be_approved_and_is_recorded_as_such(staged):
    store, request = staged
    ref, ends = str(request.ref), (T0 + dt.timedelta(hours=24)).isoformat()
    late = T0 + dt.timedelta(hours=25)
    with pytest.raises(GateFailedError, match=re.escape(f"approval/clf@v1 expired at {ends}: request a new approval")):
        decide_signed(store, ref, private_key=key("alice"), approve=True, reason="late", now=late)
    assert pending(store, now=late)[0]["expired"] is True
    with pytest.raises(ConfigError, match=re.escape(f"approval/clf@v1 expires at {ends}, not yet")):
        expire(store, ref, now=T0 + dt.timedelta(hours=23))
    expired = expire(store, ref, now=late)
    md = expired.metadata
    assert (md["state"], md["decided_by"], md["reason"]) == ("EXPIRED", None, f"no decision before {ends}")
    assert pending(store, now=late) == []
    with pytest.raises(GateFailedError, match=re.escape("approval/clf@v2 is not an approval: it is 'EXPIRED'")):
        promote(store, "adapter/clf@v2", "production", reason="x", approval=str(expired.ref))


def test_a_superseded_blessing_or_a_moved_alias_is_refused(staged, tmp_path):
    store, request = staged
    judge(store, tmp_path, store.resolve("adapter/clf@v2"), 17, baseline=1, base_right=16, gate=STRICT)
    with pytest.raises(
        GateFailedError,
        match=re.escape(
            "approval/clf@v1 can no longer be approved: adapter/clf@v2 cannot be put up for approval: "
            "blessing/clf@v3 is NOT_BLESSED; only a BLESSED candidate can"
        ),
    ):
        decide_signed(store, str(request.ref), private_key=key("alice"), approve=True, reason="ok")


def test_an_alias_moved_since_the_request_is_refused(staged):
    store, request = staged
    store.move_alias("adapter/clf@v2", "production", reason="someone else", forced=True)
    with pytest.raises(
        ArtifactConflictError, match=re.escape("'production' of adapter/clf moved from v1 to v2 since approval/clf@v1")
    ):
        decide_signed(store, str(request.ref), private_key=key("alice"), approve=True, reason="ok")


def test_an_approval_is_used_once_after_a_rollback_and_on_no_other_alias(staged):
    """Replay: promote v2 on an approval, roll back to v1 (the alias is again where the request
    found it), and the same decision is refused; on another alias it binds the wrong alias."""
    store, request = staged
    approval = str(decide_signed(store, str(request.ref), private_key=key("alice"), approve=True, reason="ok").ref)
    promote(store, "adapter/clf@v2", "production", reason="approved", approval=approval)
    rollback(store, "adapter/clf", "production", reason="latency")
    assert store.alias_version("adapter/clf", "production") == 1
    with pytest.raises(
        GateFailedError,
        match=re.escape(
            "approval/clf@v2 was used already, by entry 3 of 'production' of adapter/clf (v1 -> v2): an approval is "
            "consumed by the move it allows; request a new one"
        ),
    ):
        promote(store, "adapter/clf@v2", "production", reason="replay", approval=approval)
    promote(store, "adapter/clf@v1", "staging", reason="staging starts", create=True)
    with pytest.raises(
        GateFailedError,
        match=re.escape(
            f"approval/clf@v2 approves adapter/clf@v2 ({store.resolve('adapter/clf@v2').digest}) for 'production', not"
        ),
    ):
        promote(store, "adapter/clf@v2", "staging", reason="replay elsewhere", approval=approval)
    assert store.alias_version("adapter/clf", "production") == 1


def test_forged_decisions_are_refused_on_an_unsigned_store(staged, tmp_path):
    """A decision written with store.put names an approver but cannot prove it: no identity, an
    Airflow identity no door can confirm, or a signature by a key the policy does not list."""
    store, request = staged
    from airflow_mlcrit.core.gating.approval import KIND

    def forge(**identity):
        md = {
            **{
                k: request.metadata[k]
                for k in ("candidate", "candidate_digest", "alias", "blessing", "blessing_digest", "baseline")
            },
            "forced": False,
            "subject": "move",
            "state": "APPROVED",
            "request": str(request.ref),
            "request_digest": request.digest,
            "decided_by": "alice",
            "decided_at": T0.isoformat(),
            "reason": "forged",
            "identity": identity or None,
        }
        f = tmp_path / f"forged-{len(list(tmp_path.iterdir()))}.json"
        f.write_text(json.dumps(md))
        return str(store.put(f"{KIND}/clf", f, parents=[str(request.ref)], metadata=md).ref)

    forged = forge()
    with pytest.raises(GateFailedError, match=re.escape(f"{forged} names no authenticated approver")):
        promote(store, "adapter/clf@v2", "production", reason="x", approval=forged)
    # the first decision on a request is the one that counts: later forgeries are not even that
    later = forge(source="airflow", run={"dag_id": "d", "run_id": "r", "task_id": "t"})
    with pytest.raises(GateFailedError, match=re.escape(f"{later} is not the decision on {request.ref}: {forged} is")):
        promote(store, "adapter/clf@v2", "production", reason="x", approval=later)
    assert store.alias_version("adapter/clf", "production") == 1


def test_an_airflow_decision_needs_the_door_to_confirm_it_on_an_unsigned_store(staged):
    store, request = staged
    run = {"dag_id": "flagship", "run_id": "manual_1", "task_id": "approve"}
    decision = decide(store, str(request.ref), user="alice", approve=True, reason="ok", airflow_run=run)
    with pytest.raises(GateFailedError, match=re.escape("which this unsigned store cannot prove by itself")):
        promote(store, "adapter/clf@v2", "production", reason="x", approval=str(decision.ref))

    def airflow_says_bob(d):  # a stand-in for the doors' checks of Airflow's record (tests/airflow)
        raise GateFailedError(f"{d.ref}: Airflow recorded bob")

    with pytest.raises(GateFailedError, match=re.escape("approval/clf@v2: Airflow recorded bob")):
        promote(store, "adapter/clf@v2", "production", reason="x", approval=str(decision.ref), attest=airflow_says_bob)
    move, _ = promote(
        store, "adapter/clf@v2", "production", reason="x", approval=str(decision.ref), attest=lambda d: None
    )
    assert move.extra["approved_by"] == "alice"


def test_a_signed_decision_by_a_key_the_policy_no_longer_lists_is_refused(staged):
    store, request = staged
    decision = decide_signed(store, str(request.ref), private_key=key("alice"), approve=True, reason="ok")
    rotated = {**policy().approver_keys, "alice": KEYS["mallory"][1]}
    set_policy(
        store,
        "adapter/clf",
        "production",
        policy(approver_keys=rotated),
        reason="alice's key rotated",
        approval=_policy_approval(store, policy(approver_keys=rotated)),
    )
    with pytest.raises(
        GateFailedError, match=re.escape("is signed by a key that the alias policy does not list for 'alice'")
    ):
        promote(store, "adapter/clf@v2", "production", reason="x", approval=str(decision.ref))


def _policy_approval(store, new, by="bob"):
    req = request_policy_change(store, "adapter/clf", "production", new, requested_by="carol")
    return str(decide_signed(store, str(req.ref), private_key=key(by), approve=True, reason="reviewed").ref)


def test_a_policy_change_needs_the_approvals_of_the_policy_it_replaces(staged):
    store, _ = staged
    lax = AliasPolicy()  # no approvals
    with pytest.raises(
        GateFailedError, match=re.escape("changing the policy of 'production' of adapter/clf needs 1 approval(s)")
    ):
        set_policy(store, "adapter/clf", "production", lax, reason="faster releases", actor="carol")
    approval = _policy_approval(store, lax)
    with pytest.raises(GateFailedError, match="approves another policy change"):
        set_policy(store, "adapter/clf", "production", policy(approvals=2), reason="x", approval=approval)
    entry = set_policy(store, "adapter/clf", "production", lax, reason="faster releases", approval=approval)
    assert (entry.policy_change, entry.to_version, entry.extra["approved_by"]) == (True, 1, "bob")
    assert store.alias_version("adapter/clf", "production") == 1  # a policy change moves nothing
    with pytest.raises(GateFailedError, match="was used already"):
        set_policy(store, "adapter/clf", "production", lax, reason="again", approval=approval)
    promote(store, "adapter/clf@v2", "production", reason="no approval needed now")


def test_unknown_aliases_and_forcing_follow_the_policy(staged, tmp_path):
    store, _ = staged
    with pytest.raises(
        ConfigError, match=re.escape("unknown alias 'prodution' of adapter/clf; known: production. Check the spelling")
    ):
        promote(store, "adapter/clf@v2", "prodution", reason="typo")
    assert store.alias_names("adapter/clf") == ["production"]
    guarded = policy(force_by=("ops",), force_needs_approval=False)
    set_policy(
        store, "adapter/clf", "production", guarded, reason="only ops force", approval=_policy_approval(store, guarded)
    )
    with pytest.raises(
        GateFailedError,
        match=re.escape("'mallory' may not force a move of 'production' of adapter/clf: its policy lets ops force"),
    ):
        promote(store, "adapter/clf@v2", "production", reason="hotfix", force=True, actor="mallory")
    # v2 is blessed: forcing is not needed, and the move still needs its approval
    with pytest.raises(GateFailedError, match=re.escape("needs 1 approval(s)")):
        promote(store, "adapter/clf@v2", "production", reason="hotfix", force=True, actor="ops")
    # v3 failed its gate: ops may force past the blessing rule (this policy asks no approval for that)
    add_adapter_version(store, tmp_path, 5, baseline=1, base_right=16, gate=STRICT)
    with pytest.raises(GateFailedError, match=re.escape("'mallory' may not force")):
        promote(store, "adapter/clf@v3", "production", reason="hotfix", force=True, actor="mallory")
    move, _ = promote(store, "adapter/clf@v3", "production", reason="hotfix", force=True, actor="ops")
    assert (move.forced, move.actor, move.to_version) == (True, "ops", 3)
    with pytest.raises(GateFailedError, match=re.escape("'mallory' may not force")):
        rollback(store, "adapter/clf", "production", reason="x", to_version=1, force=True, actor="mallory")


def test_a_repair_keeps_the_policy_and_needs_someone_who_may_force(staged):
    store, _ = staged
    from airflow_mlcrit.core.gating.promotion import repair

    guarded = policy(force_by=("ops",))
    set_policy(
        store, "adapter/clf", "production", guarded, reason="only ops", approval=_policy_approval(store, guarded)
    )
    history = store.alias_history("adapter/clf", "production")
    store.backend.delete(f"adapter/clf/_aliases/production/h{history[-2].seq:06d}.json")
    with pytest.raises(ArtifactIntegrityError, match="history entry 2 is missing"):
        promote(store, "adapter/clf@v2", "production", reason="x")
    with pytest.raises(GateFailedError, match=re.escape("'mallory' may not force")):
        repair(store, "adapter/clf", "production", to_version=1, reason="checked", actor="mallory")
    entry = repair(store, "adapter/clf", "production", to_version=1, reason="checked", actor="ops")
    assert entry.policy == guarded.to_dict()


def test_a_malformed_request_is_listed_on_its_own_line(staged, tmp_path, store_spec, capsys, monkeypatch):
    store, request = staged
    bad = dict(request.metadata, expires_at="not-a-date")
    f = tmp_path / "evil.json"
    f.write_text(json.dumps(bad))
    store.put("approval/evil", f, metadata=bad)
    rows = pending(store, now=T0)
    assert [(r["ref"], r["state"]) for r in rows] == [
        ("approval/clf@v1", "REQUESTED"),
        ("approval/evil@v1", "MALFORMED"),
    ]
    assert rows[1]["problem"] == "expires_at is 'not-a-date', not a date"
    from airflow_mlcrit.core.cli import main

    root, options = store_spec
    if options:
        monkeypatch.setenv("AWS_ENDPOINT_URL", options["endpoint_url"])
    assert main(["--root", root, "approvals", "list"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[2].split()[:2] == ["approval/clf@v1", "adapter/clf@v2"]
    assert out[-1] == "approval/evil@v1: MALFORMED, not listed: expires_at is 'not-a-date', not a date"


def test_the_cli_decides_only_with_the_approvers_key(staged, store_spec, tmp_path, capsys, monkeypatch):
    from airflow_mlcrit.core.cli import build_parser, main

    del staged  # the store the CLI reads through --root
    root, options = store_spec
    if options:
        monkeypatch.setenv("AWS_ENDPOINT_URL", options["endpoint_url"])
    with pytest.raises(SystemExit):  # no way to name another person
        build_parser().parse_args(["approve", "approval/clf@v1", "--reason", "x", "--user", "bob"])
    capsys.readouterr()
    monkeypatch.setenv("MLCRIT_USER", "bob")  # not an identity any more
    assert main(["--root", root, "approve", "approval/clf@v1", "--reason", "lgtm"]) == 1
    assert "who decides approval/clf@v1 must be proven, not named" in capsys.readouterr().err
    carol = tmp_path / "carol.key"
    carol.write_text(KEYS["carol"][0])
    assert main(["--root", root, "approve", "approval/clf@v1", "--reason", "mine", "--key", str(carol)]) == 1
    assert "'carol' requested approval/clf@v1 and may not decide it" in capsys.readouterr().err
    bob = tmp_path / "bob.key"
    assert main(["keys", "generate", "--out", str(bob)]) == 0
    from airflow_mlcrit.core.gating.approval import public_key_hex

    assert capsys.readouterr().out.split()[0] == public_key_hex(bob.read_bytes())  # the public half is printed
    assert bob.stat().st_mode & 0o777 == 0o600
    assert main(["keys", "generate", "--out", str(bob)]) == 1  # a key file is never overwritten
    capsys.readouterr()
    bob.write_text(KEYS["bob"][0])
    assert main(["--root", root, "reject", "approval/clf@v1", "--reason", "too close", "--key", str(bob)]) == 0
    assert capsys.readouterr().out.strip() == "approval/clf@v2: REJECTED adapter/clf@v2 for 'production' by bob"
    assert main(["--root", root, "--json", "approvals", "list"]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_where_forcing_needs_approval_a_forced_move_takes_an_approval_bound_to_no_blessing(staged, tmp_path):
    store, _ = staged
    strict = policy(force_by=("ops",), force_needs_approval=True)
    set_policy(
        store,
        "adapter/clf",
        "production",
        strict,
        reason="forcing needs four eyes too",
        approval=_policy_approval(store, strict),
    )
    add_adapter_version(store, tmp_path, 5, baseline=1, base_right=16, gate=STRICT)  # v3: NOT_BLESSED
    with pytest.raises(GateFailedError, match=re.escape("needs 1 approval(s)")):
        promote(store, "adapter/clf@v3", "production", reason="hotfix", force=True, actor="ops")
    with pytest.raises(GateFailedError, match="cannot be put up for approval"):  # a normal request needs a blessing
        request_approval(store, "adapter/clf@v3", "production", requested_by="ops")
    request = request_approval(store, "adapter/clf@v3", "production", requested_by="ops", forced=True)
    assert (request.metadata["forced"], request.metadata["blessing"]) == (True, None)
    approval = decide_signed(store, str(request.ref), private_key=key("bob"), approve=True, reason="incident 812")
    move, proof = promote(
        store, "adapter/clf@v3", "production", reason="hotfix", force=True, actor="ops", approval=str(approval.ref)
    )
    assert (move.forced, move.to_version, move.extra["approved_by"], proof) == (True, 3, "bob", None)
