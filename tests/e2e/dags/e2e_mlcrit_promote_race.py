"""e2e DAG: two promotions of different candidates racing for the same alias, in parallel."""

import pendulum
from airflow.sdk import DAG

from airflow_mlcrit.operators import PromoteModelOperator

with DAG(
    dag_id="e2e_mlcrit_promote_race",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    params={"a": "", "b": ""},
) as dag:
    for side in ("a", "b"):
        PromoteModelOperator(task_id=f"promote_{side}", candidate=f"{{{{ params.{side} }}}}", reason=f"race {side}")
