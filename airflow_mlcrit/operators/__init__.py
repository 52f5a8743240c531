"""Operators of airflow-mlcrit. Importing them loads nothing heavy (no torch, Beam or GX)."""

from airflow_mlcrit.operators.artifacts import RegisterArtifactOperator

__all__ = ["RegisterArtifactOperator"]
