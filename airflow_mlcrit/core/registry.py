"""What the registry shows, read from the store: how a model's metrics and a dataset's statistics
evolved over its versions, the moves of its aliases, and the difference between two versions.

Plain Python over the store's public API (``mlcrit history``, ``mlcrit diff`` and the Airflow UI
plugin all read this). Every answer is bounded by the artifact's own history: its versions, their
children in the downstream index and its alias histories, never a listing of the whole store.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, fields
from typing import Any

from airflow_mlcrit.core.artifacts import ArtifactStore, Manifest, parse_ref
from airflow_mlcrit.exceptions import ConfigError

EVALUATION_FILE = "evaluation.json"
STATISTICS_FILE = "statistics.json"
DATASET_KINDS = ("dataset", "transformed_dataset", "quarantine")


@dataclass(frozen=True)
class AliasSpan:
    """A time an alias pointed at one version: from ``since`` until ``until`` (None: still does)."""

    alias: str
    version: int
    since: str
    until: str | None
    forced: bool
    actor: str
    reason: str


def alias_spans(store: ArtifactStore, key: str) -> list[AliasSpan]:
    """Every alias of ``key`` as the spans of time it pointed at each version, oldest first."""
    spans = []
    for alias in sorted(store.aliases(key)):
        # policy changes leave the alias where it points: a span is from one move to the next
        moves = [m for m in store.alias_history(key, alias) if not m.policy_change and m.to_version is not None]
        for move, after in zip(moves, [*moves[1:], None], strict=True):
            spans.append(
                AliasSpan(
                    alias, move.to_version, move.at, after.at if after else None, move.forced, move.actor, move.reason
                )
            )
    return sorted(spans, key=lambda s: (s.since, s.alias))


def _newest(manifests: list[Manifest]) -> Manifest | None:
    return max(manifests, key=lambda m: (m.created_at, m.kind, m.name, m.version), default=None)


def latest_evaluation(store: ArtifactStore, version: Manifest) -> Manifest | None:
    """The newest evaluation that judged ``version`` as its candidate (not as a baseline)."""
    ref = str(version.ref)
    return _newest([c for c in store.children(ref) if c.kind == "evaluation" and c.metadata.get("candidate") == ref])


def _blessing(store: ArtifactStore, evaluation: Manifest) -> dict[str, Any] | None:
    return judgement(store, _newest([c for c in store.children(evaluation.ref) if c.kind == "blessing"]))


def judgement(store: ArtifactStore, blessing: Manifest | None) -> dict[str, Any] | None:
    """A blessing as a verdict: its decision and the slices whose checks failed (None: none)."""
    from airflow_mlcrit.core.gating.blessing import read_blessing

    if blessing is None:
        return None
    doc = read_blessing(store, blessing.ref)
    failed = sorted({c["slice"] for c in doc.get("checks", []) if c.get("status") == "failed" and c.get("slice")})
    return {"ref": str(blessing.ref), "decision": doc.get("decision"), "failed_slices": failed}


def _metric(entry: dict[str, Any] | None) -> dict[str, Any] | None:
    """{value, low, high} of one metric (value None where it is undefined on the slice)."""
    if entry is None:
        return None
    return {"value": entry.get("value"), "low": entry.get("low"), "high": entry.get("high")}


def _version_row(m: Manifest) -> dict[str, Any]:
    return {
        "version": m.version,
        "ref": str(m.ref),
        "digest": m.digest,
        "created_at": m.created_at,
        "size": m.size,
        "producer": m.producer,
    }


def model_history(
    store: ArtifactStore,
    key: str,
    *,
    metric: str | None = None,
    slice_name: str | None = None,
    last: int | None = None,
) -> dict[str, Any]:
    """Per version of a model, adapter or prompt: its newest evaluation as the candidate (every
    slice's metrics with their intervals, and the difference from the baseline it was judged
    against), the gate's decision on it with the slices that failed, and the alias spans."""
    ref = parse_ref(key)
    key = ref.key
    # the newest ``last`` only: the cost follows what is shown, not the history's length
    versions = list(reversed(store.versions_window(key, last)[0])) if last else store.versions(key)
    if not versions:
        raise ConfigError(f"{key} has no committed version; `mlcrit artifacts list` shows what the store holds")
    rows, metrics, available, slices = [], set(), set(), []
    for v in versions:
        m = store.resolve(ref.at(v))
        row = _version_row(m) | {"evaluation": None, "baseline": None, "gate": None, "slices": []}
        ev = latest_evaluation(store, m)
        if ev is not None:
            doc = json.loads(store.read_bytes(ev.ref, EVALUATION_FILE))
            row["evaluation"] = str(ev.ref)
            row["baseline"] = ev.metadata.get("baseline")
            row["confidence"] = doc.get("confidence")
            row["gate"] = _blessing(store, ev)
            for s in doc["slices"]:
                if slice_name is not None and s["name"] != slice_name:
                    continue
                available.update(s.get("candidate") or {})
                if s["name"] not in slices:
                    slices.append(s["name"])
                chosen = {k: e for k, e in (s.get("candidate") or {}).items() if metric is None or k == metric}
                metrics.update(chosen)
                row["slices"].append(
                    {
                        "name": s["name"],
                        "n": s.get("n"),
                        "gated": s.get("gated"),
                        "candidate": {k: _metric(e) for k, e in chosen.items()},
                        "difference": {
                            k: _metric((s.get("difference") or {}).get(k)) for k in chosen if s.get("difference")
                        },
                    }
                )
        rows.append(row)
    if metric is not None and metric not in metrics:
        raise ConfigError(f"no evaluation of {key} has the metric {metric!r}; it has: {sorted(available)}")
    if slice_name is not None and not slices:
        raise ConfigError(f"no evaluation of {key} has the slice {slice_name!r}")
    return {
        "artifact": key,
        "versions": rows,
        "metrics": sorted(metrics),
        "slices": slices,
        "aliases": [s.__dict__ for s in alias_spans(store, key)],
    }


def newest_statistics(store: ArtifactStore, version: Manifest) -> Manifest | None:
    return _newest([c for c in store.children(version.ref) if c.kind == "statistics"])


def _column_summary(col: dict[str, Any]) -> dict[str, Any]:
    """The figures of one column's statistics that a reader compares across versions."""
    out = {"kind": col.get("kind"), "rows": col.get("rows"), "missing": col.get("missing")}
    numbers = col.get("words") if col.get("kind") == "text" else col
    for field in ("distinct", "top"):
        if field in col:
            out[field] = col[field]
    if numbers and "mean" in numbers:
        out |= {"mean": numbers["mean"], "quantiles": numbers.get("quantiles")}
        if col.get("kind") == "text":
            out["of"] = "words per text"
    return out


def dataset_history(store: ArtifactStore, key: str, *, last: int | None = None) -> dict[str, Any]:
    """Per version of a dataset: each column's statistics (missing, distinct, mean and quantiles,
    top values) from its newest statistics artifact, the drift of each column against the
    previous version that has statistics (JS divergence or L-infinity, and PSI), and the verdict
    of its newest validation."""
    from airflow_mlcrit.core.validation.drift import compare

    ref = parse_ref(key)
    key = ref.key
    versions = store.versions(key)
    if not versions:
        raise ConfigError(f"{key} has no committed version; `mlcrit artifacts list` shows what the store holds")
    rows, previous = [], None
    # one more than shown: the first shown version's drift is against the version before it
    for v in versions[-(last + 1) :] if last else versions:
        m = store.resolve(ref.at(v))
        row = _version_row(m) | {"statistics": None, "columns": {}, "drift": {}, "validation": None}
        stats_m = newest_statistics(store, m)
        if stats_m is not None:
            stats = json.loads(store.read_bytes(stats_m.ref, STATISTICS_FILE))
            row["statistics"] = str(stats_m.ref)
            row["rows"] = stats.get("rows")
            row["columns"] = {name: _column_summary(col) for name, col in stats["columns"].items()}
            if previous is not None:
                row["drift_against"] = previous[0]
                for name in stats["columns"]:
                    d = compare(previous[1], stats, name)
                    if d is not None:
                        row["drift"][name] = _drift(d)
            previous = (str(m.ref), stats)
        report = _newest([c for c in store.children(m.ref) if c.kind == "validation_report"])
        limits = _drift_limits(store, report)
        if report is not None:
            row["validation"] = {"ref": str(report.ref), "status": report.metadata.get("status")}
        for name, d in row["drift"].items():
            mine = {**limits["drift_thresholds"], **limits["column_thresholds"].get(name, {})}
            over = [k for k, v in (("value", d["measure"]), ("psi", "psi")) if _above(d.get(k), mine.get(v))]
            d["limits"] = {d["measure"]: mine.get(d["measure"]), "psi": mine.get("psi")}
            d["over"] = over
        rows.append(row)
    if last and len(rows) > last:
        rows = rows[-last:]
    return {"artifact": key, "versions": rows, "aliases": [s.__dict__ for s in alias_spans(store, key)]}


def history(
    store: ArtifactStore,
    key: str,
    *,
    metric: str | None = None,
    slice_name: str | None = None,
    last: int | None = None,
) -> dict:
    """A dataset's statistics over its versions, or a model's (adapter's, prompt's) metrics; with
    ``last``, only the newest ``last`` versions."""
    kind = parse_ref(key).kind
    if last is not None and last < 1:
        raise ConfigError(f"--last must be 1 or more, got {last}")
    if kind in DATASET_KINDS:
        if metric or slice_name:
            raise ConfigError(f"--metric and --slice apply to evaluated artifacts, not to a {kind}")
        return dataset_history(store, key, last=last)
    return model_history(store, key, metric=metric, slice_name=slice_name, last=last)


def diff(store: ArtifactStore, a: str, b: str) -> dict[str, Any]:
    """Two versions of one artifact side by side: for datasets each column's statistics and the
    drift from ``a`` to ``b``; for anything evaluated, each slice's metrics (with intervals) and
    the change from ``a`` to ``b``, on one golden set where an evaluation judged one against the
    other (``same_data``), else from each one's newest evaluation. Both: what each was made from
    (``parents``: the lineage diff) and its recorded metadata (``metadata``: the config diff)."""
    ma, mb = store.resolve(a), store.resolve(b)
    if (ma.kind, ma.name) != (mb.kind, mb.name):
        raise ConfigError(f"diff compares two versions of one artifact, got {ma.ref} and {mb.ref}")
    out: dict[str, Any] = {"artifact": f"{ma.kind}/{ma.name}", "a": _version_row(ma), "b": _version_row(mb)}
    pa, pb = ({p["ref"] for p in m.parents} for m in (ma, mb))
    out["parents"] = {"both": sorted(pa & pb), "only_a": sorted(pa - pb), "only_b": sorted(pb - pa)}
    out["metadata"] = [
        {"field": k, "a": ma.metadata.get(k), "b": mb.metadata.get(k)}
        for k in sorted(set(ma.metadata) | set(mb.metadata))
        if ma.metadata.get(k) != mb.metadata.get(k)
    ]
    if ma.kind in DATASET_KINDS:
        return out | _diff_statistics(store, ma, mb)
    return out | _diff_metrics(store, ma, mb)


def _documents(store: ArtifactStore, versions: tuple[Manifest, ...], find: Any, filename: str, missing: str) -> list:
    """(ref, parsed ``filename``) of the artifact ``find`` picks for each version."""
    out = []
    for m in versions:
        found = find(store, m)
        if found is None:
            raise ConfigError(f"{m.ref} has no {missing}")
        out.append((str(found.ref), json.loads(store.read_bytes(found.ref, filename))))
    return out


def _drift_limits(store: ArtifactStore, report: Manifest | None) -> dict[str, Any]:
    """The drift limits a version was validated with (its newest validation report's config), or
    ValidationConfig's defaults where it was not validated."""
    from airflow_mlcrit.core.validation.validate import REPORT_FILE, ValidationConfig

    defaults = {f.name: f.default_factory() for f in fields(ValidationConfig) if f.name.endswith("_thresholds")}
    cfg: dict[str, Any] = {}
    if report is not None:
        cfg = json.loads(store.read_bytes(report.ref, REPORT_FILE)).get("config") or {}
    return {k: cfg.get(k, v) for k, v in defaults.items()}


def _above(value: float | None, limit: float | None) -> bool:
    return value is not None and limit is not None and not math.isnan(value) and value > limit


def _drift(d: dict[str, Any] | None) -> dict[str, Any] | None:
    return {"measure": d["measure"], "value": d.get(d["measure"]), "psi": d["psi"]} if d else None


def _diff_statistics(store: ArtifactStore, ma: Manifest, mb: Manifest) -> dict[str, Any]:
    from airflow_mlcrit.core.validation.drift import compare

    missing = "statistics: run ComputeStatisticsOperator on it first"
    (ref_a, sa), (ref_b, sb) = _documents(store, (ma, mb), newest_statistics, STATISTICS_FILE, missing)
    columns = []
    for name in sorted(set(sa["columns"]) | set(sb["columns"])):
        ca, cb = sa["columns"].get(name), sb["columns"].get(name)
        d = compare(sa, sb, name)
        columns.append(
            {
                "column": name,
                "a": _column_summary(ca) if ca else None,
                "b": _column_summary(cb) if cb else None,
                "drift": _drift(d),
            }
        )
    return {"what": "statistics", "statistics": [ref_a, ref_b], "rows": [sa["rows"], sb["rows"]], "columns": columns}


def paired_evaluation(store: ArtifactStore, ma: Manifest, mb: Manifest) -> tuple[Manifest, bool] | None:
    """The newest evaluation that scored both versions on one golden set, one as the candidate
    and the other as its baseline: (evaluation, True when ``ma`` was the candidate)."""
    found = []
    for cand, base, flipped in ((mb, ma, False), (ma, mb, True)):
        for c in store.children(cand.ref):
            md = c.metadata
            if c.kind == "evaluation" and md.get("candidate") == str(cand.ref) and md.get("baseline") == str(base.ref):
                found.append((c, flipped))
    return max(found, key=lambda x: (x[0].created_at, x[0].version), default=None)


def _flip(entry: dict[str, Any] | None, flipped: bool) -> dict[str, Any] | None:
    """A difference (candidate - baseline) as b - a."""
    if entry is None or not flipped:
        return entry
    neg = {k: (-entry[k] if entry.get(k) is not None else None) for k in ("value", "low", "high")}
    return {"value": neg["value"], "low": neg["high"], "high": neg["low"]}


def _diff_metrics(store: ArtifactStore, ma: Manifest, mb: Manifest) -> dict[str, Any]:
    """Each slice's metrics of the two versions. Where one evaluation scored both on one golden set
    (a candidate judged against the other as its baseline) those figures and their paired
    difference, with its interval; otherwise each version's newest evaluation, on its own data,
    and ``same_data`` False: a change between those mixes the models with the data."""
    paired = paired_evaluation(store, ma, mb)
    if paired is not None:
        ev, flipped = paired
        doc = json.loads(store.read_bytes(ev.ref, EVALUATION_FILE))
        rows = []
        for s in doc["slices"]:
            cand, base = s.get("candidate") or {}, s.get("baseline") or {}
            a_side, b_side = (cand, base) if flipped else (base, cand)
            for metric in sorted(cand):
                change = _flip(_metric((s.get("difference") or {}).get(metric)), flipped)
                rows.append(
                    {
                        "slice": s["name"],
                        "n": s.get("n"),
                        "metric": metric,
                        "a": _metric(a_side.get(metric)),
                        "b": _metric(b_side.get(metric)),
                        "change": None if change is None else change["value"],
                        "change_interval": None if change is None else [change["low"], change["high"]],
                    }
                )
        return {"what": "metrics", "same_data": True, "evaluations": [str(ev.ref)], "metrics": rows}
    missing = "evaluation as a candidate: evaluate it first"
    (ref_a, ea), (ref_b, eb) = _documents(store, (ma, mb), latest_evaluation, EVALUATION_FILE, missing)
    by_a = {s["name"]: s for s in ea["slices"]}
    by_b = {s["name"]: s for s in eb["slices"]}
    rows = []
    for name in [*by_a, *(n for n in by_b if n not in by_a)]:
        sa, sb = by_a.get(name) or {}, by_b.get(name) or {}
        for metric in sorted(set(sa.get("candidate") or {}) | set(sb.get("candidate") or {})):
            va, vb = _metric((sa.get("candidate") or {}).get(metric)), _metric((sb.get("candidate") or {}).get(metric))
            change = None
            if va and vb and va["value"] is not None and vb["value"] is not None:
                change = vb["value"] - va["value"]
            rows.append({"slice": name, "metric": metric, "a": va, "b": vb, "change": change, "change_interval": None})
    return {"what": "metrics", "same_data": False, "evaluations": [ref_a, ref_b], "metrics": rows}
