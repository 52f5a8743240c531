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
from airflow_mlcrit.exceptions import ArtifactIntegrityError, ConfigError
from tests.conftest import make_s3_root
from tests.helpers.fault_proxy import FaultProxy

WORDS = "good bad slow fast friendly rude price delivery quality support refund great late early cheap".split()
CONFIG = {
    "key_column": "user",
    "label_column": "label",
    "near_dedup_threshold": 0.8,
    "analyze_numeric": ["amount"],
    "shards_per_split": 2,
    "pipeline_options": {"direct_num_workers": 2},
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
    options = {"direct_num_workers": 2, "s3_endpoint_url": moto_server.endpoint_url}
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
