"""Artifact store throughput and operator import overhead, each against a baseline in the same run.

    .venv/bin/python dev/bench/bench_artifacts.py [--mb 200] [--repeat 3]

put/get of one file on the local backend vs ``shutil.copyfile``, and on S3 (moto server on
127.0.0.1, started here) vs plain boto3 ``upload_file``/``download_file`` against the same
server; then the import time ``import airflow_mlcrit.operators`` adds to ``import airflow.sdk``.
Throughput ratios are ours / baseline (>= 0.9 is the goal); median of --repeat runs each.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from airflow_mlcrit.core.artifacts import open_store  # noqa: E402


def compare(ours, base, repeat: int) -> tuple[float, float]:
    """Median seconds of ``ours`` and ``base``, interleaved run by run so both see the same disk
    and cache conditions; each run starts with no dirty pages (os.sync, untimed)."""
    times: dict[str, list[float]] = {"ours": [], "base": []}
    for _ in range(repeat):
        for name, fn in (("ours", ours), ("base", base)):
            os.sync()
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return statistics.median(times["ours"]), statistics.median(times["base"])


def row(label: str, mb: float, ours: float, base: float, base_name: str) -> None:
    print(f"{label:<10} ours {mb / ours:8.1f} MB/s   {base_name:<22} {mb / base:8.1f} MB/s   ratio {base / ours:5.2f}x")


def bench_local(src: Path, mb: float, repeat: int, work: Path) -> None:
    store = open_store(work / "store")
    counter = iter(range(10**6))
    put, copy = compare(
        lambda: store.put(f"dataset/bench{next(counter)}", src),
        lambda: shutil.copyfile(src, work / f"copy{next(counter)}.bin"),
        repeat,
    )
    row("local put", mb, put, copy, "shutil.copyfile")
    m = store.resolve("dataset/bench0")
    stored = Path(m.uri.removeprefix("file://")) / src.name
    get, copy_back = compare(
        lambda: store.get("dataset/bench0@v1", work / f"out{next(counter)}"),
        lambda: shutil.copyfile(stored, work / f"back{next(counter)}.bin"),
        repeat,
    )
    row("local get", mb, get, copy_back, "shutil.copyfile")


def bench_s3(src: Path, mb: float, repeat: int, work: Path) -> None:
    from tests.helpers.servers import MotoServer

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    server = MotoServer()
    try:
        client = server.client()
        client.create_bucket(Bucket="bench")
        store = open_store("s3://bench/store", endpoint_url=server.endpoint_url, region_name="us-east-1")
        counter = iter(range(10**6))
        put, base = compare(
            lambda: store.put(f"dataset/bench{next(counter)}", src),
            lambda: client.upload_file(str(src), "bench", f"plain/big{next(counter)}.bin"),
            repeat,
        )
        row("s3 put", mb, put, base, "boto3 upload_file")
        get, base_get = compare(
            lambda: store.get("dataset/bench0@v1", work / f"s3out{next(counter)}"),
            lambda: client.download_file("bench", "plain/big1.bin", str(work / f"s3back{next(counter)}.bin")),
            repeat,
        )
        row("s3 get", mb, get, base_get, "boto3 download_file")
    finally:
        server.stop()


def import_ms(code: str, n: int = 7) -> float:
    samples = []
    for _ in range(n):
        out = subprocess.run(
            [sys.executable, "-c", f"import time; t=time.perf_counter(); {code}; print(time.perf_counter()-t)"],
            capture_output=True,
            text=True,
            check=True,
            cwd=REPO,
        ).stdout
        samples.append(float(out.strip().splitlines()[-1]) * 1000)
    return statistics.median(samples)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="mlcrit-bench-") as tmp:
        work = Path(tmp)
        src = work / "big.bin"
        with open(src, "wb") as f:
            for _ in range(args.mb):
                f.write(os.urandom(1024 * 1024))
        print(f"file: {args.mb} MB, median of {args.repeat} runs")
        bench_local(src, args.mb, args.repeat, work)
        bench_s3(src, args.mb, args.repeat, work)
    sdk = import_ms("import airflow.sdk")
    ours = import_ms("import airflow.sdk; import airflow_mlcrit.operators")
    print(
        f"import    airflow.sdk {sdk:.0f} ms; + airflow_mlcrit.operators {ours:.0f} ms; "
        f"overhead {ours - sdk:.0f} ms (median of 7 fresh interpreters)"
    )


if __name__ == "__main__":
    main()
