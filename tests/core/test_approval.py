"""Four-eyes promotion, the core rules (core/gating/approval.py): a request binds a blessed
candidate, its blessing and baseline; only a listed approver other than the requester decides,
before it expires and while the blessing and the alias are as judged; promote() with an approval
records who approved and why in the hash-chained history. On the local store and on S3."""

from __future__ import annotations

import datetime as dt
import json
import re

import pytest

from airflow_mlcrit.core.gating import promote
from airflow_mlcrit.core.gating.approval import ApprovalPolicy, decide, expire, pending, request_approval
from airflow_mlcrit.exceptions import ArtifactConflictError, ArtifactIntegrityError, ConfigError, GateFailedError
from tests.helpers.registry import FIRST, LENIENT, STRICT, add_adapter_version, judge

POLICY = ApprovalPolicy(approvers=("alice", "bob", "carol"), expires_after_hours=24)  # carol asks
T0 = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)  # promote() checks against the clock


@pytest.fixture
def staged(store, tmp_path):
    """adapter/clf v1 in production; v2 blessed against it, waiting for approval."""
    add_adapter_version(store, tmp_path, 16, baseline=None, base_right=0, gate=FIRST)
    promote(store, "adapter/clf@v1", "production", reason="first model", actor="pipeline")
    add_adapter_version(store, tmp_path, 17, baseline=1, base_right=16, gate=LENIENT)
    request = request_approval(store, "adapter/clf@v2", "production", requested_by="carol", policy=POLICY, now=T0)
    return store, request


def test_an_approved_candidate_is_promoted_and_the_history_names_the_approver(staged):
    store, request = staged
    assert request.ref.key == "approval/clf" and request.metadata["blessing"] == "blessing/clf@v2"
    assert (request.metadata["baseline"], request.metadata["current"]) == ("adapter/clf@v1", 1)
    assert [p["state"] for p in pending(store, now=T0)] == ["REQUESTED"]
    decision = decide(store, str(request.ref), user="alice", approve=True, reason="slices reviewed", now=T0)
    assert pending(store, now=T0) == []
    move, _ = promote(
        store, "adapter/clf@v2", "production", reason="approved", actor="pipeline", approval=str(decision.ref)
    )
    assert (move.from_version, move.to_version, move.actor, move.forced) == (1, 2, "pipeline", False)
    assert (move.extra["approval"], move.extra["approved_by"], move.extra["approval_reason"]) == (
        "approval/clf@v2",
        "alice",
        "slices reviewed",
    )
    assert store.alias_history("adapter/clf", "production")[-1].extra["approved_by"] == "alice"
    assert [problem for _, _, problem in store.verify_aliases()] == [None]  # in the hash chain


def test_the_requester_an_unlisted_user_and_a_missing_reason_are_refused(staged):
    store, request = staged
    ref = str(request.ref)
    with pytest.raises(GateFailedError, match=re.escape("'carol' requested approval/clf@v1 and may not decide it")):
        decide(store, ref, user="carol", approve=True, reason="mine", now=T0)
    with pytest.raises(
        GateFailedError,
        match=re.escape("'mallory' may not decide approval/clf@v1: its approvers are alice, bob, carol"),
    ):
        decide(store, ref, user="mallory", approve=True, reason="trust me", now=T0)
    with pytest.raises(ConfigError, match="a decision needs a reason"):
        decide(store, ref, user="alice", approve=True, reason=" ", now=T0)
    with pytest.raises(ConfigError, match="approvers must name at least one user"):
        ApprovalPolicy(approvers=())
    assert [p["ref"] for p in pending(store, now=T0)] == [ref]


def test_a_rejection_is_recorded_and_nothing_can_promote_on_it(staged):
    store, request = staged
    rejected = decide(store, str(request.ref), user="bob", approve=False, reason="phone slice too close", now=T0)
    assert (rejected.metadata["state"], rejected.metadata["decided_by"]) == ("REJECTED", "bob")
    with pytest.raises(
        ArtifactConflictError, match=re.escape("approval/clf@v1 was already decided: approval/clf@v2 is REJECTED")
    ):
        decide(store, str(request.ref), user="alice", approve=True, reason="overrule", now=T0)
    with pytest.raises(GateFailedError, match=re.escape("approval/clf@v2 is not an approval: it is 'REJECTED'")):
        promote(store, "adapter/clf@v2", "production", reason="x", approval=str(rejected.ref))
    assert store.alias_version("adapter/clf", "production") == 1


def test_an_expired_request_cannot_be_approved(staged):
    store, request = staged
    late = T0 + dt.timedelta(hours=25)
    ends = (T0 + dt.timedelta(hours=24)).isoformat()
    with pytest.raises(GateFailedError, match=re.escape(f"approval/clf@v1 expired at {ends}: request a new approval")):
        decide(store, str(request.ref), user="alice", approve=True, reason="late", now=late)
    assert pending(store, now=late)[0]["expired"] is True


def test_an_expired_request_is_recorded_as_such_and_leaves_the_pending_list(staged):
    store, request = staged
    ref, ends = str(request.ref), (T0 + dt.timedelta(hours=24)).isoformat()
    with pytest.raises(ConfigError, match=re.escape(f"approval/clf@v1 expires at {ends}, not yet")):
        expire(store, ref, now=T0 + dt.timedelta(hours=23))
    expired = expire(store, ref, now=T0 + dt.timedelta(hours=25))
    md = expired.metadata
    assert (md["state"], md["decided_by"], md["reason"]) == ("EXPIRED", None, f"no decision before {ends}")
    assert pending(store, now=T0 + dt.timedelta(hours=25)) == []
    with pytest.raises(ArtifactConflictError, match=re.escape("approval/clf@v2 is EXPIRED")):
        decide(store, ref, user="alice", approve=False, reason="late", now=T0 + dt.timedelta(hours=26))
    with pytest.raises(GateFailedError, match=re.escape("approval/clf@v2 is not an approval: it is 'EXPIRED'")):
        promote(store, "adapter/clf@v2", "production", reason="x", approval=str(expired.ref))


def test_a_superseded_blessing_or_a_moved_alias_is_refused(staged, tmp_path):
    store, request = staged
    # the candidate judged again, NOT_BLESSED this time: the request's blessing is superseded
    judge(store, tmp_path, store.resolve("adapter/clf@v2"), 17, baseline=1, base_right=16, gate=STRICT)
    with pytest.raises(
        GateFailedError,
        match=re.escape(
            "approval/clf@v1 can no longer be approved: adapter/clf@v2 cannot be put up for approval: "
            "blessing/clf@v3 is NOT_BLESSED; only a BLESSED candidate can"
        ),
    ):
        decide(store, str(request.ref), user="alice", approve=True, reason="ok", now=T0)


def test_an_alias_moved_since_the_request_is_refused(staged):
    store, request = staged
    store.move_alias("adapter/clf@v2", "production", reason="someone else", forced=True)
    with pytest.raises(
        ArtifactConflictError, match=re.escape("'production' of adapter/clf moved from v1 to v2 since approval/clf@v1")
    ):
        decide(store, str(request.ref), user="alice", approve=True, reason="ok", now=T0)


def test_a_forged_approval_is_refused(staged, tmp_path):
    """An edited decision fails the store's integrity check; a decision committed without going
    through decide() (an unlisted approver, another candidate) fails the binding checks."""
    store, request = staged
    from airflow_mlcrit.core.gating.approval import _commit

    forged = dict(request.metadata, state="APPROVED", request=str(request.ref), decided_by="mallory", reason="forged")
    fake = _commit(store, "clf", forged, parents=[str(request.ref)])
    with pytest.raises(GateFailedError, match="decided by 'mallory', who may not decide approval/clf@v1"):
        promote(store, "adapter/clf@v2", "production", reason="x", approval=str(fake.ref))
    if hasattr(store.backend, "root"):  # the local store: the decision's manifest edited in place
        manifest = store.backend.root / "approval" / "clf" / "v000002" / "_MANIFEST.json"
        manifest.write_text(manifest.read_text().replace("mallory", "alice"))
        with pytest.raises(ArtifactIntegrityError, match="approval/clf@v2"):
            promote(store, "adapter/clf@v2", "production", reason="x", approval=str(fake.ref))
    assert store.alias_version("adapter/clf", "production") == 1
    assert json.loads(store.read_bytes(request.ref, "approval.json"))["requested_by"] == "carol"


def test_the_cli_lists_approves_and_rejects_with_the_same_rules(staged, store_spec, capsys, monkeypatch):
    from airflow_mlcrit.core.cli import main

    del staged  # the store the CLI reads through --root
    root, options = store_spec
    if options:
        monkeypatch.setenv("AWS_ENDPOINT_URL", options["endpoint_url"])
    assert main(["--root", root, "approvals", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["REF", "CANDIDATE", "ALIAS", "BLESSING", "REQUESTED_BY", "EXPIRES_AT", "APPROVERS"]
    assert lines[2].split()[:5] == ["approval/clf@v1", "adapter/clf@v2", "production", "blessing/clf@v2", "carol"]
    monkeypatch.setenv("MLCRIT_USER", "carol")  # the requester: refused, exit 1, one line on stderr
    assert main(["--root", root, "approve", "approval/clf@v1", "--reason", "mine"]) == 1
    assert "'carol' requested approval/clf@v1 and may not decide it" in capsys.readouterr().err
    assert main(["--root", root, "reject", "approval/clf@v1", "--reason", "too close", "--user", "bob"]) == 0
    assert capsys.readouterr().out.strip() == "approval/clf@v2: REJECTED adapter/clf@v2 for 'production' by bob"
    assert main(["--root", root, "--json", "approvals", "list"]) == 0
    assert json.loads(capsys.readouterr().out) == []
