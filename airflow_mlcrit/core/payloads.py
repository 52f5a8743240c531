"""What a version of a structured kind must hold, checked before it is committed: a prompt or a
suite that cannot load would otherwise become an immutable version that fails only when used."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from airflow_mlcrit.exceptions import ConfigError


def _document(kind: str, path: str | Path, filename: str) -> Any:
    path = Path(path)
    file = path / filename if path.is_dir() else path
    if file.name != filename or not file.is_file():
        raise ConfigError(
            f"a {kind} artifact holds {filename}; {path} is not {filename} nor a directory with one. Name the "
            f"file {filename}, or put the directory that holds it"
        )
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{file} is not valid JSON: {exc}") from None


def _prompt(path: str | Path) -> None:
    from airflow_mlcrit.core.prompting.prompt import PROMPT_FILE, PromptSpec

    data = _document("prompt", path, PROMPT_FILE)
    if not isinstance(data, dict):
        raise ConfigError(f"{PROMPT_FILE} must be a JSON object (template, variables, verbalizers, ...)")
    PromptSpec.from_dict(data)  # the loader's own one-line ConfigError for a bad field


def _suite(path: str | Path) -> None:
    from airflow_mlcrit.core.evaluation.behaviour import SUITE_FILE, check_suite

    check_suite(_document("suite", path, SUITE_FILE), None)


CHECKS = {"prompt": _prompt, "suite": _suite}


def check_payload(kind: str, path: str | Path) -> None:
    """Raise ConfigError when ``path`` is not a valid payload for ``kind`` (other kinds: no check)."""
    if kind in CHECKS:
        CHECKS[kind](path)
