"""The alias ledger: each alias of an artifact IS its history, a hash chain of entries under
``<kind>/<name>/_aliases/<alias>/`` (``h000001.json``, ... and ``HEAD.json``), optionally signed.
The newest entry is where the alias points and the policy in force; a move is the exclusive
create of the next entry, so compare-and-swap and audit are one write. ``ArtifactStore``
delegates its alias methods here. These are mechanisms: the rules (blessing, approvals, who may
force) are enforced by ``core.gating.promotion``, the one caller that moves an alias."""

from __future__ import annotations

import dataclasses
import itertools
import json
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_mlcrit.core.artifacts.records import default_producer, digest_except, dumps, utcnow
from airflow_mlcrit.core.artifacts.refs import ArtifactRef, parse_key, validate_alias, version_label
from airflow_mlcrit.exceptions import (
    ArtifactConflictError,
    ArtifactIntegrityError,
    ArtifactNotFoundError,
    ConfigError,
)

if TYPE_CHECKING:
    from airflow_mlcrit.core.artifacts.store import ArtifactStore, Manifest

HEAD = "HEAD.json"  # of an alias history: the newest entry's number and digest, and the chain's base
WITNESS_MARKER = "_mlcrit/witness.json"  # written by the first witnessed move: clients without a witness refuse
# 2: entries are hash-chained (prev_digest, entry_digest) and _aliases/<alias>/HEAD.json names the newest.
HISTORY_FORMAT = 2
_HISTORY_ENTRY = re.compile(r"h([0-9]{6,})\.json")
_UNSET: Any = object()


def head_digest(kind: str, name: str, alias: str, head: Mapping[str, Any]) -> str:
    """What an alias's head record signs: its fields, bound to the alias it belongs to."""
    fields = {"kind": kind, "name": name, "alias": alias, **{k: head.get(k) for k in ("seq", "digest", "base")}}
    return digest_except(fields, "")


def entry_digest(fields: Mapping[str, Any]) -> str:
    """SHA-256 over every field of an alias history entry except ``entry_digest``; each entry
    carries its predecessor's as ``prev_digest``, which makes the history a hash chain."""
    return digest_except(fields, "entry_digest")


@dataclass(frozen=True)
class AliasMove:
    """One entry of an alias's append-only history."""

    seq: int
    kind: str
    name: str
    alias: str
    from_version: int | None
    to_version: int | None  # None: the alias is declared (it has a policy) but points at no version yet
    actor: str
    at: str
    reason: str
    forced: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    prev_digest: str | None = None  # entry_digest of entry seq - 1 (None for the first, or a repair)
    digest: str = ""  # this entry's entry_digest, set when read or written
    # The alias policy in force after this entry (core/gating/policy.py), carried forward by every
    # entry so that the newest one holds it under the chain and its signature. None: no policy.
    policy: dict[str, Any] | None = None

    @property
    def policy_change(self) -> bool:
        """Whether this entry changed the policy rather than moving the alias."""
        return bool(self.extra.get("policy_change"))

    def to_dict(self) -> dict[str, Any]:
        fields = {
            "format": HISTORY_FORMAT,
            "prev_digest": self.prev_digest,
            "seq": self.seq,
            "kind": self.kind,
            "name": self.name,
            "alias": self.alias,
            "from_version": self.from_version,
            "to_version": self.to_version,
            "actor": self.actor,
            "at": self.at,
            "reason": self.reason,
            "forced": self.forced,
            "extra": self.extra,
            # only where set: an entry without a policy hashes exactly as before policies existed
            **({"policy": self.policy} if self.policy is not None else {}),
        }
        return {**fields, "entry_digest": entry_digest(fields)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AliasMove:
        fields = {k: data[k] for k in cls.__dataclass_fields__ if k in data and k != "digest"}
        return cls(**fields, digest=data.get("entry_digest", ""))


class AliasLedger:
    """The alias histories of one store (see the module docstring)."""

    def __init__(self, store: ArtifactStore):
        self.store = store
        self._witnessed: bool | None = None  # whether WITNESS_MARKER exists (read once)

    def prefix(self, kind: str, name: str, alias: str) -> str:
        return f"{kind}/{name}/_aliases/{alias}"

    def seqs(self, kind: str, name: str, alias: str) -> list[int]:
        seqs = []
        for child in self.store.backend.list_children(self.prefix(kind, name, alias)):
            m = _HISTORY_ENTRY.fullmatch(child)
            if m:
                seqs.append(int(m.group(1)))
        return sorted(seqs)

    def _broken(self, kind: str, name: str, alias: str, problem: str) -> ArtifactIntegrityError:
        return ArtifactIntegrityError(
            f"alias {alias!r} of {kind}/{name}: {problem}. Its history is not trustworthy: promotions and "
            f"rollbacks refuse until an operator checks it and runs `mlcrit aliases repair {kind}/{name} {alias}`"
        )

    def entry(self, kind: str, name: str, alias: str, seq: int) -> AliasMove:
        """One entry, checked: readable, format 2, its fields hashing to its entry_digest, and
        stored where it says it belongs."""
        key = f"{self.prefix(kind, name, alias)}/h{seq:06d}.json"
        try:
            data = json.loads(self.store.backend.read_bytes(key))
        except FileNotFoundError:
            raise self._broken(kind, name, alias, f"history entry {seq} is missing") from None
        except (OSError, ValueError) as exc:
            raise self._broken(kind, name, alias, f"history entry {seq} is not readable JSON ({exc})") from None
        if not isinstance(data, dict) or data.get("format") != HISTORY_FORMAT:
            what = f"format {data.get('format')!r}" if isinstance(data, dict) else f"a JSON {type(data).__name__}"
            raise self._broken(kind, name, alias, f"history entry {seq} is {what}, not a format {HISTORY_FORMAT} entry")
        if data.get("entry_digest") != entry_digest(data):
            raise self._broken(
                kind, name, alias, f"history entry {seq} does not hash to its entry_digest: it was edited"
            )
        problem = self.store.signature_problem("alias-entry", data, data["entry_digest"])
        if problem:
            raise self._broken(kind, name, alias, f"history entry {seq} {problem}")
        try:
            move = AliasMove.from_dict(data)
        except TypeError as exc:
            raise self._broken(kind, name, alias, f"history entry {seq} is malformed ({exc})") from None
        if (move.seq, move.kind, move.name, move.alias) != (seq, kind, name, alias):
            raise self._broken(
                kind, name, alias, f"history entry {seq} names {move.kind}/{move.name}@{move.alias} entry {move.seq}"
            )
        return move

    def head_record(self, kind: str, name: str, alias: str) -> dict[str, Any] | None:
        try:
            head = json.loads(self.store.backend.read_bytes(f"{self.prefix(kind, name, alias)}/{HEAD}"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise self._broken(kind, name, alias, f"its head record is not readable JSON ({exc})") from None
        if not isinstance(head, dict) or not all(isinstance(head.get(k), int) for k in ("seq", "base")):
            raise self._broken(kind, name, alias, "its head record is malformed")
        problem = self.store.signature_problem("alias-head", head, head_digest(kind, name, alias, head))
        if problem:
            raise self._broken(kind, name, alias, f"its head record {problem}")
        return head

    def _chain(self, kind: str, name: str, alias: str, *, full: bool) -> list[AliasMove]:
        """The checked entries: from the head record's entry to the newest (bounded: what a read
        of the alias needs), or with ``full`` the whole chain since its base (1, or the last
        repair). Consecutive numbers, each entry's prev_digest the digest of the one before, the
        head record matching its entry: a deleted, edited or injected entry is an
        ArtifactIntegrityError naming the alias and the entry."""

        def broken(problem: str) -> ArtifactIntegrityError:
            return self._broken(kind, name, alias, problem)

        self.store.check_signing()
        # The head record first, then the listing: a move writes its entry before it advances the
        # head, so every entry a head names is listed after it. (The other order saw a racing
        # move's new head with the old listing: a false "entries were deleted".) A mismatch is
        # read once more before it is called tampering: two moves may land between the reads.
        for attempt in (1, 2):
            head = self.head_record(kind, name, alias)
            seqs = self.seqs(kind, name, alias)
            if len(seqs) <= 1 if head is None else bool(seqs) and seqs[-1] >= head["seq"]:
                break
            if attempt == 1:
                time.sleep(0.2)
        if not seqs:
            if head is not None:
                raise broken(f"its head record names entry {head['seq']}, but no entry exists")
            self._check_witness(kind, name, alias, [])
            return []
        newest = seqs[-1]
        if head is None:
            if newest > 1:  # only a first move can be caught between its entry and its head record
                raise broken(f"its head record is missing ({newest} entries)")
            head = {"seq": 1, "base": 1, "digest": None}
        if newest < head["seq"]:
            raise broken(f"its head record names entry {head['seq']}, but the newest is {newest}: entries were deleted")
        start = head["base"] if full else head["seq"]
        missing = sorted(set(range(start, newest + 1)) - set(seqs))
        if missing:
            raise broken(f"history entry {missing[0]} is missing")
        entries = [self.entry(kind, name, alias, s) for s in range(start, newest + 1)]
        if full and entries[0].prev_digest is not None:
            raise broken(f"history entry {start} links to an earlier entry, but starts the chain")
        for before, entry in itertools.pairwise(entries):
            if entry.prev_digest != before.digest:
                raise broken(f"history entry {entry.seq} does not link to entry {before.seq}: inserted or rewritten")
        at_head = entries[head["seq"] - start]
        if head["digest"] is not None and at_head.digest != head["digest"]:
            raise broken(f"history entry {at_head.seq} is not the one its head record names")
        self._check_witness(kind, name, alias, entries)
        return entries

    def _witness(self, writing: bool = False) -> Any:
        """The store's witness; a store whose moves were witnessed refuses a client without one
        (it would move the alias unseen, or read a rolled-back head as the truth)."""
        witness = self.store.witness
        if witness is None and self._witnessed is None:
            self._witnessed = self.store.backend.exists(WITNESS_MARKER)
        if witness is None and self._witnessed:
            raise ConfigError(
                f"the alias moves of {self.store.root_uri} are witnessed outside the store, and this client has no "
                "witness: set MLCRIT_WITNESS_URL (the CLI) or [mlcrit] witness_conn_id (Airflow)"
            )
        if witness is not None and writing and not self._witnessed:
            self.store.backend.create_exclusive(WITNESS_MARKER, dumps({"since": utcnow(), "witness": witness.url}))
            self._witnessed = True
        return witness

    def _check_witness(self, kind: str, name: str, alias: str, entries: list[AliasMove]) -> None:
        """Refuse a history whose newest entry is older than the newest the witness saw, or that
        holds another entry than it saw: entries deleted or rewritten in the bucket."""
        witness = self._witness()
        if witness is None:
            return
        seen = witness.newest(f"{kind}/{name}", alias)
        if seen is None:
            return
        seq, digest = seen
        newest = entries[-1].seq if entries else 0
        if seq > newest:
            raise self._broken(
                kind,
                name,
                alias,
                f"the witness outside the store saw entry {seq}, but the store's newest is "
                f"{newest or 'none'}: its head went backwards (entries were deleted)",
            )
        at = next((e for e in entries if e.seq == seq), None) or self.entry(kind, name, alias, seq)
        if at.digest != digest:
            raise self._broken(kind, name, alias, f"history entry {seq} is not the one the witness saw: rewritten")

    def head(self, kind: str, name: str, alias: str) -> AliasMove | None:
        entries = self._chain(kind, name, alias, full=False)
        return entries[-1] if entries else None

    def version(self, key: str, alias: str) -> int | None:
        kind, name = parse_key(key)
        head = self.head(kind, name, validate_alias(alias))
        return head.to_version if head else None

    def aliases(self, key: str, damaged: list[str] | None = None) -> dict[str, int]:
        """{alias: version} of ``key``. With ``damaged`` (a list), an alias whose history is damaged
        is left out and its problem appended, so one bad alias spoils only itself."""
        kind, name = parse_key(key)
        out = {}
        for alias in self.store.backend.list_children(f"{kind}/{name}/_aliases"):
            try:
                head = self.head(kind, name, alias)
            except ArtifactIntegrityError as exc:
                if damaged is None:
                    raise
                damaged.append(str(exc))
                continue
            if head is not None and head.to_version is not None:  # a declared alias points at nothing yet
                out[alias] = head.to_version
        return out

    def names(self, key: str) -> list[str]:
        """The aliases of ``key`` that have a history: set, or declared by a policy."""
        kind, name = parse_key(key)
        return sorted(self.store.backend.list_children(f"{kind}/{name}/_aliases"))

    def history(self, key: str, alias: str) -> list[AliasMove]:
        """Every move since the chain's base (its first entry, or the last repair), checked."""
        kind, name = parse_key(key)
        return self._chain(kind, name, validate_alias(alias), full=True)

    def verify(self) -> list[tuple[str, str, str | None]]:
        """(kind/name, alias, problem or None) for every alias in the store, each chain checked
        whole, and against the witness where there is one (also an alias the witness saw move
        whose history is gone from the store)."""
        found = {(key, alias) for key in self.store.list_artifacts() for alias in self.names(key)}
        witness = self._witness()
        if witness is not None:
            found |= set(witness.aliases())
        report = []
        for key, alias in sorted(found):
            kind, name = parse_key(key)
            try:
                self._chain(kind, name, alias, full=True)
                report.append((key, alias, None))
            except ArtifactIntegrityError as exc:
                report.append((key, alias, str(exc)))
        return report

    def move(
        self,
        ref: str | ArtifactRef,
        alias: str,
        *,
        reason: str,
        actor: str | None = None,
        expected: int | None = _UNSET,
        forced: bool = False,
        extra: Mapping[str, Any] | None = None,
        expected_seq: int | None = None,
    ) -> AliasMove:
        """Point ``alias`` at the committed version ``ref`` resolves to, by compare-and-swap.

        This is the ledger's mechanism, not a door: it checks the chain and the compare-and-swap,
        not the alias policy. Every door moves aliases through ``core.gating.promote`` /
        ``rollback``, which enforce the policy (tests/core/gating/test_doors.py checks that no
        other module calls this).

        ``expected`` is the version the caller believes the alias points at now (None: unset).
        Left out, the value read just before the write is expected, so a concurrent move still
        makes exactly one of the movers fail with ArtifactConflictError. ``expected_seq``: the
        newest entry the caller checked its rules against (0: none); a policy change or any move
        since then is a conflict.
        """
        target = self.store.resolve(ref)
        validate_alias(alias)
        if not reason or not reason.strip():
            raise ConfigError("moving an alias needs a reason: it is recorded in the alias history for audit")
        kind, name = target.kind, target.name
        chain, head = self._chain_for_write(kind, name, alias, expected_seq)
        current = head.to_version if head else None
        if expected is not _UNSET and expected != current:
            raise ArtifactConflictError(
                f"alias {alias!r} of {kind}/{name} points at {version_label(current)}, not the expected "
                f"{version_label(expected)}: someone moved it; re-read and retry"
            )
        move = self._new_move(
            target,
            alias,
            (head.seq if head else 0) + 1,
            actor,
            reason,
            from_version=current,
            forced=forced,
            extra=json.loads(json.dumps(dict(extra or {}))),
            prev_digest=head.digest if head else None,
            policy=head.policy if head else None,  # the policy carries forward
        )
        return self._append(move, chain[0].seq if chain else 1)  # a full chain starts at its base

    def _chain_for_write(
        self, kind: str, name: str, alias: str, expected_seq: int | None
    ) -> tuple[list[AliasMove], AliasMove | None]:
        chain = self._chain(kind, name, alias, full=True)  # a damaged history refuses every move
        head = chain[-1] if chain else None
        if expected_seq is not None and (head.seq if head else 0) != expected_seq:
            raise ArtifactConflictError(
                f"alias {alias!r} of {kind}/{name} changed while this move was checked (entry "
                f"{head.seq if head else 0}, not {expected_seq}): re-read and retry"
            )
        return chain, head

    def set_policy(
        self,
        key: str,
        alias: str,
        policy: Mapping[str, Any] | None,
        *,
        reason: str,
        actor: str | None = None,
        extra: Mapping[str, Any] | None = None,
        expected_seq: int | None = None,
    ) -> AliasMove:
        """Record ``policy`` (a dict, None to remove it) on ``alias`` as an entry of its history
        that leaves it where it points (or declares it, pointing nowhere yet). The ledger's
        mechanism: ``core.gating.policy``'s rules for who may change a policy are checked by
        ``core.gating.promotion.set_policy``, the door."""
        kind, name = parse_key(key)
        validate_alias(alias)
        if not reason or not reason.strip():
            raise ConfigError("changing an alias policy needs a reason: it is recorded in the alias history")
        chain, head = self._chain_for_write(kind, name, alias, expected_seq)
        current = head.to_version if head else None
        self.store.check_signing()
        move = AliasMove(
            seq=(head.seq if head else 0) + 1,
            kind=kind,
            name=name,
            alias=alias,
            from_version=current,
            to_version=current,
            actor=actor or default_producer()["user"],
            at=utcnow(),
            reason=reason,
            extra=json.loads(json.dumps({**dict(extra or {}), "policy_change": True})),
            prev_digest=head.digest if head else None,
            policy=json.loads(json.dumps(dict(policy))) if policy is not None else None,
        )
        return self._append(move, chain[0].seq if chain else 1)

    @staticmethod
    def _new_move(target: Manifest, alias: str, seq: int, actor: str | None, reason: str, **fields: Any) -> AliasMove:
        return AliasMove(
            seq=seq,
            kind=target.kind,
            name=target.name,
            alias=alias,
            to_version=target.version,
            actor=actor or default_producer()["user"],
            at=utcnow(),
            reason=reason,
            **fields,
        )

    def _append(self, move: AliasMove, base: int) -> AliasMove:
        """Create the entry (the compare-and-swap), then point the head record at it, then tell
        the witness."""
        self.store.check_signing(writing=True)
        witness = self._witness(writing=True)
        prefix = self.prefix(move.kind, move.name, move.alias)
        data = move.to_dict()
        signed = self.store.sign_record("alias-entry", data, data["entry_digest"])
        if not self.store.backend.create_exclusive(f"{prefix}/h{move.seq:06d}.json", dumps(signed)):
            raise ArtifactConflictError(
                f"alias {move.alias!r} of {move.kind}/{move.name} was moved concurrently by another writer; "
                "re-read and retry"
            )
        move = dataclasses.replace(move, digest=data["entry_digest"])
        # A slower writer of an older entry may overwrite this afterwards: readers accept a head
        # record behind the newest entry and check the chain from it forward.
        head = {"seq": move.seq, "digest": move.digest, "base": base}
        head = self.store.sign_record("alias-head", head, head_digest(move.kind, move.name, move.alias, head))
        self.store.backend.write_bytes(f"{prefix}/{HEAD}", dumps(head))
        if witness is not None:  # after the store: a witness ahead of the store would read as tampering
            witness.record(f"{move.kind}/{move.name}", move.alias, move.seq, move.digest, move.to_version)
        return move

    def repair(self, key: str, alias: str, *, to_version: int, reason: str, actor: str | None = None) -> AliasMove:
        """Start a new chain after damage an operator has examined: an entry numbered after every
        entry present (numbers are never reused), pointing the alias at ``to_version``, recording
        the problem found and why. The damaged entries stay in the store for forensics."""
        kind, name = parse_key(key)
        validate_alias(alias)
        target = self.store.resolve(ArtifactRef(kind, name, version=to_version))
        if not reason or not reason.strip():
            raise ConfigError("repairing an alias needs a reason: it is recorded in the new chain's first entry")
        try:
            self._chain(kind, name, alias, full=True)
            problem = None
        except ArtifactIntegrityError as exc:
            problem = str(exc)
        if problem is None:
            raise ConfigError(f"alias {alias!r} of {key} is intact: nothing to repair (use promote or rollback)")
        seqs = self.seqs(kind, name, alias)
        try:
            head_seq = (self.head_record(kind, name, alias) or {}).get("seq", 0)
        except ArtifactIntegrityError:
            head_seq = 0
        witness = self._witness()
        seen = witness.newest(key, alias) if witness is not None else None
        seq = max([head_seq, *seqs, seen[0] if seen else 0]) + 1  # numbers are never reused
        move = self._new_move(
            target,
            alias,
            seq,
            actor,
            reason,
            from_version=None,
            forced=True,
            extra={"repair": {"problem": problem}},
            policy=self.last_sound_policy(key, alias),
        )
        return self._append(move, seq)

    def last_sound_policy(self, key: str, alias: str) -> dict[str, Any] | None:
        """The policy of the newest entry that is sound on its own (its digest and signature), so
        that damaging a history and having it repaired does not drop the alias's policy."""
        kind, name = parse_key(key)
        for seq in reversed(self.seqs(kind, name, validate_alias(alias))):
            try:
                return self.entry(kind, name, alias, seq).policy
            except ArtifactIntegrityError:
                continue
        return None

    def rollback(
        self,
        key: str,
        alias: str,
        *,
        reason: str,
        to_version: int | None = None,
        actor: str | None = None,
        extra: Mapping[str, Any] | None = None,
        eligible: Callable[[int], bool] | None = None,
        forced: bool = False,
        expected_seq: int | None = None,
    ) -> AliasMove:
        """Move ``alias`` back: to ``to_version``, or to the newest version it pointed at before
        that was neither the current one nor rolled back from (so repeated rollbacks walk back),
        and, when ``eligible`` is given, for which it returns True."""
        kind, name = parse_key(key)
        history = self.history(key, alias)
        if not history or history[-1].to_version is None:
            raise ArtifactNotFoundError(f"alias {alias!r} of {key} has never been set: nothing to roll back")
        current = history[-1].to_version
        if to_version is None:
            rolled_back_from = {m.from_version for m in history if m.extra.get("rollback")}
            earlier = [
                m.to_version
                for m in reversed(history)
                if m.to_version is not None
                and m.to_version != current
                and m.to_version not in rolled_back_from
                and (eligible is None or eligible(m.to_version))
            ]
            if not earlier:
                raise ArtifactNotFoundError(
                    f"alias {alias!r} of {key} has no earlier "
                    + ("eligible (blessed) " if eligible else "")
                    + f"version to roll back to (it points at v{current}); pass an explicit version"
                )
            to_version = earlier[0]
        if to_version == current:
            raise ConfigError(f"alias {alias!r} of {key} already points at v{to_version}")
        return self.move(
            ArtifactRef(kind, name, version=to_version),
            alias,
            reason=reason,
            actor=actor,
            expected=current,
            forced=forced,
            extra={**dict(extra or {}), "rollback": True},
            expected_seq=history[-1].seq if expected_seq is None else expected_seq,
        )
