"""Configs check every field against its annotation: rendered strings convert where the type is
numeric, boolean or optional; anything else is a ConfigError naming field, value and choices."""

import dataclasses
import re

import pytest

from airflow_mlcrit.core.evaluation.config import EvaluationConfig
from airflow_mlcrit.core.gating.decide import GateConfig
from airflow_mlcrit.core.preprocessing.config import PreprocessConfig
from airflow_mlcrit.core.prompting.prompt import PromptSpec
from airflow_mlcrit.core.training.config import FineTuneConfig
from airflow_mlcrit.core.validation.schema import SchemaConfig
from airflow_mlcrit.core.validation.statistics import StatisticsConfig
from airflow_mlcrit.core.validation.validate import ValidationConfig
from airflow_mlcrit.exceptions import ConfigError

CONFIGS = [
    EvaluationConfig,
    FineTuneConfig,
    GateConfig,
    PreprocessConfig,
    PromptSpec,
    SchemaConfig,
    StatisticsConfig,
    ValidationConfig,
]


def test_rendered_strings_become_numbers_bools_and_none():
    cfg = FineTuneConfig.from_dict(
        {
            "base_model": "base_model/m@v1",
            "max_steps": "150",
            "learning_rate": "2e-3",
            "deterministic": "false",
            "merge_adapter": "True",
            "eval_every": "None",
            "memory_limit_gb": "12",
            "lora_r": 16.0,
        }
    )
    assert (cfg.max_steps, cfg.learning_rate, cfg.deterministic, cfg.merge_adapter) == (150, 0.002, False, True)
    assert (cfg.eval_every, cfg.memory_limit_gb, cfg.lora_r) == (None, 12.0, 16)
    assert type(cfg.max_steps) is int and type(cfg.memory_limit_gb) is float
    ev = EvaluationConfig.from_dict({"replicates": "300", "confidence": "0.9", "slices": ["channel"]})
    assert (ev.replicates, ev.confidence) == (300, 0.9)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("device", "gpu", "FineTuneConfig.device must be one of 'auto', 'cpu', 'cuda'; got 'gpu'"),
        # fp16 is not offered: training autocasts to bf16 or runs fp32, never silently something else
        ("precision", "fp16", "FineTuneConfig.precision must be one of 'auto', 'fp32', 'bf16'; got 'fp16'"),
        ("max_steps", "150 steps", "FineTuneConfig.max_steps must be int | None; got '150 steps' (str)"),
        ("lora_r", True, "FineTuneConfig.lora_r must be int; got True (bool)"),
        ("lora_r", 8.5, "FineTuneConfig.lora_r must be int; got 8.5 (float)"),
        ("deterministic", "maybe", "FineTuneConfig.deterministic must be bool; got 'maybe' (str)"),
        ("target_modules", "query", "FineTuneConfig.target_modules must be list[str] | None; got 'query' (str)"),
        ("target_modules", ["query", 3], "FineTuneConfig.target_modules must be list[str] | None; got ['query', 3]"),
    ],
)
def test_a_wrong_type_names_the_field_the_value_and_what_is_allowed(field, value, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        FineTuneConfig.from_dict({"base_model": "base_model/m@v1", field: value})


def test_bf16_on_a_machine_without_a_cuda_gpu_is_an_error_not_fp32(tmp_path):
    """A precision the hardware cannot honour fails before training starts."""
    from airflow_mlcrit.core.training.finetune import finetune
    from tests.helpers.models import build_tiny_bert, sentiment

    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    sentiment(16).to_parquet(tmp_path / "train.parquet", index=False)
    cfg = {"base_model": build_tiny_bert(tmp_path / "bert"), "precision": "bf16", "max_steps": 1, "max_length": 16}
    with pytest.raises(ConfigError, match=re.escape("FineTuneConfig.precision='bf16' needs a CUDA GPU")):
        finetune(cfg, str(tmp_path / "train.parquet"), workdir=tmp_path / "run")


def test_nested_types_and_unions_are_checked():
    with pytest.raises(ConfigError, match=re.escape("PreprocessConfig.splits must be dict[str, float]; got")):
        PreprocessConfig.from_dict({"source": "x", "splits": {"train": "most"}})
    assert PreprocessConfig.from_dict({"source": "x", "splits": {"train": "0.5", "eval": 0.5}}).splits == {
        "train": 0.5,
        "eval": 0.5,
    }
    with pytest.raises(ConfigError, match=re.escape("GateConfig.no_baseline must be one of")):
        GateConfig.from_dict({"thresholds": [{"metric": "accuracy", "min": 0.5}], "no_baseline": "allow"})


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.__name__)
def test_every_field_has_help_text(config):
    assert [f.name for f in dataclasses.fields(config) if not f.metadata.get("help")] == []
