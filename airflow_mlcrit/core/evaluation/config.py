"""EvaluationConfig: what to measure, on which slices, how many bootstrap replicates."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from airflow_mlcrit.core.configbase import Config, require

DEFAULT_METRICS = {
    "classification": ["accuracy", "macro_f1", "weighted_f1", "roc_auc", "log_loss", "ece"],
    "generation": ["exact_match", "token_f1", "rouge_l"],
    "regression": ["mae", "rmse"],
}
PERTURBATIONS = ("typos", "casing", "whitespace", "punctuation", "synonyms", "numeric_jitter", "entity_swap")


@dataclass
class EvaluationConfig(Config):
    """Evaluation settings (JSON round trip: to_dict / from_dict)."""

    task: Literal["classification", "generation", "regression"] = field(
        default="classification",
        metadata={"help": "what the model does; picks the default metrics and how predictions are read"},
    )
    text_column: str = field(default="text", metadata={"help": "model input (generation: the prompt)"})
    label_column: str = field(default="label", metadata={"help": "ground truth (generation: the reference)"})
    metrics: list[str] | None = field(default=None, metadata={"help": "None: the task's defaults"})
    slices: list[Any] = field(
        default_factory=list, metadata={"help": "slicing specs (see core.evaluation.slicing); overall is implied"}
    )
    min_slice_size: int = field(default=30, metadata={"help": "smaller slices are reported, never gated"})
    replicates: int = field(
        default=1000, metadata={"help": "bootstrap replicates (metrics other than accuracy and exact match)"}
    )
    confidence: float = field(
        default=0.95, metadata={"help": "level of every interval (0.95: 95% two-sided); methods: docs/evaluation.md"}
    )
    seed: int = field(
        default=0, metadata={"help": "seed of the bootstrap and of the sensitivity sample (same seed, same intervals)"}
    )
    batch_size: int = field(default=32, metadata={"help": "rows per inference batch"})
    max_length: int = field(default=128, metadata={"help": "tokens per input; longer inputs are truncated"})
    max_truncated_rate: float = field(
        default=0.05,
        metadata={
            "help": "the most inputs that may be longer than max_length (and be cut); above it the evaluation "
            "refuses before inference. The share cut is reported per slice"
        },
    )
    max_new_tokens: int = field(default=32, metadata={"help": "generation: greedy decoding length"})
    device: Literal["auto", "cpu", "cuda"] = field(
        default="auto", metadata={"help": "auto: a CUDA GPU when there is one; cuda without a GPU is an error"}
    )
    prediction_column: str | None = field(
        default=None,
        metadata={"help": "read the candidate's predictions from this eval column instead of running a model"},
    )
    baseline_prediction_column: str | None = field(
        default=None, metadata={"help": "the baseline's predictions, likewise (tabular / batch-scored models)"}
    )
    labels: list[str] | None = field(
        default=None, metadata={"help": "classification from prediction columns: the label set (default: observed)"}
    )
    sensitivity: list[str] = field(
        default_factory=list, metadata={"help": f"perturbations to measure flip rates for: {', '.join(PERTURBATIONS)}"}
    )
    sensitivity_rows: int = field(default=2000, metadata={"help": "rows perturbed per perturbation (a seeded sample)"})
    synonyms: dict[str, str] = field(default_factory=dict, metadata={"help": "extra synonym pairs for 'synonyms'"})

    def __post_init__(self) -> None:
        require(
            self.task in DEFAULT_METRICS,
            f"EvaluationConfig.task must be one of {sorted(DEFAULT_METRICS)}, got {self.task!r}",
        )
        require(self.replicates >= 10, f"EvaluationConfig.replicates must be >= 10, got {self.replicates}")
        require(0.5 <= self.confidence < 1, f"EvaluationConfig.confidence must be in [0.5, 1), got {self.confidence}")
        require(self.min_slice_size >= 1, "EvaluationConfig.min_slice_size must be >= 1")
        require(self.batch_size >= 1, "EvaluationConfig.batch_size must be >= 1")
        require(
            0 <= self.max_truncated_rate <= 1,
            f"EvaluationConfig.max_truncated_rate must be in [0, 1], got {self.max_truncated_rate}",
        )
        bad = [p for p in self.sensitivity if p not in PERTURBATIONS]
        require(not bad, f"EvaluationConfig.sensitivity has unknown perturbation(s) {bad}; known: {PERTURBATIONS}")
        require(isinstance(self.slices, list), "EvaluationConfig.slices must be a list of slicing specs")
        require(
            not (self.sensitivity and self.prediction_column),
            "EvaluationConfig.sensitivity needs a model to re-score perturbed inputs, not a prediction_column",
        )

    @property
    def metric_names(self) -> list[str]:
        return list(self.metrics) if self.metrics is not None else list(DEFAULT_METRICS[self.task])
