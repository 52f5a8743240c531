"""Triggers of airflow-mlcrit."""
