"""Page times of the ML registry (the Airflow UI plugin) as the store grows with unrelated history.

    .venv/bin/python dev/bench/bench_registry.py [--sizes 100 1000 10000] [--s3-sizes 100 1000] [--repeat 5]
        [--own-sizes 100 1000]

For each size N, a store holds adapter/clf (10 versions, each evaluated and gated, production
moved twice: what the pages are about) and N versions of unrelated artifacts (dataset/noise-0..9,
tiny files). The registry's FastAPI app renders the index, adapter/clf's artifact page and its
evolution page (auth is Airflow's and is left out here: the plugin's own work is measured). The
baseline is the same page on the smallest store, in the same run; the goal: every page under
300 ms at 10,000 versions on the local store, and within 2x of its time at 100. On S3 (a moto
server on 127.0.0.1, started here) the same pages, at the --s3-sizes. With --own-sizes, first a
store where ONE adapter has that many versions of its own, each evaluated and gated and every
10th promoted: its artifact, evolution and compare pages, against the smallest such store.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

PAGES = {"index": "/", "artifact": "/a/adapter/clf", "evolution": "/e/adapter/clf"}
# the compare page of the newest version against the one before it (judged against production)
OWN_PAGES = {"artifact": "/a/adapter/clf", "evolution": "/e/adapter/clf", "compare": "/c/adapter/clf?b=latest"}


def adapter_history(store, work: Path, versions: int, promote_every: int) -> None:
    """adapter/clf with ``versions`` versions, each evaluated against production and gated (as the
    flagship DAG does), every ``promote_every``-th promoted."""
    from airflow_mlcrit.core.gating import promote
    from tests.helpers.registry import FIRST, LENIENT, add_adapter_version

    work.mkdir(parents=True)
    add_adapter_version(store, work, 16, baseline=None, base_right=0, gate=FIRST)
    promote(store, "adapter/clf@v1", "production", reason="first", actor="bench", create=True)
    for v in range(2, versions + 1):
        production = store.alias_version("adapter/clf", "production")
        add_adapter_version(store, work, 16 + v % 3, baseline=production, base_right=16, gate=LENIENT)
        if v % promote_every == 0:
            promote(store, f"adapter/clf@v{v}", "production", reason="blessed", actor="bench")


def build(store, work: Path, unrelated: int) -> None:
    """adapter/clf's 10 versions (production moved at v5 and v10) and ``unrelated`` versions of
    other artifacts."""
    adapter_history(store, work, 10, promote_every=5)
    tiny = work / "noise.txt"
    for i in range(unrelated):
        tiny.write_text(f"row {i}\n")
        store.put(f"dataset/noise-{i % 10}", tiny)


def build_own_history(store, work: Path, versions: int) -> None:
    """ONE adapter with ``versions`` versions of its own, every 10th promoted: what grows as one
    model is retrained week after week."""
    adapter_history(store, work, versions, promote_every=10)


def client_for(store):
    from airflow.api_fastapi.core_api.security import get_user
    from fastapi.testclient import TestClient

    from airflow_mlcrit.plugins import app as registry

    class User:
        def get_id(self) -> str:
            return "bench"

        def get_name(self) -> str:
            return "bench"

    app = registry.create_app(lambda: store)
    for dep in (*registry.READ, *registry.EDIT):
        app.dependency_overrides[dep.dependency] = lambda: None
    app.dependency_overrides[get_user] = User
    registry._can_edit = lambda user: True  # the page with its forms, as an editor sees it
    return TestClient(app)


def page_times(store, repeat: int, pages: dict[str, str] = PAGES) -> dict[str, float]:
    client = client_for(store)
    out = {}
    for name, path in pages.items():
        assert client.get(path).status_code == 200, (name, client.get(path).text[:500])
        runs = []
        for _ in range(repeat):
            t = time.perf_counter()
            client.get(path)
            runs.append(time.perf_counter() - t)
        out[name] = statistics.median(runs)
    return out


def report(label: str, results: dict[int, dict[str, float]]) -> None:
    sizes = sorted(results)
    base = results[sizes[0]]
    pages = list(base)
    print(f"\n{label}: median ms per page (ratio to the {sizes[0]}-version store, same run)")
    print(f"{'versions':>9}  " + "  ".join(f"{p:>18}" for p in pages))
    for n in sizes:
        cells = [f"{results[n][p] * 1000:8.1f} ({results[n][p] / base[p]:4.2f}x)" for p in pages]
        print(f"{n:>9}  " + "  ".join(f"{c:>18}" for c in cells))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 10000])
    ap.add_argument("--s3-sizes", type=int, nargs="*", default=[100, 1000])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument(
        "--own-sizes", type=int, nargs="*", default=[], help="ONE adapter's own history: 100 1000 (10000: hours)"
    )
    args = ap.parse_args()
    from airflow_mlcrit.core.artifacts import open_store

    with tempfile.TemporaryDirectory() as tmp:

        def measure(what: str, sizes: list[int], open_one, build_one, pages=PAGES) -> dict[int, dict[str, float]]:
            out = {}
            for n in sizes:
                store = open_one(n)
                t = time.perf_counter()
                build_one(store, Path(tmp) / f"work-{what}-{n}", n)
                print(f"{what} ({n}) built in {time.perf_counter() - t:.1f} s")
                out[n] = page_times(store, args.repeat, pages)
            return out

        def local(n: int):
            return open_store(Path(tmp) / f"store-{n}-{time.perf_counter_ns()}")

        if args.own_sizes:
            own = measure("one adapter's own versions", args.own_sizes, local, build_own_history, OWN_PAGES)
            report("one adapter's own history, local store", own)
        report("local store", measure("unrelated versions, local store", args.sizes, local, build))
        if args.s3_sizes:
            import os

            os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
            os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
            os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
            from tests.helpers.servers import MotoServer

            server = MotoServer()

            def on_s3(n: int):
                bucket = f"bench-{n}"
                server.client().create_bucket(Bucket=bucket)
                return open_store(f"s3://{bucket}/ml", endpoint_url=server.endpoint_url)

            try:
                report("S3 (moto server)", measure("unrelated versions, S3", args.s3_sizes, on_s3, build))
            finally:
                server.stop()


if __name__ == "__main__":
    main()
