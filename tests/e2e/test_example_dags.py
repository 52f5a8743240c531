"""The example DAGs in dags/, run with `airflow dags test` in a fresh Airflow home (a separate
process per run, as an operator would run them): two weeks of mlcrit_text_classifier on the demo
data with the real all-MiniLM-L6-v2 encoder, a rollback, and instruction tuning of a tiny causal LM."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from airflow_mlcrit.core.artifacts import open_store
from tests.helpers.airflow_home import airflow_home
from tests.helpers.openlineage import validate_event

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    env = airflow_home(root)
    return root, env


def _run(env, *args, ok=True):
    proc = subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, cwd=REPO, timeout=900)
    if ok and proc.returncode != 0:
        raise AssertionError(f"{args} exited {proc.returncode}:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def _dag(env, dag_id, conf):
    proc = _run(env, "-m", "airflow", "dags", "test", dag_id, "--conf", json.dumps(conf))
    assert "state=success" in proc.stdout + proc.stderr, (proc.stdout + proc.stderr)[-3000:]
    return proc.stdout + proc.stderr


def _rows(store, ref, dest) -> list[dict]:
    import pyarrow.parquet as pq

    store.get(ref, dest)
    return [r for p in sorted(dest.rglob("*.parquet")) for r in pq.read_table(p).to_pylist()]


def _quarantined_rows_never_reach_training(store, tmp_path):
    """The planted PII rows and second exports are in the quarantine artifact and in no split of
    the transformed dataset, which was made from the clean dataset (its contract's parent)."""
    import runpy

    demo = runpy.run_path(str(REPO / "dev" / "demo.py"))
    PLANTED_DUPLICATES, PLANTED_PII = demo["PLANTED_DUPLICATES"], demo["PLANTED_PII"]
    quarantined = _rows(store, "quarantine/support-messages@v1", tmp_path / "quarantine")
    assert sorted(r["message_id"] for r in quarantined) == sorted(
        [f"w1-pii-{i}" for i in range(len(PLANTED_PII))] + [f"w1-1-{i:06d}" for i in range(PLANTED_DUPLICATES)]
    )
    contract = store.resolve("transform_contract/support-messages@v1")
    assert [p["ref"] for p in contract.parents] == ["dataset/support-messages-clean@v1"]
    transformed = store.resolve("transformed_dataset/support-messages@v1")
    assert [p["ref"] for p in transformed.parents] == ["dataset/support-messages-clean@v1", str(contract.ref)]
    splits = _rows(store, transformed.ref, tmp_path / "splits")
    assert len(splits) == sum(transformed.metadata["row_counts"].values()) > 2000  # exact dedup of texts, too
    ids = [r["message_id"] for r in splits]
    assert not {i for i in ids if "-pii-" in i} and not set(PLANTED_PII) & {r["text"] for r in splits}
    assert len(ids) == len(set(ids))  # each twice-exported row once: its second copy is quarantined


def test_two_weeks_of_the_text_classifier_then_a_rollback(home, tmp_path):
    root, env = home
    store = open_store(root / "artifacts")
    _run(env, "dev/demo.py", "setup")
    conf = {"steps": 80, "replicates": 300}
    _run(env, "dev/demo.py", "week", "1")
    _dag(env, "mlcrit_text_classifier", conf)
    assert store.resolve("adapter/support-sentiment@production").version == 1  # first model: absolute gate
    _quarantined_rows_never_reach_training(store, tmp_path)
    _run(env, "dev/demo.py", "week", "2")
    log = _dag(env, "mlcrit_text_classifier", conf)
    assert "NOT_BLESSED: skipping promote" in log
    ev = store.resolve("evaluation/support-sentiment@v2")
    assert ev.metadata["baseline"] == "adapter/support-sentiment@v1"
    [blessing] = [c for c in store.children(ev.ref) if c.kind == "blessing"]
    doc = json.loads(store.read_bytes(blessing.ref, "blessing.json"))
    failed = [c["slice"] for c in doc["checks"] if c["status"] == "failed"]
    assert doc["decision"] == "NOT_BLESSED" and "channel=phone" in failed  # the broken phone export, caught
    assert store.resolve("adapter/support-sentiment@production").version == 1
    summary = _run(env, "dev/demo.py", "summary").stdout
    assert "channel=phone" in summary and "report.html" in summary
    # the drift watch, asked to look at versions after v1: week 2 drifted, so it starts a retraining
    log = _dag(env, "mlcrit_drift_watch", {"after_version": 1})
    assert "dataset/support-messages@v2 vs v1: channel linf=" in log
    runs = _run(env, "-m", "airflow", "dags", "list-runs", "mlcrit_text_classifier", "-o", "json").stdout
    states = sorted(r["state"] for r in json.loads(runs.strip().splitlines()[-1]))
    assert states == ["queued", "success", "success"]  # the two weeks above, and the retraining it started
    # an operator overrides the gate (recorded as forced), then rolls back with the rollback DAG
    _run(
        env,
        "-m",
        "airflow_mlcrit.core.cli",
        "promote",
        "adapter/support-sentiment@v2",
        "--alias",
        "production",
        "--reason",
        "override for a demo",
        "--force",
    )
    _dag(env, "mlcrit_rollback", {"reason": "phone regression confirmed in production"})
    history = store.alias_history("adapter/support-sentiment", "production")
    assert [(m.to_version, m.forced) for m in history] == [(1, False), (2, True), (1, False)]
    assert history[-1].reason == "phone regression confirmed in production"
    events = [json.loads(line) for line in (root / "lineage.jsonl").read_text().splitlines() if line.strip()]
    assert len(events) > 40
    for event in events:  # against the vendored official schemas and ours, on any clone
        validate_event(event)


def test_example_dags_have_no_import_errors(home):
    _, env = home
    _run(env, "-m", "airflow", "dags", "reserialize")  # parse dags/ as the dag-processor would
    out = _run(env, "-m", "airflow", "dags", "list-import-errors", "-o", "json").stdout
    assert json.loads(out.strip().splitlines()[-1]) == []
    listed = _run(env, "-m", "airflow", "dags", "list", "-o", "json").stdout
    assert {d["dag_id"] for d in json.loads(listed.strip().splitlines()[-1])} >= {
        "mlcrit_text_classifier",
        "mlcrit_instruction_tuning",
        "mlcrit_drift_watch",
        "mlcrit_rollback",
        "mlcrit_register_dataset",
    }


def test_instruction_tuning_dag(home, tmp_path):
    import pandas as pd

    from tests.helpers.models import QA, build_tiny_gpt2

    root, env = home
    store = open_store(root / "artifacts")
    store.put("base_model/support-lm", build_tiny_gpt2(tmp_path / "gpt2"))
    rows = [{"prompt": q, "response": a, "question": f"Q: {q} A:", "answer": a, "topic": q.split()[3]} for q, a in QA]
    pd.DataFrame(rows * 20).to_parquet(tmp_path / "train.parquet", index=False)
    pd.DataFrame(rows * 2).to_parquet(tmp_path / "eval.parquet", index=False)
    store.put("dataset/support-instructions", tmp_path / "train.parquet")
    store.put("dataset/support-instructions-eval", tmp_path / "eval.parquet")
    import io

    import pyarrow.parquet as pq

    from airflow_mlcrit.core.evaluation.metrics import token_f1

    log = _dag(env, "mlcrit_instruction_tuning", {"steps": 60})
    ev = json.loads(store.read_bytes("evaluation/support-lm@v1", "evaluation.json"))
    assert [s["name"] for s in ev["slices"]] == ["overall", "topic=capital", "topic=color"]
    preds = pq.read_table(io.BytesIO(store.read_bytes("evaluation/support-lm@v1", "predictions.parquet")))
    answers = [r["answer"] for r in rows * 2]
    direct = sum(map(token_f1, answers, preds.column("candidate_pred").to_pylist())) / len(answers)
    assert ev["slices"][0]["candidate"]["token_f1"]["value"] == pytest.approx(direct, abs=1e-12)
    # a randomly initialised 2-layer LM gives LoRA too little to adapt in 60 steps: the gate says so
    doc = json.loads(store.read_bytes("blessing/support-lm@v1", "blessing.json"))
    assert doc["decision"] == "NOT_BLESSED" and doc["failures"][0].startswith("token_f1 on slice 'overall' is ")
    assert "NOT_BLESSED: skipping promote" in log and not store.exists("adapter/support-lm@production")
