"""Alias policies: the rules an alias's moves obey, kept in its hash-chained history.

Every history entry carries the policy in force after it (``AliasMove.policy``), so the newest
entry holds it under the same chain and signature as the alias itself. A policy change is an
entry of its own (``policy_change``) that leaves the alias where it is, made under the approvals
of the policy it replaces. ``promote`` and ``rollback`` (promotion.py) read the policy here and
enforce it, whichever door called them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from airflow_mlcrit.exceptions import ConfigError


@dataclass(frozen=True)
class AliasPolicy:
    """What moving one alias requires.

    :param require_blessing: a move needs a BLESSED blessing of the candidate's digest.
    :param approvals: how many people of ``approvers`` must approve a move (0: none), each other
        than the person who asked for it.
    :param approvers: who may approve: user names as Airflow's auth manager knows them.
    :param approver_keys: ``{user: Ed25519 public key}`` (hex of the 32 raw bytes) for approvers who
        decide outside Airflow: their decisions are signed with their own key (``mlcrit approve
        --key``) and checked against this list.
    :param force_by: who may force a move past the blessing rule; None: anyone allowed to move the
        alias, ``()``: nobody.
    :param force_needs_approval: a forced move needs the approvals too.
    :param rollback_needs_approval: a rollback needs the approvals too (by default a rollback to a
        version the alias held and that is still blessed needs none: it was approved then).
    :param expires_after_hours: how long an approval request stays open.
    """

    require_blessing: bool = True
    approvals: int = 0
    approvers: tuple[str, ...] = ()
    approver_keys: dict[str, str] = field(default_factory=dict)
    force_by: tuple[str, ...] | None = None
    force_needs_approval: bool = False
    rollback_needs_approval: bool = False
    expires_after_hours: float = 72.0

    def __post_init__(self) -> None:
        for name in ("require_blessing", "force_needs_approval", "rollback_needs_approval"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"AliasPolicy.{name} must be true or false, got {getattr(self, name)!r}")
        if isinstance(self.approvals, bool) or not isinstance(self.approvals, int) or self.approvals < 0:
            raise ConfigError(f"AliasPolicy.approvals must be a whole number >= 0, got {self.approvals!r}")
        approvers = _names("approvers", self.approvers)
        object.__setattr__(self, "approvers", approvers)
        if self.force_by is not None:
            object.__setattr__(self, "force_by", _names("force_by", self.force_by))
        if self.approvals > len(approvers):
            raise ConfigError(
                f"AliasPolicy.approvals is {self.approvals}, but approvers names {len(approvers)} user(s): "
                "list at least as many approvers as approvals are required"
            )
        keys = dict(self.approver_keys or {})
        for user, key in keys.items():
            if user not in approvers:
                raise ConfigError(f"AliasPolicy.approver_keys names {user!r}, who is not one of the approvers")
            if not (isinstance(key, str) and len(key) == 64 and all(c in "0123456789abcdef" for c in key)):
                raise ConfigError(
                    f"AliasPolicy.approver_keys[{user!r}] must be an Ed25519 public key as 64 lowercase hex "
                    "characters (mlcrit keys generate prints one)"
                )
        object.__setattr__(self, "approver_keys", dict(sorted(keys.items())))
        hours = self.expires_after_hours
        if isinstance(hours, bool) or not isinstance(hours, int | float) or not hours > 0:
            raise ConfigError(f"AliasPolicy.expires_after_hours must be > 0, got {hours!r}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["approvers"] = list(self.approvers)
        d["force_by"] = None if self.force_by is None else list(self.force_by)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AliasPolicy:
        if not isinstance(data, dict):
            raise ConfigError(f"an alias policy must be a JSON object, got {type(data).__name__}")
        unknown = sorted(set(data) - set(cls.__dataclass_fields__))
        if unknown:
            raise ConfigError(f"unknown alias policy field(s) {unknown}; valid: {sorted(cls.__dataclass_fields__)}")
        d = dict(data)
        for name in ("approvers", "force_by"):
            if isinstance(d.get(name), list):
                d[name] = tuple(d[name])
        return cls(**d)

    @property
    def digest(self) -> str:
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()

    def may_force(self, actor: str) -> bool:
        return self.force_by is None or actor in self.force_by


def _names(field_name: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    names = tuple(value or ())
    if not all(isinstance(n, str) and n.strip() and n == n.strip() for n in names):
        raise ConfigError(f"AliasPolicy.{field_name} must be user names, got {value!r}")
    if len(set(names)) != len(names):
        raise ConfigError(f"AliasPolicy.{field_name} names a user twice: {list(names)}")
    return names


DEFAULT = AliasPolicy()  # an alias without a policy: a blessing is required, nothing else


def policy_of(store: Any, key: str, alias: str) -> AliasPolicy | None:
    """The policy in force on ``alias`` of ``key`` (the newest history entry's), or None."""
    history = store.alias_history(key, alias)
    return policy_in(history)


def policy_in(history: list[Any]) -> AliasPolicy | None:
    """The policy an alias history's newest entry carries, or None."""
    if not history or history[-1].policy is None:
        return None
    return AliasPolicy.from_dict(history[-1].policy)


def known_aliases(store: Any, kind: str) -> list[str]:
    """Every alias that any artifact of ``kind`` has (set or declared by a policy)."""
    found: set[str] = set()
    for key in store.list_artifacts(kind):
        found.update(store.alias_names(key))
    return sorted(found)
