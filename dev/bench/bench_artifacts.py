"""Artifact store throughput and operator import overhead, each against a baseline in the same run.

    .venv/bin/python dev/bench/bench_artifacts.py [--mb 200] [--repeat 3]

put/get of one file on the local backend vs ``shutil.copyfile`` (put also vs copyfile + fsync,
the durable equivalent, and SHA-256 alone vs copyfile: the ceiling for any store that hashes
every byte), and on S3 (moto server on 127.0.0.1, started here) vs plain boto3
``upload_file``/``download_file`` against the same server; ``verify`` of a version of --files
small files against ``get`` of the same version (the goal: verify <= 2x get, local and S3); then
the import time ``import airflow_mlcrit.operators`` adds to ``import airflow.sdk``.
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
from airflow_mlcrit.core.artifacts.backends import sha256_file  # noqa: E402


def compare(ours, base, repeat: int) -> tuple[float, float]:
    """Median seconds of ``ours`` and ``base`` (see ``medians``)."""
    m = medians({"ours": ours, "base": base}, repeat)
    return m["ours"], m["base"]


def medians(fns: dict, repeat: int) -> dict[str, float]:
    """Median seconds of each function, interleaved run by run so all see the same disk and
    cache conditions, each started after os.sync (untimed)."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    order = list(fns.items())
    for i in range(repeat):
        # Rotate who goes first: the disk may still be flushing the previous run's writes.
        for name, fn in order[i % len(order) :] + order[: i % len(order)]:
            os.sync()
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t) for name, t in times.items()}


def row(label: str, mb: float, ours: float, base: float, base_name: str) -> None:
    print(f"{label:<10} ours {mb / ours:8.1f} MB/s   {base_name:<22} {mb / base:8.1f} MB/s   ratio {base / ours:5.2f}x")


def bench_local(src: Path, mb: float, repeat: int, work: Path) -> None:
    store = open_store(work / "store")
    counter = iter(range(10**6))

    def durable_copy():
        dst = work / f"dcopy{next(counter)}.bin"
        shutil.copyfile(src, dst)
        with open(dst, "rb") as f:
            os.fsync(f.fileno())

    m = medians(
        {
            "put": lambda: store.put(f"dataset/bench{next(counter)}", src),
            "copy": lambda: shutil.copyfile(src, work / f"copy{next(counter)}.bin"),
            "durable": durable_copy,
            "sha256": lambda: sha256_file(src),
        },
        repeat,
    )
    row("local put", mb, m["put"], m["copy"], "shutil.copyfile")
    row("local put", mb, m["put"], m["durable"], "copyfile + fsync")
    # The ceiling: a put records every byte's SHA-256, which runs on one core (it is sequential).
    # No store that does so can beat this ratio against a copy that never reads the bytes.
    row("sha256", mb, m["sha256"], m["copy"], "shutil.copyfile")
    stored = Path(store.resolve("dataset/bench0").uri.removeprefix("file://")) / src.name
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


def bench_verify(files: int, repeat: int, work: Path) -> None:
    """verify re-hashes every file against a manifest it resolves once: linear in the number of
    files, like get (which also writes them). Ratio: verify seconds / get seconds."""
    from tests.helpers.servers import MotoServer

    payload = work / "many"
    payload.mkdir()
    for i in range(files):
        (payload / f"part-{i:05d}.json").write_bytes(os.urandom(512))
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    server = MotoServer()
    try:
        server.client().create_bucket(Bucket="bench-verify")
        stores = {
            "local": open_store(work / "verify-store"),
            "s3": open_store("s3://bench-verify/store", endpoint_url=server.endpoint_url, region_name="us-east-1"),
        }
        for where, store in stores.items():
            ref = store.put("dataset/many", payload).ref
            outs = (work / f"{where}-out{i}" for i in range(10**6))
            verify, get = compare(lambda: store.verify(ref), lambda: store.get(ref, next(outs)), repeat)  # noqa: B023
            print(f"{where + ' verify':<10} {files} files: verify {verify:6.2f} s   get {get:6.2f} s", end="")
            print(f"   ratio {verify / get:5.2f}x")
    finally:
        server.stop()


def import_ms(n: int = 7) -> tuple[float, float]:
    """Median ms of ``import airflow.sdk`` and of ``import airflow_mlcrit.operators`` right after
    it in the same fresh interpreter (-X importtime's cumulative figure: only what ours adds).

    With bytecode caching on, as on a deployed worker (PYTHONDONTWRITEBYTECODE would time the
    compiler instead); the cache goes to a temporary prefix, filled by one untimed run."""
    sdk, ours = [], []
    with tempfile.TemporaryDirectory(prefix="mlcrit-pycache-") as cache:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["PYTHONPYCACHEPREFIX"] = cache
        for i in range(n + 1):
            err = subprocess.run(
                [sys.executable, "-X", "importtime", "-c", "import airflow.sdk; import airflow_mlcrit.operators"],
                capture_output=True,
                text=True,
                check=True,
                cwd=REPO,
                env=env,
            ).stderr
            if i == 0:
                continue
            cumulative = {}
            for line in err.splitlines():
                parts = line.split("|")
                if len(parts) == 3 and parts[1].strip().isdigit():
                    cumulative[parts[2].strip()] = int(parts[1]) / 1000
            sdk.append(cumulative["airflow.sdk"])
            ours.append(cumulative["airflow_mlcrit.operators"])
    return statistics.median(sdk), statistics.median(ours)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--files", type=int, default=5000, help="files in the verify-vs-get version")
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
        bench_verify(args.files, max(1, args.repeat // 2), work)
    sdk, ours = import_ms()
    print(
        f"import    airflow.sdk {sdk:.0f} ms; airflow_mlcrit.operators after it adds {ours:.0f} ms "
        f"(median of 7 fresh interpreters with warm bytecode caches, -X importtime cumulative)"
    )


if __name__ == "__main__":
    main()
