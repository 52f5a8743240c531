"""Statistics throughput and peak memory vs pandas, each in its own fresh process.

    .venv/bin/python dev/bench/bench_statistics.py [--rows 1000000]

Table: --rows x 20 columns (8 numeric, 8 categorical, 4 text) in one Parquet file.
Baseline: pandas.read_parquet + DataFrame.describe(include="all") + value_counts() per column.
Ours: compute_statistics (streaming record batches; computes more: quantiles, histograms,
distinct counts, text lengths and word counts, empty and duplicate rates).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

CHILD = r"""
import json, resource, sys, time
path, which = sys.argv[1], sys.argv[2]
t = time.perf_counter()
if which == "pandas":
    import pandas as pd
    df = pd.read_parquet(path)
    df.describe(include="all")
    for c in df.columns:
        df[c].value_counts()
else:
    from airflow_mlcrit.core.validation.statistics import compute_statistics
    compute_statistics({"source": path})
print(json.dumps({"seconds": time.perf_counter() - t,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def make_table(path: Path, rows: int) -> None:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    words = np.array("good bad slow fast friendly rude price delivery quality support refund great".split())
    data = {}
    for i in range(8):
        data[f"num{i}"] = rng.normal(i, 1 + i, rows) if i % 2 else rng.integers(0, 1000, rows)
    for i in range(8):
        cats = np.array([f"cat{i}_{j}" for j in range(5 + 6 * i)])
        data[f"cat{i}"] = cats[rng.integers(0, len(cats), rows)]
    for i in range(4):
        idx = rng.integers(0, len(words), (rows, 8))
        data[f"text{i}"] = [" ".join(r) for r in words[idx]]
    pd.DataFrame(data).to_parquet(path, index=False, row_group_size=131_072)


def run(path: Path, which: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), which], capture_output=True, text=True, check=True, cwd=REPO
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--make", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.make:
        make_table(args.make, args.rows)
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "table.parquet"
        t = time.perf_counter()
        # In a child: a parent holding the table would inflate the children's peak RSS (fork copies it).
        subprocess.run([sys.executable, __file__, "--make", str(path), "--rows", str(args.rows)], check=True)
        print(
            f"table: {args.rows} rows x 20 columns, {path.stat().st_size / 1e6:.0f} MB parquet "
            f"(generated in {time.perf_counter() - t:.0f}s)"
        )
        pandas, ours = run(path, "pandas"), run(path, "ours")
    print(f"pandas describe+value_counts: {pandas['seconds']:6.2f} s  peak RSS {pandas['peak_rss_mb']:6.0f} MB")
    print(f"mlcrit compute_statistics:    {ours['seconds']:6.2f} s  peak RSS {ours['peak_rss_mb']:6.0f} MB")
    print(
        f"speed ratio (pandas time / ours): {pandas['seconds'] / ours['seconds']:.2f}x; "
        f"memory ratio (ours / pandas): {ours['peak_rss_mb'] / pandas['peak_rss_mb']:.2f}x"
    )


if __name__ == "__main__":
    main()
