"""Test DAG: register a dataset, then a model made from it (paths and store come from params)."""

import pendulum
from airflow.sdk import DAG

from airflow_mlcrit.operators import RegisterArtifactOperator

with DAG(
    dag_id="test_mlcrit_register",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    params={"data": "", "model": "", "conn_id": ""},
) as dag:
    data = RegisterArtifactOperator(
        task_id="register_data",
        artifact="dataset/reviews",
        path="{{ params.data }}",
        store_conn_id="{{ params.conn_id }}",
        metadata={"rows": 2},
        description="raw reviews",
    )
    model = RegisterArtifactOperator(
        task_id="register_model",
        artifact="model/clf",
        path="{{ params.model }}",
        parents=["{{ ti.xcom_pull(task_ids='register_data')['ref'] }}"],
        store_conn_id="{{ params.conn_id }}",
    )
    data >> model
