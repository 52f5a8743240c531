"""The blessing, read in one place: what a ``blessing`` artifact says about a version, found
through the children index (a blessing lists its candidate as a parent). The gate operator
writes blessings (operators/evaluation.py); promotion, approval, the branch operator and the
registry read them only through here."""

from __future__ import annotations

from typing import Any

BLESSED_KINDS = ("model", "adapter", "prompt")


def blesses(blessing: Any, digest: str) -> bool:
    """Whether the manifest ``blessing`` is a BLESSED blessing of exactly ``digest``."""
    return (
        blessing.kind == "blessing"
        and blessing.metadata.get("decision") == "BLESSED"
        and blessing.metadata.get("candidate_digest") == digest
    )


def find_blessing(store: Any, ref: Any, children: list[Any] | None = None) -> Any:
    """The newest BLESSED blessing of exactly this version's digest, or None. ``children``: the
    version's children when the caller listed them already."""
    target = store.resolve(ref)
    found = [c for c in (store.children(target.ref) if children is None else children) if blesses(c, target.digest)]
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


def promotable_blessing(store: Any, target: Any, alias: str) -> Any:
    """The BLESSED blessing that lets ``target`` move ``alias`` now (the newest judgement decides),
    or None: the one decision that promotion and an approval request share."""
    newest = newest_judgement(store, target, alias)
    if newest is not None:
        return newest if blesses(newest, target.digest) else None
    return find_blessing(store, target.ref)


BLESSING_FILE = "blessing.json"
MALFORMED = "MALFORMED"


def read_blessing(store: Any, ref: Any) -> dict[str, Any]:
    """A blessing's document for display. One that cannot be read (not JSON, not an object, its
    bytes not matching their digest) comes back as decision MALFORMED with the problem in its
    failures, so that one bad record is flagged where it is shown instead of failing the page or
    the listing around it. Decisions never read through here: promotion uses the manifest."""
    import json

    from airflow_mlcrit.exceptions import MlcritError

    try:
        doc = json.loads(store.read_bytes(ref, BLESSING_FILE))
        if not isinstance(doc, dict):
            raise ValueError(f"a JSON {type(doc).__name__}, not an object")
        if not isinstance(doc.get("checks", []), list) or not isinstance(doc.get("failures", []), list):
            raise ValueError("its checks or failures are not lists")
        return doc
    except (MlcritError, ValueError, UnicodeDecodeError) as exc:
        return {"decision": MALFORMED, "failures": [f"{ref} cannot be read: {exc}"], "checks": []}
