"""PreprocessConfig: the built-in Beam preprocessing pipeline, step by step."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from airflow_mlcrit.core.configbase import Config, require


@dataclass
class PreprocessConfig(Config):
    """Steps run in this order: normalize, length filter, exact dedup, near dedup, label encoding,
    instruction formatting, tokenization, split. Each is off unless configured."""

    source: str = field(metadata={"help": "dataset artifact reference or local path (Parquet or JSONL)"})
    text_column: str = field(default="text", metadata={"help": "the text the text steps work on"})
    key_column: str | None = field(
        default=None, metadata={"help": "group key for the split (user, document); None: the normalized text"}
    )
    # normalization
    normalize: bool = field(default=True, metadata={"help": "Unicode NFKC and whitespace collapsing"})
    lowercase: bool = False
    # length filter (characters of the normalized text)
    min_chars: int | None = None
    max_chars: int | None = None
    # dedup
    exact_dedup: bool = True
    near_dedup_threshold: float | None = field(
        default=None, metadata={"help": "Jaccard similarity of word 3-shingles above which texts are near duplicates"}
    )
    minhash_permutations: int = 128
    # labels
    label_column: str | None = field(default=None, metadata={"help": "encoded to ids from a full-pass vocabulary"})
    # instruction / chat formatting
    prompt_column: str | None = None
    response_column: str | None = None
    template: str | None = field(
        default=None, metadata={"help": "Jinja template with {{ prompt }} and {{ response }}; None: the chat template"}
    )
    # tokenization
    tokenizer: str | None = field(default=None, metadata={"help": "local path of a Hugging Face fast tokenizer"})
    max_length: int = 512
    truncation: bool = True
    padding: Literal["do_not_pad", "max_length"] = "do_not_pad"
    # analyzers (full pass; results go into the transform contract)
    analyze_numeric: list[str] = field(default_factory=list, metadata={"help": "columns to get mean/std/quantiles"})
    vocabulary_size: int = field(default=0, metadata={"help": "top-N word vocabulary of the text column (0: off)"})
    # split
    splits: dict[str, float] = field(default_factory=lambda: {"train": 0.8, "eval": 0.1, "test": 0.1})
    seed: int = 0
    # output
    shards_per_split: int = 1
    # execution
    runner: str | None = field(default=None, metadata={"help": "Beam runner; default FnApiRunner (no downloads)"})
    pipeline_options: dict[str, Any] = field(default_factory=dict, metadata={"help": "passed verbatim as --key=value"})
    user_pipeline: str | None = field(
        default=None, metadata={"help": "'module:function' building the pipeline instead of the built-in steps"}
    )

    def __post_init__(self) -> None:
        require(isinstance(self.source, str) and bool(self.source), "PreprocessConfig.source must name the data")
        require(
            bool(self.splits) and all(v > 0 for v in self.splits.values()),
            f"PreprocessConfig.splits must map split names to positive fractions, got {self.splits}",
        )
        require(
            abs(sum(self.splits.values()) - 1) < 1e-9,
            f"PreprocessConfig.splits fractions must add up to 1, got {sum(self.splits.values())}",
        )
        require(
            self.near_dedup_threshold is None or 0 < self.near_dedup_threshold < 1,
            f"PreprocessConfig.near_dedup_threshold must be in (0, 1), got {self.near_dedup_threshold}",
        )
        require(
            self.minhash_permutations % 8 == 0 and self.minhash_permutations >= 16,
            f"PreprocessConfig.minhash_permutations must be a multiple of 8 >= 16, got {self.minhash_permutations}",
        )
        require(
            (self.prompt_column is None) == (self.response_column is None),
            "PreprocessConfig.prompt_column and response_column go together: set both or neither",
        )
        require(
            self.min_chars is None or self.max_chars is None or self.min_chars <= self.max_chars,
            f"PreprocessConfig.min_chars ({self.min_chars}) must be <= max_chars ({self.max_chars})",
        )
        require(
            self.shards_per_split >= 1, f"PreprocessConfig.shards_per_split must be >= 1, got {self.shards_per_split}"
        )
        require(self.max_length >= 1, f"PreprocessConfig.max_length must be >= 1, got {self.max_length}")
        if self.prompt_column and self.template is None:
            require(bool(self.tokenizer), "instruction formatting needs a template or a tokenizer with a chat template")

    @property
    def instruction(self) -> bool:
        return self.prompt_column is not None
