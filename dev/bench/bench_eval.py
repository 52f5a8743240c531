"""Bootstrap confidence intervals: cell-count and per-row-weight methods vs a pandas loop.

    .venv/bin/python dev/bench/bench_eval.py [--rows 1000000] [--slices 40] [--replicates 1000]

Baseline: a straightforward pandas groupby + resample loop, run on a 1% subsample of the
replicates (10 of 1,000) and scaled by 100 (said in the output). Ours: evaluate_predictions,
the path the gate reads: accuracy (Clopper-Pearson, no resampling) and macro F1 (Bayesian and
BCa draws of the confusion cells) per slice; ROC AUC per slice from Gamma draws of the
positive/negative counts per score group (2,048 quantile bins of the scores at most).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from airflow_mlcrit.core.evaluation.compute import Predictions, evaluate_predictions
from airflow_mlcrit.core.evaluation.slicing import build_slices


def main() -> None:
    import pandas as pd
    from sklearn.metrics import f1_score

    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--slices", type=int, default=40)
    ap.add_argument("--replicates", type=int, default=1000)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    n, b = args.rows, args.replicates
    y = rng.integers(0, 2, n)
    score = np.clip(0.5 + (y - 0.5) * 0.4 + rng.normal(0, 0.25, n), 0, 1)
    pred = (score > 0.5).astype(int)
    proba = np.stack([1 - score, score], axis=1)
    slices = rng.integers(0, args.slices, n)

    sub = max(1, b // 100)
    df = pd.DataFrame({"y": y, "pred": pred, "slice": slices})
    t = time.perf_counter()
    for _s, g in df.groupby("slice"):
        for r in range(sub):
            sample = g.sample(len(g), replace=True, random_state=r)
            (sample.y == sample.pred).mean()
            f1_score(sample.y, sample.pred, average="macro")
    pandas_s = (time.perf_counter() - t) * (b / sub)
    print(f"pandas groupby + resample loop: {sub} replicates measured, scaled to {b}: {pandas_s:8.1f} s")

    # The production path, evaluate_predictions, over the same 40 slices plus overall: the
    # intervals the gate reads (accuracy: Clopper-Pearson; macro F1: Bayesian + BCa bootstrap of
    # the confusion cells; AUC: Bayesian bootstrap of the per-group counts).
    frame = pd.DataFrame({"slice": slices})
    cand = Predictions(pred, proba)
    t = time.perf_counter()
    built = build_slices(frame, ["slice"])  # once, as evaluate() does; passed to every call below
    print(f"slicing 1,000,000 rows into overall + 40 slices: {time.perf_counter() - t:.3f} s (not in the ratios)")
    t = time.perf_counter()
    evaluate_predictions(
        {"metrics": ["accuracy", "macro_f1"], "slices": ["slice"], "replicates": b},
        frame,
        y,
        cand,
        labels=["0", "1"],
        slices=built,
    )
    cells_s = time.perf_counter() - t
    print(f"confusion metrics (accuracy + macro F1): {cells_s:8.3f} s   {pandas_s / cells_s:10.0f}x the pandas loop")

    t = time.perf_counter()
    evaluate_predictions(
        {"metrics": ["roc_auc"], "slices": ["slice"], "replicates": b}, frame, y, cand, labels=["0", "1"], slices=built
    )
    auc_s = time.perf_counter() - t
    print(f"grouped draws (ROC AUC):                {auc_s:8.1f} s   {pandas_s / auc_s:10.1f}x the pandas loop")
    print(f"both together: {cells_s + auc_s:.1f} s")

    # one model and then paired against a baseline (shared weights for the differences)
    noisy = np.clip(score + rng.normal(0, 0.1, n), 0, 1)
    base = Predictions((noisy > 0.5).astype(int), np.stack([1 - noisy, noisy], axis=1))
    cfg = {"metrics": ["accuracy", "macro_f1", "roc_auc"], "slices": ["slice"], "replicates": b}
    for label, baseline in (("one model", None), ("paired with a baseline", base)):
        t = time.perf_counter()
        evaluate_predictions(cfg, frame, y, cand, baseline, labels=["0", "1"], slices=built)
        took = time.perf_counter() - t
        print(f"evaluate_predictions, {label} (accuracy, F1, AUC): {took:8.1f} s   {pandas_s / took:8.1f}x")


if __name__ == "__main__":
    main()
