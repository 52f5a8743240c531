"""Power of a gate, before the golden set is collected: how likely each check is to pass for a
candidate exactly as good as production (an *equivalent* candidate), how many rows each slice
needs for a stated power, and the chance the whole gate blesses such a candidate.

A gate blesses only if every check passes, so its chance to bless an equivalent candidate is the
product of the checks' powers (the slices of one spec are disjoint, hence independent): 40
slices at 0.9 power each bless 0.9^40 = 1.5% of the time. docs/evaluation.md ("Planning a
gate") works the 40-slice example.

Exact where the gate's decision has a closed form: accuracy and exact_match, judged by
Clopper-Pearson (absolute thresholds) and Tango's paired score interval (change thresholds).
The model: each row is right or wrong for each model; both models are right on a share
``accuracy`` of rows, and they agree (both right or both wrong) on a share ``agreement`` (default:
independent errors, 1 - 2p(1 - p)). The count of rows where only one model is right is then
Binomial(n, 1 - agreement), split evenly between them; a change check passes when Tango's score
at the limit exceeds z, which is the same as its interval's bound clearing the limit. Other
metrics have no closed form: the plan lists them as not planned (simulate them with
dev/bench/bench_coverage.py).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from airflow_mlcrit.core.evaluation.power import absolute_power, change_power, needed_for_change, rows_needed
from airflow_mlcrit.core.evaluation.slicing import OVERALL
from airflow_mlcrit.core.gating.decide import GateConfig, of_spec, threshold_kind
from airflow_mlcrit.exceptions import ConfigError

PLANNED = ("accuracy", "exact_match")  # metrics with an exact power (proportions)


def _slices_of(chosen: Any, sizes: dict[str, int], min_slice_size: int, where: str) -> list[str]:
    if chosen in (None, OVERALL):
        names = [OVERALL]
    elif chosen == "all":
        return [s for s, n in sizes.items() if n >= min_slice_size]
    elif isinstance(chosen, dict):
        return [
            s for s, n in sizes.items() if s != OVERALL and of_spec(s, str(chosen.get("spec"))) and n >= min_slice_size
        ]
    else:
        names = [chosen] if isinstance(chosen, str) else list(chosen)
    missing = [s for s in names if s not in sizes]
    if missing:
        raise ConfigError(f"{where}: no size given for slice(s) {missing}; sizes: {sorted(sizes)}")
    return names


def plan(
    gate: GateConfig | dict[str, Any],
    sizes: dict[str, int],
    *,
    accuracy: float,
    agreement: float | None = None,
    power: float | None = None,
    confidence: float = 0.95,
    min_slice_size: int = 30,
) -> dict[str, Any]:
    """Each check's power for an equivalent candidate, the rows its slice needs for ``power``
    (default: the gate's ``power``), and the chance the gate blesses such a candidate: the product
    of the checks' powers. ``sizes``: rows per slice name ("overall", "state=NE", ...)."""
    cfg = GateConfig.coerce(gate)
    target = cfg.power if power is None else float(power)
    if not 0 < accuracy < 1:
        raise ConfigError(f"accuracy must be in (0, 1), got {accuracy}")
    discordance = 2 * accuracy * (1 - accuracy) if agreement is None else 1 - float(agreement)
    if not 0 <= discordance <= 2 * min(accuracy, 1 - accuracy) + 1e-12:
        raise ConfigError(
            f"agreement {agreement} is impossible for two models at accuracy {accuracy}: models each right on "
            f"{accuracy:.0%} of rows disagree on at most {2 * min(accuracy, 1 - accuracy):.0%}"
        )
    checks, unplanned = [], []
    for i, t in enumerate(cfg.thresholds):
        where = f"GateConfig.thresholds[{i}]"
        kind = threshold_kind(t, where)
        if kind not in ("absolute", "change") or t.get("metric") not in PLANNED:
            what = t.get("metric") or kind
            unplanned.append(f"{where} ({what}): no exact power; simulate it (dev/bench/bench_coverage.py)")
            continue
        for name in _slices_of(t.get("slices"), sizes, min_slice_size, where):
            n = int(sizes[name])
            if kind == "change":
                margin = float(t.get("margin", 0.0)) * (accuracy if t.get("relative") else 1.0)
                p = change_power(n, margin, discordance=discordance, change=t["change"], confidence=confidence)
                need = needed_for_change(n, margin, discordance, target, t["change"], confidence)
            else:
                p = absolute_power(n, accuracy, t, confidence)
                need = rows_needed(p, target, lambda m, t=t: absolute_power(m, accuracy, t, confidence))
            checks.append({"threshold": i, "slice": name, "n": n, "power": p, "rows_needed": need})
    bless = float(np.prod([c["power"] for c in checks])) if checks else None
    return {
        "accuracy": accuracy,
        "agreement": 1 - discordance,
        "confidence": confidence,
        "power_target": target,
        "checks": checks,
        "bless_equivalent": bless,
        "unplanned": unplanned,
    }
