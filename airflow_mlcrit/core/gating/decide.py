"""decide(): judge an evaluation against thresholds; anything unproven is NOT_BLESSED.

Threshold kinds (one dict each, told apart by their keys):

- absolute: ``{"metric": "accuracy", "min": 0.8}`` or ``"max"``; ``"use_ci": true`` judges the
  interval bound (lower for min, upper for max) instead of the point value.
- change vs baseline: ``{"metric": "accuracy", "change": "superiority" | "non_inferiority",
  "margin": 0.01, "relative": false}``, judged on the paired interval of the difference:
  superiority needs its lower bound above +margin, non-inferiority above -margin (mirrored for
  metrics where lower is better).
- cross-slice parity: ``{"metric": "accuracy", "max_gap": 0.05, "slices": {"spec": "region"}}``.
- sensitivity: ``{"max_flip_rate": 0.1, "perturbation": "typos"}`` (all measured ones if left out).
- suites: ``{"min_pass_rate": 0.9, "suite": "edge-cases", "test": "negation"}`` (optional names).
- better than a constant: ``{"better_than": "majority"}``: the paired interval of candidate
  accuracy minus the accuracy of always answering the eval set's majority class lies above 0.

Always judged, without a threshold: a prompt's unparsed generations (``unparsed_rate`` at most
``GateConfig.max_unparsed_rate`` on the overall slice, unless a threshold names that metric), and
a class the candidate never predicts (a warning).

``slices``: ``"overall"`` (default), ``"all"`` (every gated slice), a list of slice names, or
``{"spec": "region"}`` (every slice of that spec).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from airflow_mlcrit.core.configbase import Config, require
from airflow_mlcrit.core.evaluation.slicing import OVERALL
from airflow_mlcrit.exceptions import ConfigError, DataValidationError, some

_KINDS = {
    "absolute": ("min", "max"),
    "change": ("change",),
    "parity": ("max_gap",),
    "sensitivity": ("max_flip_rate",),
    "suite": ("min_pass_rate",),
    "majority": ("better_than",),
}
_ALLOWED = {
    "absolute": {"metric", "min", "max", "use_ci", "slices"},
    "change": {"metric", "change", "margin", "relative", "slices", "correction"},
    "parity": {"metric", "max_gap", "slices"},
    "sensitivity": {"max_flip_rate", "perturbation", "slices"},
    "suite": {"min_pass_rate", "suite", "test"},
    "majority": {"better_than", "slices"},
}


def threshold_kind(t: Any, where: str) -> str:
    if not isinstance(t, dict):
        raise ConfigError(f"{where} must be a dict, got {t!r}")
    kinds = [k for k, keys in _KINDS.items() if any(key in t for key in keys)]
    if len(kinds) != 1:
        raise ConfigError(
            f"{where}: give exactly one of min/max, change, max_gap, max_flip_rate, min_pass_rate, better_than"
        )
    kind = kinds[0]
    unknown = sorted(set(t) - _ALLOWED[kind])
    if unknown:
        raise ConfigError(
            f"{where}: unknown field(s) {unknown} for a {kind} threshold; allowed: {sorted(_ALLOWED[kind])}"
        )
    if kind in ("absolute", "change", "parity") and not t.get("metric"):
        raise ConfigError(f"{where}: a {kind} threshold needs 'metric'")
    if kind == "majority" and t["better_than"] != "majority":
        raise ConfigError(f"{where}: better_than must be 'majority', got {t['better_than']!r}")
    if kind == "change" and t["change"] not in ("superiority", "non_inferiority"):
        raise ConfigError(f"{where}: change must be 'superiority' or 'non_inferiority', got {t['change']!r}")
    if kind == "change" and float(t.get("margin", 0)) < 0:
        raise ConfigError(f"{where}: margin must be >= 0")
    if kind == "change" and t.get("correction", "none") not in ("none", "holm"):
        raise ConfigError(f"{where}: correction must be 'none' or 'holm', got {t['correction']!r}")
    if kind == "change" and t.get("correction") == "holm" and t["change"] != "superiority":
        raise ConfigError(
            f"{where}: correction='holm' is for superiority claims; non-inferiority on every slice is an "
            "intersection-union test and needs none (docs/evaluation.md)"
        )
    return kind


@dataclass
class GateConfig(Config):
    """Gate settings. No thresholds is a configuration error: a gate never passes by default."""

    thresholds: list[dict[str, Any]] = field(
        default_factory=list,
        metadata={"help": "the checks a candidate must pass (docs/evaluation.md); empty is an error"},
    )
    no_baseline: Literal["require_absolute_only", "refuse"] = field(
        default="require_absolute_only",
        metadata={"help": "first model: judge only the thresholds that need no baseline, or refuse"},
    )
    allow_missing_slices: bool = field(
        default=False, metadata={"help": "a configured slice that is absent or too small: skip instead of fail"}
    )
    underpowered: str = field(
        default="fail",
        metadata={
            "help": "a non-inferiority slice too small to decide (its interval is wider than the margin and "
            "straddles it) fails, with the rows that would decide it; no mode skips it (see docs/evaluation.md)"
        },
    )
    power: float = field(
        default=0.8,
        metadata={
            "help": "the power the 'rows needed' of an underpowered slice is computed for: the chance an "
            "equivalent candidate passes at that size (mlcrit gate plan uses it too)"
        },
    )
    max_unparsed_rate: float = field(
        default=0.02,
        metadata={
            "help": "a prompt's generations that match no verbalizer, at most this share on the overall slice "
            "(judged whenever the evaluation measured unparsed_rate and no threshold names it)"
        },
    )

    def __post_init__(self) -> None:
        require(
            bool(self.thresholds),
            "GateConfig.thresholds is empty: a gate with no thresholds would bless anything; configure at least one",
        )
        require(
            self.no_baseline in ("require_absolute_only", "refuse"),
            f"GateConfig.no_baseline must be require_absolute_only or refuse, got {self.no_baseline!r}",
        )
        for i, t in enumerate(self.thresholds):
            threshold_kind(t, f"GateConfig.thresholds[{i}]")
        if self.underpowered != "fail":
            raise ConfigError(
                f"GateConfig.underpowered={self.underpowered!r} is not accepted: blessing past a slice too small "
                "to decide blessed a candidate at the margin 199 times in 200. An underpowered slice fails; to "
                "bless, give it the rows `mlcrit gate plan` says it needs, widen the margin, or raise "
                "EvaluationConfig.min_slice_size so that it is not gated (listed as skipped in the blessing)"
            )
        require(0 < self.power < 1, f"GateConfig.power must be in (0, 1), got {self.power}")
        require(
            0 <= self.max_unparsed_rate <= 1,
            f"GateConfig.max_unparsed_rate must be in [0, 1], got {self.max_unparsed_rate}",
        )


def check_names(
    cfg: GateConfig | dict[str, Any],
    *,
    metrics: list[str],
    specs: list[str],
    perturbations: list[str] | None = None,
    suites: list[str] | None = None,
    majority: bool | None = None,
) -> None:
    """Every metric, slice spec, perturbation and suite a threshold names must be one the
    evaluation measures: a typo is a ConfigError listing the valid names, never a NOT_BLESSED
    that reads like a bad model. ``None``: not known here, not checked."""
    cfg = GateConfig.coerce(cfg)
    specs = [OVERALL, *(s for s in specs if s != OVERALL)]
    for i, t in enumerate(cfg.thresholds):
        where = f"GateConfig.thresholds[{i}]"
        metric = t.get("metric")
        if metric and metric not in metrics:
            raise ConfigError(f"{where}: metric {metric!r} is not evaluated; evaluated: {metrics}")
        chosen = t.get("slices")
        if isinstance(chosen, dict):
            if chosen.get("spec") not in specs:
                raise ConfigError(
                    f"{where}.slices: spec {chosen.get('spec')!r} is not a slicing spec of the evaluation; "
                    f"valid: {specs}"
                )
        elif chosen not in (None, "all"):
            for name in [chosen] if isinstance(chosen, str) else list(chosen):
                if not any(of_spec(str(name), s) for s in specs):
                    raise ConfigError(
                        f"{where}.slices: {name!r} is not a slice any spec of the evaluation makes "
                        f"(a name is 'overall' or 'feature=value', e.g. 'state=NE'); specs: {specs}"
                    )
        if "max_flip_rate" in t and perturbations is not None:
            if not perturbations:
                raise ConfigError(f"{where}: a sensitivity threshold, but the evaluation measures no sensitivity")
            if t.get("perturbation") and t["perturbation"] not in perturbations:
                raise ConfigError(
                    f"{where}: perturbation {t['perturbation']!r} is not measured; measured: {perturbations}"
                )
        if "better_than" in t and majority is False:
            raise ConfigError(
                f"{where}: better_than 'majority' needs a classification evaluation (one with a majority class)"
            )
        if "min_pass_rate" in t and suites is not None:
            if not suites:
                raise ConfigError(f"{where}: a suite threshold, but the evaluation runs no suite")
            if t.get("suite") and t["suite"] not in suites:
                raise ConfigError(f"{where}: suite {t['suite']!r} is not run; run: {suites}")


def check_slice_values(cfg: GateConfig | dict[str, Any], slices: list[tuple[str, str]]) -> None:
    """Every slice a threshold names (``"airline=United"``) must have rows in the eval data:
    ``slices`` are the (name, spec) of the slices the eval data makes. A misspelt value and a
    value that vanished from this week's golden set both need a person, so this is a
    DataValidationError listing the values present, raised before any inference (and again by
    :func:`decide`), never a NOT_BLESSED after the whole evaluation. ``allow_missing_slices``
    is the explicit opt-out: the gate then records the slice as skipped."""
    cfg = GateConfig.coerce(cfg)
    if cfg.allow_missing_slices:
        return
    present = {name for name, _ in slices}
    by_spec: dict[str, list[str]] = {}
    for name, spec in slices:
        by_spec.setdefault(spec, []).append(name)
    for i, t in enumerate(cfg.thresholds):
        chosen = t.get("slices")
        if chosen in (None, "all") or isinstance(chosen, dict):
            continue
        for name in [chosen] if isinstance(chosen, str) else list(chosen):
            if str(name) in present:
                continue
            spec = next((sp for sp in by_spec if of_spec(str(name), sp)), None)
            values = by_spec.get(spec, []) if spec else []
            raise DataValidationError(
                f"GateConfig.thresholds[{i}].slices: slice {name!r} matches no row of the eval data; the slices "
                + (
                    f"of {spec!r} present are {some(sorted(values))}"
                    if spec
                    else f"present are {some(sorted(present))}"
                )
                + ". A misspelt value or a slice that vanished from the data: fix the threshold or the eval data "
                "(allow_missing_slices=True skips it, recorded as skipped)"
            )


def of_spec(name: str, spec: str) -> bool:
    if spec == OVERALL:
        return name == OVERALL
    features = spec.split(" x ")
    return re.fullmatch(", ".join(re.escape(f) + "=.*" for f in features), name, flags=re.DOTALL) is not None


@dataclass
class GateDecision:
    blessed: bool
    checks: list[dict[str, Any]]

    @property
    def decision(self) -> str:
        return "BLESSED" if self.blessed else "NOT_BLESSED"

    @property
    def failures(self) -> list[str]:
        return [c["message"] for c in self.checks if c["status"] == "failed"]

    def to_dict(self) -> dict[str, Any]:
        return {"decision": self.decision, "checks": self.checks, "failures": self.failures}


def _select(evaluation: dict[str, Any], spec: Any, cfg: GateConfig) -> tuple[list[dict], list[str]]:
    """(gated slices, problems) for a threshold's ``slices``."""
    slices = evaluation["slices"]
    by_name = {s["name"]: s for s in slices}
    spec = spec or "overall"
    if spec == "all":
        return [s for s in slices if s["gated"]], []
    if isinstance(spec, dict):
        chosen = [s for s in slices if s["spec"] == spec.get("spec")]
        if not chosen:
            return [], [f"no slices of spec {spec.get('spec')!r} in the evaluation"]
        return [s for s in chosen if s["gated"]], []
    names = [spec] if isinstance(spec, str) else list(spec)
    picked, problems = [], []
    for name in names:
        s = by_name.get(name)
        if s is None:
            problems.append(f"slice {name!r} is missing from the evaluation")
        elif not s["gated"]:
            problems.append(f"slice {name!r} has {s['n']} rows, below min_slice_size {evaluation['min_slice_size']}")
        else:
            picked.append(s)
    return picked, problems


def _fmt(v: Any) -> str:
    return "n/a" if v is None else f"{v:.4f}"


def decide(cfg: GateConfig | dict[str, Any], evaluation: dict[str, Any]) -> GateDecision:
    """Judge every threshold on every slice it names; BLESSED only if all pass."""
    cfg = GateConfig.coerce(cfg)
    check_names(cfg, **evaluated_names(evaluation))
    check_slice_values(cfg, [(s["name"], s["spec"]) for s in evaluation["slices"]])
    has_baseline = evaluation["slices"][0].get("baseline") is not None
    lower = set(evaluation.get("lower_is_better", []))
    checks: list[dict[str, Any]] = []

    def add(i: int, kind: str, status: str, message: str, **fields: Any) -> None:
        checks.append({"threshold": i, "kind": kind, "status": status, "message": message, **fields})

    if not has_baseline and cfg.no_baseline == "refuse":
        add(-1, "baseline", "failed", "no baseline to compare with and GateConfig.no_baseline='refuse'")
    for i, t in enumerate(cfg.thresholds):
        kind = threshold_kind(t, f"GateConfig.thresholds[{i}]")
        metric = t.get("metric")
        if kind == "suite":
            _suite_checks(i, t, evaluation, add)
            continue
        if kind == "majority":
            chosen, problems = _select(evaluation, t.get("slices"), cfg)
            for p in problems:
                add(i, kind, "skipped" if cfg.allow_missing_slices else "failed", p, metric="accuracy")
            for s in chosen:
                _majority_check(i, s, evaluation["majority"]["label"], add)
            continue
        if kind == "change" and not has_baseline:
            add(i, kind, "skipped", f"{metric} {t['change']}: no baseline (first model)", metric=metric)
            continue
        chosen, problems = _select(evaluation, t.get("slices"), cfg)
        for p in problems:
            add(i, kind, "skipped" if cfg.allow_missing_slices else "failed", p, metric=metric)
        if kind == "sensitivity":
            _sensitivity_checks(i, t, evaluation, chosen, add)
        elif kind == "parity":
            values = [(s["candidate"][metric]["value"], s["name"]) for s in chosen]
            values = [(v, n) for v, n in values if v is not None]
            if len(values) < 2:
                add(i, kind, "failed", f"{metric} parity needs at least 2 gated slices, found {len(values)}")
                continue
            (lo, lo_name), (hi, hi_name) = min(values), max(values)
            ok = hi - lo <= float(t["max_gap"])
            add(
                i,
                kind,
                "passed" if ok else "failed",
                f"{metric} gap between slices {hi_name!r} ({hi:.4f}) and {lo_name!r} ({lo:.4f}) is {hi - lo:.4f}, "
                f"limit {float(t['max_gap']):.4f}",
                metric=metric,
                observed=hi - lo,
                limit=float(t["max_gap"]),
                slice=f"{hi_name} vs {lo_name}",
            )
        else:
            defined = []
            for s in chosen:
                if s["candidate"][metric]["value"] is None:
                    reason = s["candidate"][metric].get("reason") or "undefined on this slice"
                    add(i, kind, "failed", f"{metric} on slice {s['name']!r} is undefined: {reason}", metric=metric)
                else:
                    defined.append(s)
            if kind == "change" and t.get("correction") == "holm":
                _holm_checks(i, t, defined, evaluation, add)
            elif kind == "change":
                for s in defined:
                    _change(i, t, s, metric in lower, cfg, evaluation["confidence"], add)
            else:
                for s in defined:
                    _absolute(i, t, s, add)
    _always_judged(cfg, evaluation, add)
    if has_baseline or cfg.no_baseline == "require_absolute_only":
        judged = [c for c in checks if c["status"] != "skipped"]
        if not judged:
            add(-1, "gate", "failed", "no threshold could be judged (all skipped): nothing shows the candidate is fit")
    blessed = all(c["status"] != "failed" for c in checks)
    return GateDecision(blessed, checks)


def _absolute(i: int, t: dict, s: dict, add: Any) -> None:
    metric, m = t["metric"], s["candidate"][t["metric"]]
    for bound, op in (("min", ">="), ("max", "<=")):
        if bound not in t:
            continue
        limit = float(t[bound])
        key = ("low" if bound == "min" else "high") if t.get("use_ci") else "value"
        observed = m[key]
        ok = observed is not None and (observed >= limit if bound == "min" else observed <= limit)
        what = f"{metric} {'CI ' + ('lower' if bound == 'min' else 'upper') + ' bound' if t.get('use_ci') else ''}"
        why = f": {m['reason']}" if observed is None and m.get("reason") else ""
        add(
            i,
            "absolute",
            "passed" if ok else "failed",
            f"{what.strip()} on slice {s['name']!r} is {_fmt(observed)} (CI [{_fmt(m['low'])}, {_fmt(m['high'])}]), "
            f"needs {op} {limit:.4f}{why}",
            metric=metric,
            slice=s["name"],
            observed=observed,
            ci=[m["low"], m["high"]],
            limit=limit,
        )


def _majority_check(i: int, s: dict, label: str, add: Any) -> None:
    m, d = s["majority"], s["majority"]["difference"]
    ok = d["low"] is not None and d["low"] > 0
    add(
        i,
        "majority",
        "passed" if ok else "failed",
        f"accuracy on slice {s['name']!r} is {_fmt(s['candidate']['accuracy']['value'])} against "
        f"{m['accuracy']:.4f} for always answering {label!r}: candidate - majority = {_fmt(d['value'])} "
        f"(CI [{_fmt(d['low'])}, {_fmt(d['high'])}]), needs lower bound > 0",
        metric="accuracy",
        slice=s["name"],
        observed=d["value"],
        ci=[d["low"], d["high"]],
        limit=0.0,
    )


def _always_judged(cfg: GateConfig, evaluation: dict[str, Any], add: Any) -> None:
    """What every gate judges without being told: unparsed generations (fail closed above
    max_unparsed_rate, unless a threshold names unparsed_rate) and classes never predicted (a
    warning: a model that cannot output a class is often degenerate)."""
    named = any(t.get("metric") == "unparsed_rate" for t in cfg.thresholds)
    if "unparsed_rate" in evaluation["metrics"] and not named:
        overall = next(s for s in evaluation["slices"] if s["name"] == OVERALL)
        _absolute(-1, {"metric": "unparsed_rate", "max": cfg.max_unparsed_rate}, overall, add)
    rates = (evaluation.get("prediction_rates") or {}).get("candidate") or {}
    for label, rate in rates.items():
        if rate == 0 and label != "(unparsed)":
            add(
                -1,
                "degenerate",
                "warned",
                f"the candidate never predicts {label!r} on the {evaluation['rows']} eval rows",
                label=label,
            )


def evaluated_names(evaluation: dict[str, Any]) -> dict[str, Any]:
    """What an evaluation result measured, for :func:`check_names`."""
    specs = evaluation.get("slice_specs") or list(dict.fromkeys(s["spec"] for s in evaluation["slices"]))
    return {
        "metrics": evaluation["metrics"],
        "specs": specs,
        "perturbations": [p["perturbation"] for p in evaluation.get("sensitivity") or []],
        "suites": [s["name"] for s in (evaluation.get("suites") or {}).get("candidate", [])],
        "majority": "majority" in evaluation,
    }


def rows_message(s: dict, metric: str, margin: float, cfg: GateConfig, confidence: float) -> str:
    """What a slice too small for its margin needs: the rows at which an equivalent candidate
    passes with power ``cfg.power``. Exact for paired proportions (from the slice's discordant
    share, :mod:`plan`), else from the half-width (normal approximation)."""
    from airflow_mlcrit.core.evaluation.power import needed_by_width, needed_for_change

    d, n = s["difference"][metric], s["n"]
    half = (d["high"] - d["low"]) / 2
    head = f"n={n}, the interval is ±{half:.2f} against a margin of {margin:.2f}"
    if margin <= 0:
        return f"{head}: no slice size decides a margin of 0"
    if "discordant" in d:
        share = max(sum(d["discordant"]) / n, 1 / n)  # none discordant yet: at least one in n
        rows = needed_for_change(n, margin, share, cfg.power, "non_inferiority", confidence)
    else:
        rows = needed_by_width(n, half, margin, cfg.power, confidence)
    if rows is None:
        return f"{head}: no slice size gives {cfg.power:.0%} power"
    rows = math.ceil(rows / 10) * 10
    return f"{head}; about {rows:,} rows would give an equivalent candidate {cfg.power:.0%} power to pass"


def _change(i: int, t: dict, s: dict, lower_better: bool, cfg: GateConfig, confidence: float, add: Any) -> None:
    metric = t["metric"]
    d, base = s["difference"][metric], s["baseline"][metric]
    margin = float(t.get("margin", 0.0))
    if t.get("relative"):
        margin *= abs(base["value"] or 0.0)
    # the limit the conservative end of the difference interval must clear
    limit = margin if t["change"] == "superiority" else -margin
    if lower_better:
        bound, ok = d["high"], d["high"] is not None and d["high"] < -limit
        shown_worse = d["low"] is not None and d["low"] >= -limit
        need = f"upper bound < {-limit:+.4f}"
    else:
        bound, ok = d["low"], d["low"] is not None and d["low"] > limit
        shown_worse = d["high"] is not None and d["high"] <= limit
        need = f"lower bound > {limit:+.4f}"
    status, note = "passed" if ok else "failed", ""
    half = None if d["low"] is None or d["high"] is None else (d["high"] - d["low"]) / 2
    if not ok and not shown_worse and t["change"] == "non_inferiority" and half is not None and half > margin:
        # undecided, and no candidate could be shown non-inferior on so few rows: say so
        note = f"; underpowered: {rows_message(s, metric, margin, cfg, confidence)}"
    add(
        i,
        "change",
        status,
        f"{metric} {t['change']} on slice {s['name']!r}: candidate - baseline = {_fmt(d['value'])} "
        f"(CI [{_fmt(d['low'])}, {_fmt(d['high'])}]), needs {need}{note}"
        + (f": {d['reason']}" if bound is None and d.get("reason") else ""),
        **_difference(metric, s),
        limit=-limit if lower_better else limit,
        bound=bound,
        half_width=half,
        underpowered=bool(note),
        lower_is_better=lower_better,
    )


def hinging_checks(checks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The change checks that the interval decided: the point estimate alone would have said the
    opposite (it clears the limit and the check failed, or the other way round)."""
    out = []
    for c in checks:
        if c.get("kind") != "change" or c.get("observed") is None or c.get("limit") is None:
            continue
        point_ok = c["observed"] < c["limit"] if c.get("lower_is_better") else c["observed"] > c["limit"]
        if point_ok != (c["status"] == "passed"):
            out.append(c)
    return out


def _difference(metric: str, s: dict) -> dict[str, Any]:
    """The fields a change check records about the slice's difference interval."""
    d = s["difference"][metric]
    return {"metric": metric, "slice": s["name"], "observed": d["value"], "ci": [d["low"], d["high"]]}


def _holm_checks(i: int, t: dict, chosen: list[dict], evaluation: dict, add: Any) -> None:
    """Superiority on several slices with Holm's family-wise correction: each slice's one-sided
    Tango p-value at the margin, judged by Holm's step-down at the interval's one-sided level."""
    from airflow_mlcrit.core.evaluation.intervals import holm, tango_p_value

    metric, margin = t["metric"], float(t.get("margin", 0.0))
    alpha = (1 - evaluation["confidence"]) / 2
    p_values = []
    for s in chosen:
        d = s["difference"][metric]
        if "discordant" not in d:
            raise ConfigError(
                f"{metric}: correction='holm' needs per-slice p-values, which the gate has for accuracy and "
                "exact_match (paired proportions); use it on one of those"
            )
        limit = margin * abs(s["baseline"][metric]["value"] or 0.0) if t.get("relative") else margin
        p_values.append(tango_p_value(*d["discordant"], s["n"], limit))
    for s, p, rejected in zip(chosen, p_values, holm(p_values, alpha), strict=True):
        d = s["difference"][metric]
        add(
            i,
            "change",
            "passed" if rejected else "failed",
            f"{metric} superiority on slice {s['name']!r}: candidate - baseline = {_fmt(d['value'])} "
            f"(CI [{_fmt(d['low'])}, {_fmt(d['high'])}]), p = {p:.4f} against a margin of {margin:.4f}; Holm "
            f"over {len(chosen)} slices at family-wise {alpha:.4f} {'rejects' if rejected else 'does not reject'}",
            **_difference(metric, s),
            limit=margin,
            p_value=p,
            correction="holm",
        )


def _sensitivity_checks(i: int, t: dict, evaluation: dict, chosen: list[dict], add: Any) -> None:
    runs = [p for p in evaluation.get("sensitivity", []) if t.get("perturbation") in (None, p["perturbation"])]
    if not runs:
        add(i, "sensitivity", "failed", f"sensitivity {t.get('perturbation') or '(any)'} was not measured")
        return
    names = {s["name"] for s in chosen}
    limit = float(t["max_flip_rate"])
    for p in runs:
        for r in p["slices"]:
            if r["slice"] not in names:
                continue
            ok = r["flip_rate"] <= limit
            add(
                i,
                "sensitivity",
                "passed" if ok else "failed",
                f"{p['perturbation']} flips {r['flip_rate']:.4f} of predictions on slice {r['slice']!r}, "
                f"limit {limit:.4f}",
                slice=r["slice"],
                observed=r["flip_rate"],
                limit=limit,
            )


def _suite_checks(i: int, t: dict, evaluation: dict, add: Any) -> None:
    suites = [s for s in (evaluation.get("suites") or {}).get("candidate", []) if t.get("suite") in (None, s["name"])]
    if not suites:
        add(i, "suite", "failed", f"suite {t.get('suite') or '(any)'} was not run on the candidate")
        return
    limit = float(t["min_pass_rate"])
    for s in suites:
        items = (
            [(f"{s['name']}/{x['name']}", x) for x in s["tests"] if x["name"] == t["test"]]
            if t.get("test")
            else [(s["name"], s)]
        )
        if not items:
            add(i, "suite", "failed", f"suite {s['name']!r} has no test {t['test']!r}")
        for name, x in items:
            ok = x["pass_rate"] is not None and x["pass_rate"] >= limit
            add(
                i,
                "suite",
                "passed" if ok else "failed",
                f"{name} pass rate {_fmt(x['pass_rate'])} ({x['passed']}/{x['cases']}), needs >= {limit:.4f}",
                observed=x["pass_rate"],
                limit=limit,
                slice=name,
            )
