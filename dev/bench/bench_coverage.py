"""Coverage of the evaluation's intervals and the gate's false-blessing rate, by simulation
through the public API (``evaluate_predictions`` and ``decide``), as a reviewer would check them.

    .venv/bin/python dev/bench/bench_coverage.py [--sims 1000] [--blessing-sims 4000]

1. One model's accuracy interval: how often it covers the true accuracy, for every slice size
   x true accuracy in the grid. Baseline: the v0.1 method (percentile Poisson bootstrap,
   ``metrics.bootstrap``), on the same simulated data.
2. Non-inferiority at the margin (candidate exactly ``margin`` worse than the baseline, so a
   blessing is a false claim): how often the gate blesses, with independent errors and with the
   candidate's errors including the baseline's.
3. Macro F1 of a 3-class model: coverage for a balanced and a skewed problem.

Goals (issue "Gate statistics you can stake a release on"): coverage >= 0.93 in every cell,
false blessing <= 0.03 in every cell (nominal 0.025), and no interval wider than
Clopper-Pearson by more than 20% at n >= 100. The tests run a seeded subset (tests/core/
evaluation/test_coverage.py).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from airflow_mlcrit.core.evaluation.compute import Predictions, evaluate_predictions
from airflow_mlcrit.core.evaluation.intervals import clopper_pearson
from airflow_mlcrit.core.evaluation.metrics import bootstrap, from_counts
from airflow_mlcrit.core.gating.decide import decide

SIZES = (20, 30, 50, 100, 400, 2000)
ACCURACIES = (0.7, 0.9, 0.95, 0.98, 0.995)
BLESSING_SIZES = (50, 100, 200, 500)
BASELINES = (0.9, 0.97, 0.99)
MARGIN = 0.03
F1_SIZES = (50, 200, 1000)
F1_PROBLEMS = {  # class shares, per-class recall (errors spread evenly over the other classes)
    "balanced": ((1 / 3, 1 / 3, 1 / 3), (0.85, 0.85, 0.85)),
    "skewed": ((0.6, 0.3, 0.1), (0.95, 0.8, 0.6)),
}
LABELS = ["neg", "pos"]
PLAN_CASES = ((40, 100, 0.03, 0.82), (4, 400, 0.05, 0.9), (10, 200, 0.08, 0.9))  # slices, rows, margin, agreement
ONE_SLICE_CASES = ((60, 0.03), (60, 0.1), (100, 0.03), (100, 0.08))


def _frame(n: int):
    import pandas as pd

    return pd.DataFrame({"row": np.arange(n)})


def accuracy_coverage(n: int, p: float, sims: int, seed: int = 0, baseline: bool = True) -> dict[str, float]:
    """Share of simulated eval sets whose 95% accuracy interval covers ``p``, and the mean width
    against Clopper-Pearson's, for ours and for the v0.1 percentile Poisson bootstrap."""
    rng = np.random.default_rng([seed, n, int(p * 1000)])
    frame, covered, old_covered, width, cp_width = _frame(n), 0, 0, 0.0, 0.0
    for s in range(sims):
        truth = rng.integers(0, 2, n)
        right = rng.random(n) < p
        pred = np.where(right, truth, 1 - truth)
        result = evaluate_predictions(
            {"metrics": ["accuracy"], "replicates": 10, "seed": s}, frame, truth, Predictions(pred), labels=LABELS
        )
        iv = result["slices"][0]["candidate"]["accuracy"]
        covered += iv["low"] <= p <= iv["high"]
        if baseline:
            old = bootstrap(truth, pred, 2, metrics=("accuracy",), replicates=1000, seed=s)["accuracy"]
            old_covered += old["low"] <= p <= old["high"]
        lo, hi = clopper_pearson(right.sum(), n, 0.95)
        width, cp_width = width + (iv["high"] - iv["low"]), cp_width + float(hi - lo)
    return {"coverage": covered / sims, "v0.1": old_covered / sims, "width_vs_cp": width / cp_width}


def false_blessing(n: int, baseline: float, correlated: bool, sims: int, seed: int = 0) -> float:
    """Share of runs the gate blesses a candidate whose true accuracy is ``baseline - MARGIN``
    under a non-inferiority threshold with that margin (every blessing is a false claim)."""
    rng = np.random.default_rng([seed, n, int(baseline * 1000), int(correlated)])
    candidate = baseline - MARGIN
    if correlated:  # the candidate errs wherever the baseline does, and on MARGIN more rows
        p_both, p_cand_only, p_base_only = 1 - baseline, MARGIN, 0.0
    else:
        p_both, p_cand_only, p_base_only = (
            (1 - candidate) * (1 - baseline),
            (1 - candidate) * baseline,
            candidate * (1 - baseline),
        )
    gate = {"thresholds": [{"metric": "accuracy", "change": "non_inferiority", "margin": MARGIN}]}
    frame, blessed = _frame(n), 0
    for s in range(sims):
        truth = rng.integers(0, 2, n)
        u = rng.random(n)
        cand_wrong = u < p_both + p_cand_only
        base_wrong = (u < p_both) | ((u >= p_both + p_cand_only) & (u < p_both + p_cand_only + p_base_only))
        cand = Predictions(np.where(cand_wrong, 1 - truth, truth))
        base = Predictions(np.where(base_wrong, 1 - truth, truth))
        result = evaluate_predictions(
            {"metrics": ["accuracy"], "replicates": 10, "seed": s}, frame, truth, cand, base, labels=LABELS
        )
        blessed += decide(gate, result).blessed
    return blessed / sims


def _paired_rows(rng, n: int, accuracy: float, discordance: float, shift: float = 0.0):
    """Truth and the two models' predictions on n binary rows: both right on accuracy -
    discordance / 2 (less shift / 2) of the rows, only the candidate right on (discordance - shift)
    / 2, only the baseline on (discordance + shift) / 2: the candidate's accuracy is the
    baseline's minus ``shift``."""
    only_cand, only_base = (discordance - shift) / 2, (discordance + shift) / 2
    both_right = accuracy - only_base
    truth = rng.integers(0, 2, n)
    u = rng.random(n)
    cand_right = (u < both_right) | ((u >= both_right) & (u < both_right + only_cand))
    base_right = (u < both_right) | ((u >= both_right + only_cand) & (u < both_right + only_cand + only_base))
    return truth, np.where(cand_right, truth, 1 - truth), np.where(base_right, truth, 1 - truth)


def gate_over_slices(
    sizes: dict[str, int],
    gate: dict,
    accuracy: float,
    discordance: float,
    sims: int,
    seed: int = 0,
    at_margin: str | None = None,
    margin: float = 0.0,
) -> float:
    """Share of simulated eval sets (``sizes``: rows per value of a column ``s``) that ``gate``
    blesses: the candidate exactly as good as the baseline on every slice, or ``margin`` worse on
    the slice ``at_margin`` (where every blessing is a false claim)."""
    import pandas as pd

    rng = np.random.default_rng([seed, len(sizes), sum(sizes.values()), int(discordance * 1000)])
    frame = pd.DataFrame({"s": np.repeat(list(sizes), list(sizes.values()))})
    blessed = 0
    for run in range(sims):
        parts = [
            _paired_rows(rng, n, accuracy, discordance, margin if name == at_margin else 0.0)
            for name, n in sizes.items()
        ]
        truth, cand, base = (np.concatenate(x) for x in zip(*parts, strict=True))
        result = evaluate_predictions(
            {"metrics": ["accuracy"], "slices": ["s"], "replicates": 10, "seed": run, "min_slice_size": 1},
            frame,
            truth,
            Predictions(cand),
            Predictions(base),
            labels=LABELS,
        )
        blessed += decide(gate, result).blessed
    return blessed / sims


def plan_against_simulation(
    slices: int, n: int, margin: float, accuracy: float, agreement: float, sims: int, seed: int = 0
) -> dict[str, float]:
    """``mlcrit gate plan``'s chance of blessing an equivalent candidate (non-inferiority on each
    of ``slices`` slices of ``n`` rows) against the share of simulated eval sets the gate blesses."""
    from airflow_mlcrit.core.gating.plan import plan

    gate = {
        "thresholds": [{"metric": "accuracy", "change": "non_inferiority", "margin": margin, "slices": {"spec": "s"}}]
    }
    sizes = {f"s={i:02d}": n for i in range(slices)}
    planned = plan(gate, sizes, accuracy=accuracy, agreement=agreement)["bless_equivalent"]
    simulated = gate_over_slices(sizes, gate, accuracy, 1 - agreement, sims, seed)
    return {"planned": round(planned, 4), "simulated": simulated}


def _cells(shares, recalls) -> np.ndarray:
    k = len(shares)
    cells = np.zeros((k, k))
    for i in range(k):
        cells[i] = shares[i] * (1 - recalls[i]) / (k - 1)
        cells[i, i] = shares[i] * recalls[i]
    return cells


def macro_f1_coverage(problem: str, n: int, sims: int, seed: int = 0, replicates: int = 1000) -> dict[str, float]:
    shares, recalls = F1_PROBLEMS[problem]
    cells = _cells(shares, recalls)
    true = float(from_counts(cells)["macro_f1"])
    k = len(shares)
    rng = np.random.default_rng([seed, n, len(problem)])
    frame, covered, width, given = _frame(n), 0, 0.0, 0
    for s in range(sims):
        idx = rng.choice(k * k, size=n, p=cells.ravel())
        truth, pred = idx // k, idx % k
        result = evaluate_predictions(
            {"metrics": ["macro_f1"], "replicates": replicates, "seed": s},
            frame,
            truth,
            Predictions(pred),
            labels=[f"c{i}" for i in range(k)],
        )
        iv = result["slices"][0]["candidate"]["macro_f1"]
        if iv["low"] is None:  # refused: a class with too few rows (Metric.min_class_rows)
            continue
        given += 1
        covered += iv["low"] <= true <= iv["high"]
        width += iv["high"] - iv["low"]
    return {
        "true": true,
        "coverage": covered / given if given else None,
        "width": width / given if given else None,
        "given": given / sims,
    }


# The coverage grid (issue "Every gate decision means what it says"): every metric the gate
# accepts, alone and as a paired difference, over class counts, class balance, near-perfect
# separation and slice sizes. Each setting: class shares, the candidate's recall per class, the
# logit boost of the predicted class (how well its probabilities rank), and the baseline's recall
# offset. The baseline errs where the candidate does on half the rows (shared draw) and
# independently on the rest.
GRID_METRICS = ("accuracy", "macro_f1", "weighted_f1", "macro_precision", "macro_recall", "roc_auc")
GRID_SIZES = (30, 45, 100, 400)
GRID_MIN_GIVEN = 0.1  # a cell where fewer sets got an interval refuses use_ci there nearly always
GRID_SETTINGS = {
    "binary": ((0.5, 0.5), 0.85, 2.5),
    "3 balanced": ((1 / 3,) * 3, 0.85, 2.5),
    "3 unbalanced": ((0.80, 0.15, 0.05), (0.95, 0.8, 0.6), 2.5),
    "3 separated": ((1 / 3,) * 3, 0.995, 6.0),
    "20 classes": ((1 / 20,) * 20, 0.9, 2.5),
    "20 separated": ((1 / 20,) * 20, 0.995, 6.0),
}


def _grid_rows(rng, n: int, setting: str):
    """(truth, candidate, baseline) of n rows of ``setting``, with probabilities."""
    shares, recall, boost = GRID_SETTINGS[setting]
    k = len(shares)
    recall = np.broadcast_to(np.asarray(recall, dtype=float), (k,))
    truth = rng.choice(k, size=n, p=np.asarray(shares) / np.sum(shares))
    u = rng.random(n)
    shared = rng.random(n) < 0.5
    u_base = np.where(shared, u, rng.random(n))
    models = []
    for r, draw in ((recall[truth], u), (np.clip(recall[truth] - 0.05, 0, 1), u_base)):
        right = draw < r
        other = (truth + rng.integers(1, k, n)) % k
        pred = np.where(right, truth, other)
        logits = rng.normal(0, 1, (n, k))
        logits[np.arange(n), pred] += boost
        proba = np.exp(logits - logits.max(axis=1, keepdims=True))
        models.append(Predictions(pred, proba / proba.sum(axis=1, keepdims=True)))
    return truth, models[0], models[1]


_TRUE: dict[str, dict[str, dict[str, float]]] = {}


def grid_truth(setting: str, rows: int = 400_000) -> dict[str, dict[str, float]]:
    """Population values of each metric (candidate, baseline, difference), from one large sample."""
    if setting not in _TRUE:
        truth, cand, base = _grid_rows(np.random.default_rng([99, len(setting)]), rows, setting)
        k = len(GRID_SETTINGS[setting][0])
        result = evaluate_predictions(
            {"metrics": list(GRID_METRICS), "replicates": 10},
            _frame(rows),
            truth,
            cand,
            base,
            labels=[f"c{i}" for i in range(k)],
        )
        overall = result["slices"][0]
        _TRUE[setting] = {
            role: {m: overall[role][m]["value"] for m in GRID_METRICS} for role in ("candidate", "difference")
        }
    return _TRUE[setting]


def grid_coverage(setting: str, n: int, sims: int, seed: int = 0, replicates: int = 1000) -> dict[str, dict]:
    """Per metric: the share of simulated eval sets whose 95% interval covers the population value,
    for the candidate alone and for the paired difference; 'undefined': the share of sets where
    the metric or its interval was not given (a class absent), or where use_ci is refused."""
    true = grid_truth(setting)
    k = len(GRID_SETTINGS[setting][0])
    rng = np.random.default_rng([seed, n, len(setting), k])
    frame = _frame(n)
    hits = {role: dict.fromkeys(GRID_METRICS, 0) for role in ("candidate", "difference")}
    given = {role: dict.fromkeys(GRID_METRICS, 0) for role in ("candidate", "difference")}
    for s in range(sims):
        truth, cand, base = _grid_rows(rng, n, setting)
        result = evaluate_predictions(
            {"metrics": list(GRID_METRICS), "replicates": replicates, "seed": s},
            frame,
            truth,
            cand,
            base,
            labels=[f"c{i}" for i in range(k)],
        )
        overall = result["slices"][0]
        for role in hits:
            for m in GRID_METRICS:
                iv = overall[role][m]
                if iv.get("low") is None or iv.get("high") is None:
                    continue
                given[role][m] += 1
                hits[role][m] += iv["low"] <= true[role][m] <= iv["high"]
    return {
        role: {
            m: {"coverage": hits[role][m] / given[role][m] if given[role][m] else None, "given": given[role][m] / sims}
            for m in GRID_METRICS
        }
        for role in hits
    }


def grid(sims: int, settings: list[str]) -> None:
    """Section 6: the coverage grid, every metric alone and as a paired difference."""
    print(f"6. Coverage grid, {sims} simulated eval sets a cell: candidate / paired difference")
    print("   (share of sets with an interval in brackets when below 1: the others refused it for a thin class)")
    lowest = 1.0
    for setting in settings:
        print(f"   {setting}")
        for n in GRID_SIZES:
            g = grid_coverage(setting, n, sims)
            cells = []
            for m in GRID_METRICS:
                c, d = g["candidate"][m], g["difference"][m]
                if c["coverage"] is None:
                    cells.append(f"{m} refused")
                    continue
                if c["given"] >= GRID_MIN_GIVEN:  # fewer intervals: a coverage figure with a standard error > 0.02
                    lowest = min(lowest, c["coverage"], d["coverage"] if d["coverage"] is not None else 1.0)
                given = f" ({c['given']:.2f})" if c["given"] < 1 else ""
                cells.append(f"{m} {c['coverage']:.3f}/{d['coverage']:.3f}{given}")
            print(f"     n={n:>3}: " + ", ".join(cells), flush=True)
    print(
        f"   lowest coverage in the cells where at least {GRID_MIN_GIVEN:.0%} of the sets got an interval: "
        f"{lowest:.3f} (goal >= 0.93)"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sims", type=int, default=1000, help="simulated eval sets per cell (coverage)")
    ap.add_argument("--blessing-sims", type=int, default=4000, help="simulated eval sets per cell (blessing)")
    ap.add_argument("--sections", default="1,2,3,4,5,6", help="which parts to run, e.g. 6 for the grid alone")
    ap.add_argument("--settings", help="the grid's settings to run (comma-separated; default all)")
    args = ap.parse_args()
    sections = {int(x) for x in args.sections.split(",")}
    started = time.perf_counter()
    if 6 in sections:
        grid(args.sims, args.settings.split(",") if args.settings else list(GRID_SETTINGS))
    if sections == {6}:
        print(f"\n{time.perf_counter() - started:.0f} s")
        return

    print(f"1. Coverage of the 95% accuracy interval, {args.sims} simulated eval sets a cell")
    print("   ours (Clopper-Pearson) | v0.1 (percentile Poisson bootstrap) | mean width / Clopper-Pearson's")
    print("   true acc | " + " | ".join(f"n={n:>4}" for n in SIZES))
    worst, widest = 1.0, 0.0
    for p in ACCURACIES:
        cells = [accuracy_coverage(n, p, args.sims) for n in SIZES]
        worst = min(worst, *(c["coverage"] for c in cells))
        widest = max(widest, *(c["width_vs_cp"] for n, c in zip(SIZES, cells, strict=True) if n >= 100))
        print(
            f"   {p:<8} | " + " | ".join(f"{c['coverage']:.3f}/{c['v0.1']:.3f}/{c['width_vs_cp']:.2f}" for c in cells)
        )
    print(f"   lowest coverage {worst:.3f} (goal >= 0.93)")
    print(f"   widest vs Clopper-Pearson at n >= 100: {widest:.2f}x (goal <= 1.2)")

    print(f"\n2. False blessing: non-inferiority, margin {MARGIN}, true difference -{MARGIN}")
    print(f"   {args.blessing_sims} runs a cell")
    print("   errors      baseline | " + " | ".join(f"n={n:>3}" for n in BLESSING_SIZES))
    highest = 0.0
    for correlated in (False, True):
        for b in BASELINES:
            rates = [false_blessing(n, b, correlated, args.blessing_sims) for n in BLESSING_SIZES]
            highest = max(highest, *rates)
            kind = "nested" if correlated else "independent"
            print(f"   {kind:<11} {b:<8} | " + " | ".join(f"{r:.4f}" for r in rates))
    print(f"   highest {highest:.4f} (goal <= 0.03, nominal one-sided 0.025)")

    print(f"\n3. Coverage of the 95% macro-F1 interval (3 classes), {args.sims} simulated eval sets a cell")
    lowest = 1.0
    for problem in F1_PROBLEMS:
        cells = [macro_f1_coverage(problem, n, args.sims) for n in F1_SIZES]
        lowest = min(lowest, *(c["coverage"] for c in cells if c["coverage"] is not None))
        print(
            f"   {problem:<8} (true {cells[0]['true']:.3f}) | "
            + " | ".join(
                f"n={n}: refused"
                if c["coverage"] is None
                else f"n={n}: {c['coverage']:.3f} (width {c['width']:.3f}, given {c['given']:.2f})"
                for n, c in zip(F1_SIZES, cells, strict=True)
            )
        )
    print(f"   lowest coverage {lowest:.3f} (goal >= 0.93)")
    print(f"\n4. mlcrit gate plan against a simulation of the gate ({args.sims} runs), equivalent candidate")
    print("   non-inferiority on every slice; accuracy 0.9")
    for slices, n, margin, agreement in PLAN_CASES:
        got = plan_against_simulation(slices, n, margin, 0.9, agreement, args.sims)
        print(
            f"   {slices:>2} slices x {n:>3} rows, margin {margin}, agreement {agreement}: "
            f"plan {got['planned']:.4f}, simulated {got['simulated']:.4f} (goal: within 0.02)"
        )

    print(f"\n5. False blessing with one slice of three at the margin ({args.sims} runs), accuracy 0.9, agreement 0.84")
    for n, margin in ONE_SLICE_CASES:
        gate = {
            "thresholds": [
                {"metric": "accuracy", "change": "non_inferiority", "margin": margin, "slices": {"spec": "s"}}
            ]
        }
        rate = gate_over_slices(
            {"s=a": n, "s=b": n, "s=c": n}, gate, 0.9, 0.16, args.sims, at_margin="s=b", margin=margin
        )
        print(f"   n={n:>3} per slice, margin {margin}: {rate:.4f} (goal <= 0.03)")
    print(f"\n{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
