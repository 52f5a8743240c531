"""Instruction tuning of a tiny causal LM: the loss covers response tokens only."""

import pandas as pd
import pytest

from airflow_mlcrit.core.training.config import FineTuneConfig
from airflow_mlcrit.core.training.finetune import _lm_data, finetune
from tests.helpers.models import QA, build_tiny_gpt2

TEMPLATE = "Q: {{ prompt }} A: {{ response }}"


@pytest.fixture(scope="module")
def tiny_gpt2(tmp_path_factory):
    return build_tiny_gpt2(tmp_path_factory.mktemp("tiny-gpt2"))


def test_prompt_tokens_carry_the_ignore_index(tiny_gpt2):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_gpt2)
    cfg = FineTuneConfig(
        base_model=tiny_gpt2,
        task="instruction",
        prompt_column="p",
        response_column="r",
        template=TEMPLATE,
        max_length=32,
    )
    enc = _lm_data(
        cfg,
        {
            "prompt_column": ["what is the capital of france", "what is the color of the sky"],
            "response_column": ["paris", "blue"],
        },
        tok,
    )
    first = enc["labels"][0].tolist()
    ids = enc["input_ids"][0].tolist()
    prompt_len = len("Q: what is the capital of france A:".split())
    assert first[:prompt_len] == [-100] * prompt_len
    assert first[prompt_len] == ids[prompt_len] == tok.convert_tokens_to_ids("paris")
    second = enc["labels"][1].tolist()  # shorter prompt, padded to the longest: padding is ignored too
    assert second == [-100] * 9 + [tok.convert_tokens_to_ids("blue")] + [-100] * (len(second) - 10)


def test_instruction_tuning_learns_the_responses(tiny_gpt2, tmp_path):
    """Full fine-tuning learns the answers (a random tiny LM gives LoRA too little to adapt);
    LoRA on the same data yields a standard adapter."""
    df = pd.DataFrame([{"prompt": p, "response": r} for p, r in QA] * 20)
    df.to_parquet(tmp_path / "qa.parquet", index=False)
    cfg = {
        "base_model": tiny_gpt2,
        "task": "instruction",
        "prompt_column": "prompt",
        "response_column": "response",
        "template": TEMPLATE,
        "max_length": 32,
        "batch_size": 10,
    }
    full = finetune(
        {**cfg, "method": "full", "max_steps": 80, "learning_rate": 5e-3},
        str(tmp_path / "qa.parquet"),
        workdir=tmp_path / "full",
    )
    curve = full.metrics["loss_curve"]
    assert sum(curve[-5:]) / 5 < 0.3 * sum(curve[:5]) / 5
    assert (full.output_dir / "model.safetensors").is_file()
    assert "pipeline_tag: text-generation" in (full.output_dir / "README.md").read_text()
    lora = finetune({**cfg, "max_steps": 5}, str(tmp_path / "qa.parquet"), workdir=tmp_path / "lora")
    assert (lora.output_dir / "adapter_model.safetensors").is_file()
    assert '"task_type": "CAUSAL_LM"' in (lora.output_dir / "adapter_config.json").read_text()
