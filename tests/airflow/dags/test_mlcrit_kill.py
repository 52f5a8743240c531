"""Test DAGs: a fine-tune and a Beam pipeline that outlive their execution_timeout; Airflow calls
on_kill, which must stop the work they started (a marked-failed task gets SIGTERM, the same path)."""

import datetime

import pendulum
from airflow.sdk import DAG

from airflow_mlcrit.operators import BeamPreprocessOperator, FineTuneOperator

with DAG(
    dag_id="test_mlcrit_kill",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    render_template_as_native_obj=True,
    params={"data": "", "base": ""},
) as dag:
    FineTuneOperator(
        task_id="finetune",
        dataset="{{ params.data }}",
        base_model="{{ params.base }}",
        config={"max_steps": 1000000, "batch_size": 4, "max_length": 16, "log_every": 1},
        output_name="endless",
        execution_timeout=datetime.timedelta(seconds=10),
    )
    BeamPreprocessOperator(
        task_id="preprocess",
        dataset="{{ params.data }}",
        config={
            "user_pipeline": "tests.helpers.slow_pipeline:endless",
            "pipeline_options": {"direct_num_workers": 2},
        },
        output_name="endless",
        execution_timeout=datetime.timedelta(seconds=15),  # Beam's workers are up by then
    )
