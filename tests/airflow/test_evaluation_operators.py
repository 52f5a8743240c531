"""Evaluate -> gate -> promote, and rollback, through real dag.test() runs on real tiny BERT
adapters: the promote/rollback round trip, a NOT_BLESSED short circuit, lineage, the report."""

import json
from pathlib import Path

import numpy as np
import pytest

from airflow_mlcrit.core.artifacts import open_store
from tests.airflow.conftest import demand_models, run_dag, task_states, xcom
from tests.helpers.models import sentiment
from tests.helpers.openlineage import validate_event

EVAL = {"slices": ["region"], "replicates": 200, "min_slice_size": 20, "sensitivity": ["casing", "typos"]}
SUITE = {
    "name": "edge-cases",
    "tests": [
        {"name": "casing", "type": "INV", "perturbation": "casing", "texts": ["great day", "awful day"]},
        {"name": "basic", "type": "MFT", "cases": [{"text": "the service was great and fast", "expected": "pos"}]},
    ],
}


@pytest.fixture(scope="module")
def trained_adapters(tmp_path_factory, tiny_bert):
    """Two LoRA adapters of tiny-bert, trained once per module (deterministic: the same seed and
    data give the same weights): 2 steps (barely trained) and 60 steps (trained well)."""
    from airflow_mlcrit.core.training.finetune import finetune

    work = tmp_path_factory.mktemp("adapters")
    sentiment(256).to_parquet(work / "train.parquet", index=False)
    return [
        finetune(
            {"base_model": tiny_bert, "max_steps": steps, "batch_size": 16, "learning_rate": 2e-2, "max_length": 16},
            str(work / "train.parquet"),
            workdir=work / f"train-{steps}",
        ).output_dir
        for steps in (2, 60)
    ]


@pytest.fixture
def models(store_root, tmp_path, tiny_bert, trained_adapters):
    """base_model/tiny-bert@v1 and two LoRA adapters of it: v1 barely trained, v2 trained well."""
    store = open_store(store_root)
    base = store.put("base_model/tiny-bert", tiny_bert)
    for output_dir in trained_adapters:
        store.put(
            "adapter/sentiment",
            output_dir,
            metadata={"base_model": "base_model/tiny-bert@v1", "base_model_digest": base.digest},
        )
    frame = sentiment(240, seed=7)
    frame["region"] = np.repeat(["CA", "NE", "TX"], 80)
    frame.to_parquet(tmp_path / "eval.parquet", index=False)
    store.put("dataset/eval", tmp_path / "eval.parquet")
    (tmp_path / "suite.json").write_text(json.dumps(SUITE))
    store.put("suite/edge-cases", tmp_path / "suite.json")
    return store


def _run(candidate, gate, reason, blessing=None, data="dataset/eval@v1", baseline_evaluation=None):
    return run_dag(
        "test_mlcrit_evaluate",
        {
            "candidate": candidate,
            "eval": data,
            "baseline_evaluation": baseline_evaluation,
            "evaluate": EVAL,
            "gate": gate,
            "suites": ["suite/edge-cases@v1"],
            "blessing": blessing,
            "reason": reason,
        },
    )


FIRST = {"thresholds": [{"metric": "accuracy", "min": 0.3}, {"metric": "accuracy", "change": "superiority"}]}
BETTER = {"thresholds": [{"metric": "accuracy", "change": "superiority", "margin": 0.05, "slices": "all"}]}


def test_promote_promote_rollback_round_trip(models, lineage_tail):
    store = models
    dr = _run("adapter/sentiment@v1", FIRST, "first model, absolute thresholds")
    assert dr.state == "success", task_states(dr)
    ev1 = store.resolve("evaluation/sentiment@v1")
    assert ev1.metadata["baseline"] is None  # production was not set: first model
    assert store.resolve("blessing/sentiment@v1").metadata["decision"] == "BLESSED"
    dr = _run("adapter/sentiment@v2", BETTER, "beats v1 on every region")
    assert dr.state == "success", task_states(dr)
    ev2 = store.resolve("evaluation/sentiment@v2")
    assert ev2.metadata["baseline"] == "adapter/sentiment@v1"
    assert ev2.metadata["baseline_digest"] == store.resolve("adapter/sentiment@v1").digest
    result = json.loads(store.read_bytes(ev2.ref, "evaluation.json"))
    names = [s["name"] for s in result["slices"]]
    assert names == ["overall", "region=CA", "region=NE", "region=TX"]
    assert all(s["difference"]["accuracy"]["low"] > 0.05 for s in result["slices"])
    assert [t["pass_rate"] for t in result["suites"]["candidate"][0]["tests"]][1] == 1.0
    assert [p["perturbation"] for p in result["sensitivity"]] == ["casing", "typos"]
    from airflow_mlcrit.operators.evaluation import EvaluationReportLink

    # what the task's "Evaluation report" extra link shows: the report inside the committed version
    assert xcom(dr, "evaluate")["report_url"] == f"{ev2.uri.rstrip('/')}/report.html"
    assert EvaluationReportLink.name == "Evaluation report"
    html = store.read_bytes(ev2.ref, "report.html").decode()
    assert "accuracy by gated slice, worst first" in html and "<svg" in html and "region=NE" in html
    dr = run_dag("test_mlcrit_rollback", {"reason": "v2 misbehaves on live traffic"})
    assert dr.state == "success", task_states(dr)
    assert store.resolve("adapter/sentiment@production").version == 1
    history = store.alias_history("adapter/sentiment", "production")
    assert [(m.from_version, m.to_version, m.reason) for m in history] == [
        (None, 1, "first model, absolute thresholds"),
        (1, 2, "beats v1 on every region"),
        (2, 1, "v2 misbehaves on live traffic"),
    ]
    assert [m.extra.get("blessing") for m in history] == ["blessing/sentiment@v1", "blessing/sentiment@v2", None]
    assert history[2].extra["rollback"] is True and not any(m.forced for m in history)
    events = [e for e in lineage_tail.events() if e["eventType"] == "COMPLETE"]
    seen = set()
    for event in events:
        seen |= validate_event(event)
    assert {"mlcrit_evaluation", "mlcrit_blessing", "mlcrit_alias_move"} <= seen
    [rb] = [e for e in events if e["job"]["name"].endswith(".rollback")]
    assert rb["run"]["facets"]["mlcrit_alias_move"]["rollback"] is True
    # a copy of the hash chain outside the store: the entry each move wrote
    assert rb["run"]["facets"]["mlcrit_alias_move"]["entryDigest"] == history[2].digest


def test_not_blessed_skips_promotion_and_lists_every_failure(models):
    store = models
    strict = {"thresholds": [{"metric": "accuracy", "min": 0.99, "slices": "all"}]}
    dr = _run("adapter/sentiment@v1", strict, "should not happen")
    states = task_states(dr)
    assert states["evaluate"][0] == "success" and states["gate"][0] == "success"
    assert states["promote"][0] == "skipped"
    blessing = store.resolve("blessing/sentiment@v1")
    doc = json.loads(store.read_bytes(blessing.ref, "blessing.json"))
    assert doc["decision"] == "NOT_BLESSED" and len(doc["failures"]) == 4
    assert doc["failures"][0].startswith("accuracy on slice 'overall' is ")
    assert doc["candidate_digest"] == store.resolve("adapter/sentiment@v1").digest
    assert doc["dataset_digest"] == store.resolve("dataset/eval@v1").digest
    assert store.alias_history("adapter/sentiment", "production") == []


def test_a_blessing_of_v1_does_not_promote_v2(models):
    store = models
    dr = _run("adapter/sentiment@v1", FIRST, "v1")
    assert dr.state == "success", task_states(dr)
    dr = _run("adapter/sentiment@v2", BETTER, "sneak v2 in", blessing="blessing/sentiment@v1")
    assert task_states(dr)["promote"][0] == "failed"
    assert store.resolve("adapter/sentiment@production").version == 1


def test_a_reused_baseline_evaluation_must_be_of_the_same_eval_dataset(models, tmp_path):
    store = models
    assert _run("adapter/sentiment@v1", FIRST, "v1").state == "success"
    sentiment(90, seed=11).assign(region="CA").to_parquet(tmp_path / "eval2.parquet", index=False)
    store.put("dataset/eval", tmp_path / "eval2.parquet")
    other = _run(
        "adapter/sentiment@v2", BETTER, "x", data="dataset/eval@v2", baseline_evaluation="evaluation/sentiment@v1"
    )
    assert task_states(other)["evaluate"][0] == "failed"
    assert len(store.versions("evaluation/sentiment")) == 1
    reused = _run("adapter/sentiment@v2", BETTER, "reuse", baseline_evaluation="evaluation/sentiment@v1")
    assert reused.state == "success", task_states(reused)
    first = json.loads(store.read_bytes("evaluation/sentiment@v1", "evaluation.json"))
    second = json.loads(store.read_bytes("evaluation/sentiment@v2", "evaluation.json"))
    # the baseline's point values are v1's own candidate values, reused, not recomputed differently
    assert [s["baseline"]["accuracy"]["value"] for s in second["slices"]] == [
        s["candidate"]["accuracy"]["value"] for s in first["slices"]
    ]


def test_a_tabular_model_evaluated_from_prediction_columns(store_root, tmp_path):
    store = open_store(store_root)
    frame = demand_models(store, tmp_path, 600)
    y = frame.demand
    dr = run_dag(
        "test_mlcrit_evaluate_tabular",
        {
            "evaluate": {
                "task": "regression",
                "label_column": "demand",
                "prediction_column": "pred_v2",
                "baseline_prediction_column": "pred_v1",
                "slices": ["region"],
                "replicates": 300,
            },
            "gate": {"thresholds": [{"metric": "mae", "change": "superiority", "margin": 2.0, "slices": "all"}]},
        },
    )
    assert dr.state == "success", task_states(dr)
    result = json.loads(store.read_bytes("evaluation/demand@v1", "evaluation.json"))
    overall = result["slices"][0]
    assert overall["candidate"]["mae"]["value"] == pytest.approx(np.abs(frame.pred_v2 - y).mean(), abs=1e-9)
    assert overall["baseline"]["rmse"]["value"] == pytest.approx(np.sqrt(((frame.pred_v1 - y) ** 2).mean()), abs=1e-9)
    assert all(s["difference"]["mae"]["high"] < -2.0 for s in result["slices"])  # lower is better
    assert result["binding"]["baseline"] == "model/demand@v1"
    assert store.resolve("model/demand@production").version == 2


def test_a_promote_or_rollback_retried_after_its_move_succeeds_with_one_history_entry(store_root, tmp_path):
    """Each task moves the alias, then its worker is lost before success is reported; the retry
    finds its own move in the history and returns it instead of failing on the moved alias."""
    from airflow_mlcrit.core.gating import promote

    store = open_store(store_root)
    versions = []
    for i in (1, 2):
        (tmp_path / f"m{i}").mkdir()
        (tmp_path / f"m{i}" / "model.json").write_text(json.dumps({"version": i}))
        m = store.put("model/churn", tmp_path / f"m{i}")
        (tmp_path / f"b{i}.json").write_text("{}")
        store.put(
            "blessing/churn",
            tmp_path / f"b{i}.json",
            parents=[str(m.ref)],
            metadata={"decision": "BLESSED", "candidate_digest": m.digest},
        )
        versions.append(m)
    promote(store, "model/churn@v1", "production", reason="first model", create=True)
    dr = run_dag("test_mlcrit_retry_alias", {"candidate": "model/churn@v2", "reason": "retried move"})
    assert task_states(dr) == {"promote": ("success", 2), "rollback": ("success", 2)}
    history = store.alias_history("model/churn", "production")
    assert [(m.from_version, m.to_version) for m in history] == [(None, 1), (1, 2), (2, 1)]
    assert [m.extra.get("run", {}).get("try_number") for m in history] == [None, 1, 1]
    assert xcom(dr, "promote") == {
        "ref": "model/churn@v2",
        "uri": versions[1].uri,
        "digest": versions[1].digest,
        "alias": "model/churn@production",
        "previous": "model/churn@v1",
        "summary": history[1].to_dict(),
    }
    assert (xcom(dr, "rollback")["ref"], xcom(dr, "rollback")["previous"]) == ("model/churn@v1", "model/churn@v2")
    assert xcom(dr, "promote", "previous") == "model/churn@v1"  # each key is an XCom: .output["previous"]


def test_an_underpowered_slice_fails_and_says_how_many_rows_would_decide_it(store_root, tmp_path):
    """state=NE has 62 rows and 10 discordant ones: its difference interval (+-0.11) is wider than
    the 0.03 margin, so no candidate could be shown non-inferior there. The gate fails it, with the
    rows at which an equivalent candidate would pass 80% of the time (the gate's power); no
    setting blesses past it."""
    mode, decision, status, promote = "fail", "NOT_BLESSED", "failed", "skipped"
    import pandas as pd

    from airflow_mlcrit.core.gating import promote as promote_fn

    store = open_store(store_root)
    for version in (1, 2):
        (tmp_path / f"model-{version}.json").write_text(json.dumps({"coef": version}))
        store.put("model/demand", tmp_path / f"model-{version}.json")
    promote_fn(store, "model/demand@v1", "production", reason="bootstrap", force=True, create=True)
    truth = np.array(["up", "down"] * 331)
    flip = {"up": "down", "down": "up"}
    cand, base = truth.copy(), truth.copy()
    cand[600:605] = [flip[v] for v in truth[600:605]]  # NE: the candidate misses 5 rows the baseline gets
    base[605:610] = [flip[v] for v in truth[605:610]]  # and gets 5 the baseline misses
    frame = pd.DataFrame({"state": ["CA"] * 600 + ["NE"] * 62, "label": truth, "pred_v2": cand, "pred_v1": base})
    frame.to_parquet(tmp_path / "eval.parquet", index=False)
    store.put("dataset/demand-eval", tmp_path / "eval.parquet")
    threshold = {"metric": "accuracy", "change": "non_inferiority", "margin": 0.03, "slices": {"spec": "state"}}
    dr = run_dag(
        "test_mlcrit_evaluate_tabular",
        {
            "evaluate": {
                "prediction_column": "pred_v2",
                "baseline_prediction_column": "pred_v1",
                "metrics": ["accuracy"],
                "slices": ["state"],
            },
            "gate": {"thresholds": [threshold], "underpowered": mode},
        },
    )
    assert task_states(dr)["promote"][0] == promote
    blessing = json.loads(store.read_bytes("blessing/demand@v1", "blessing.json"))
    assert blessing["decision"] == decision
    ne = next(c for c in blessing["checks"] if c["slice"] == "state=NE")
    assert (ne["status"], ne["underpowered"]) == (status, True)
    assert ne["message"] == (
        "accuracy non_inferiority on slice 'state=NE': candidate - baseline = 0.0000 (CI [-0.1107, 0.1107]), "
        "needs lower bound > -0.0300; underpowered: n=62, the interval is ±0.11 against a margin of 0.03; "
        "about 1,430 rows would give an equivalent candidate 80% power to pass"
    )
    ca = next(c for c in blessing["checks"] if c["slice"] == "state=CA")
    assert (ca["status"], ca["underpowered"]) == ("passed", False)
    # the blessing's report: the decision and every verdict on top; differences coloured by their
    # interval against the threshold; the underpowered slice in its own section below
    report_url = xcom(dr, "gate")["report_url"]
    assert report_url == f"{store.resolve('blessing/demand@v1').uri.rstrip('/')}/report.html"
    report = store.read_bytes("blessing/demand@v1", "report.html").decode()
    assert f"<p class='verdict {'ok' if decision == 'BLESSED' else 'bad'}'>{decision}</p>" in report
    assert report.index("Gate decision") < report.index("by gated slice")
    gated, aside = report.split("by gated slice")[1].split("<h2>Not gated")
    assert "state=CA" in gated and "state=NE" not in gated and "state=NE" in aside
    assert "<span class='ok'>0.0000" in gated  # CA: a zero difference whose interval clears -0.03
    evaluation = store.read_bytes("evaluation/demand@v1", "report.html").decode()
    assert "Not judged by a gate yet" in evaluation and "class='bad'" not in evaluation  # no colour by sign


MISSPELLED = "GateConfig.thresholds[0].slices: spec 'regions' is not a slicing spec of the evaluation; valid: ['overall', 'region']"


def test_a_misspelled_gate_slice_spec_fails_evaluate_before_it_reads_anything(store_root, lineage_tail):
    """Templated configs (params): the evaluate task checks the gate downstream of it first. The
    eval dataset and the candidate do not even exist: the check ran before either was read."""
    gate = {"thresholds": [{"metric": "accuracy", "min": 0.5, "slices": {"spec": "regions"}}]}
    conf = {"eval": "dataset/absent@v1", "candidate": "adapter/absent@v1", "evaluate": EVAL, "gate": gate}
    dr = run_dag("test_mlcrit_evaluate", conf)
    assert task_states(dr)["evaluate"][0] == "failed"
    errors = [
        e["run"]["facets"]["errorMessage"]["message"]
        for e in lineage_tail.events()
        if e["eventType"] == "FAIL" and e["job"]["name"] == "test_mlcrit_evaluate.evaluate"
    ]
    assert errors and set(errors) == {MISSPELLED}
    assert not open_store(store_root).exists("evaluation/sentiment")


def test_a_gate_slice_value_the_eval_data_lacks_fails_evaluate_before_any_model_loads(models, lineage_tail):
    """'region=TY' is a well-formed name (region is sliced) whose value no eval row has: a typo, or a
    region that vanished from this week's data. The evaluate task refuses it once it has read the
    data, listing the values present, before it loads a model: the candidate does not exist."""
    gate = {"thresholds": [{"metric": "accuracy", "min": 0.5, "slices": ["overall", "region=TY"]}]}
    dr = run_dag(
        "test_mlcrit_evaluate",
        {"eval": "dataset/eval@v1", "candidate": "adapter/absent@v1", "evaluate": EVAL, "gate": gate},
    )
    assert task_states(dr)["evaluate"][0] == "failed"
    errors = {
        e["run"]["facets"]["errorMessage"]["message"]
        for e in lineage_tail.events()
        if e["eventType"] == "FAIL" and e["job"]["name"] == "test_mlcrit_evaluate.evaluate"
    }
    assert errors == {
        "GateConfig.thresholds[0].slices: slice 'region=TY' matches no row of the eval data; the slices of 'region' "
        "present are ['region=CA', 'region=NE', 'region=TX']. A misspelt value or a slice that vanished from the "
        "data: fix the threshold or the eval data (allow_missing_slices=True skips it, recorded as skipped)"
    }
    assert not models.exists("evaluation/sentiment")


def test_a_misspelled_gate_slice_spec_in_literal_configs_fails_the_dag_import(tmp_path):
    from airflow.dag_processing.dagbag import DagBag

    (tmp_path / "typo_dag.py").write_text(
        f"""
import pendulum
from airflow.sdk import DAG
from airflow_mlcrit.operators import EvaluateModelOperator, EvaluationGateOperator

with DAG(dag_id="typo", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")):
    evaluate = EvaluateModelOperator(
        task_id="evaluate", dataset="dataset/eval@v1", candidate="adapter/sentiment@v2", config={EVAL!r}
    )
    EvaluationGateOperator(
        task_id="gate",
        evaluation=evaluate.output["ref"],
        config={{"thresholds": [{{"metric": "accuracy", "min": 0.5, "slices": {{"spec": "regions"}}}}]}},
    )
"""
    )
    bag = DagBag(dag_folder=str(tmp_path))
    [(path, error)] = bag.import_errors.items()
    assert path.endswith("typo_dag.py") and error.strip().endswith(f"ConfigError: {MISSPELLED}"), error
    (tmp_path / "typo_dag.py").write_text((tmp_path / "typo_dag.py").read_text().replace("regions", "region"))
    assert not DagBag(dag_folder=str(tmp_path)).import_errors


def test_a_rerun_of_a_finished_run_evaluates_the_golden_version_the_run_resolved(store_root, tmp_path, lineage_tail):
    """The evaluate task reads dataset/demand-eval@latest. A newer golden version lands after the
    run finished; the same DAG run again (the same run_id, as a cleared task re-runs) evaluates
    the version the run resolved the first time, and its lineage says which floating reference
    that version came from."""
    import pendulum
    from airflow.dag_processing.dagbag import DagBag

    store = open_store(store_root)
    frame = demand_models(store, tmp_path, 300)
    bag = DagBag(dag_folder=str(Path(__file__).parent / "dags"))
    when = pendulum.datetime(2026, 11, 2, tz="UTC")
    conf = {
        "evaluate": {
            "task": "regression",
            "label_column": "demand",
            "prediction_column": "pred_v2",
            "baseline_prediction_column": "pred_v1",
            "replicates": 100,
        },
        # NOT_BLESSED: production stays at v1, so the baseline (resolved at use) is the same on the re-run
        "gate": {"thresholds": [{"metric": "mae", "max": 0.0}]},
    }
    first = bag.get_dag("test_mlcrit_evaluate_tabular").test(run_after=when, logical_date=when, run_conf=conf)
    assert first.state == "success", task_states(first)
    frame.assign(demand=frame.demand + 50).to_parquet(tmp_path / "eval-2.parquet", index=False)
    assert store.put("dataset/demand-eval", tmp_path / "eval-2.parquet").version == 2
    again = bag.get_dag("test_mlcrit_evaluate_tabular").test(run_after=when, logical_date=when, run_conf=conf)
    assert again.run_id == first.run_id and again.state == "success", task_states(again)
    assert store.versions("evaluation/demand") == [1]  # the same golden version: the commit is reused
    assert store.resolve("evaluation/demand@v1").metadata["dataset"] == "dataset/demand-eval@v1"
    read = [
        i["facets"]["mlcrit_artifact"]
        for e in lineage_tail.events(dag_run=again)  # both runs: they share the run_id
        if e["eventType"] == "COMPLETE" and e["job"]["name"].endswith(".evaluate")
        for i in e["inputs"]
        if i["name"].endswith("/dataset/demand-eval")
    ]
    assert len(read) >= 2 and {(f["ref"], f["resolvedFrom"]) for f in read} == {
        ("dataset/demand-eval@v1", "dataset/demand-eval@latest")
    }
    # a new run resolves anew
    later = pendulum.datetime(2026, 11, 3, tz="UTC")
    third = bag.get_dag("test_mlcrit_evaluate_tabular").test(run_after=later, logical_date=later, run_conf=conf)
    assert third.state == "success", task_states(third)
    assert store.resolve("evaluation/demand@v2").metadata["dataset"] == "dataset/demand-eval@v2"
