"""The transform contract: everything that must be identical at training, evaluation and serving
time for the model to see the data it was trained on (TFX Transform's guarantee, for any model)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from airflow_mlcrit.exceptions import MlcritError

CONTRACT_FILE = "transform_contract.json"
# Tokenizer files that change how text becomes ids.
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "spiece.model",
    "sentencepiece.bpe.model",
    "added_tokens.json",
    "chat_template.jinja",
)


class ContractMismatchError(MlcritError):
    """Data or code prepared differently from what the model was trained with."""


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def tokenizer_digests(path: str | None) -> dict[str, str]:
    if not path:
        return {}
    root = Path(path)
    return {name: _sha((root / name).read_bytes()) for name in TOKENIZER_FILES if (root / name).is_file()}


def build_contract(cfg: Any, analyzers: dict[str, Any], label_vocabulary: list[str] | None = None) -> dict[str, Any]:
    """The contract of one preprocessing run (cfg: a PreprocessConfig)."""
    from airflow_mlcrit import __version__

    components: dict[str, Any] = {
        "normalization": {"normalize": cfg.normalize, "lowercase": cfg.lowercase, "form": "NFKC"},
        "text_column": cfg.text_column,
        "tokenizer": {
            "files": tokenizer_digests(cfg.tokenizer),
            "max_length": cfg.max_length,
            "truncation": cfg.truncation,
            "padding": cfg.padding,
        },
        "template": {
            "sha256": _sha(cfg.template.encode()) if cfg.template is not None else None,
            "chat_template": cfg.instruction and cfg.template is None,
        },
        "instruction": {
            "prompt_column": cfg.prompt_column,
            "response_column": cfg.response_column,
            "response_only_loss": cfg.instruction,
        },
        "label_vocabulary": label_vocabulary,
        "analyzers": {k: v for k, v in analyzers.items() if k != "label_vocabulary"},
        "code_version": f"airflow-mlcrit {__version__}",
    }
    return {"format": 1, "components": components, "digest": contract_digest(components)}


def contract_digest(components: dict[str, Any]) -> str:
    return _sha(json.dumps(components, sort_keys=True, default=str).encode())


def _diff(expected: Any, actual: Any, path: str) -> list[str]:
    if isinstance(expected, dict) and isinstance(actual, dict):
        out = []
        for key in sorted(set(expected) | set(actual)):
            out += _diff(expected.get(key), actual.get(key), f"{path}.{key}" if path else key)
        return out
    return [] if expected == actual else [f"{path}: expected {_short(expected)}, got {_short(actual)}"]


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


def check_contract(
    expected: dict[str, Any], actual: dict[str, Any], *, ignore: tuple[str, ...] = ("analyzers",)
) -> None:
    """Refuse to go on when ``actual`` (e.g. the serving or evaluation preparation) differs from
    ``expected`` (the contract the model was trained with). ``ignore`` skips components that may
    legitimately differ (analyzer outputs are data-dependent: a new eval set has other quantiles)."""
    exp = {k: v for k, v in expected["components"].items() if k not in ignore}
    act = {k: v for k, v in actual["components"].items() if k not in ignore}
    differences = _diff(exp, act, "")
    if differences:
        raise ContractMismatchError(
            "transform contract mismatch, the data is not prepared the way the model was trained: "
            + "; ".join(differences)
        )


def current_contract(cfg: Any, label_vocabulary: list[str] | None = None) -> dict[str, Any]:
    """The contract the current code, tokenizer files and templates would produce (no analyzers)."""
    return build_contract(cfg, {}, label_vocabulary)


def check_tokenizer(contract: dict[str, Any], tokenizer_dir: str | Path) -> None:
    """Refuse to train or evaluate with a tokenizer other than the one the data was tokenized with."""
    expected = contract["components"]["tokenizer"]["files"]
    if not expected:
        return  # the data was not tokenized in preprocessing: nothing to compare
    actual = tokenizer_digests(str(tokenizer_dir))
    changed = [name for name, digest in sorted(expected.items()) if actual.get(name) != digest]
    if changed:
        raise ContractMismatchError(
            f"the tokenizer in {tokenizer_dir} differs from the one the data was prepared with "
            f"(transform contract): {', '.join(changed)}; use the same base model, or preprocess again with it"
        )
