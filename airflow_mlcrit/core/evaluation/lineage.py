"""The evaluation's lineage facet, with no null that a serializer could strip.

OpenLineage's client drops every null (in dicts and lists) when it serializes an event, so a
metric that is undefined on a slice (ROC AUC with one class present, any metric on an empty
slice) must say so explicitly: ``{"undefined": true, "reason": ...}``.
"""

from __future__ import annotations

from typing import Any

from airflow_mlcrit.core.lineage import without_nulls

UNDEFINED_REASON = "not defined on this slice (e.g. a class is absent, or the slice is empty)"


def metric_interval(interval: dict[str, Any] | None) -> dict[str, Any]:
    """``{"value", "low", "high"}`` (the bounds only when there is an interval), or explicitly
    undefined."""
    if interval is None or interval.get("value") is None:
        return {"undefined": True, "reason": (interval or {}).get("reason") or UNDEFINED_REASON}
    out = {"value": interval["value"]}
    if interval.get("low") is not None and interval.get("high") is not None:
        out.update(low=interval["low"], high=interval["high"])
    elif interval.get("reason"):
        out["noInterval"] = interval["reason"]
    return out


def _metrics(block: dict[str, Any] | None) -> dict[str, Any] | None:
    return None if block is None else {m: metric_interval(iv) for m, iv in block.items()}


def evaluation_facet(result: dict[str, Any]) -> dict[str, Any]:
    """The fields of the ``mlcrit_evaluation`` facet of an evaluation result."""
    binding = result["binding"]
    fields = {
        "task": result["task"],
        "candidate": binding["candidate"],
        "candidateDigest": binding["candidate_digest"],
        "baseline": binding["baseline"],
        "baselineDigest": binding["baseline_digest"],
        "evalDataset": binding["dataset"],
        "evalDatasetDigest": binding["dataset_digest"],
        "confidence": result["confidence"],
        "replicates": result["replicates"],
        "intervalMethods": result.get("interval_methods"),
        "slices": [
            {
                "name": s["name"],
                "n": s["n"],
                "gated": s["gated"],
                "candidate": _metrics(s["candidate"]),
                "baseline": _metrics(s.get("baseline")),
                "difference": _metrics(s.get("difference")),
            }
            for s in result["slices"]
        ],
        "suites": [
            {"name": s["name"], "passRate": s["pass_rate"], "cases": s["cases"]}
            for s in (result.get("suites") or {}).get("candidate", [])
        ],
        "sensitivity": [
            {"perturbation": p["perturbation"], "flipRate": p["slices"][0]["flip_rate"] if p["slices"] else None}
            for p in result.get("sensitivity") or []
        ],
    }
    return without_nulls(fields)
