"""Artifact kinds, names and the `kind/name@selector` reference syntax."""

from __future__ import annotations

import re
from dataclasses import dataclass

from airflow_mlcrit.exceptions import InvalidReferenceError

KINDS = frozenset(
    {
        "dataset",
        "statistics",
        "schema",
        "validation_report",
        "quarantine",
        "transformed_dataset",
        "transform_contract",
        "prompt",
        "suite",
        "base_model",
        "adapter",
        "model",
        "checkpoint",
        "evaluation",
        "blessing",
        "approval",
    }
)
NAME_PATTERN = r"[a-z0-9][a-z0-9._-]*"
MAX_NAME_LENGTH = 128
_NAME_RE = re.compile(NAME_PATTERN)
_VERSION_RE = re.compile(r"v([0-9]+)")
LATEST = "latest"


def validate_name(value: object, what: str = "name") -> str:
    """Return ``value`` if it is a valid artifact/alias name, else raise InvalidReferenceError."""
    if not isinstance(value, str) or not value:
        raise InvalidReferenceError(
            f"artifact {what} must be a non-empty string matching {NAME_PATTERN!r}, got {value!r}"
        )
    if len(value) > MAX_NAME_LENGTH:
        raise InvalidReferenceError(
            f"artifact {what} {value[:40]!r}... is {len(value)} characters; the limit is "
            f"{MAX_NAME_LENGTH} characters matching {NAME_PATTERN!r}"
        )
    if not _NAME_RE.fullmatch(value) or ".." in value:
        raise InvalidReferenceError(
            f"invalid artifact {what} {value!r}: use lowercase letters, digits, '.', '_' and '-', "
            f"starting with a letter or digit (pattern {NAME_PATTERN!r}, no '..')"
        )
    return value


def validate_kind(value: object) -> str:
    if value not in KINDS:
        raise InvalidReferenceError(f"unknown artifact kind {value!r}: use one of {', '.join(sorted(KINDS))}")
    return value  # type: ignore[return-value]


def validate_alias(value: object) -> str:
    validate_name(value, "alias")
    # 'v' then a digit or a sign reads like a version (v1.0, v-1, v2rc): reserved with v<N>
    if value == LATEST or re.match(r"v[0-9+-]", value):  # type: ignore[arg-type]
        raise InvalidReferenceError(
            f"alias {value!r} is reserved: 'latest' and names like 'v<N>' select or read like versions; "
            "choose another alias name"
        )
    return value  # type: ignore[return-value]


@dataclass(frozen=True)
class ArtifactRef:
    """A parsed reference. Exactly one of ``version`` / ``alias`` is set, or neither (= latest)."""

    kind: str
    name: str
    version: int | None = None
    alias: str | None = None

    def __post_init__(self) -> None:
        validate_kind(self.kind)
        validate_name(self.name)
        if self.version is not None and (self.version < 1 or self.alias is not None):
            raise InvalidReferenceError(f"invalid version {self.version!r} in reference to {self.key}")
        if self.alias is not None:
            validate_alias(self.alias)

    @property
    def key(self) -> str:
        """``kind/name``: the artifact without a version selector."""
        return f"{self.kind}/{self.name}"

    @property
    def selector(self) -> str:
        if self.version is not None:
            return f"v{self.version}"
        return self.alias or LATEST

    @property
    def is_pinned(self) -> bool:
        return self.version is not None

    def at(self, version: int) -> ArtifactRef:
        return ArtifactRef(self.kind, self.name, version=version)

    def __str__(self) -> str:
        return f"{self.key}@{self.selector}"


def parse_ref(ref: str | ArtifactRef, *, default_selector: str | None = LATEST) -> ArtifactRef:
    """Parse ``kind/name``, ``kind/name@v3``, ``kind/name@latest`` or ``kind/name@<alias>``.

    A reference without ``@`` means ``@latest`` unless ``default_selector`` is None, in which
    case the selector is required.
    """
    if isinstance(ref, ArtifactRef):
        return ref
    if not isinstance(ref, str):
        raise InvalidReferenceError(f"artifact reference must be a string like 'model/name@v3', got {ref!r}")
    body, sep, selector = ref.partition("@")
    if not sep:
        if default_selector is None:
            raise InvalidReferenceError(
                f"artifact reference {ref!r} needs a version selector: '{ref}@v<N>', '@latest' or '@<alias>'"
            )
        selector = default_selector
    parts = body.split("/")
    if len(parts) != 2:
        raise InvalidReferenceError(
            f"invalid artifact reference {ref!r}: expected 'kind/name[@v<N>|@latest|@<alias>]' "
            f"with a name matching {NAME_PATTERN!r} (no '/')"
        )
    kind, name = parts
    if selector == LATEST:
        return ArtifactRef(kind, name)
    match = _VERSION_RE.fullmatch(selector)
    if match:
        if len(match.group(1)) > 9:  # a version path is v%06d; no store reaches a billion versions
            raise InvalidReferenceError(f"invalid version in {ref[:80]!r}: more than 9 digits")
        version = int(match.group(1))
        if version < 1:
            raise InvalidReferenceError(f"invalid version 'v{version}' in {ref!r}: versions start at v1")
        return ArtifactRef(kind, name, version=version)
    return ArtifactRef(kind, name, alias=selector)


def version_label(version: int | None) -> str:
    """How messages name a version an alias points at: ``v3``, or ``nothing`` (unset)."""
    return f"v{version}" if version else "nothing"


def parse_key(key: str) -> tuple[str, str]:
    """Parse ``kind/name`` (no selector) into its validated parts."""
    ref = parse_ref(key)
    if "@" in key:
        raise InvalidReferenceError(f"expected 'kind/name' without a selector, got {key!r}")
    return ref.kind, ref.name
