"""Roll a model (or adapter, or prompt) alias back, by hand: to the previous blessed version, or
to a given version that holds a blessing. The move is compare-and-swap, recorded in the alias
history with the reason and this run, and emitted to lineage."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Param

from airflow_mlcrit.operators import RollbackModelOperator

with DAG(
    dag_id="mlcrit_rollback",
    schedule=None,
    start_date=pendulum.datetime(2026, 11, 1, tz="UTC"),
    catchup=False,
    tags=["mlcrit", "example"],
    params={
        "artifact": Param("adapter/support-sentiment", type="string", description="kind/name whose alias moves"),
        "alias": Param("production", type="string"),
        "to_version": Param(None, type=["null", "integer"], description="empty: the previous blessed version"),
        "reason": Param("", type="string", minLength=5, description="why (kept in the alias history)"),
    },
    doc_md=__doc__,
) as dag:
    RollbackModelOperator(
        task_id="rollback",
        artifact="{{ params.artifact }}",
        alias="{{ params.alias }}",
        to_version="{{ params.to_version }}",
        reason="{{ params.reason }}",
    )
