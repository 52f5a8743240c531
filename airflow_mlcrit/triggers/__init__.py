"""Triggers of airflow-mlcrit (run in the triggerer; deferrable operators and sensors use them)."""
