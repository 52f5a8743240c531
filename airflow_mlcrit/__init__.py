"""airflow-mlcrit: an Apache Airflow 3 provider for mission-critical production ML."""

__version__ = "0.1.0"
