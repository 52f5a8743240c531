"""FineTuneOperator through a real dag.test() run: adapter artifact, lineage, no leftover checkpoints."""

import json
from pathlib import Path

from airflow_mlcrit.core.artifacts import open_store
from tests.airflow.conftest import run_dag, task_states, xcom
from tests.helpers.models import sentiment
from tests.helpers.openlineage import validate_event
from tests.helpers.store_scan import temporary_paths


def test_lora_fine_tune_commits_an_adapter_with_lineage(store_root, tmp_path, tiny_bert, lineage_tail):
    sentiment(128).to_parquet(tmp_path / "train.parquet", index=False)
    dr = run_dag(
        "test_mlcrit_finetune",
        {
            "data": str(tmp_path / "train.parquet"),
            "base": tiny_bert,
            "finetune": {
                "max_steps": 20,
                "batch_size": 16,
                "learning_rate": 2e-2,
                "max_length": 16,
                "checkpoint_every": 10,
                "merge_adapter": True,
                "log_every": 5,
            },
        },
    )
    assert dr.state == "success", task_states(dr)
    store = open_store(store_root)
    adapter = store.resolve("adapter/sentiment@v1")
    files = {f["path"] for f in adapter.files}
    assert {"adapter_config.json", "adapter_model.safetensors", "README.md", "training_metrics.json"} <= files
    assert [p["ref"] for p in adapter.parents] == ["dataset/reviews@v1", "base_model/tiny-bert@v1"]
    assert adapter.metadata["labels"] == ["neg", "pos"] and adapter.metadata["steps"] == 20
    assert adapter.libraries["peft"] and adapter.libraries["torch"]
    assert [k for k in store.list_artifacts() if k.startswith("checkpoint/")] == []  # purged after the commit
    merged = store.resolve("model/sentiment@v1")
    assert [p["ref"] for p in merged.parents] == ["adapter/sentiment@v1", "base_model/tiny-bert@v1"]
    assert "model.safetensors" in {f["path"] for f in merged.files}
    metrics = json.loads(store.read_bytes(adapter.ref, "training_metrics.json"))
    assert metrics["steps"] == 20 and len(metrics["loss_curve"]) == 20
    assert metrics["final_loss"] == round(sum(metrics["loss_curve"]) / 20, 6) and metrics["final_loss_steps"] == 20
    result = xcom(dr, "finetune")
    assert (result["ref"], result["merged"], result["digest"]) == (
        "adapter/sentiment@v1",
        "model/sentiment@v1",
        adapter.digest,
    )
    assert result["summary"]["final_loss"] == metrics["final_loss"]
    events = lineage_tail.events()
    for event in events:
        validate_event(event)
    [done] = [e for e in events if e["eventType"] == "COMPLETE" and e["job"]["name"].endswith(".finetune")]
    assert done["run"]["facets"]["mlcrit_training"]["steps"] == 20
    [out] = [o for o in done["outputs"] if o["name"].endswith("/adapter/sentiment")]
    assert any(o["name"].endswith("/model/sentiment") for o in done["outputs"])
    assert out["facets"]["mlcrit_model"]["method"] == "lora"
    assert out["facets"]["mlcrit_model"]["lora"]["r"] == 8
    assert validate_event(done) >= {"mlcrit_model", "mlcrit_training", "mlcrit_artifact"}
    # the run's scratch directories reach no stored file (training_metrics.json once named the base
    # model by the temporary directory it was fetched into)
    assert metrics["config"]["base_model"] == "base_model/tiny-bert@v1"
    assert temporary_paths(Path(store_root)) == {}

    _the_base_is_pinned(store, Path(store_root), tmp_path, adapter)


def _the_base_is_pinned(store, store_root, tmp_path, adapter):
    """Trained from base_model/tiny-bert@latest, the adapter records v1 and its digest; a newer
    base changes nothing, and a base v1 whose content changed is refused naming both digests."""
    import hashlib
    import re

    import pytest

    from airflow_mlcrit.core.artifacts.store import MANIFEST, content_digest, manifest_digest
    from airflow_mlcrit.core.evaluation.inference import materialize_model
    from airflow_mlcrit.exceptions import ArtifactIntegrityError

    base_v1 = store.resolve("base_model/tiny-bert@v1")
    assert (adapter.metadata["base_model"], adapter.metadata["base_model_digest"]) == (str(base_v1.ref), base_v1.digest)
    config = json.loads(store.read_bytes(adapter.ref, "adapter_config.json"))
    card = store.read_bytes(adapter.ref, "README.md").decode()
    assert config["base_model_name_or_path"] == "base_model/tiny-bert@v1"
    assert "base_model: base_model/tiny-bert@v1" in card and "Trained by airflow-mlcrit on `dataset/reviews@v1`" in card
    assert "mlcrit-finetune-" not in card + json.dumps(config)  # no temporary path of the run
    newer = tmp_path / "newer-base"
    newer.mkdir()
    for f in base_v1.files:  # a different base: same files but a changed config
        (newer / f["path"]).parent.mkdir(parents=True, exist_ok=True)
        (newer / f["path"]).write_bytes(store.read_bytes(base_v1.ref, f["path"]))
    (newer / "config.json").write_text(
        (newer / "config.json").read_text().replace('"hidden_dropout_prob": 0.1', '"hidden_dropout_prob": 0.2')
    )
    assert store.put("base_model/tiny-bert", newer).version == 2
    _, base_dir, _ = materialize_model(store, str(adapter.ref), tmp_path / "load")
    assert (base_dir / "config.json").read_bytes() == store.read_bytes(base_v1.ref, "config.json")
    # forge base v1 consistently (its files and its own digest agree): the adapter's pin refuses it
    vdir = store_root / "base_model/tiny-bert/v000001"
    (vdir / "config.json").chmod(0o644)
    (vdir / "config.json").write_bytes((newer / "config.json").read_bytes())
    manifest = json.loads((vdir / MANIFEST).read_text())
    data = (newer / "config.json").read_bytes()
    for f in manifest["files"]:
        if f["path"] == "config.json":
            f["sha256"], f["size"] = hashlib.sha256(data).hexdigest(), len(data)
    manifest["digest"] = content_digest(manifest["files"])
    manifest["manifest_digest"] = manifest_digest(manifest)
    (vdir / MANIFEST).chmod(0o644)
    (vdir / MANIFEST).write_text(json.dumps(manifest))
    message = (
        f"adapter/sentiment@v1 was trained on base_model/tiny-bert@v1 with digest {base_v1.digest}, but "
        f"base_model/tiny-bert@v1 now has digest {manifest['digest']}: refusing to load the adapter on a different base model"
    )
    with pytest.raises(ArtifactIntegrityError, match=re.escape(message)):
        materialize_model(store, str(adapter.ref), tmp_path / "load-forged")


def test_fine_tune_on_a_transformed_dataset_records_the_contract(store_root, tmp_path, tiny_bert):
    sentiment(200).to_parquet(tmp_path / "train.parquet", index=False)
    dr = run_dag("test_mlcrit_prep_train", {"data": str(tmp_path / "train.parquet"), "base": tiny_bert})
    assert dr.state == "success", task_states(dr)
    store = open_store(store_root)
    adapter = store.resolve("adapter/sentiment@v1")
    assert [p["ref"] for p in adapter.parents] == ["transformed_dataset/reviews@v1", "transform_contract/reviews@v1"]
    assert adapter.metadata["transform_contract"] == "transform_contract/reviews@v1"
    metrics = json.loads(store.read_bytes(adapter.ref, "training_metrics.json"))
    assert [s for s, _ in metrics["eval_curve"]] == [10, 20]
    counts = store.resolve("transformed_dataset/reviews@v1").metadata["row_counts"]
    assert metrics["examples"] == counts["train"]


def test_a_retry_after_the_commit_reuses_the_outputs_instead_of_recomputing(
    store_root, tmp_path, tiny_bert, monkeypatch, lineage_tail
):
    """The expensive steps commit, then their worker dies (try 1 fails after the commit); the
    retries return the committed versions without a second Beam pass, training or profiling, and
    their asset events still carry the committed ref."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    import airflow_mlcrit.core.evaluation.evaluate as evaluation
    import airflow_mlcrit.core.evaluation.inference as inference
    import airflow_mlcrit.core.preprocessing.pipeline as pipeline
    import airflow_mlcrit.core.training.runner as runner
    import airflow_mlcrit.core.validation.statistics as statistics

    calls = {"beam": 0, "training": 0, "statistics": 0, "evaluation": 0, "model loads": 0}

    def counted(fn, what):
        def wrapper(*args, **kwargs):
            calls[what] += 1
            return fn(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(pipeline, "run_preprocess", counted(pipeline.run_preprocess, "beam"))
    monkeypatch.setattr(runner, "run_training", counted(runner.run_training, "training"))
    monkeypatch.setattr(statistics, "compute_statistics", counted(statistics.compute_statistics, "statistics"))
    monkeypatch.setattr(evaluation, "evaluate", counted(evaluation.evaluate, "evaluation"))
    monkeypatch.setattr(inference, "ModelScorer", counted(inference.ModelScorer, "model loads"))
    store = open_store(store_root)
    sentiment(200).to_parquet(tmp_path / "train.parquet", index=False)
    store.put("dataset/reviews", tmp_path / "train.parquet")
    dr = run_dag("test_mlcrit_retry_expensive", {"data": "dataset/reviews@v1", "base": tiny_bert})
    assert dr.state == "success"
    assert task_states(dr) == {t: ("success", 2) for t in ("preprocess", "finetune", "evaluate", "statistics")}
    # the evaluation's retry loads no model (one load: the first try's candidate; no baseline)
    assert calls == {"beam": 1, "training": 1, "statistics": 1, "evaluation": 1, "model loads": 1}
    outputs = ("transformed_dataset/reviews", "adapter/sentiment", "statistics/reviews", "evaluation/sentiment")
    for key in ("transform_contract/reviews", *outputs):
        assert store.versions(key) == [1]
        assert store.resolve(key).producer["try_number"] == 1
    evaluation_v1 = store.resolve("evaluation/sentiment@v1")
    stored = json.loads(store.read_bytes(evaluation_v1.ref, "evaluation.json"))
    assert xcom(dr, "evaluate")["summary"] == stored["slices"][0]["candidate"]
    assert xcom(dr, "evaluate")["report_url"] == f"{evaluation_v1.uri.rstrip('/')}/report.html"
    with create_session() as session:
        events = {
            uri: extra
            for uri, extra in session.query(AssetModel.uri, AssetEvent.extra)
            .join(AssetEvent, AssetEvent.asset_id == AssetModel.id)
            .filter(AssetEvent.source_run_id == dr.run_id)
        }
    assert events == {
        f"mlcrit://{key}": {"ref": f"{key}@v1", "digest": store.resolve(f"{key}@v1").digest} for key in outputs
    }
    adapter = store.resolve("adapter/sentiment@v1")
    assert adapter.producer["try_number"] == 1 and adapter.metadata["steps"] == 10
    # The retry's lineage describes the reused outputs as the first try's did (its FAIL event).
    events = lineage_tail.events()
    for event in events:
        validate_event(event)
    for task, output in (("evaluate", "evaluation/sentiment"), ("statistics", "statistics/reviews")):
        [failed, done] = [
            next(o["facets"] for o in e["outputs"] if o["name"].endswith(output))
            for e in events
            if e["job"]["name"].endswith(f".{task}") and e["eventType"] in ("FAIL", "COMPLETE")
        ]
        assert done == failed
