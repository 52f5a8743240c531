"""The promotion rule: an alias of a model, adapter or prompt moves only to a version that a
BLESSED blessing names by digest, unless the move is forced (and recorded as forced). The newest
judgement decides: a version whose newest blessing for the alias is NOT_BLESSED cannot be
promoted on an older pass."""

from __future__ import annotations

from typing import Any

from airflow_mlcrit.core.artifacts.store import _vname
from airflow_mlcrit.exceptions import ArtifactConflictError, GateFailedError

BLESSED_KINDS = ("model", "adapter", "prompt")


def _blesses(blessing: Any, digest: str) -> bool:
    return (
        blessing.kind == "blessing"
        and blessing.metadata.get("decision") == "BLESSED"
        and blessing.metadata.get("candidate_digest") == digest
    )


def find_blessing(store: Any, ref: Any) -> Any:
    """The newest BLESSED blessing of exactly this version's digest, or None. Blessings list
    their candidate as a parent, so the children index finds them."""
    target = store.resolve(ref)
    found = [c for c in store.children(target.ref) if _blesses(c, target.digest)]
    return max(found, key=lambda m: m.created_at) if found else None


def newest_judgement(store: Any, target: Any, alias: str) -> Any:
    """The newest blessing (any decision) of exactly this version's digest that judged it for
    ``alias`` (or against no alias: a first model), or None."""
    found = [
        c
        for c in store.children(target.ref)
        if c.kind == "blessing"
        and c.metadata.get("candidate_digest") == target.digest
        and c.metadata.get("baseline_alias") in (None, alias)
    ]
    return max(found, key=lambda m: (m.created_at, m.version)) if found else None


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
    approval: Any = None,
) -> tuple[Any, Any]:
    """Move ``alias`` to ``ref`` under the rule; returns (alias move, blessing manifest or None).
    Moving an alias to the version it already points at changes nothing and records nothing: the
    returned move is the one that put it there. With ``approval`` (an APPROVED decision, see
    approval.py) the move also needs that approval to hold now, and records who approved and why."""
    target = store.resolve(ref)
    key = f"{target.kind}/{target.name}"
    current = store.alias_version(key, alias)
    proof = None
    if target.kind in BLESSED_KINDS:
        newest = newest_judgement(store, target, alias)
        if blessing is not None:
            proof = store.resolve(blessing)
            if not _blesses(proof, target.digest):
                raise GateFailedError(
                    f"{proof.ref} does not bless {target.ref}: it is {proof.metadata.get('decision')} for digest "
                    f"{proof.metadata.get('candidate_digest')}, and {target.ref} has digest {target.digest}"
                )
        else:
            proof = (
                newest if newest is not None and _blesses(newest, target.digest) else find_blessing(store, target.ref)
            )
        if proof is not None and newest is not None and not _blesses(newest, target.digest):
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
    approved = None
    if approval is not None:
        from airflow_mlcrit.core.gating.approval import approved_for

        approved = approved_for(store, approval, target, alias)
        if proof is None or str(proof.ref) != approved.metadata["blessing"]:
            raise GateFailedError(
                f"{approved.ref} approves on {approved.metadata['blessing']}, "
                f"not on {proof.ref if proof else 'no blessing'}"
            )
    if current == target.version:
        return store.alias_history(key, alias)[-1], proof
    expected = _judged_against(proof, target, alias)
    stale = expected is not _ANY and current != expected
    if stale and not force:
        raise ArtifactConflictError(
            f"{alias!r} of {target.kind}/{target.name} points at {_vname(current)}, but {proof.ref} judged "
            f"{target.ref} against {_vname(expected)}: another promotion moved it since. Re-run the evaluation "
            f"and gate against the new {alias} (a candidate must beat the version it replaces), then promote"
        )
    move = store.move_alias(
        target.ref,
        alias,
        reason=reason,
        actor=actor,
        expected=current,
        forced=force and (proof is None or stale),
        extra={
            **(extra or {}),
            **(
                {
                    "approval": str(approved.ref),
                    "approved_by": approved.metadata["decided_by"],
                    "approval_reason": approved.metadata["reason"],
                }
                if approved is not None
                else {}
            ),
            "blessing": str(proof.ref) if proof else None,
            # a prompt is blessed together with the model it ran on: the history says which
            **{k: proof.metadata[k] for k in ("model", "model_digest") if proof is not None and k in proof.metadata},
        },
    )
    return move, proof


_ANY = object()


def _judged_against(proof: Any, target: Any, alias: str) -> Any:
    """The version of ``alias`` the blessing compared the candidate with (None: the alias was
    unset, a first model), or _ANY when the blessing's baseline was not read through this alias."""
    if proof is None or proof.metadata.get("baseline_alias") != alias:
        return _ANY
    baseline = proof.metadata.get("baseline")
    if baseline is None:
        return None
    from airflow_mlcrit.core.artifacts.refs import parse_ref

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
) -> Any:
    """Move ``alias`` back to the previous blessed version (or ``to_version``, which must be
    blessed unless forced)."""
    from airflow_mlcrit.core.artifacts.refs import ArtifactRef, parse_key

    kind, name = parse_key(key)
    ruled = kind in BLESSED_KINDS and not force

    def blessed(version: int) -> bool:
        return find_blessing(store, ArtifactRef(kind, name, version=version)) is not None

    if ruled and to_version is not None and not blessed(to_version):
        raise GateFailedError(
            f"{key}@v{to_version} has no BLESSED blessing: roll back to a blessed version, or force it "
            "(mlcrit rollback --force), which is recorded"
        )
    return store.rollback(
        key,
        alias,
        reason=reason,
        to_version=to_version,
        actor=actor,
        extra=extra,
        eligible=blessed if ruled else None,
        forced=force,
    )
