"""Moving an alias: the one place every door goes through (operators, the CLI, the registry UI,
the Python API), where the alias's policy (policy.py) is enforced.

- **Known alias.** An alias with neither a history nor a policy is refused unless the caller
  creates it explicitly (``create=True``): a typo never makes a new alias.
- **Blessing.** A model, adapter or prompt moves only to a version that a BLESSED blessing names by
  digest, unless the move is forced by someone the policy lets force (and recorded as forced).
  The newest judgement decides: a version whose newest blessing for the alias is NOT_BLESSED
  cannot be promoted on an older pass.
- **Approvals.** Where the policy asks for N approvals, the move needs N APPROVED decisions by
  distinct approvers of the policy, none of them the requester or the mover, each authenticated
  (approval.py), each bound to this candidate, blessing, baseline and alias, and each unused: the
  history entry that uses an approval consumes it.
- **Policy changes** are entries of the same history, made under the approvals of the policy
  they replace.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from airflow_mlcrit.core.artifacts.records import login_name
from airflow_mlcrit.core.artifacts.refs import ArtifactRef, parse_key, parse_ref, version_label
from airflow_mlcrit.core.gating.blessing import BLESSED_KINDS, blesses, find_blessing, newest_judgement
from airflow_mlcrit.core.gating.policy import DEFAULT, AliasPolicy, known_aliases, policy_in
from airflow_mlcrit.exceptions import ArtifactConflictError, ConfigError, GateFailedError

__all__ = ["BLESSED_KINDS", "find_blessing", "promote", "repair", "rollback", "set_policy"]

Attest = Callable[[Any], None]  # confirms an Airflow-made decision against Airflow's own record


def _ledger(store: Any, key: str, alias: str, create: bool) -> tuple[list[Any], AliasPolicy | None]:
    """The alias's checked history and policy; an alias with neither is unknown unless created."""
    history = store.alias_history(key, alias)
    if not history and not create:
        kind, _ = parse_key(key)
        known = known_aliases(store, kind)
        raise ConfigError(
            f"unknown alias {alias!r} of {key}; known: {', '.join(known) or 'none yet'}. Check the spelling, or "
            "create it explicitly (mlcrit promote --create-alias, promote(create=True), "
            "PromoteModelOperator(create_alias=True)) or declare it with a policy (mlcrit aliases policy set)"
        )
    return history, policy_in(history)


def _check_force(rules: AliasPolicy, actor: str, alias: str, key: str) -> None:
    if not rules.may_force(actor):
        who = ", ".join(rules.force_by or ()) or "nobody"
        raise GateFailedError(f"{actor!r} may not force a move of {alias!r} of {key}: its policy lets {who} force")


def _approvals(
    store: Any,
    given: str | Sequence[str] | None,
    *,
    rules: AliasPolicy,
    needed: bool,
    history: list[Any],
    target: Any,
    alias: str,
    proof: Any,
    actor: str,
    attest: Attest | None,
) -> list[Any]:
    """The APPROVED decisions ``given``, each checked; at least the policy's number of distinct
    approvers where ``needed``."""
    from airflow_mlcrit.core.gating.approval import approved_for

    refs = [given] if isinstance(given, str) else [str(r) for r in (given or ()) if r]
    key = f"{target.kind}/{target.name}"
    used = {ref: entry for entry in history for ref in entry.extra.get("approvals", [])}
    decisions = []
    for ref in refs:
        normal = str(store.resolve(ref).ref)  # approval/x@latest and approval/x@v3 are one decision
        if normal in used:
            entry = used[normal]
            raise GateFailedError(
                f"{normal} was used already, by entry {entry.seq} of {alias!r} of {key} "
                f"({version_label(entry.from_version)} -> {version_label(entry.to_version)}): an approval is "
                "consumed by the move it allows; request a new one"
            )
        decision = approved_for(store, normal, target, alias, policy=rules, attest=attest)
        blessing = decision.metadata.get("blessing")
        if (proof is None and blessing is not None) or (proof is not None and str(proof.ref) != blessing):
            raise GateFailedError(
                f"{decision.ref} approves on {blessing or 'no blessing'}, "
                f"not on {proof.ref if proof else 'no blessing'}"
            )
        if decision.metadata["decided_by"] == actor:
            raise GateFailedError(
                f"{decision.ref} was decided by {actor!r}, who is making this move: a second person must (four eyes)"
            )
        decisions.append(decision)
    approvers = {d.metadata["decided_by"] for d in decisions}
    if len(approvers) < len(decisions):
        raise GateFailedError(f"{', '.join(str(d.ref) for d in decisions)}: one approver counts once")
    if needed and len(approvers) < rules.approvals:
        raise GateFailedError(
            f"moving {alias!r} of {key} needs {rules.approvals} approval(s) by {', '.join(rules.approvers)} "
            f"(its policy), {len(approvers)} given: request one (PromotionApprovalOperator, or mlcrit approvals "
            f"request {target.ref} --alias {alias}) and pass the decision as the approval"
        )
    return decisions


def _approval_record(decisions: list[Any]) -> dict[str, Any]:
    if not decisions:
        return {}
    first = decisions[0].metadata
    return {
        "approvals": [str(d.ref) for d in decisions],
        "approved_by": ", ".join(d.metadata["decided_by"] for d in decisions),
        "approval": str(decisions[0].ref),
        "approval_reason": first["reason"],
    }


def promote(
    store: Any,
    ref: Any,
    alias: str,
    *,
    reason: str,
    blessing: Any = None,
    force: bool = False,
    actor: str | None = None,
    extra: dict[str, Any] | None = None,
    approval: str | Sequence[str] | None = None,
    create: bool = False,
    attest: Attest | None = None,
) -> tuple[Any, Any]:
    """Move ``alias`` to ``ref`` under its policy; returns (alias move, blessing manifest or None).
    Moving an alias to the version it already points at changes nothing and records nothing: the
    returned move is the one that put it there.

    :param approval: the APPROVED decision(s) (approval.py) the move uses; each is consumed.
    :param create: allow the first move of an alias that has neither a history nor a policy.
    :param attest: how this door confirms a decision made in Airflow (where the store does not sign).
    """
    target = store.resolve(ref)
    key = f"{target.kind}/{target.name}"
    actor = actor or login_name()
    history, policy = _ledger(store, key, alias, create)
    rules = policy or DEFAULT
    head = history[-1] if history else None
    current = head.to_version if head else None
    if force:
        _check_force(rules, actor, alias, key)
    proof = None
    if target.kind in BLESSED_KINDS and rules.require_blessing:
        proof = _proof(store, target, alias, blessing, force)
    elif blessing is not None:
        proof = store.resolve(blessing)
        if not blesses(proof, target.digest):
            raise GateFailedError(f"{proof.ref} does not bless {target.ref}")
    expected = _judged_against(proof, target, alias)
    stale = expected is not _ANY and current != expected
    if stale and not force and current != target.version:
        raise ArtifactConflictError(
            f"{alias!r} of {target.kind}/{target.name} points at {version_label(current)}, but {proof.ref} judged "
            f"{target.ref} against {version_label(expected)}: another promotion moved it since. Re-run the evaluation "
            f"and gate against the new {alias} (a candidate must beat the version it replaces), then promote"
        )
    if current == target.version:  # nothing moves: nothing to approve, nothing recorded
        return history[-1], proof
    forced = force and (proof is None or stale)
    needed = rules.approvals > 0 and (not forced or rules.force_needs_approval)
    decisions = _approvals(
        store,
        approval,
        rules=rules,
        needed=needed,
        history=history,
        target=target,
        alias=alias,
        proof=proof,
        actor=actor,
        attest=attest,
    )
    move = store.move_alias(
        target.ref,
        alias,
        reason=reason,
        actor=actor,
        expected=current,
        expected_seq=head.seq if head else 0,
        forced=forced,
        extra={
            **(extra or {}),
            **_approval_record(decisions),
            "blessing": str(proof.ref) if proof else None,
            # a prompt is blessed together with the model it ran on: the history says which
            **{
                k: proof.metadata[k]
                for k in ("model", "model_digest", "model_overrides")
                if proof is not None and k in proof.metadata
            },
        },
    )
    return move, proof


def _proof(store: Any, target: Any, alias: str, blessing: Any, force: bool) -> Any:
    """The BLESSED blessing that lets ``target`` move ``alias`` (None: only forced)."""
    newest = newest_judgement(store, target, alias)
    if blessing is not None:
        proof = store.resolve(blessing)
        if not blesses(proof, target.digest):
            raise GateFailedError(
                f"{proof.ref} does not bless {target.ref}: it is {proof.metadata.get('decision')} for digest "
                f"{proof.metadata.get('candidate_digest')}, and {target.ref} has digest {target.digest}"
            )
    else:
        proof = newest if newest is not None and blesses(newest, target.digest) else find_blessing(store, target.ref)
    if proof is not None and newest is not None and not blesses(newest, target.digest):
        if (newest.created_at, newest.version) > (proof.created_at, proof.version) and not force:
            raise GateFailedError(
                f"the newest judgement of {target.ref} for {alias!r} is {newest.ref}, NOT_BLESSED, made after "
                f"{proof.ref} blessed it: the newest judgement decides. Evaluate and gate it again, or "
                "override with force (mlcrit promote --force --reason ...), which is recorded"
            )
        proof = None  # forced past a newer failure: the move is recorded as forced
    if proof is None and not force:
        failed = f"; its newest judgement, {newest.ref}, is NOT_BLESSED" if newest is not None else ""
        raise GateFailedError(
            f"no BLESSED blessing exists for {target.ref} (digest {target.digest}){failed}: run an evaluation "
            "gate on it first, or override with force (mlcrit promote --force --reason ...), which is recorded"
        )
    return proof


_ANY = object()


def _judged_against(proof: Any, target: Any, alias: str) -> Any:
    """The version of ``alias`` the blessing compared the candidate with (None: the alias was
    unset, a first model), or _ANY when the blessing's baseline was not read through this alias."""
    if proof is None or proof.metadata.get("baseline_alias") != alias:
        return _ANY
    baseline = proof.metadata.get("baseline")
    if baseline is None:
        return None
    ref = parse_ref(baseline)
    if (ref.kind, ref.name) != (target.kind, target.name) or ref.version is None:
        return _ANY
    return ref.version


def rollback(
    store: Any,
    key: str,
    alias: str,
    *,
    reason: str,
    to_version: int | None = None,
    force: bool = False,
    actor: str | None = None,
    extra: dict[str, Any] | None = None,
    approval: str | Sequence[str] | None = None,
    attest: Attest | None = None,
) -> Any:
    """Move ``alias`` back to the previous blessed version (or ``to_version``, which must be
    blessed unless forced), under the alias's policy."""
    kind, name = parse_key(key)
    actor = actor or login_name()
    history, policy = _ledger(store, key, alias, create=False)
    rules = policy or DEFAULT
    if force:
        _check_force(rules, actor, alias, key)
    ruled = kind in BLESSED_KINDS and rules.require_blessing and not force

    def blessed(version: int) -> bool:
        return find_blessing(store, ArtifactRef(kind, name, version=version)) is not None

    if ruled and to_version is not None and not blessed(to_version):
        raise GateFailedError(
            f"{key}@v{to_version} has no BLESSED blessing: roll back to a blessed version, or force it "
            "(mlcrit rollback --force), which is recorded"
        )
    needed = rules.approvals > 0 and (rules.rollback_needs_approval or (force and rules.force_needs_approval))
    decisions: list[Any] = []
    if needed or approval:
        if to_version is None:
            raise ConfigError(f"a rollback of {alias!r} of {key} with approvals names its version (to_version)")
        target = store.resolve(ArtifactRef(kind, name, version=to_version))
        proof = find_blessing(store, target.ref)
        decisions = _approvals(
            store,
            approval,
            rules=rules,
            needed=needed,
            history=history,
            target=target,
            alias=alias,
            proof=proof,
            actor=actor,
            attest=attest,
        )
    return store.rollback(
        key,
        alias,
        reason=reason,
        to_version=to_version,
        actor=actor,
        extra={**(extra or {}), **_approval_record(decisions)},
        eligible=blessed if ruled else None,
        forced=force,
        expected_seq=history[-1].seq if history else 0,
    )


def set_policy(
    store: Any,
    key: str,
    alias: str,
    policy: AliasPolicy | dict[str, Any] | None,
    *,
    reason: str,
    actor: str | None = None,
    approval: str | Sequence[str] | None = None,
    create: bool = False,
    attest: Attest | None = None,
    extra: dict[str, Any] | None = None,
) -> Any:
    """Set (or, with None, remove) the policy of ``alias``: an audited entry of its history.
    The change needs what the policy it replaces asks: its approvals (bound to the new policy's
    digest), or, where it asks none but names who may force, one of them as the actor.
    ``create`` declares an alias that has no history yet."""
    from airflow_mlcrit.core.gating.approval import approved_policy_change

    new = AliasPolicy.from_dict(policy) if isinstance(policy, dict) else policy
    actor = actor or login_name()
    history, old = _ledger(store, key, alias, create)
    rules = old or DEFAULT
    refs = [approval] if isinstance(approval, str) else [str(r) for r in (approval or ()) if r]
    used = {ref for entry in history for ref in entry.extra.get("approvals", [])}
    refs = [str(store.resolve(r).ref) for r in refs]
    if reused := [r for r in refs if r in used]:
        raise GateFailedError(f"{reused[0]} was used already: an approval is consumed by the change it allows")
    decisions = [approved_policy_change(store, r, key, alias, new, policy=rules, attest=attest) for r in refs]
    if rules.approvals > 0:
        approvers = {d.metadata["decided_by"] for d in decisions} - {actor}
        if len(approvers) < rules.approvals:
            raise GateFailedError(
                f"changing the policy of {alias!r} of {key} needs {rules.approvals} approval(s) by "
                f"{', '.join(rules.approvers)} (the policy it replaces), {len(approvers)} given: request one "
                f"(mlcrit aliases policy request) and pass the decision as the approval"
            )
    elif not rules.may_force(actor):
        raise GateFailedError(
            f"{actor!r} may not change the policy of {alias!r} of {key}: its policy lets "
            f"{', '.join(rules.force_by or ()) or 'nobody'} force its moves, and only they may change it"
        )
    return store.set_alias_policy(
        key,
        alias,
        new.to_dict() if new is not None else None,
        reason=reason,
        actor=actor,
        extra={**(extra or {}), **_approval_record(decisions)},
        expected_seq=history[-1].seq if history else 0,
    )


def repair(store: Any, key: str, alias: str, *, to_version: int, reason: str, actor: str | None = None) -> Any:
    """Start a new chain for an alias whose history is damaged (``ArtifactStore.repair_alias``).
    A repair is a forced move: only someone the alias's last sound policy lets force may do it,
    and the new chain keeps that policy."""
    actor = actor or login_name()
    sound = store.last_sound_policy(key, alias)
    if sound is not None:
        _check_force(AliasPolicy.from_dict(sound), actor, alias, key)
    return store.repair_alias(key, alias, to_version=to_version, reason=reason, actor=actor)
