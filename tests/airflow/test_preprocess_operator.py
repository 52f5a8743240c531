"""BeamPreprocessOperator through a real dag.test() run: artifacts, contract, lineage."""

import json

import pandas as pd

from airflow_mlcrit.core.artifacts import open_store
from tests.airflow.conftest import run_dag, task_states
from tests.helpers.openlineage import validate_event


def test_preprocess_commits_splits_and_contract(store_root, tmp_path, lineage_tail):
    df = pd.DataFrame(
        {
            "text": [f"Review  {i}: GOOD service" for i in range(300)] + ["Review  1: GOOD service"],
            "label": ["pos", "neg", "pos"] * 100 + ["neg"],
            "user": [f"u{i % 60}" for i in range(301)],
        }
    )
    df.to_parquet(tmp_path / "in.parquet", index=False)
    dr = run_dag(
        "test_mlcrit_preprocess",
        {
            "data": str(tmp_path / "in.parquet"),
            "preprocess": {
                "key_column": "user",
                "label_column": "label",
                "lowercase": True,
                "pipeline_options": {"direct_running_mode": "in_memory"},
            },
        },
    )
    assert dr.state == "success", task_states(dr)
    store = open_store(store_root)
    out = store.resolve("transformed_dataset/reviews@v1")
    counts = json.loads(store.read_bytes(out.ref, "row_counts.json"))
    assert sum(counts.values()) == 300 and set(counts) == {"train", "eval", "test"}
    assert out.metadata["row_counts"] == counts and out.metadata["input_rows"] == 301
    assert sorted(f["path"] for f in out.files) == [
        "eval/part-00000-of-00001.parquet",
        "row_counts.json",
        "test/part-00000-of-00001.parquet",
        "train/part-00000-of-00001.parquet",
    ]
    assert [p["ref"] for p in out.parents] == ["dataset/reviews@v1", "transform_contract/reviews@v1"]
    contract = json.loads(store.read_bytes("transform_contract/reviews@v1", "transform_contract.json"))
    assert contract["components"]["label_vocabulary"] == ["neg", "pos"]
    assert contract["components"]["normalization"] == {"form": "NFKC", "lowercase": True, "normalize": True}
    events = lineage_tail.events()
    for event in events:
        validate_event(event)
    [done] = [e for e in events if e["eventType"] == "COMPLETE" and e["job"]["name"].endswith(".preprocess")]
    assert done["job"]["facets"]["mlcrit_beam"]["runner"] == "FnApiRunner"
    assert done["job"]["facets"]["mlcrit_beam"]["rowCounts"] == counts
    [data_out] = [o for o in done["outputs"] if o["name"].endswith("/transformed_dataset/reviews")]
    assert data_out["outputFacets"]["outputStatistics"]["rowCount"] == 300
    assert [f["name"] for f in data_out["facets"]["schema"]["fields"]] == ["text", "label", "user", "label_id"]
    [data_in] = [i for i in done["inputs"] if i["name"].endswith("/dataset/reviews")]
    assert data_in["facets"]["schema"]["fields"][0] == {"name": "text", "type": "large_string"}
    assert validate_event(done) >= {"mlcrit_beam", "outputStatistics", "mlcrit_artifact"}


def test_bad_input_creates_no_artifact(store_root, tmp_path):
    pd.DataFrame({"body": ["a", "b"]}).to_parquet(tmp_path / "in.parquet", index=False)
    dr = run_dag(
        "test_mlcrit_preprocess",
        {
            "data": str(tmp_path / "in.parquet"),
            "preprocess": {"pipeline_options": {"direct_running_mode": "in_memory"}},
        },
    )
    assert dr.state == "failed" and task_states(dr)["preprocess"][0] == "failed"
    assert open_store(store_root).list_artifacts() == ["dataset/reviews"]
