"""An isolated Airflow home for tests that run Airflow's own CLI or components in subprocesses."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def airflow_home(
    root: Path, *, dags: Path | None = None, transport: dict | None = None, database: str | None = None, **extra: str
) -> dict:
    """The environment of a fresh Airflow home under ``root`` (a migrated SQLite DB, or the empty
    ``database`` URL migrated; a local artifact store; the OpenLineage file transport unless
    ``transport`` is given); ``extra`` adds variables."""
    root.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(root / "home"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags or REPO / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": database or f"sqlite:///{root}/airflow.db",
        "AIRFLOW__MLCRIT__ARTIFACT_ROOT": str(root / "artifacts"),
        "MLCRIT_ARTIFACT_ROOT": str(root / "artifacts"),
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(
            transport or {"type": "file", "log_file_path": str(root / "lineage.jsonl"), "append": True}
        ),
        "HF_HUB_OFFLINE": "1",
        **extra,
    }
    if database:
        subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=env, check=True, capture_output=True)
    else:
        shutil.copyfile(_migrated_db(env), root / "airflow.db")
    return env


_TEMPLATE: list[Path] = []


def _migrated_db(env: dict) -> Path:
    """A freshly migrated, empty metadata DB, made once per test process and copied for each home
    (the schema holds nothing of a home: its DAGs, bundles and runs come later)."""
    if not _TEMPLATE:
        folder = tempfile.mkdtemp(prefix="mlcrit-airflow-db-")
        atexit.register(shutil.rmtree, folder, True)
        template = Path(folder) / "airflow.db"
        migrate = {**env, "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{template}"}
        subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=migrate, check=True, capture_output=True)
        _TEMPLATE.append(template)
    return _TEMPLATE[0]
