"""Pure-Python core of airflow-mlcrit. Never imports airflow."""
