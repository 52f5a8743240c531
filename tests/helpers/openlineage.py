"""Validate OpenLineage events against the official JSON Schemas in ../shared/openlineage-spec
plus the facet schemas this package ships."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

from airflow_mlcrit.core.lineage import CUSTOM_FACETS, schema_path

SPEC_DIR = Path(__file__).resolve().parents[3] / "shared" / "openlineage-spec"


@cache
def _registry():
    from referencing import Registry, Resource

    schemas = [
        json.loads(p.read_text())
        for p in [SPEC_DIR / "OpenLineage.json", *sorted((SPEC_DIR / "facets").glob("*.json"))]
    ]
    schemas += [json.loads(schema_path(key).read_text()) for key in CUSTOM_FACETS]
    return Registry().with_resources((s["$id"], Resource.from_contents(s)) for s in schemas)


def _validator(schema: dict):
    from jsonschema import Draft202012Validator

    return Draft202012Validator(schema, registry=_registry(), format_checker=Draft202012Validator.FORMAT_CHECKER)


def _facets(event: dict):
    yield from (event.get("run", {}).get("facets") or {}).items()
    yield from (event.get("job", {}).get("facets") or {}).items()
    for group, extra in (("inputs", "inputFacets"), ("outputs", "outputFacets")):
        for ds in event.get(group) or []:
            yield from (ds.get("facets") or {}).items()
            yield from (ds.get(extra) or {}).items()


def validate_event(event: dict) -> set[str]:
    """Validate ``event`` against OpenLineage.json and each facet against its own schema when that
    schema is available here; return the keys of the facets checked against their own schema."""
    registry = _registry()
    main = registry.contents("https://openlineage.io/spec/2-0-2/OpenLineage.json")
    _validator(main).validate(event)
    checked = set()
    for key, facet in _facets(event):
        base = facet["_schemaURL"].split("#")[0]
        try:
            registry.contents(base)
        except Exception:
            continue  # e.g. Airflow's own facets, whose schemas live in the Airflow repo
        _validator({"$ref": facet["_schemaURL"]}).validate(facet)
        checked.add(key)
    return checked
