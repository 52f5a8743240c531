"""Airflow hooks: connections -> core objects."""

from airflow_mlcrit.hooks.artifacts import ArtifactStoreHook

__all__ = ["ArtifactStoreHook"]
