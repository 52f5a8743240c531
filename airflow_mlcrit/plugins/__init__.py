"""The provider's Airflow UI plugin: the ML registry (plugins/registry.py)."""
