"""Validate OpenLineage events against the official JSON Schemas (vendored in ``openlineage-spec/``,
Apache-2.0, from the OpenLineage project) and each of our facets against the schema we ship."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from airflow_mlcrit.core.lineage import CUSTOM_FACETS, schema_path

OPENLINEAGE_SCHEMA = "https://openlineage.io/spec/2-0-2/OpenLineage.json"


def spec_dir() -> Any:
    """The vendored official schemas: OpenLineage.json and facets/*.json."""
    return resources.files("airflow_mlcrit.core.lineage").joinpath("openlineage-spec")


@cache
def _registry() -> Any:
    from referencing import Registry, Resource

    spec = spec_dir()
    files = [spec.joinpath("OpenLineage.json")]
    files += sorted((p for p in spec.joinpath("facets").iterdir() if p.name.endswith(".json")), key=lambda p: p.name)
    schemas = [json.loads(p.read_text()) for p in files]
    schemas += [json.loads(schema_path(key).read_text()) for key in CUSTOM_FACETS]
    return Registry().with_resources((s["$id"], Resource.from_contents(s)) for s in schemas)


def _validator(schema: dict[str, Any]) -> Any:
    from jsonschema import Draft202012Validator

    return Draft202012Validator(schema, registry=_registry(), format_checker=Draft202012Validator.FORMAT_CHECKER)


def _facets(event: dict[str, Any]) -> Any:
    yield from (event.get("run", {}).get("facets") or {}).items()
    yield from (event.get("job", {}).get("facets") or {}).items()
    for group, extra in (("inputs", "inputFacets"), ("outputs", "outputFacets")):
        for ds in event.get(group) or []:
            yield from (ds.get("facets") or {}).items()
            yield from (ds.get(extra) or {}).items()


def validate_facet(payload: dict[str, Any]) -> None:
    """Validate one facet payload against the schema its ``_schemaURL`` names."""
    _validator({"$ref": payload["_schemaURL"]}).validate(payload)


def validate_event(event: dict[str, Any]) -> set[str]:
    """Validate ``event`` against OpenLineage.json, and each facet against its own schema where
    that schema is known here (the official facets and ours; Airflow's own facets point at
    schemas in the Airflow repository). Raises jsonschema's ValidationError; returns the keys of
    the facets checked against their own schema."""
    registry = _registry()
    _validator(registry.contents(OPENLINEAGE_SCHEMA)).validate(event)
    checked = set()
    for key, facet in _facets(event):
        base = facet["_schemaURL"].split("#")[0]
        try:
            registry.contents(base)
        except Exception:
            continue
        validate_facet(facet)
        checked.add(key)
    return checked


def main(argv: list[str] | None = None) -> int:
    """``python -m airflow_mlcrit.core.lineage.validate EVENTS.jsonl...``: validate every event of
    OpenLineage file-transport logs; exit 1 naming the first invalid one."""
    import sys

    from jsonschema import ValidationError

    count = 0
    for path in argv if argv is not None else sys.argv[1:]:
        with open(path) as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                event = json.loads(line)
                try:
                    validate_event(event)
                except ValidationError as exc:
                    job = event.get("job", {}).get("name")
                    print(f"{path}:{number}: event of job {job} is invalid: {exc.message} at {list(exc.absolute_path)}")
                    return 1
                count += 1
    print(f"{count} OpenLineage events valid against the official schemas and the mlcrit facet schemas")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
