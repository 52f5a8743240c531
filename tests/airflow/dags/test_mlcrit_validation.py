"""Test DAG: register a dataset, profile it, infer a schema and validate it; the dataset path,
schema and validation config come from params (native rendering, so dicts stay dicts)."""

import datetime

import pendulum
from airflow.sdk import DAG

from airflow_mlcrit.operators import (
    ComputeStatisticsOperator,
    InferSchemaOperator,
    RegisterArtifactOperator,
    ValidateDataOperator,
)
from tests.helpers.flaky import fail_first_try_after

with DAG(
    dag_id="test_mlcrit_validation",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    render_template_as_native_obj=True,
    params={"data": "", "schema": None, "validation": {}},
) as dag:
    register = RegisterArtifactOperator(task_id="register", artifact="dataset/reviews", path="{{ params.data }}")
    stats = ComputeStatisticsOperator(task_id="statistics", dataset="dataset/reviews@latest", output_name="reviews")
    schema = InferSchemaOperator(
        task_id="schema",
        statistics="{{ ti.xcom_pull(task_ids='statistics')['ref'] }}",
        config={"label_columns": ["label"]},
        output_name="reviews",
    )
    validate = ValidateDataOperator(
        task_id="validate",
        dataset="{{ ti.xcom_pull(task_ids='register')['ref'] }}",
        config="{{ dict(params.validation, schema=params.schema or ti.xcom_pull(task_ids='schema')['ref']) }}",
        output_name="reviews",
    )
    register >> stats >> schema >> validate

with DAG(
    dag_id="test_mlcrit_validation_retry",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    render_template_as_native_obj=True,
    params={"data": "", "validation": {}},
) as retry_dag:
    # Fails its first try after committing (or by failing validation); retried once at once.
    fail_first_try_after(ValidateDataOperator)(
        task_id="validate",
        dataset="{{ params.data }}",
        config="{{ params.validation }}",
        output_name="retried",
        retries=1,
        retry_delay=datetime.timedelta(seconds=0),
    )
