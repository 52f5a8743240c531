"""OpenLineage data-quality facets (as plain dicts) from statistics and validation findings."""

from __future__ import annotations

from typing import Any

from airflow_mlcrit.core.lineage import facet


def quality_metrics(stats: dict[str, Any]) -> dict[str, Any]:
    """DataQualityMetrics input facet: row count and per-column nulls, distinct, min/max, quantiles."""
    columns = {}
    for name, col in stats["columns"].items():
        metrics: dict[str, Any] = {"nullCount": col["missing"], "count": col["rows"] - col["missing"]}
        if "distinct" in col:
            metrics["distinctCount"] = int(col["distinct"])
        if col["kind"] == "numeric" and col.get("count"):
            metrics.update(
                min=col["min"],
                max=col["max"],
                sum=col["mean"] * col["count"],
                quantiles={k: v for k, v in col["quantiles"].items()},
            )
        columns[name] = metrics
    return facet("dataQualityMetrics", rowCount=stats["rows"], columnMetrics=columns)


def schema_facet(stats: dict[str, Any]) -> dict[str, Any]:
    """OpenLineage schema facet: the columns as read, with their Arrow types and our kind."""
    fields = [
        {"name": name, "type": col["arrow_type"], "description": col["kind"]} for name, col in stats["columns"].items()
    ]
    return facet("schema", fields=fields)


def quality_assertions(findings: list[Any], checks_run: list[str], expectations: list[dict[str, Any]]) -> dict:
    """DataQualityAssertions input facet: one assertion per finding, per clean check and per expectation."""
    assertions = []
    failed_checks = {f.check for f in findings}
    for f in findings:
        a = {
            "assertion": f.check,
            "success": False,
            "severity": "error" if f.policy == "fail" else "warn",
            "expected": str(f.expected),
            "actual": str(f.observed),
            "description": f.message,
        }
        if f.column:
            a["column"] = f.column
        assertions.append(a)
    assertions += [{"assertion": c, "success": True} for c in checks_run if c not in failed_checks]
    for e in expectations:
        a = {"assertion": e["expectation_type"], "success": e["success"], "name": "great_expectations"}
        if e.get("column"):
            a["column"] = e["column"]
        assertions.append(a)
    return facet("dataQualityAssertions", assertions=assertions)


def previous_statistics(store: Any, dataset_ref: str) -> str | None:
    """The newest statistics artifact made from the version before ``dataset_ref``, if any."""
    manifest = store.resolve(dataset_ref)
    if manifest.version <= 1:
        return None
    earlier = [v for v in store.versions(f"{manifest.kind}/{manifest.name}") if v < manifest.version]
    for version in reversed(earlier):
        children = [c for c in store.children(manifest.ref.at(version)) if c.kind == "statistics"]
        if children:
            newest = max(children, key=lambda c: c.created_at)
            return str(newest.ref)
    return None
