"""ModelScorer on real tiny models: an adapter scored on its base equals plain peft; generation
and per-row LM loss equal a direct computation."""

import numpy as np
import pandas as pd
import pytest

from airflow_mlcrit.core.evaluation.evaluate import evaluate
from airflow_mlcrit.core.evaluation.inference import ModelScorer
from tests.helpers.models import build_tiny_gpt2, sentiment


@pytest.fixture(scope="module")
def tiny_gpt2(tmp_path_factory):
    return build_tiny_gpt2(tmp_path_factory.mktemp("tiny-gpt2"))


@pytest.fixture(scope="module")
def adapter(tiny_bert, tmp_path_factory):
    from airflow_mlcrit.core.training.finetune import finetune

    tmp = tmp_path_factory.mktemp("adapter")
    sentiment(256).to_parquet(tmp / "train.parquet", index=False)
    cfg = {"base_model": tiny_bert, "max_steps": 60, "batch_size": 16, "learning_rate": 2e-2, "max_length": 16}
    return finetune(cfg, str(tmp / "train.parquet"), workdir=tmp / "w").output_dir


def test_adapter_probabilities_equal_plain_peft(tiny_bert, adapter):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    texts = sentiment(20, seed=3).text.tolist()
    assert sorted(texts, key=len) != texts  # batches are of rows of similar length: their order changes
    scorer = ModelScorer(adapter, task="classification", base_path=tiny_bert, batch_size=7, max_length=16, device="cpu")
    got = scorer.predict(texts)
    base = AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=2)
    model = PeftModel.from_pretrained(base, adapter).eval()
    enc = AutoTokenizer.from_pretrained(adapter)(
        texts, padding=True, truncation=True, max_length=16, return_tensors="pt"
    )
    with torch.no_grad():
        expected = torch.softmax(model(**enc).logits, -1).numpy()
    assert np.abs(got.proba - expected).max() < 1e-5 and scorer.labels == ["neg", "pos"]
    assert (got.pred == expected.argmax(1)).all()
    frame = sentiment(120, seed=4)
    result, _ = evaluate({"replicates": 50}, frame, scorer)
    assert result["slices"][0]["candidate"]["accuracy"]["value"] > 0.8


def test_batched_generation_answers_each_prompt_in_its_place(tiny_gpt2):
    """Batches hold prompts of similar length, not neighbours: each answer goes back to its row."""
    prompts = ["Q: what colour is the sky on a clear day A:", "x y", "Q: hi A:", "zebra 9 hello world"]
    batched = ModelScorer(tiny_gpt2, task="generation", max_new_tokens=3, batch_size=2, device="cpu")
    alone = ModelScorer(tiny_gpt2, task="generation", max_new_tokens=3, batch_size=1, device="cpu")
    expected = [alone.generate([p])[0] for p in prompts]
    assert expected == ["A: A: A:", "", "A: A: A:", ""]  # the tiny random LM: two different answers
    assert batched.generate(prompts) == expected


def test_generation_scoring_and_loss(tiny_gpt2):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    scorer = ModelScorer(tiny_gpt2, task="generation", max_new_tokens=3, device="cpu")
    frame = pd.DataFrame({"text": ["Q: what is the capital of france A:"], "label": ["paris"]})
    result, preds = evaluate(
        {"task": "generation", "metrics": ["exact_match", "loss", "perplexity"], "replicates": 10}, frame, scorer
    )
    tok = AutoTokenizer.from_pretrained(tiny_gpt2)
    model = AutoModelForCausalLM.from_pretrained(tiny_gpt2).eval()
    head = tok("Q: what is the capital of france A:")["input_ids"]
    ids = tok("Q: what is the capital of france A: paris", return_tensors="pt")["input_ids"]
    labels = ids.clone()
    labels[:, : len(head)] = -100
    with torch.no_grad():
        direct = float(model(input_ids=ids, labels=labels).loss)
        generated = model.generate(
            torch.tensor([head]), max_new_tokens=3, do_sample=False, pad_token_id=tok.pad_token_id
        )
    m = result["slices"][0]["candidate"]
    assert m["loss"]["value"] == pytest.approx(direct, abs=1e-6)
    assert m["perplexity"]["value"] == pytest.approx(np.exp(direct), rel=1e-6)
    assert preds["candidate"].pred[0] == tok.decode(generated[0, len(head) :], skip_special_tokens=True).strip()
