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
    task: Literal["sequence_classification", "causal_lm", "instruction"] = field(
        default="sequence_classification",
        metadata={"help": "sequence_classification (text -> label), causal_lm or instruction (prompt -> response)"},
    )
    method: Literal["lora", "full", "qlora"] = field(
        default="lora",
        metadata={"help": "lora (adapter), qlora (adapter on a 4-bit base, CUDA only) or full (every weight)"},
    )
    trust_remote_code: bool = field(default=False, metadata={"help": "never on unless set explicitly"})
    allow_pickle: bool = field(default=False, metadata={"help": "load .bin (pickle) weights; safetensors only if off"})
    # data
    text_column: str = field(default="text", metadata={"help": "the input text (classification, causal_lm)"})
    label_column: str = field(default="label", metadata={"help": "the class label (classification)"})
    max_length: int = field(default=128, metadata={"help": "tokens per example; longer examples are truncated"})
    max_truncated_rate: float = field(
        default=0.05,
        metadata={
            "help": "the most training examples that may be longer than max_length (and be cut); above it "
            "training refuses before the first step"
        },
    )
    prompt_column: str | None = field(default=None, metadata={"help": "instruction task: the prompt"})
    response_column: str | None = field(default=None, metadata={"help": "instruction task: the target response"})
    template: str | None = field(
        default=None, metadata={"help": "Jinja template with {{ prompt }} and {{ response }}; None: chat template"}
    )
    # LoRA
    lora_r: int = field(default=8, metadata={"help": "LoRA rank"})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA scaling numerator (the update is scaled by alpha / r)"})
    lora_dropout: float = field(default=0.0, metadata={"help": "dropout on the LoRA input, in [0, 1)"})
    target_modules: list[str] | None = field(default=None, metadata={"help": "None: per-architecture default"})
    # optimisation
    learning_rate: float = field(default=5e-4, metadata={"help": "peak AdamW learning rate"})
    lr_scheduler: Literal["linear", "constant", "cosine"] = field(
        default="linear", metadata={"help": "learning-rate schedule after warmup"}
    )
    warmup_ratio: float = field(default=0.0, metadata={"help": "fraction of the steps with a linear warmup, in [0, 1)"})
    epochs: int = field(default=1, metadata={"help": "passes over the data when max_steps is not set"})
    max_steps: int | None = field(default=None, metadata={"help": "overrides epochs when set"})
    batch_size: int = field(default=16, metadata={"help": "examples per step and process"})
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "micro-batches summed per optimizer step"})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay"})
    max_grad_norm: float = field(default=1.0, metadata={"help": "gradient clipping norm"})
    seed: int = field(
        default=0, metadata={"help": "seed of the initialisation, shuffling and dropout (same seed, same model)"}
    )
    deterministic: bool = field(default=True, metadata={"help": "torch deterministic algorithms"})
    device: Literal["auto", "cpu", "cuda"] = field(
        default="auto", metadata={"help": "auto: a CUDA GPU when there is one; cuda without a GPU is an error"}
    )
    nproc_per_node: int = field(
        default=1,
        metadata={"help": "data-parallel processes (torchrun); batch_size is per process, as in HF Trainer"},
    )
    precision: Literal["auto", "fp32", "bf16"] = field(
        default="auto", metadata={"help": "auto: bf16 autocast on GPUs that support it, fp32 otherwise"}
    )
    gradient_checkpointing: bool = field(
        default=False, metadata={"help": "recompute activations in the backward pass: less memory, more time"}
    )
    merge_adapter: bool = field(default=False, metadata={"help": "LoRA: also write the base model merged with it"})
    memory_limit_gb: float | None = field(
        default=None, metadata={"help": "preflight budget instead of the device's free memory"}
    )
    log_every: int = field(default=10, metadata={"help": "log step, loss, rate and ETA every N steps"})
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
        require(
            0 <= self.max_truncated_rate <= 1,
            f"FineTuneConfig.max_truncated_rate must be in [0, 1], got {self.max_truncated_rate}",
        )
