"""Test DAG: register a dataset, preprocess it on Beam (config from params, rendered natively)."""

import pendulum
from airflow.sdk import DAG

from airflow_mlcrit.operators import BeamPreprocessOperator, RegisterArtifactOperator

with DAG(
    dag_id="test_mlcrit_preprocess",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    render_template_as_native_obj=True,
    params={"data": "", "preprocess": {}},
) as dag:
    register = RegisterArtifactOperator(task_id="register", artifact="dataset/reviews", path="{{ params.data }}")
    preprocess = BeamPreprocessOperator(
        task_id="preprocess",
        dataset="{{ ti.xcom_pull(task_ids='register')['ref'] }}",
        config="{{ params.preprocess }}",
        output_name="reviews",
    )
    register >> preprocess
