"""Inputs longer than a model's max_length are cut, and a cut input is silently another input:
a long prompt can cut every row's text away. Every place that tokenizes for a model measures,
per row, whether the input is cut, and refuses before any inference or training when too many are.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from airflow_mlcrit.exceptions import DataValidationError

DEFAULT_MAX_TRUNCATED_RATE = 0.05


def token_lengths(tokenizer: Any, texts: list[str]) -> np.ndarray:
    """Each text's length in tokens, special tokens included, before any truncation."""
    if not texts:
        return np.zeros(0, dtype=np.int64)
    ids = tokenizer([t or "" for t in texts], truncation=False, add_special_tokens=True)["input_ids"]
    return np.array([len(i) for i in ids], dtype=np.int64)


def refuse_truncation(lengths: np.ndarray, max_length: int, limit: float, what: str, setting: str) -> np.ndarray:
    """Per row, whether the input is longer than ``max_length``; a DataValidationError naming
    ``what``, the lengths and ``max_length`` when more than ``limit`` of the rows are."""
    cut = lengths > max_length
    if len(cut) and cut.mean() > limit:
        raise DataValidationError(
            f"{what}: {int(cut.sum())} of {len(cut)} inputs ({cut.mean():.1%}) are longer than max_length "
            f"{max_length} tokens (median {int(np.median(lengths))}, longest {int(lengths.max())}) and would be "
            f"truncated, above the limit of {limit:.1%} ({setting}). Shorten the inputs (a prompt: its template "
            f"or few-shot examples), raise max_length, or raise {setting}"
        )
    return cut
