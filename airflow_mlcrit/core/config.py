"""Where mlcrit keeps things when nobody says: shared by the CLI and the Airflow layer."""

from __future__ import annotations

import os
from pathlib import Path


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
