"""Imports that moved between Airflow 3 minor versions, in one place."""

from __future__ import annotations

try:
    from airflow.sdk.configuration import conf
except ImportError:  # Airflow < 3.2
    from airflow.configuration import conf  # type: ignore[no-redef]

from airflow.sdk import Asset, BaseHook, BaseOperator, BaseSensorOperator
from airflow.sdk.bases.operatorlink import BaseOperatorLink

try:
    from airflow.sdk.bases.skipmixin import SkipMixin
except ImportError:  # Airflow < 3.2: the standard provider's
    from airflow.providers.standard.utils.skipmixin import SkipMixin  # type: ignore[no-redef]

try:
    from airflow.providers.standard.operators.branch import BaseBranchOperator
except ImportError:  # pragma: no cover - Airflow without the standard provider
    from airflow.operators.branch import BaseBranchOperator  # type: ignore[no-redef]

__all__ = [
    "Asset",
    "BaseBranchOperator",
    "BaseHook",
    "BaseOperator",
    "BaseOperatorLink",
    "BaseSensorOperator",
    "SkipMixin",
    "conf",
]
