"""FineTuneConfig: what to fine-tune, how, and with which hyperparameters."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from airflow_mlcrit.core.configbase import Config, require

# LoRA target modules per architecture (model_type), like peft's defaults.
DEFAULT_TARGETS = {
    "bert": ["query", "value"],
    "roberta": ["query", "value"],
    "distilbert": ["q_lin", "v_lin"],
    "llama": ["q_proj", "v_proj"],
    "mistral": ["q_proj", "v_proj"],
    "qwen2": ["q_proj", "v_proj"],
    "gpt2": ["c_attn"],
    "gpt_neox": ["query_key_value"],
    "t5": ["q", "v"],
}


@dataclass
class FineTuneConfig(Config):
    """Fine-tuning settings (JSON round trip: to_dict / from_dict)."""

    base_model: str = field(metadata={"help": "local model directory (HF format) or a base_model artifact ref"})
    task: Literal["sequence_classification", "causal_lm", "instruction"] = "sequence_classification"
    method: Literal["lora", "full", "qlora"] = "lora"
    trust_remote_code: bool = field(default=False, metadata={"help": "never on unless set explicitly"})
    allow_pickle: bool = field(default=False, metadata={"help": "load .bin (pickle) weights; safetensors only if off"})
    # data
    text_column: str = "text"
    label_column: str = "label"
    max_length: int = 128
    prompt_column: str | None = field(default=None, metadata={"help": "instruction task: the prompt"})
    response_column: str | None = field(default=None, metadata={"help": "instruction task: the target response"})
    template: str | None = field(
        default=None, metadata={"help": "Jinja template with {{ prompt }} and {{ response }}; None: chat template"}
    )
    # LoRA
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    target_modules: list[str] | None = field(default=None, metadata={"help": "None: per-architecture default"})
    # optimisation
    learning_rate: float = 5e-4
    lr_scheduler: Literal["linear", "constant", "cosine"] = "linear"
    warmup_ratio: float = 0.0
    epochs: int = 1
    max_steps: int | None = field(default=None, metadata={"help": "overrides epochs when set"})
    batch_size: int = 16
    gradient_accumulation_steps: int = 1
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    seed: int = 0
    deterministic: bool = field(default=True, metadata={"help": "torch deterministic algorithms"})
    device: Literal["auto", "cpu", "cuda"] = "auto"
    nproc_per_node: int = field(
        default=1,
        metadata={"help": "data-parallel processes (torchrun); batch_size is per process, as in HF Trainer"},
    )
    precision: Literal["auto", "fp32", "bf16"] = field(
        default="auto", metadata={"help": "auto: bf16 autocast on GPUs that support it, fp32 otherwise"}
    )
    gradient_checkpointing: bool = False
    merge_adapter: bool = field(default=False, metadata={"help": "LoRA: also write the base model merged with it"})
    memory_limit_gb: float | None = field(
        default=None, metadata={"help": "preflight budget instead of the device's free memory"}
    )
    log_every: int = 10
    eval_every: int | None = field(default=None, metadata={"help": "eval loss every N steps (needs eval data)"})
    early_stopping_patience: int | None = field(
        default=None, metadata={"help": "stop after this many evals without a better eval loss"}
    )
    checkpoint_every: int | None = field(default=None, metadata={"help": "save a resumable checkpoint every N steps"})

    def __post_init__(self) -> None:
        require(bool(self.base_model), "FineTuneConfig.base_model must name a model directory or artifact")
        require(
            self.task in ("sequence_classification", "causal_lm", "instruction"),
            f"FineTuneConfig.task must be sequence_classification, causal_lm or instruction, got {self.task!r}",
        )
        require(
            self.task != "instruction" or (bool(self.prompt_column) and bool(self.response_column)),
            "FineTuneConfig.task='instruction' needs prompt_column and response_column",
        )
        require(
            self.method in ("lora", "full", "qlora"),
            f"FineTuneConfig.method must be lora, full or qlora, got {self.method!r}",
        )
        require(
            not (self.method == "qlora" and self.merge_adapter),
            "FineTuneConfig.merge_adapter cannot merge into a 4-bit (qlora) base; merge a lora adapter instead",
        )
        require(self.lora_r >= 1 and self.lora_alpha >= 1, "FineTuneConfig.lora_r and lora_alpha must be >= 1")
        require(0 <= self.lora_dropout < 1, f"FineTuneConfig.lora_dropout must be in [0, 1), got {self.lora_dropout}")
        require(self.learning_rate > 0, f"FineTuneConfig.learning_rate must be > 0, got {self.learning_rate}")
        require(
            self.batch_size >= 1 and self.gradient_accumulation_steps >= 1,
            "FineTuneConfig.batch_size and gradient_accumulation_steps must be >= 1",
        )
        require(self.epochs >= 1 or (self.max_steps or 0) >= 1, "FineTuneConfig needs epochs >= 1 or max_steps >= 1")
        require(0 <= self.warmup_ratio < 1, f"FineTuneConfig.warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        require(self.nproc_per_node >= 1, f"FineTuneConfig.nproc_per_node must be >= 1, got {self.nproc_per_node}")
        require(self.max_length >= 1, f"FineTuneConfig.max_length must be >= 1, got {self.max_length}")
