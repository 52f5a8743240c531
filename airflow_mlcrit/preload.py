"""Import the heavy ML libraries once, in a long-lived Airflow process whose task processes are
forked from it, so that each task does not pay for them again.

Airflow 3 forks every task process on Linux: LocalExecutor workers from the scheduler, Celery's
pool children from the worker process, edge workers' tasks from the edge worker. A task that
imports torch, transformers and peft spends 5-7 s on that alone (2 cores); forked from a process
that already holds them, it spends none. Call :func:`preload` from ``airflow_local_settings.py``
in the scheduler (LocalExecutor), the Celery worker or the edge worker only, never in DAG files:
the dag-processor must stay light (docs/deployment.md).
"""

from __future__ import annotations

import importlib
import logging

log = logging.getLogger(__name__)

# what the provider's own tasks import; great_expectations is left out (5 s, used by GX suites only)
DEFAULT = (
    "pandas",
    "pyarrow.parquet",
    "torch",
    "transformers",
    "peft",
    "apache_beam",
    "airflow_mlcrit.operators",
    "airflow_mlcrit.core.evaluation.evaluate",
    "airflow_mlcrit.core.training.finetune",
    "airflow_mlcrit.core.preprocessing.pipeline",
)


def preload(modules: tuple[str, ...] | list[str] = DEFAULT) -> list[str]:
    """Import ``modules``; returns those imported. A library that is not installed (an extra left
    out) is reported in the log and skipped: preloading only saves time, it never changes what a
    task can do."""
    loaded, missing = [], []
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            missing.append(f"{name} ({exc.name or exc})")
            continue
        loaded.append(name)
    log.info(
        "mlcrit: preloaded %s%s",
        ", ".join(loaded) or "nothing",
        f"; not installed: {', '.join(missing)}" * bool(missing),
    )
    return loaded
