"""Where mlcrit keeps things when nobody says: shared by the CLI and the Airflow layer."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from airflow_mlcrit.exceptions import ConfigError

if TYPE_CHECKING:
    from airflow_mlcrit.core.artifacts.signing import Signer


def home_dir(*parts: str) -> str:
    """``$AIRFLOW_HOME/mlcrit/<parts>`` (``~/airflow`` when AIRFLOW_HOME is unset)."""
    home = os.environ.get("AIRFLOW_HOME") or str(Path.home() / "airflow")
    return str(Path(home, "mlcrit", *parts))


def embedded_default_root() -> str:
    """``$AIRFLOW_HOME/mlcrit/artifacts``."""
    return home_dir("artifacts")


def root_from_env() -> str | None:
    """``MLCRIT_ARTIFACT_ROOT``, else Airflow's env form of ``[mlcrit] artifact_root``."""
    return os.environ.get("MLCRIT_ARTIFACT_ROOT") or os.environ.get("AIRFLOW__MLCRIT__ARTIFACT_ROOT") or None


def signer_from_env() -> Signer | None:
    """The store's signing key from ``MLCRIT_SIGNING_KEY``, or from the file named by
    ``MLCRIT_SIGNING_KEY_FILE`` (first line the key, further lines previous keys still
    accepted); None when neither is set."""
    from airflow_mlcrit.core.artifacts.signing import signer_from_text

    key, path = os.environ.get("MLCRIT_SIGNING_KEY"), os.environ.get("MLCRIT_SIGNING_KEY_FILE")
    if key and path:
        raise ConfigError("set MLCRIT_SIGNING_KEY or MLCRIT_SIGNING_KEY_FILE, not both")
    if path:
        try:
            lines = [line for line in Path(path).read_text().splitlines() if line.strip()]
        except OSError as exc:
            raise ConfigError(f"MLCRIT_SIGNING_KEY_FILE={path}: cannot read it ({exc.strerror})") from None
        if not lines:
            raise ConfigError(f"MLCRIT_SIGNING_KEY_FILE={path} is empty: put the key on its first line")
        return signer_from_text(lines[0], lines[1:])
    return signer_from_text(key)
