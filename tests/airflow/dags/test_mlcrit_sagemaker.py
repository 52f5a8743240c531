"""Test DAG: data and base model in an S3 store, fine-tuned by a (deferred) SageMaker job."""

import datetime

import pendulum
from airflow.sdk import DAG

from airflow_mlcrit.operators import FineTuneOperator, RegisterArtifactOperator

with DAG(
    dag_id="test_mlcrit_sagemaker",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    render_template_as_native_obj=True,
    params={"data": "", "base": "", "options": {}},
) as dag:
    data = RegisterArtifactOperator(
        task_id="register_data", artifact="dataset/reviews", path="{{ params.data }}", store_conn_id="s3_store"
    )
    base = RegisterArtifactOperator(
        task_id="register_base", artifact="base_model/tiny-bert", path="{{ params.base }}", store_conn_id="s3_store"
    )
    train = FineTuneOperator(
        task_id="finetune",
        dataset="dataset/reviews@latest",
        base_model="base_model/tiny-bert@latest",
        config={"max_steps": 10, "max_length": 16},
        backend="sagemaker",
        backend_options="{{ params.options }}",
        aws_conn_id="sm",
        deferrable=True,
        poll_interval=0.5,
        store_conn_id="s3_store",
        output_name="sentiment",
    )
    [data, base] >> train


with DAG(
    dag_id="test_mlcrit_sagemaker_timeout",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    render_template_as_native_obj=True,
    params={"data": "", "base": "", "options": {}},
) as timeout_dag:
    data = RegisterArtifactOperator(
        task_id="register_data", artifact="dataset/reviews", path="{{ params.data }}", store_conn_id="s3_store"
    )
    base = RegisterArtifactOperator(
        task_id="register_base", artifact="base_model/tiny-bert", path="{{ params.base }}", store_conn_id="s3_store"
    )
    train = FineTuneOperator(
        task_id="finetune",
        dataset="dataset/reviews@latest",
        base_model="base_model/tiny-bert@latest",
        config={"max_steps": 10, "max_length": 16},
        backend="sagemaker",
        backend_options="{{ params.options }}",
        aws_conn_id="sm",
        deferrable=False,  # waits in the worker: the timeout reaches on_kill there
        poll_interval=0.5,
        store_conn_id="s3_store",
        output_name="sentiment",
        execution_timeout=datetime.timedelta(seconds=4),
    )
    [data, base] >> train
