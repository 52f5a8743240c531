"""Row-level text checks (PII, emptiness, normalisation for contamination) and tokenizer loading."""

from __future__ import annotations

from typing import Any

import numpy as np

from airflow_mlcrit.exceptions import ConfigError

EMAIL = r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"
PHONE = r"(?:\+\d{1,3}[ .-]?)?(?:\(\d{3}\)|\b\d{3})[ .-]\d{3}[ .-]\d{4}\b"
CARD_CANDIDATE = r"\b(?:\d[ -]?){12,18}\d\b"
PII_KINDS = ("email", "phone", "card")


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def pii_masks(arr: Any) -> dict[str, np.ndarray]:
    """Boolean mask per PII kind over a pyarrow string array (null -> False).

    Card numbers must also pass the Luhn check, so order ids and the like are not flagged.
    """
    import re

    import pyarrow.compute as pc

    def regex(pattern: str) -> np.ndarray:
        return pc.fill_null(pc.match_substring_regex(arr, pattern), False).to_numpy(zero_copy_only=False)

    cards = regex(CARD_CANDIDATE)
    if cards.any():
        finder = re.compile(CARD_CANDIDATE)
        texts = arr.to_pylist()
        for i in np.flatnonzero(cards):
            cards[i] = any(luhn_ok(re.sub(r"[ -]", "", m.group(0))) for m in finder.finditer(texts[i]))
    return {"email": regex(EMAIL), "phone": regex(PHONE), "card": cards}


def word_counts(arr: Any) -> np.ndarray:
    """Words per text: runs of non-whitespace, split on ASCII whitespace (4x faster than a Unicode
    regex on 2 cores); null -> -1."""
    import pyarrow.compute as pc

    trimmed = pc.ascii_trim_whitespace(arr)
    counts = pc.list_value_length(pc.ascii_split_whitespace(trimmed))
    counts = pc.if_else(pc.equal(pc.binary_length(trimmed), 0), 0, counts)  # "" splits into [""]
    return pc.fill_null(counts, -1).to_numpy(zero_copy_only=False)


def normalize(arr: Any) -> Any:
    """Lowercase, drop punctuation, collapse whitespace: near-identical texts hash the same."""
    import pyarrow.compute as pc

    text = pc.utf8_lower(arr)
    text = pc.replace_substring_regex(text, r"[^\w\s]+", "")
    text = pc.replace_substring_regex(text, r"\s+", " ")
    return pc.utf8_trim_whitespace(text)


def load_tokenizer(path: str) -> Any:
    """A Hugging Face fast tokenizer from a local path (never downloads)."""
    try:
        from transformers import AutoTokenizer
    except ImportError:
        from airflow_mlcrit.exceptions import MissingDependencyError

        raise MissingDependencyError("transformers", "train") from None
    try:
        return AutoTokenizer.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot load tokenizer {path!r} from local files: {exc}") from None
