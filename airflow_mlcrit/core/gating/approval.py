"""Four-eyes decisions: a person approves (or rejects) a move of an alias, or a change of its
policy, before it happens.

An approval is an ``approval/<name>`` artifact in two steps, both immutable versions:

- a **request** binds what would happen: a move (the candidate's digest, the BLESSED blessing
  that judged it for the alias, and the version it would replace) or a policy change (the new
  policy's digest, and the policy in force). It names who asked, who may decide (the alias
  policy's approvers) and until when;
- a **decision** (its child) records APPROVED or REJECTED, who decided, when and why; or
  EXPIRED, where no one decided in time (``expire``).

Who decided comes from an identity the approver cannot choose, recorded with the decision and
checked against the alias policy wherever the decision is used (``approved_for``):

- ``airflow``: Airflow's authenticated user answered the request's human-in-the-loop task. On a
  signed store the record's signature (a key only Airflow's components hold) shows that Airflow's
  code wrote it; on an unsigned store the door that uses it confirms it against Airflow's own
  record of the answer (``attest``), or the decision is refused;
- ``key``: the approver signed the decision with their own Ed25519 key (``decide_signed``), whose
  public half the policy lists in ``approver_keys``.

A decision is used once: the alias history entry that uses it records it (promotion.py).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable
from typing import Any

from airflow_mlcrit.core.artifacts.refs import parse_ref, version_label
from airflow_mlcrit.core.gating.blessing import blesses, newest_judgement
from airflow_mlcrit.core.gating.policy import AliasPolicy, policy_of
from airflow_mlcrit.exceptions import ArtifactConflictError, ConfigError, GateFailedError, MlcritError

KIND = "approval"
REQUESTED, APPROVED, REJECTED, EXPIRED = "REQUESTED", "APPROVED", "REJECTED", "EXPIRED"
MOVE, POLICY = "move", "policy"  # what a request asks to approve
_BINDING = {
    MOVE: ("candidate", "candidate_digest", "alias", "blessing", "blessing_digest", "baseline", "forced"),
    POLICY: ("artifact", "alias", "policy", "policy_digest", "current_policy_digest"),
}


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _iso(t: dt.datetime) -> str:
    return t.astimezone(dt.timezone.utc).isoformat(timespec="seconds")


def _policy_requiring_approval(store: Any, key: str, alias: str) -> AliasPolicy:
    policy = policy_of(store, key, alias)
    if policy is None or policy.approvals == 0:
        raise ConfigError(
            f"the policy of {alias!r} of {key} asks for no approval, so there is nothing to request: set one "
            "with approvals and approvers (mlcrit aliases policy set) to require four eyes"
        )
    return policy


def _blessing_for(store: Any, candidate: Any, alias: str, blessing: str | None) -> Any:
    """The BLESSED blessing a request binds: ``blessing`` if given, else the candidate's newest
    judgement for ``alias``, which must be BLESSED."""
    newest = newest_judgement(store, candidate, alias)
    proof = store.resolve(blessing) if blessing else newest
    if proof is None or not blesses(proof, candidate.digest):
        what = f"{proof.ref} is {proof.metadata.get('decision')}" if proof is not None else "it has no blessing"
        raise GateFailedError(f"{candidate.ref} cannot be put up for approval: {what}; only a BLESSED candidate can")
    if newest is not None and (newest.created_at, newest.version) > (proof.created_at, proof.version):
        raise GateFailedError(
            f"{proof.ref} is superseded: the newest judgement of {candidate.ref} for {alias!r} is {newest.ref}"
        )
    return proof


def _open(policy: AliasPolicy, requested_by: str, now: dt.datetime | None) -> dict[str, Any]:
    if not requested_by or not requested_by.strip():
        raise ConfigError("an approval request needs the user who asks for it (requested_by)")
    if not [a for a in policy.approvers if a != requested_by]:
        raise ConfigError(
            f"{requested_by!r} asks, and is the policy's only approver: a second person must approve (four eyes)"
        )
    start = now or _now()
    return {
        "state": REQUESTED,
        "requested_by": requested_by,
        "requested_at": _iso(start),
        "expires_at": _iso(start + dt.timedelta(hours=policy.expires_after_hours)),
        "approvers": list(policy.approvers),
    }


def request_approval(
    store: Any,
    candidate: str,
    alias: str,
    *,
    requested_by: str,
    blessing: str | None = None,
    name: str | None = None,
    extra: dict[str, Any] | None = None,
    now: dt.datetime | None = None,
    forced: bool = False,
) -> Any:
    """Commit a request to approve moving ``alias`` to the blessed ``candidate``, to the approvers
    the alias's policy names; returns it. ``forced``: a forced move of a candidate without a
    blessing, where the policy asks approvals for forcing (``force_needs_approval``)."""
    target = store.resolve(candidate)
    key = f"{target.kind}/{target.name}"
    policy = _policy_requiring_approval(store, key, alias)
    if forced and not policy.force_needs_approval:
        raise ConfigError(f"the policy of {alias!r} of {key} asks no approval to force a move: nothing to request")
    proof = None if forced else _blessing_for(store, target, alias, blessing)
    metadata = {
        **_open(policy, requested_by, now),
        "subject": MOVE,
        "candidate": str(target.ref),
        "candidate_digest": target.digest,
        "alias": alias,
        "blessing": str(proof.ref) if proof else None,
        "blessing_digest": proof.digest if proof else None,
        "baseline": proof.metadata.get("baseline") if proof else None,
        "current": store.alias_version(key, alias),
        "forced": forced,
        **(extra or {}),
    }
    parents = [str(target.ref), *([str(proof.ref)] if proof else [])]
    return _commit(store, name or target.name, metadata, parents=parents)


def request_policy_change(
    store: Any,
    key: str,
    alias: str,
    policy: AliasPolicy | dict[str, Any] | None,
    *,
    requested_by: str,
    extra: dict[str, Any] | None = None,
    now: dt.datetime | None = None,
) -> Any:
    """Commit a request to approve changing the policy of ``alias`` to ``policy`` (None: remove
    it), to the approvers of the policy in force; returns it."""
    from airflow_mlcrit.core.artifacts.refs import parse_key

    _, name = parse_key(key)
    current = _policy_requiring_approval(store, key, alias)
    new = AliasPolicy.from_dict(policy) if isinstance(policy, dict) else policy
    metadata = {
        **_open(current, requested_by, now),
        "subject": POLICY,
        "artifact": key,
        "alias": alias,
        "policy": new.to_dict() if new is not None else None,
        "policy_digest": new.digest if new is not None else None,
        "current_policy_digest": current.digest,
        **(extra or {}),
    }
    return _commit(store, name, metadata, parents=[])


def _commit(store: Any, name: str, metadata: dict[str, Any], parents: list[str]) -> Any:
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


def _subject(md: dict[str, Any]) -> str:
    return md.get("subject", MOVE)


def _expires(md: dict[str, Any], ref: Any) -> dt.datetime:
    try:
        return dt.datetime.fromisoformat(md["expires_at"])
    except (KeyError, TypeError, ValueError):
        raise GateFailedError(f"{ref} has no valid expires_at ({md.get('expires_at')!r}): it is malformed") from None


def _still_valid(store: Any, request: Any, at: dt.datetime) -> None:
    """The checks a request must pass at the time it is decided, and again when it is used."""
    md = request.metadata
    if at > _expires(md, request.ref):
        raise GateFailedError(f"{request.ref} expired at {md['expires_at']}: request a new approval")
    if _subject(md) == POLICY:
        current = policy_of(store, md["artifact"], md["alias"])
        if current is None or current.digest != md["current_policy_digest"]:
            raise ArtifactConflictError(
                f"the policy of {md['alias']!r} of {md['artifact']} changed since {request.ref} was requested: "
                "request a new approval"
            )
        return
    candidate = store.resolve(md["candidate"])
    if candidate.digest != md["candidate_digest"]:
        raise GateFailedError(
            f"{request.ref} binds digest {md['candidate_digest']}, but {candidate.ref} has {candidate.digest}"
        )
    try:
        proof = None if md.get("forced") else _blessing_for(store, candidate, md["alias"], None)
    except GateFailedError as exc:
        raise GateFailedError(f"{request.ref} can no longer be approved: {exc}") from exc
    if proof is not None and (str(proof.ref) != md["blessing"] or proof.digest != md["blessing_digest"]):
        raise GateFailedError(
            f"{request.ref} binds {md['blessing']}, but the newest blessing of {candidate.ref} for "
            f"{md['alias']!r} is {proof.ref}: the request is superseded, request a new approval"
        )
    current = store.alias_version(f"{candidate.kind}/{candidate.name}", md["alias"])
    if current != md["current"]:
        raise ArtifactConflictError(
            f"{md['alias']!r} of {candidate.kind}/{candidate.name} moved from {version_label(md['current'])} to "
            f"{version_label(current)} since {request.ref} was requested: evaluate and gate {candidate.ref} again "
            "against it"
        )


def _check_decider(req: Any, user: str) -> None:
    md = req.metadata
    if user not in md["approvers"]:
        raise GateFailedError(f"{user!r} may not decide {req.ref}: its approvers are {', '.join(md['approvers'])}")
    if user == md["requested_by"]:
        raise GateFailedError(f"{user!r} requested {req.ref} and may not decide it: a second person must (four eyes)")


def decide(
    store: Any,
    request: str,
    *,
    user: str,
    approve: bool,
    reason: str,
    airflow_run: dict[str, Any],
    now: dt.datetime | None = None,
    extra: dict[str, Any] | None = None,
) -> Any:
    """Record ``user``'s answer to a pending request, as Airflow authenticated it: ``airflow_run``
    is the human-in-the-loop task ({dag_id, run_id, task_id, map_index}) that ``user`` answered.
    Only Airflow's side calls this (the approval operator); elsewhere, sign (``decide_signed``)."""
    if not isinstance(airflow_run, dict) or not {"dag_id", "run_id", "task_id"} <= set(airflow_run):
        raise ConfigError("a decision made in Airflow names the task that was answered (airflow_run)")
    req = store.resolve(request)
    _check_request(req)
    _check_decider(req, user)
    at = now or _now()
    check_decidable(store, req, approve=approve, reason=reason, now=at)
    identity = {"source": "airflow", "run": {"map_index": -1, **airflow_run}}
    return _record(store, req, APPROVED if approve else REJECTED, user, reason.strip(), at, extra, identity)


def public_key_hex(private_key: bytes) -> str:
    """The Ed25519 public key (hex) of a private key (32 raw bytes, their hex, or PEM)."""
    return _private_key(private_key).public_key().public_bytes_raw().hex()


def _private_key(data: bytes) -> Any:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    text = data.strip()
    try:
        if text.startswith(b"-----BEGIN"):
            key = load_pem_private_key(text, password=None)
        elif len(text) == 64:
            key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(text.decode()))
        else:
            key = Ed25519PrivateKey.from_private_bytes(text)
    except ValueError as exc:
        raise ConfigError(f"not an Ed25519 private key ({exc}): use mlcrit keys generate") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError("the key is not an Ed25519 private key: use mlcrit keys generate")
    return key


def generate_key() -> tuple[str, str]:
    """A new Ed25519 key pair as (private hex, public hex)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    return key.private_bytes_raw().hex(), key.public_key().public_bytes_raw().hex()


def _signed_message(metadata: dict[str, Any]) -> bytes:
    body = {k: v for k, v in metadata.items() if k != "identity"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return b"airflow-mlcrit/approval-decision/" + hashlib.sha256(canonical.encode()).hexdigest().encode()


def decide_signed(
    store: Any,
    request: str,
    *,
    private_key: bytes,
    approve: bool,
    reason: str,
    now: dt.datetime | None = None,
    extra: dict[str, Any] | None = None,
) -> Any:
    """Record an answer signed with the approver's own key: who decided is the user whose public
    key the alias policy lists, never a name the caller chooses."""
    req = store.resolve(request)
    _check_request(req)
    md = req.metadata
    key = _private_key(private_key)
    public = key.public_key().public_bytes_raw().hex()
    policy = policy_of(store, _artifact(md), md["alias"]) or AliasPolicy()
    users = [u for u, k in policy.approver_keys.items() if k == public]
    if not users:
        raise GateFailedError(
            f"the key {public[:16]}... is not listed in the policy of {md['alias']!r} of {_artifact(md)} "
            "(approver_keys): ask its owners to add your public key (mlcrit keys public)"
        )
    user = users[0]
    _check_decider(req, user)
    at = now or _now()
    check_decidable(store, req, approve=approve, reason=reason, now=at)

    def sign(metadata: dict[str, Any]) -> dict[str, Any]:
        return {"source": "key", "public_key": public, "signature": key.sign(_signed_message(metadata)).hex()}

    return _record(store, req, APPROVED if approve else REJECTED, user, reason.strip(), at, extra, sign)


def _artifact(md: dict[str, Any]) -> str:
    return md["artifact"] if _subject(md) == POLICY else md["candidate"].split("@")[0]


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
    problem = malformed(req)
    if problem:
        raise GateFailedError(f"{req.ref} is malformed: {problem}")


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
    if at <= _expires(req.metadata, req.ref):
        raise ConfigError(f"{req.ref} expires at {req.metadata['expires_at']}, not yet")
    return _record(store, req, EXPIRED, None, f"no decision before {req.metadata['expires_at']}", at, extra, None)


def _record(
    store: Any,
    req: Any,
    state: str,
    user: str | None,
    reason: str,
    at: dt.datetime,
    extra: dict[str, Any] | None,
    identity: dict[str, Any] | Callable[[dict[str, Any]], dict[str, Any]] | None,
) -> Any:
    md = req.metadata
    subject = _subject(md)
    metadata = {
        **{k: md.get(k) for k in _BINDING[subject]},
        "subject": subject,
        "state": state,
        "request": str(req.ref),
        "request_digest": req.digest,
        "decided_by": user,
        "decided_at": _iso(at),
        "reason": reason,
        **(extra or {}),
    }
    metadata["identity"] = identity(metadata) if callable(identity) else identity
    return _commit(store, req.name, metadata, parents=[str(req.ref)])


def check_identity(store: Any, decision: Any, policy: AliasPolicy, attest: Callable[[Any], None] | None) -> None:
    """Refuse a decision whose approver is not authenticated as the policy accepts (see the module
    docstring): a forged record names an approver, but cannot prove it."""
    md = decision.metadata
    identity = md.get("identity")
    user = md.get("decided_by")
    source = identity.get("source") if isinstance(identity, dict) else None
    if source == "key":
        listed = policy.approver_keys.get(user)
        if listed is None or listed != identity.get("public_key"):
            raise GateFailedError(
                f"{decision.ref} is signed by a key that the alias policy does not list for {user!r} "
                "(approver_keys): refused"
            )
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        try:
            Ed25519PublicKey.from_public_bytes(bytes.fromhex(listed)).verify(
                bytes.fromhex(str(identity.get("signature", ""))), _signed_message(md)
            )
        except (InvalidSignature, ValueError):
            raise GateFailedError(f"{decision.ref}: its signature by {user!r} does not verify: refused") from None
        return
    if source == "airflow":
        if store.signer is not None:
            return  # the record's own signature (checked on read) is a key only Airflow's components hold
        if attest is None:
            raise GateFailedError(
                f"{decision.ref} was decided in Airflow by {user!r}, which this unsigned store cannot prove by "
                "itself: use it where Airflow confirms the answer (the promote task of the same DAG run, the "
                "registry UI, or mlcrit with --airflow-url and $MLCRIT_AIRFLOW_TOKEN), or sign the store's records "
                "([mlcrit] signing_conn_id)"
            )
        attest(decision)
        return
    raise GateFailedError(
        f"{decision.ref} names no authenticated approver (it was not made through Airflow nor signed by an "
        "approver's key): refused"
    )


def _decision_for(store: Any, approval: str, subject: str) -> tuple[Any, Any]:
    decision = store.resolve(approval)
    md = decision.metadata
    if decision.kind != KIND or md.get("state") != APPROVED:
        raise GateFailedError(f"{decision.ref} is not an approval: it is {md.get('state')!r}")
    if _subject(md) != subject:
        raise GateFailedError(f"{decision.ref} approves a {_subject(md)}, not a {subject}")
    request = store.resolve(md["request"])
    parents = [p["ref"] for p in decision.parents]
    if parents != [str(request.ref)] or store.parents(decision.ref)[0].digest != request.digest:
        raise GateFailedError(f"{decision.ref} does not record {request.ref} as its request")
    if md.get("request_digest") != request.digest:
        raise GateFailedError(f"{decision.ref} does not bind its request's digest")
    if (first := decision_of(store, request)) is None or first.ref != decision.ref:
        raise GateFailedError(
            f"{decision.ref} is not the decision on {request.ref}: {first.ref if first else 'none'} is"
        )
    for key in _BINDING[subject]:
        if md.get(key) != request.metadata.get(key):
            raise GateFailedError(
                f"{decision.ref} names {key} {md.get(key)!r}, its request {request.metadata.get(key)!r}"
            )
    return decision, request


def _check_approver(decision: Any, request: Any, policy: AliasPolicy) -> None:
    user = decision.metadata["decided_by"]
    if user not in request.metadata["approvers"] or user == request.metadata["requested_by"]:
        raise GateFailedError(f"{decision.ref} was decided by {user!r}, who may not decide {request.ref}")
    if user not in policy.approvers:
        raise GateFailedError(
            f"{decision.ref} was decided by {user!r}, who is no longer an approver of the alias policy "
            f"({', '.join(policy.approvers) or 'none'})"
        )


def approved_for(
    store: Any,
    approval: str,
    candidate: Any,
    alias: str,
    *,
    policy: AliasPolicy,
    attest: Callable[[Any], None] | None = None,
    now: dt.datetime | None = None,
) -> Any:
    """The APPROVED decision ``approval`` if it allows moving ``alias`` to ``candidate`` now under
    ``policy``; raises GateFailedError (or ArtifactConflictError) naming what does not hold."""
    decision, request = _decision_for(store, approval, MOVE)
    md = decision.metadata
    if (md["candidate"], md["candidate_digest"], md["alias"]) != (str(candidate.ref), candidate.digest, alias):
        raise GateFailedError(
            f"{decision.ref} approves {md['candidate']} ({md['candidate_digest']}) for {md['alias']!r}, not "
            f"{candidate.ref} ({candidate.digest}) for {alias!r}"
        )
    _check_approver(decision, request, policy)
    check_identity(store, decision, policy, attest)
    _still_valid(store, request, now or _now())
    return decision


def approved_policy_change(
    store: Any,
    approval: str,
    key: str,
    alias: str,
    new: AliasPolicy | None,
    *,
    policy: AliasPolicy,
    attest: Callable[[Any], None] | None = None,
    now: dt.datetime | None = None,
) -> Any:
    """The APPROVED decision ``approval`` if it allows changing the policy of ``alias`` of ``key``
    from ``policy`` to ``new`` now; raises GateFailedError naming what does not hold."""
    decision, request = _decision_for(store, approval, POLICY)
    md = decision.metadata
    digest = new.digest if new is not None else None
    if (md["artifact"], md["alias"], md["policy_digest"]) != (key, alias, digest):
        raise GateFailedError(f"{decision.ref} approves another policy change ({md['artifact']}@{md['alias']})")
    _check_approver(decision, request, policy)
    check_identity(store, decision, policy, attest)
    _still_valid(store, request, now or _now())
    return decision


_REQUIRED = {
    MOVE: (
        "candidate",
        "candidate_digest",
        "alias",
        "requested_by",
        "requested_at",
        "expires_at",
        "approvers",
    ),
    POLICY: ("artifact", "alias", "requested_by", "requested_at", "expires_at", "approvers", "current_policy_digest"),
}


def malformed(request: Any) -> str | None:
    """What is wrong with a request's record (a field missing or of the wrong type), or None."""
    md = request.metadata
    subject = _subject(md)
    if subject not in _REQUIRED:
        return f"unknown subject {subject!r}"
    missing = [k for k in _REQUIRED[subject] if md.get(k) in (None, "")]
    if missing:
        return f"missing {', '.join(missing)}"
    if not isinstance(md["approvers"], list) or not all(isinstance(a, str) for a in md["approvers"]):
        return f"approvers is {md['approvers']!r}, not a list of user names"
    try:
        dt.datetime.fromisoformat(md["expires_at"]).astimezone(dt.timezone.utc)
    except (TypeError, ValueError):
        return f"expires_at is {md['expires_at']!r}, not a date"
    return None


def _moot(store: Any, request: Any) -> bool:
    """A request to move an alias to a candidate that the alias already holds (it got there by
    another approval, or forced): nothing is left to decide."""
    candidate, alias = request.metadata.get("candidate"), request.metadata.get("alias")
    if not candidate or not alias:
        return False
    target = parse_ref(candidate)
    return store.alias_version(target.key, alias) == target.version


def pending(store: Any, name: str | None = None, now: dt.datetime | None = None) -> list[dict[str, Any]]:
    """Every request without a decision (``name``: of one approval artifact), oldest first, each
    with whether it has expired. A request whose alias already holds its candidate is not
    pending. A record that cannot be read as a request is listed with its ``problem`` (and
    ``state`` MALFORMED) instead of stopping the listing."""
    keys = [f"{KIND}/{name}"] if name else [k for k in store.list_artifacts(KIND)]
    at = now or _now()
    out, bad = [], []
    for key in keys:
        for v in store.versions(key):
            ref = f"{key}@v{v}"
            try:
                m = store.resolve(ref)
                if m.metadata.get("state") != REQUESTED:
                    continue
                problem = malformed(m)
                if problem is None and decision_of(store, m) is None and not _moot(store, m):
                    expired = at > dt.datetime.fromisoformat(m.metadata["expires_at"])
                    out.append({"ref": str(m.ref), **m.metadata, "expired": expired})
            except MlcritError as exc:  # a damaged or forged record: named, never fatal to the list
                problem = str(exc)
            if problem is not None:
                bad.append({"ref": ref, "state": "MALFORMED", "problem": problem})
    return sorted(out, key=lambda r: r["requested_at"]) + bad
