"""Test DAG: register -> Beam preprocess (train/eval splits + contract) -> LoRA fine-tune with eval."""

import pendulum
from airflow.sdk import DAG

from airflow_mlcrit.operators import BeamPreprocessOperator, FineTuneOperator, RegisterArtifactOperator

with DAG(
    dag_id="test_mlcrit_prep_train",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    render_template_as_native_obj=True,
    params={"data": "", "base": ""},
) as dag:
    data = RegisterArtifactOperator(task_id="register", artifact="dataset/reviews", path="{{ params.data }}")
    prep = BeamPreprocessOperator(
        task_id="preprocess",
        dataset="{{ ti.xcom_pull(task_ids='register')['ref'] }}",
        config={
            "splits": {"train": 0.8, "eval": 0.2},
            "exact_dedup": False,
            "pipeline_options": {"direct_running_mode": "in_memory"},
        },
        output_name="reviews",
    )
    train = FineTuneOperator(
        task_id="finetune",
        dataset="{{ ti.xcom_pull(task_ids='preprocess')['ref'] }}",
        base_model="{{ params.base }}",
        config={"max_steps": 20, "batch_size": 16, "learning_rate": 2e-2, "max_length": 16, "eval_every": 10},
        output_name="sentiment",
    )
    data >> prep >> train
