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
    lowercase: bool = field(default=False, metadata={"help": "lowercase the text after normalization"})
    # length filter (characters of the normalized text)
    min_chars: int | None = field(
        default=None, metadata={"help": "drop rows whose normalized text is shorter (None: no minimum)"}
    )
    max_chars: int | None = field(
        default=None, metadata={"help": "drop rows whose normalized text is longer (None: no maximum)"}
    )
    # dedup
    exact_dedup: bool = field(default=True, metadata={"help": "keep one row per identical normalized text"})
    near_dedup_threshold: float | None = field(
        default=None, metadata={"help": "Jaccard similarity of word 3-shingles above which texts are near duplicates"}
    )
    minhash_permutations: int = field(
        default=128, metadata={"help": "MinHash signature length for near dedup (a multiple of 8, >= 16)"}
    )
    # labels
    label_column: str | None = field(default=None, metadata={"help": "encoded to ids from a full-pass vocabulary"})
    # instruction / chat formatting
    prompt_column: str | None = field(
        default=None, metadata={"help": "instruction data: the prompt column (with response_column)"}
    )
    response_column: str | None = field(
        default=None, metadata={"help": "instruction data: the response column (with prompt_column)"}
    )
    template: str | None = field(
        default=None, metadata={"help": "Jinja template with {{ prompt }} and {{ response }}; None: the chat template"}
    )
    # tokenization
    tokenizer: str | None = field(default=None, metadata={"help": "local path of a Hugging Face fast tokenizer"})
    max_length: int = field(default=512, metadata={"help": "tokens per row when a tokenizer is set"})
    truncation: bool = field(default=True, metadata={"help": "truncate token ids at max_length"})
    padding: Literal["do_not_pad", "max_length"] = field(
        default="do_not_pad", metadata={"help": "pad token ids to max_length, or not at all"}
    )
    # analyzers (full pass; results go into the transform contract)
    analyze_numeric: list[str] = field(default_factory=list, metadata={"help": "columns to get mean/std/quantiles"})
    vocabulary_size: int = field(default=0, metadata={"help": "top-N word vocabulary of the text column (0: off)"})
    # split
    splits: dict[str, float] = field(
        default_factory=lambda: {"train": 0.8, "eval": 0.1, "test": 0.1},
        metadata={"help": "split name -> fraction (positive, adding up to 1), assigned by a hash of the group key"},
    )
    seed: int = field(default=0, metadata={"help": "seed of the split hash (same seed, same split)"})
    # output
    shards_per_split: int = field(default=1, metadata={"help": "Parquet files written per split"})
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
