"""The Beam data plane: what the launcher (the Airflow task) downloads, keeps on disk and holds in
memory while a dataset in an S3 store is preprocessed, at two dataset sizes.

    .venv/bin/python dev/bench/bench_dataplane.py [--mb 500 2000]

For each size a Parquet dataset is generated into an S3 store (a moto server on 127.0.0.1,
started here), then preprocessed three ways, each launched from a fresh process:

* ``workers/isolated``: the data plane on Beam's portable job service and worker pool in their
  own mount namespace with a private /tmp (no disk shared with the launcher);
* ``workers/fnapi``: the data plane on FnApiRunner (one worker process, its default);
* ``download-first`` (the baseline, v0.1's path): the launcher downloads the dataset, runs
  FnApiRunner on the local copy and uploads the output.

Per run: seconds, the launcher's peak RSS, the bytes it downloaded from S3 (a proxy in front of
its S3 client counts them; the workers reach the server directly) and the peak size of its
temporary directory. Then each data-plane run's time as a ratio of the baseline's (goal <= 1.0)
and the growth of the launcher's figures from the smaller size to the larger (goal: flat).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

CONFIG = {"key_column": "user", "label_column": "label", "shards_per_split": 4}


def launch(mode: str, root: str, proxy: str, direct: str, engine: str, cfg: dict) -> None:
    """One run, in a fresh process (``--launch``): prints its figures as one JSON line."""
    import resource
    import threading

    from airflow_mlcrit.core.artifacts import open_store
    from airflow_mlcrit.core.preprocessing.pipeline import run_preprocess

    tmp, peak = Path(os.environ["TMPDIR"]), [0]

    def watch() -> None:  # the launcher's temporary directory, sampled every 0.2 s
        while True:
            size = 0
            for dirpath, _, files in os.walk(tmp):
                for f in files:
                    with contextlib.suppress(OSError):
                        size += os.path.getsize(os.path.join(dirpath, f))
            peak[0] = max(peak[0], size)
            time.sleep(0.2)

    threading.Thread(target=watch, daemon=True).start()
    store = open_store(root, endpoint_url=proxy, region_name="us-east-1")
    t0 = time.perf_counter()
    if mode == "download-first":
        with tempfile.TemporaryDirectory() as work:
            store.get("dataset/bench@v1", Path(work, "in"))
            local = {**cfg, "source": str(Path(work, "in")), "pipeline_options": {"direct_num_workers": 1}}
            result = run_preprocess(local, workdir=Path(work, "w"))
            files = {p.relative_to(result.output_dir).as_posix(): p for p in result.output_dir.rglob("*.parquet")}
            store.put("transformed_dataset/bench", files)
    else:
        options = {"direct_num_workers": 1, "s3_endpoint_url": direct, "s3_region_name": "us-east-1"}
        if mode == "workers/isolated":
            options.update(json.loads(engine))
            cfg = {**cfg, "runner": "PortableRunner"}
        staged = store.stage("transformed_dataset/bench")
        remote = {**cfg, "source": "dataset/bench@v1", "pipeline_options": options}
        result = run_preprocess(remote, store=store, output=staged)
        store.commit_staged(staged, result.files)
    seconds = time.perf_counter() - t0
    time.sleep(0.3)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rows = sum(result.row_counts.values())
    print(json.dumps({"seconds": seconds, "rss_mb": rss, "tmp_mb": peak[0] / 2**20, "rows": rows}))


def generate(folder: Path, mb: int) -> int:
    """Parquet files of about ``mb`` MB in total (64 MB each): review-like text from a 20,000-word
    vocabulary, a user key and a label. Returns the rows written."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    vocab = np.array([f"w{i:05d}{'x' * int(rng.integers(0, 6))}" for i in range(20_000)])
    folder.mkdir(parents=True)
    written, rows, part = 0, 0, 0
    while written < mb * 2**20:
        n = 50_000
        words = vocab[rng.integers(0, len(vocab), (n, 40))]
        text = pa.array([" ".join(r) for r in words.tolist()])
        table = pa.table(
            {
                "text": text,
                "user": pa.array([f"u{u}" for u in rng.integers(0, 100_000, n)]),
                "label": pa.array(rng.choice(["neg", "pos"], n)),
            }
        )
        path = folder / f"part-{part:04d}.parquet"
        pq.write_table(table, path)
        written += path.stat().st_size
        rows += n
        part += 1
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, nargs=2, default=[500, 2000])
    parser.add_argument("--launch", nargs=6, help=argparse.SUPPRESS)
    args = parser.parse_args()
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):  # moto's; inherited by the launchers
        os.environ.setdefault(name, "testing")
    if args.launch:
        mode, root, proxy, direct, engine, cfg = args.launch
        launch(mode, root, proxy, direct, engine, json.loads(cfg))
        return

    from airflow_mlcrit.core.artifacts import open_store
    from tests.helpers.fault_proxy import FaultProxy
    from tests.helpers.servers import BeamPortableEngine, MotoServer

    moto = MotoServer()
    engine = BeamPortableEngine(isolated=True)
    figures: dict[tuple[str, int], dict] = {}
    try:
        for mb in args.mb:
            with tempfile.TemporaryDirectory(prefix="mlcrit-bench-") as work:
                bucket = f"bench-{mb}"
                moto.client().create_bucket(Bucket=bucket)
                root = f"s3://{bucket}/store"
                rows = generate(Path(work, "data"), mb)
                open_store(root, endpoint_url=moto.endpoint_url, region_name="us-east-1").put(
                    "dataset/bench", Path(work, "data")
                )
                size = sum(p.stat().st_size for p in Path(work, "data").iterdir()) / 2**20
                print(f"dataset {size:.0f} MB, {rows:,} rows, {len(list(Path(work, 'data').iterdir()))} files")
                for mode in ("download-first", "workers/fnapi", "workers/isolated"):
                    proxy = FaultProxy(moto.endpoint_url)
                    child_tmp = Path(work, "launcher-tmp", mode.replace("/", "-"))
                    child_tmp.mkdir(parents=True)
                    out = subprocess.run(
                        [
                            sys.executable,
                            __file__,
                            "--launch",
                            mode,
                            root,
                            proxy.endpoint_url,
                            moto.endpoint_url,
                            json.dumps(engine.options),
                            json.dumps(CONFIG),
                        ],
                        capture_output=True,
                        text=True,
                        env=dict(os.environ, TMPDIR=str(child_tmp)),
                        cwd=REPO,
                    )
                    proxy.stop()
                    if out.returncode:  # e.g. PipelineIntegrityError: the runner lost rows
                        print(f"  {mode:<17} FAILED: {out.stderr.strip().splitlines()[-1][:300]}")
                        continue
                    fig = json.loads(out.stdout.strip().splitlines()[-1])
                    fig["s3_read_mb"] = proxy.counts["bytes_sent"] / 2**20
                    figures[(mode, mb)] = fig
                    print(
                        f"  {mode:<17} {fig['seconds']:7.1f} s   launcher: peak RSS {fig['rss_mb']:7.0f} MB, "
                        f"read from S3 {fig['s3_read_mb']:8.1f} MB, peak tmp {fig['tmp_mb']:8.1f} MB   "
                        f"({fig['rows']:,} rows out)"
                    )
                    client = moto.client()
                    for page in client.get_paginator("list_objects_v2").paginate(
                        Bucket=bucket, Prefix="store/transformed_dataset/"
                    ):
                        for o in page.get("Contents", []):
                            client.delete_object(Bucket=bucket, Key=o["Key"])
                base = figures.get(("download-first", mb), {}).get("seconds")
                for mode in ("workers/fnapi", "workers/isolated"):
                    if base is None or (mode, mb) not in figures:
                        continue
                    print(f"  time {mode} / download-first: {figures[(mode, mb)]['seconds'] / base:.2f}x (goal <= 1.0)")
        small, large = args.mb
        for mode in ("download-first", "workers/fnapi", "workers/isolated"):
            if (mode, small) not in figures or (mode, large) not in figures:
                continue
            a, b = figures[(mode, small)], figures[(mode, large)]
            growth = ", ".join(
                f"{k} {b[k] / a[k]:.2f}x" if a[k] > 0.5 else f"{k} {a[k]:.1f} -> {b[k]:.1f} MB"
                for k in ("rss_mb", "s3_read_mb", "tmp_mb")
            )
            print(f"launcher growth {small} -> {large} MB, {mode}: {growth}")
    finally:
        engine.stop()
        moto.stop()


if __name__ == "__main__":
    main()
