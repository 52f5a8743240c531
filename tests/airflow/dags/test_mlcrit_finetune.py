"""Test DAG: register data and a base model, fine-tune with LoRA (config from params)."""

import pendulum
from airflow.sdk import DAG

from airflow_mlcrit.operators import FineTuneOperator, RegisterArtifactOperator

with DAG(
    dag_id="test_mlcrit_finetune",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    render_template_as_native_obj=True,
    params={"data": "", "base": "", "finetune": {}},
) as dag:
    data = RegisterArtifactOperator(task_id="register_data", artifact="dataset/reviews", path="{{ params.data }}")
    base = RegisterArtifactOperator(task_id="register_base", artifact="base_model/tiny-bert", path="{{ params.base }}")
    train = FineTuneOperator(
        task_id="finetune",
        dataset="{{ ti.xcom_pull(task_ids='register_data')['ref'] }}",
        base_model="base_model/tiny-bert@latest",
        config="{{ params.finetune }}",
        output_name="sentiment",
    )
    [data, base] >> train
