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


def model_pin(store: Any, version: Any) -> dict[str, Any] | None:
    """The model a prompt version is pinned to: the one its newest BLESSED blessing was judged on
    (``model``, ``model_digest``, ``endpoint``, and ``pinned_by``: that blessing), or None when it
    was never blessed on a model."""
    proof = find_blessing(store, version.ref)
    if proof is None or not proof.metadata.get("model"):
        return None
    pin = {k: proof.metadata.get(k) for k in ("model", "model_digest", "endpoint")}
    return {**pin, "pinned_by": str(proof.ref)}


def check_model_pin(store: Any, version: Any, used: dict[str, Any], role: str, allow: bool) -> dict[str, Any] | None:
    """Refuse to evaluate a prompt version (``role``: candidate or baseline) on a model other than
    the one it is pinned to: its quality was shown on that model only. ``used``: the model this
    evaluation runs (``model``, ``model_digest``, ``endpoint``). With ``allow`` (the evaluation's
    explicit ``allow_model_change``) the change is returned, to be recorded in the evaluation, the
    blessing and lineage; None when nothing changed."""
    from airflow_mlcrit.exceptions import ConfigError

    pin = model_pin(store, version)
    if pin is None:
        return None
    if pin.get("model_digest") or used.get("model_digest"):
        same = pin.get("model_digest") == used.get("model_digest")
    else:  # hosted models: pinned by name and endpoint, as far as anything can pin them
        same = (pin.get("model"), pin.get("endpoint")) == (used.get("model"), used.get("endpoint"))
    if same:
        return None
    change = {
        "role": role,
        "prompt": str(version.ref),
        "pinned_model": pin["model"],
        "pinned_digest": pin.get("model_digest"),
        "pinned_by": pin["pinned_by"],
        "model": used.get("model"),
        "model_digest": used.get("model_digest"),
    }
    if allow:
        return change
    raise ConfigError(
        f"the {role} {version.ref} is pinned to the model {pin['model']}"
        + (f" ({pin['model_digest']})" if pin.get("model_digest") else "")
        + f" by {pin['pinned_by']}, but this evaluation runs it on {used.get('model')}: a prompt is judged with "
        "its model. Evaluate it on the pinned model, or set allow_model_change=True to judge it on this one (the "
        "change is recorded in the evaluation, its blessing and lineage)"
    )


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
