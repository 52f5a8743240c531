"""An isolated Airflow home for tests that run Airflow's own CLI or components in subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def airflow_home(root: Path, *, dags: Path | None = None, transport: dict | None = None, **extra: str) -> dict:
    """The environment of a fresh Airflow home under ``root`` (SQLite DB migrated, local artifact
    store, OpenLineage file transport unless ``transport`` is given); ``extra`` adds variables."""
    root.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(root / "home"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags or REPO / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{root}/airflow.db",
        "AIRFLOW__MLCRIT__ARTIFACT_ROOT": str(root / "artifacts"),
        "MLCRIT_ARTIFACT_ROOT": str(root / "artifacts"),
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(
            transport or {"type": "file", "log_file_path": str(root / "lineage.jsonl"), "append": True}
        ),
        "HF_HUB_OFFLINE": "1",
        **extra,
    }
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=env, check=True, capture_output=True)
    return env
