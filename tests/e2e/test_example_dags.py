"""The example DAGs in dags/, run with `airflow dags test` in a fresh Airflow home (a separate
process per run, as an operator would run them): they all parse, the drift watch triggers a
retraining, and instruction tuning of a tiny causal LM. The flagship mlcrit_text_classifier runs
two weeks of the demo on CeleryExecutor workers in tests/e2e/test_celery.py."""

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


def test_the_drift_watch_starts_a_retraining_when_a_week_drifts(home):
    """Two weeks of the demo's messages (week 2 drifted: more app traffic, slang). The drift watch,
    asked to look at versions after v1, finds week 2 beyond its thresholds and triggers
    mlcrit_text_classifier on it. (The two weeks' training, gate and rollback run under the real
    scheduler: tests/e2e/test_celery.py.)"""
    root, env = home
    for week in ("1", "2"):
        _run(env, "dev/demo.py", "week", week)
    log = _dag(env, "mlcrit_drift_watch", {"after_version": 1})
    assert "dataset/support-messages@v2 vs v1: channel linf=" in log
    runs = _run(env, "-m", "airflow", "dags", "list-runs", "mlcrit_text_classifier", "-o", "json").stdout
    [run] = json.loads(runs.strip().splitlines()[-1])
    assert run["state"] == "queued"  # `dags test` runs no scheduler to start it
    events = [json.loads(line) for line in (root / "lineage.jsonl").read_text().splitlines() if line.strip()]
    assert {e["job"]["name"] for e in events} >= {"mlcrit_drift_watch.wait_for_drift", "mlcrit_drift_watch.retrain"}
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
