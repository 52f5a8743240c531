"""Sensors of airflow-mlcrit."""

from airflow_mlcrit.sensors.artifacts import ArtifactVersionSensor, DataDriftSensor
from airflow_mlcrit.sensors.training import FineTuneJobSensor

__all__ = ["ArtifactVersionSensor", "DataDriftSensor", "FineTuneJobSensor"]
