"""Four-eyes promotion: a person approves (or rejects) a blessed candidate before an alias moves.

An approval is an ``approval/<name>`` artifact in two steps, both immutable versions:

- a **request** binds the candidate's digest, the BLESSED blessing that judged it for the alias,
  and the baseline it was judged against; it names who asked, who may decide and until when;
- a **decision** (its child) records APPROVED or REJECTED, who decided, when and why; or
  EXPIRED, where no one decided in time (``expire``).

The rules are checked where a decision is made (``decide``) and again where it is used
(``approved_for``, called by ``promote``): only a listed approver, not the requester unless the
request allows it, before the request expires, while the blessing is still the candidate's
newest judgement and the alias still points at the baseline it was judged against. The store's
digests (and signatures, where the store signs) make a forged or edited approval fail closed.
Pure Python: the Airflow operator, the CLI and the registry UI all decide through here.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from airflow_mlcrit.exceptions import ArtifactConflictError, ConfigError, GateFailedError

KIND = "approval"
REQUESTED, APPROVED, REJECTED, EXPIRED = "REQUESTED", "APPROVED", "REJECTED", "EXPIRED"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _iso(t: dt.datetime) -> str:
    return t.astimezone(dt.timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class ApprovalPolicy:
    """Who may approve: ``approvers`` (user names; required), whether the requester may approve
    their own request (never, by default), and how long a request stays open."""

    approvers: tuple[str, ...]
    allow_self_approval: bool = False
    expires_after_hours: float = 72.0

    def __post_init__(self) -> None:
        approvers = tuple(self.approvers or ())
        if not approvers or not all(isinstance(a, str) and a.strip() for a in approvers):
            raise ConfigError(
                "ApprovalPolicy.approvers must name at least one user who may approve (user names as the "
                f"Airflow auth manager knows them), got {self.approvers!r}"
            )
        object.__setattr__(self, "approvers", approvers)
        if not self.expires_after_hours > 0:
            raise ConfigError(f"ApprovalPolicy.expires_after_hours must be > 0, got {self.expires_after_hours!r}")


def _blessing_for(store: Any, candidate: Any, alias: str, blessing: str | None) -> Any:
    """The BLESSED blessing a request binds: ``blessing`` if given, else the candidate's newest
    judgement for ``alias``, which must be BLESSED."""
    from airflow_mlcrit.core.gating.promotion import _blesses, newest_judgement

    newest = newest_judgement(store, candidate, alias)
    proof = store.resolve(blessing) if blessing else newest
    if proof is None or not _blesses(proof, candidate.digest):
        what = f"{proof.ref} is {proof.metadata.get('decision')}" if proof is not None else "it has no blessing"
        raise GateFailedError(f"{candidate.ref} cannot be put up for approval: {what}; only a BLESSED candidate can")
    if newest is not None and (newest.created_at, newest.version) > (proof.created_at, proof.version):
        raise GateFailedError(
            f"{proof.ref} is superseded: the newest judgement of {candidate.ref} for {alias!r} is {newest.ref}"
        )
    return proof


def request_approval(
    store: Any,
    candidate: str,
    alias: str,
    *,
    requested_by: str,
    policy: ApprovalPolicy,
    blessing: str | None = None,
    name: str | None = None,
    extra: dict[str, Any] | None = None,
    now: dt.datetime | None = None,
) -> Any:
    """Commit a request to approve moving ``alias`` to the blessed ``candidate``; returns it."""
    if not requested_by or not requested_by.strip():
        raise ConfigError("an approval request needs the user who asks for it (requested_by)")
    target = store.resolve(candidate)
    proof = _blessing_for(store, target, alias, blessing)
    baseline = proof.metadata.get("baseline")
    current = store.alias_version(f"{target.kind}/{target.name}", alias)
    start = now or _now()
    metadata = {
        "state": REQUESTED,
        "candidate": str(target.ref),
        "candidate_digest": target.digest,
        "alias": alias,
        "blessing": str(proof.ref),
        "blessing_digest": proof.digest,
        "baseline": baseline,
        "current": current,
        "requested_by": requested_by,
        "requested_at": _iso(start),
        "expires_at": _iso(start + dt.timedelta(hours=policy.expires_after_hours)),
        "approvers": list(policy.approvers),
        "allow_self_approval": policy.allow_self_approval,
        **(extra or {}),
    }
    return _commit(store, name or target.name, metadata, parents=[str(target.ref), str(proof.ref)])


def _commit(store: Any, name: str, metadata: dict[str, Any], parents: list[str]) -> Any:
    import json
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "approval.json"
        path.write_text(json.dumps(metadata, indent=1, sort_keys=True))
        return store.put(f"{KIND}/{name}", path, parents=parents, metadata=metadata)


def decision_of(store: Any, request: Any) -> Any:
    """The decision made on ``request`` (a manifest), or None while it is pending."""
    decisions = [
        c
        for c in store.children(request.ref)
        if c.kind == KIND and c.metadata.get("request") == str(request.ref) and c.metadata.get("state") != REQUESTED
    ]
    return min(decisions, key=lambda m: m.version) if decisions else None


def _still_valid(store: Any, request: Any, at: dt.datetime) -> None:
    """The checks a request must pass at the time it is decided, and again when it is used."""
    md = request.metadata
    if at > dt.datetime.fromisoformat(md["expires_at"]):
        raise GateFailedError(f"{request.ref} expired at {md['expires_at']}: request a new approval")
    candidate = store.resolve(md["candidate"])
    if candidate.digest != md["candidate_digest"]:
        raise GateFailedError(
            f"{request.ref} binds digest {md['candidate_digest']}, but {candidate.ref} has {candidate.digest}"
        )
    try:
        proof = _blessing_for(store, candidate, md["alias"], None)
    except GateFailedError as exc:
        raise GateFailedError(f"{request.ref} can no longer be approved: {exc}") from exc
    if str(proof.ref) != md["blessing"] or proof.digest != md["blessing_digest"]:
        raise GateFailedError(
            f"{request.ref} binds {md['blessing']}, but the newest blessing of {candidate.ref} for "
            f"{md['alias']!r} is {proof.ref}: the request is superseded, request a new approval"
        )
    current = store.alias_version(f"{candidate.kind}/{candidate.name}", md["alias"])
    if current != md["current"]:
        raise ArtifactConflictError(
            f"{md['alias']!r} of {candidate.kind}/{candidate.name} moved from {_v(md['current'])} to {_v(current)} "
            f"since {request.ref} was requested: evaluate and gate {candidate.ref} again against it"
        )


def _v(version: int | None) -> str:
    return f"v{version}" if version else "unset"


def decide(
    store: Any,
    request: str,
    *,
    user: str,
    approve: bool,
    reason: str,
    now: dt.datetime | None = None,
    extra: dict[str, Any] | None = None,
) -> Any:
    """Approve or reject a pending request as ``user``, with a reason; returns the decision."""
    req = store.resolve(request)
    md = req.metadata
    _check_request(req)
    if user not in md["approvers"]:
        raise GateFailedError(f"{user!r} may not decide {req.ref}: its approvers are {', '.join(md['approvers'])}")
    if user == md["requested_by"] and not md.get("allow_self_approval"):
        raise GateFailedError(f"{user!r} requested {req.ref} and may not decide it: a second person must (four eyes)")
    at = now or _now()
    check_decidable(store, req, approve=approve, reason=reason, now=at)
    return _record(store, req, APPROVED if approve else REJECTED, user, reason.strip(), at, extra)


def check_decidable(store: Any, req: Any, *, approve: bool, reason: str, now: dt.datetime | None = None) -> None:
    """What a decision on request ``req`` (a manifest) needs, whoever makes it: a pending request,
    a reason and, for an approval, a request that still holds (``_still_valid``). The CLI checks
    this before it answers a request that waits in Airflow."""
    _check_pending(store, req)
    if not reason or not reason.strip():
        raise ConfigError("a decision needs a reason: it is recorded with the approval and in the alias history")
    if approve:  # a rejection is recorded whatever happened since; an approval only while it holds
        _still_valid(store, req, now or _now())


def _check_request(req: Any) -> None:
    if req.kind != KIND or req.metadata.get("state") != REQUESTED:
        raise ConfigError(f"{req.ref} is not an approval request")


def _check_pending(store: Any, req: Any) -> None:
    _check_request(req)
    if (earlier := decision_of(store, req)) is not None:
        raise ArtifactConflictError(f"{req.ref} was already decided: {earlier.ref} is {earlier.metadata['state']}")


def expire(store: Any, request: str, *, now: dt.datetime | None = None, extra: dict[str, Any] | None = None) -> Any:
    """Record that no one decided ``request`` before it expired (the Airflow task's timeout), so
    that it is no longer pending; returns that EXPIRED decision."""
    req = store.resolve(request)
    at = now or _now()
    _check_pending(store, req)
    if at <= dt.datetime.fromisoformat(req.metadata["expires_at"]):
        raise ConfigError(f"{req.ref} expires at {req.metadata['expires_at']}, not yet")
    return _record(store, req, EXPIRED, None, f"no decision before {req.metadata['expires_at']}", at, extra)


def _record(
    store: Any, req: Any, state: str, user: str | None, reason: str, at: dt.datetime, extra: dict[str, Any] | None
) -> Any:
    md = req.metadata
    metadata = {
        **{k: md[k] for k in ("candidate", "candidate_digest", "alias", "blessing", "blessing_digest", "baseline")},
        "state": state,
        "request": str(req.ref),
        "decided_by": user,
        "decided_at": _iso(at),
        "reason": reason,
        **(extra or {}),
    }
    return _commit(store, req.name, metadata, parents=[str(req.ref)])


def approved_for(store: Any, approval: str, candidate: Any, alias: str, now: dt.datetime | None = None) -> Any:
    """The APPROVED decision ``approval`` if it allows moving ``alias`` to ``candidate`` now; raises
    GateFailedError (or ArtifactConflictError) naming what does not hold."""
    decision = store.resolve(approval)
    md = decision.metadata
    if decision.kind != KIND or md.get("state") != APPROVED:
        raise GateFailedError(f"{decision.ref} is not an approval: it is {md.get('state')!r}")
    request = store.resolve(md["request"])
    parents = [p["ref"] for p in decision.parents]
    if parents != [str(request.ref)] or store.parents(decision.ref)[0].digest != request.digest:
        raise GateFailedError(f"{decision.ref} does not record {request.ref} as its request")
    if (first := decision_of(store, request)) is None or first.ref != decision.ref:
        raise GateFailedError(
            f"{decision.ref} is not the decision on {request.ref}: {first.ref if first else 'none'} is"
        )
    for key in ("candidate", "candidate_digest", "alias", "blessing", "blessing_digest"):
        if md.get(key) != request.metadata.get(key):
            raise GateFailedError(
                f"{decision.ref} names {key} {md.get(key)!r}, its request {request.metadata.get(key)!r}"
            )
    if (md["candidate"], md["candidate_digest"], md["alias"]) != (str(candidate.ref), candidate.digest, alias):
        raise GateFailedError(
            f"{decision.ref} approves {md['candidate']} ({md['candidate_digest']}) for {md['alias']!r}, not "
            f"{candidate.ref} ({candidate.digest}) for {alias!r}"
        )
    if md["decided_by"] not in request.metadata["approvers"] or (
        md["decided_by"] == request.metadata["requested_by"] and not request.metadata.get("allow_self_approval")
    ):
        raise GateFailedError(f"{decision.ref} was decided by {md['decided_by']!r}, who may not decide {request.ref}")
    _still_valid(store, request, now or _now())
    return decision


def pending(store: Any, name: str | None = None, now: dt.datetime | None = None) -> list[dict[str, Any]]:
    """Every request without a decision (``name``: of one approval artifact), oldest first, each
    with whether it has expired."""
    keys = [f"{KIND}/{name}"] if name else [k for k in store.list_artifacts(KIND)]
    at = now or _now()
    out = []
    for key in keys:
        for v in store.versions(key):
            m = store.resolve(f"{key}@v{v}")
            if m.metadata.get("state") == REQUESTED and decision_of(store, m) is None:
                expired = at > dt.datetime.fromisoformat(m.metadata["expires_at"])
                out.append({"ref": str(m.ref), **m.metadata, "expired": expired})
    return sorted(out, key=lambda r: r["requested_at"])
