"""Sensors of airflow-mlcrit."""
