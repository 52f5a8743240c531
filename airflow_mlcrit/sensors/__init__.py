"""Sensors of airflow-mlcrit."""

from airflow_mlcrit.sensors.training import FineTuneJobSensor

__all__ = ["FineTuneJobSensor"]
