"""Test DAGs: data and base model in an S3 store, fine-tuned by a SageMaker job: deferred, and
waited for in the worker past its execution_timeout (on_kill stops the job)."""

import datetime

import pendulum
from airflow.sdk import DAG

from airflow_mlcrit.operators import FineTuneOperator, RegisterArtifactOperator


def _sagemaker_dag(dag_id: str, **finetune: object) -> DAG:
    with DAG(
        dag_id=dag_id,
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
            poll_interval=0.5,
            store_conn_id="s3_store",
            output_name="sentiment",
            **finetune,
        )
        [data, base] >> train
    return dag


deferred = _sagemaker_dag("test_mlcrit_sagemaker", deferrable=True)
# waits in the worker, so the timeout reaches on_kill there
timed_out = _sagemaker_dag(
    "test_mlcrit_sagemaker_timeout", deferrable=False, execution_timeout=datetime.timedelta(seconds=4)
)
