"""The Beam data plane: workers read a dataset artifact where it is (checked against its manifest)
and write the output shards straight into a staged version; the launcher lists and commits, and
moves no data. On S3 (moto) the launcher's own requests go through a recording proxy, the
workers' straight to the server, so the proxy's log is the launcher's traffic."""

import re

import numpy as np
import pandas as pd
import pytest

from airflow_mlcrit.core.artifacts import open_store
from airflow_mlcrit.core.preprocessing.pipeline import run_preprocess
from airflow_mlcrit.core.validation.statistics import compute_statistics
from airflow_mlcrit.exceptions import ArtifactIntegrityError, ConfigError, DataValidationError
from tests.conftest import make_s3_root
from tests.helpers.fault_proxy import FaultProxy

WORDS = "good bad slow fast friendly rude price delivery quality support refund great late early cheap".split()
CONFIG = {
    "key_column": "user",
    "label_column": "label",
    "near_dedup_threshold": 0.8,
    "analyze_numeric": ["amount"],
    "shards_per_split": 2,
    # in-process workers: the proxy tells the launcher's S3 client from theirs all the same, and
    # the cluster test below runs workers that share nothing with the launcher
    "pipeline_options": {"direct_running_mode": "in_memory"},
}


def _dataset(tmp_path, files: int = 3, rows: int = 400):
    rng = np.random.default_rng(7)
    folder = tmp_path / "reviews"
    folder.mkdir()
    for i in range(files):
        n = np.arange(i * rows, (i + 1) * rows)
        pd.DataFrame(
            {
                "text": [" ".join(rng.choice(WORDS, 10)) + f" ticket {j}" for j in n],
                "user": [f"u{j % 97}" for j in n],
                "label": rng.choice(["neg", "pos"], rows),
                "amount": rng.normal(10, 2, rows),
            }
        ).to_parquet(folder / f"part-{i}.parquet", index=False, row_group_size=100)
    return folder


def _run(store, cfg):
    staged = store.stage("transformed_dataset/reviews")
    result = run_preprocess(cfg, store=store, output=staged)
    return result, store.commit_staged(staged, result.files, parents=[cfg["source"]])


@pytest.fixture
def stores(moto_server, tmp_path):
    """The same dataset in a local store and in an S3 store whose launcher traffic is recorded."""
    data = _dataset(tmp_path)
    local = open_store(tmp_path / "local")
    local.put("dataset/reviews", data)
    root = make_s3_root(moto_server)
    open_store(root, endpoint_url=moto_server.endpoint_url).put("dataset/reviews", data)
    proxy = FaultProxy(moto_server.endpoint_url)
    yield local, open_store(root, endpoint_url=proxy.endpoint_url, region_name="us-east-1"), proxy
    proxy.stop()


def test_workers_move_the_data_and_the_s3_run_equals_the_local_one(stores, moto_server):
    local, s3, proxy = stores
    cfg = {**CONFIG, "source": "dataset/reviews@v1"}
    local_result, local_out = _run(local, cfg)
    # the workers reach the server directly; only the launcher's requests pass the proxy
    s3_cfg = {**cfg, "pipeline_options": {**cfg["pipeline_options"], "s3_endpoint_url": moto_server.endpoint_url}}
    proxy.requests.clear()
    s3_result, s3_out = _run(s3, s3_cfg)

    assert s3_result.row_counts == local_result.row_counts and sum(s3_result.row_counts.values()) == 1200
    assert s3_result.input_rows == 1200 and set(s3_result.analyzers) == set(local_result.analyzers)
    assert s3_result.analyzers["label_vocabulary"] == local_result.analyzers["label_vocabulary"] == ["neg", "pos"]
    for key in ("amount.mean", "amount.std", "amount.quantiles"):  # float sums: order of addition varies
        assert s3_result.analyzers[key] == pytest.approx(local_result.analyzers[key], rel=1e-12)
    # byte-identical shards (rows ordered by content), so the same version digest on both stores
    assert [(f["path"], f["sha256"]) for f in s3_out.files] == [(f["path"], f["sha256"]) for f in local_out.files]
    assert s3_out.digest == local_out.digest
    assert [f["path"] for f in s3_out.files] == [
        f"{split}/part-0000{i}-of-00002.parquet" for split in ("eval", "test", "train") for i in (0, 1)
    ]
    payload = re.compile(r"/(dataset/reviews/v000001|transformed_dataset/reviews/v000001)/(?!_).*\.parquet")
    launcher_reads = [(m, p) for m, p in proxy.requests if m == "GET" and payload.search(p)]
    assert launcher_reads == []  # the launcher never downloaded a byte of input or output data
    assert any(m == "PUT" and p.endswith("/_MANIFEST.json") for m, p in proxy.requests)  # it did commit
    assert not s3.backend.list_keys("transformed_dataset/reviews/v000001/_staging")
    assert s3.verify(s3_out.ref).digest == s3_out.digest  # what the workers recorded is what is stored


def test_a_corrupt_input_file_fails_the_run_in_the_worker_naming_it(stores, moto_server):
    _, s3, _ = stores
    key = "dataset/reviews/v000001/part-1.parquet"
    data = bytearray(s3.backend.read_bytes(key))
    data[200] ^= 0xFF
    s3.backend.write_bytes(key, bytes(data))
    options = {"direct_running_mode": "in_memory", "s3_endpoint_url": moto_server.endpoint_url}
    staged = s3.stage("transformed_dataset/reviews")
    with pytest.raises(ArtifactIntegrityError, match=r"part-1.parquet of dataset/reviews@v1 does not match its manif"):
        run_preprocess({**CONFIG, "source": "dataset/reviews@v1", "pipeline_options": options}, store=s3, output=staged)
    s3.abandon(staged, "test")
    assert s3.versions("transformed_dataset/reviews") == []
    assert s3.backend.list_keys("transformed_dataset/reviews/v000001") == [
        "transformed_dataset/reviews/v000001/_MANIFEST.json"  # gc's tombstone: the number is not reused
    ]


def test_dask_runner_is_refused(tmp_path):
    runner = "apache_beam.runners.dask.dask_runner.DaskRunner"
    with pytest.raises(ConfigError, match="silently drops transforms it does not translate"):
        run_preprocess({"source": str(_dataset(tmp_path)), "runner": runner}, workdir=tmp_path / "w")


@pytest.mark.slow
def test_a_cluster_that_shares_no_disk_with_the_launcher(stores, moto_server, tmp_path):
    """The portable runner's job service and worker pool in their own mount namespace with a
    private /tmp: the launcher's files (this test's tmp_path, the local store) do not exist there.
    The S3 run still equals the local FnApiRunner run, digest for digest."""
    from tests.helpers.servers import BeamPortableEngine

    local, s3, proxy = stores
    engine = BeamPortableEngine(isolated=True)
    try:
        cfg = {**CONFIG, "source": "dataset/reviews@v1"}
        _, local_out = _run(local, cfg)
        remote = {**engine.options, "s3_endpoint_url": moto_server.endpoint_url, "s3_region_name": "us-east-1"}
        proxy.requests.clear()
        result, s3_out = _run(s3, {**cfg, "runner": "PortableRunner", "pipeline_options": remote})
        assert s3_out.digest == local_out.digest and sum(result.row_counts.values()) == 1200
        payload = re.compile(r"/(dataset|transformed_dataset)/reviews/v000001/(?!_).*\.parquet")
        assert [p for m, p in proxy.requests if m == "GET" and payload.search(p)] == []

        # Beam statistics on the same cluster: the workers read and report; equal to the arrow engine's
        staged = s3.stage("statistics/reviews")
        stats_cfg = {"source": "dataset/reviews@v1", "engine": "beam", "runner": "PortableRunner"}
        beam = compute_statistics({**stats_cfg, "pipeline_options": remote}, store=s3, output=staged).statistics
        arrow = compute_statistics({"source": "dataset/reviews@v1"}, store=local).statistics
        assert (beam["rows"], beam["duplicate_rows"], sorted(beam["columns"])) == (1200, 0, sorted(arrow["columns"]))
        assert beam["columns"]["amount"]["mean"] == pytest.approx(arrow["columns"]["amount"]["mean"], rel=1e-12)
        assert [p for m, p in proxy.requests if m == "GET" and payload.search(p)] == []

        # a path only the launcher can see fails loudly on that cluster
        (tmp_path / "launcher-only").mkdir()
        data = _dataset(tmp_path / "launcher-only", files=1)
        with pytest.raises(DataValidationError, match=r"launcher-only/reviews/part-0.parquet does not exist"):
            run_preprocess(
                {**cfg, "source": str(data), "runner": "PortableRunner", "pipeline_options": remote},
                workdir=tmp_path / "w",
            )
    finally:
        engine.stop()


_LAUNCHER = """
import sys
from airflow_mlcrit.core.artifacts import open_store
from airflow_mlcrit.core.preprocessing.pipeline import run_preprocess
store = open_store(sys.argv[1], endpoint_url=sys.argv[2], region_name="us-east-1")
staged = store.stage("transformed_dataset/reviews")
print(staged.version, flush=True)
result = run_preprocess({**%r, "source": "dataset/reviews@v1"}, store=store, output=staged)
store.commit_staged(staged, result.files)
print("committed", flush=True)
"""


@pytest.mark.slow
def test_a_launcher_killed_mid_pipeline_leaves_staging_that_gc_removes(stores, moto_server):
    import os
    import signal
    import subprocess
    import sys
    import time

    _, s3, _ = stores
    s3 = open_store(s3.root_uri, endpoint_url=moto_server.endpoint_url, region_name="us-east-1")
    cfg = {**CONFIG, "shards_per_split": 4}
    launcher = subprocess.Popen(
        [sys.executable, "-c", _LAUNCHER % cfg, s3.root_uri, moto_server.endpoint_url],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert launcher.stdout.readline().strip() == "1"
    deadline = time.monotonic() + 120
    while not any(k.endswith(".parquet") for k in s3.backend.list_keys("transformed_dataset/reviews/v000001")):
        assert launcher.poll() is None and time.monotonic() < deadline, "no shard was written"
        time.sleep(0.05)
    os.killpg(launcher.pid, signal.SIGKILL)  # the launcher and its workers, as a lost machine goes
    launcher.wait(30)
    assert s3.versions("transformed_dataset/reviews") == []  # nothing visible

    result, out = _run(s3, {**cfg, "source": "dataset/reviews@v1"})  # the retry
    assert (out.version, sum(result.row_counts.values())) == (2, 1200)
    assert s3.versions("transformed_dataset/reviews") == [2]
    [orphan] = s3.gc(grace_seconds=0, dry_run=False)
    assert orphan.ref == "transformed_dataset/reviews@v1"
    assert s3.backend.list_keys("transformed_dataset/reviews/v000001") == [
        "transformed_dataset/reviews/v000001/_MANIFEST.json"
    ]
    assert s3.versions("transformed_dataset/reviews") == [2] and s3.verify(out.ref).digest == out.digest


def test_single_machine_steps_stream_a_stored_dataset_file_by_file(stores):
    """Statistics, validation, evaluation and training read a dataset through open_table: the
    version's files one at a time, each checked against its digest, never a copy of the whole."""
    from airflow_mlcrit.core.tables import iter_batches, open_table

    local, s3, proxy = stores

    def fetched() -> list[str]:
        return [p.rsplit("/", 1)[-1] for m, p in proxy.requests if m == "GET" and p.endswith(".parquet")]

    proxy.requests.clear()
    with open_table("dataset/reviews@v1", store=s3) as table:
        batches = iter_batches(table, 100)
        first = next(batches)
        assert (first.num_rows, fetched()) == (100, ["part-0.parquet"])  # the next files are not read yet
        rows = first.num_rows + sum(b.num_rows for b in batches)
    assert (rows, fetched()) == (1200, ["part-0.parquet", "part-1.parquet", "part-2.parquet"])
    stats = compute_statistics({"source": "dataset/reviews@v1"}, store=s3).statistics
    assert stats["rows"] == compute_statistics({"source": "dataset/reviews@v1"}, store=local).statistics["rows"]

    key = "dataset/reviews/v000001/part-2.parquet"
    data = bytearray(s3.backend.read_bytes(key))
    data[-100] ^= 0xFF
    s3.backend.write_bytes(key, bytes(data))
    with pytest.raises(ArtifactIntegrityError, match=r"part-2.parquet of dataset/reviews@v1 does not match its manif"):
        compute_statistics({"source": "dataset/reviews@v1"}, store=s3)
    s3.backend.delete(key)
    with pytest.raises(
        ArtifactIntegrityError, match=re.escape("part-2.parquet of dataset/reviews@v1 is listed in its manifest")
    ):
        compute_statistics({"source": "dataset/reviews@v1"}, store=s3)
