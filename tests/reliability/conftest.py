# The Airflow tests' fixtures, shared with the reliability suite.
from tests.airflow.conftest import dag_files, lineage_tail, store_root  # noqa: F401
