"""Compare-and-swap under real concurrency: separate processes against one store, local and on
two real S3-compatible servers (moto and SeaweedFS)."""

import multiprocessing as mp
import os
import subprocess
import sys

import pytest

from airflow_mlcrit.core.artifacts import open_store
from airflow_mlcrit.exceptions import ArtifactConflictError
from tests.conftest import store_spec_for

WRITERS = 8
PROBE = "_mlcrit/conditional-write-probe"


@pytest.fixture(params=["local", "s3", "seaweedfs"])
def store_spec(request, tmp_path):
    return store_spec_for(request, tmp_path, request.param)


def _put(root, options, src, barrier, out):
    store = open_store(root, **options)
    barrier.wait()
    out.put(store.put("dataset/shared", src).version)


def _move(root, options, version, barrier, out):
    store = open_store(root, **options)
    barrier.wait()
    try:
        store.move_alias(f"model/m@v{version}", "production", reason=f"to v{version}", expected=1)
        out.put(("won", version))
    except ArtifactConflictError as exc:
        out.put(("conflict", str(exc)))


def _run(target, args_list):
    # spawn, not fork: a forked child inherits the locks that other threads of this test process
    # (Beam, servers of earlier tests) held at that instant, and can hang on one in boto3
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(len(args_list)), ctx.Queue()
    procs = [ctx.Process(target=target, args=(*a, barrier, out)) for a in args_list]
    for p in procs:
        p.start()
    results = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    return results


def test_concurrent_puts_get_distinct_gap_free_versions(store_spec, tmp_path):
    root, options = store_spec
    src = tmp_path / "f.txt"
    src.write_text("same bytes")
    versions = _run(_put, [(root, options, src)] * WRITERS)
    assert sorted(versions) == list(range(1, WRITERS + 1))
    assert open_store(root, **options).versions("dataset/shared") == list(range(1, WRITERS + 1))


def test_concurrent_cli_puts_get_distinct_gap_free_versions(store_spec, tmp_path):
    root, options = store_spec
    src = tmp_path / "f.txt"
    src.write_text("cli bytes")
    env = dict(os.environ, MLCRIT_ARTIFACT_ROOT=root)
    if "endpoint_url" in options:
        env["AWS_ENDPOINT_URL"] = options["endpoint_url"]
    cmd = [sys.executable, "-m", "airflow_mlcrit.core.cli", "--json", "artifacts", "put", "dataset/cli", str(src)]
    procs = [
        subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(WRITERS)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * WRITERS, outputs
    import json

    versions = sorted(json.loads(out)["version"] for out, _err in outputs)
    assert versions == list(range(1, WRITERS + 1))


@pytest.mark.parametrize("round_", range(3))
def test_racing_alias_moves_one_wins_the_other_conflicts(store_spec, tmp_path, round_):
    root, options = store_spec
    store = open_store(root, **options)
    src = tmp_path / "f.txt"
    src.write_text("m")
    for _ in range(3):
        store.put("model/m", src)
    store.move_alias("model/m@v1", "production", reason="bootstrap")
    results = _run(_move, [(root, options, 2), (root, options, 3)])
    won = [r for r in results if r[0] == "won"]
    lost = [r for r in results if r[0] == "conflict"]
    assert len(won) == 1 and len(lost) == 1, results
    assert "production" in lost[0][1] and ("moved concurrently" in lost[0][1] or "not the expected v1" in lost[0][1])
    history = store.alias_history("model/m", "production")
    assert [(h.from_version, h.to_version) for h in history] == [(None, 1), (1, won[0][1])]
    assert store.resolve("model/m@production").version == won[0][1]


def test_a_server_that_ignores_conditional_writes_is_refused_before_anything_is_written(moto_server, tmp_path):
    """Behind a proxy that drops If-None-Match (a server without conditional writes), 8 racing CLI
    puts would all be told "committed" for versions that hold another writer's file. The store's
    probe finds out first: every writer fails with a one-line error, and the bucket stays empty."""
    from tests.conftest import make_s3_root
    from tests.helpers.fault_proxy import FaultProxy

    proxy = FaultProxy(moto_server.endpoint_url, drop_headers={"If-None-Match"})
    try:
        root = make_s3_root(moto_server)
        src = tmp_path / "f.txt"
        src.write_text("racing bytes")
        env = dict(os.environ, MLCRIT_ARTIFACT_ROOT=root, AWS_ENDPOINT_URL=proxy.endpoint_url)
        cmd = [sys.executable, "-m", "airflow_mlcrit.core.cli", "artifacts", "put", "dataset/cli", str(src)]
        procs = [
            subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(WRITERS)
        ]
        outputs = [p.communicate(timeout=120) for p in procs]
        assert [p.returncode for p in procs] == [1] * WRITERS, outputs
        for out, err in outputs:
            assert out == "" and err.count("\n") == 1, err  # one line, no traceback
            assert err.startswith(f"mlcrit: error: refusing to write to {root}: the S3 server at {proxy.endpoint_url} ")
            assert "ignores conditional writes (If-None-Match: *)" in err and "Traceback" not in err
        bucket = root.split("/")[2]
        assert moto_server.client().list_objects_v2(Bucket=bucket).get("KeyCount") == 0  # probe keys removed
        # the same bucket, straight to the server (which enforces them): writes go through
        store = open_store(root, endpoint_url=moto_server.endpoint_url, region_name="us-east-1")
        assert store.put("dataset/cli", src).version == 1
    finally:
        proxy.stop()


def test_the_probe_runs_once_per_bucket_and_prefix(moto_server, tmp_path):
    from airflow_mlcrit.core.artifacts.backends import S3Backend
    from tests.conftest import make_s3_root
    from tests.helpers.fault_proxy import FaultProxy

    proxy = FaultProxy(moto_server.endpoint_url)  # counts what it forwards
    try:
        root = make_s3_root(moto_server)
        store = open_store(root, endpoint_url=proxy.endpoint_url, region_name="us-east-1")
        src = tmp_path / "f.txt"
        src.write_text("x")
        store.put("dataset/a", src)
        probes = [k for k in S3Backend._probed if k[1] == root.split("/")[2]]
        assert probes == [(proxy.endpoint_url, root.split("/")[2], "ml/artifacts")]
        before = proxy.counts["forwarded"]
        store.put("dataset/a", src)
        again = open_store(root, endpoint_url=proxy.endpoint_url, region_name="us-east-1")
        again.put("dataset/a", src)
        assert S3Backend._probed[probes[0]] is None
        # two puts (claim, payload, manifest and their reads) and no more probe writes
        assert not any(PROBE in p for p in proxy.paths[before:])
    finally:
        proxy.stop()
