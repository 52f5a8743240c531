"""Airflow hooks: connections -> core objects."""

from airflow_mlcrit.hooks.artifacts import ArtifactStoreHook
from airflow_mlcrit.hooks.training import FineTuneJobHook

__all__ = ["ArtifactStoreHook", "FineTuneJobHook"]
