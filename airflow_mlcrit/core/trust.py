"""What loading a model directory may run: its own Python code only when the user says so."""

from __future__ import annotations

import json
from pathlib import Path

from airflow_mlcrit.exceptions import ConfigError


def refuse_remote_code(path: str | Path, trust_remote_code: bool, what: str = "model") -> None:
    """Fail before transformers is asked to load ``path`` if it ships code (an ``auto_map`` in
    config.json or tokenizer_config.json) and trust_remote_code is off. transformers itself would
    refuse too, but with a ValueError that does not say which setting to change."""
    if trust_remote_code:
        return
    for name in ("config.json", "tokenizer_config.json"):
        file = Path(path) / name
        try:
            auto_map = json.loads(file.read_text()).get("auto_map") if file.is_file() else None
        except (ValueError, OSError) as exc:
            raise ConfigError(f"{what} {path}: {name} is not readable JSON ({exc})") from None
        if auto_map:
            raise ConfigError(
                f"{what} {path} ships its own Python code ({name} auto_map: {sorted(auto_map)}); it is run only "
                "with trust_remote_code=True: set it only for code you have reviewed"
            )
