"""Test DAGs: tasks that commit their outputs and then die on their first try (a worker lost
after the commit); Airflow retries them."""

import datetime

import pendulum
from airflow.sdk import DAG

from airflow_mlcrit.operators import (
    BeamPreprocessOperator,
    ComputeStatisticsOperator,
    EvaluateModelOperator,
    FineTuneOperator,
    PromoteModelOperator,
    RegisterArtifactOperator,
    RollbackModelOperator,
)
from tests.helpers.flaky import fail_first_try_after

with DAG(
    dag_id="test_mlcrit_retry",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    params={"data": "", "model": ""},
) as dag:
    fail_first_try_after(RegisterArtifactOperator)(
        task_id="register",
        artifact="dataset/reviews",
        path="{{ params.data }}",
        retries=1,
        retry_delay=datetime.timedelta(seconds=0),
    )


with DAG(
    dag_id="test_mlcrit_retry_expensive",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    render_template_as_native_obj=True,
    params={"data": "", "base": ""},
) as expensive_dag:
    retry = {"retries": 1, "retry_delay": datetime.timedelta(seconds=0)}
    prep = fail_first_try_after(BeamPreprocessOperator)(
        task_id="preprocess",
        dataset="{{ params.data }}",
        config={"splits": {"train": 0.8, "eval": 0.2}, "exact_dedup": False},
        output_name="reviews",
        **retry,
    )
    train = fail_first_try_after(FineTuneOperator)(
        task_id="finetune",
        dataset="{{ ti.xcom_pull(task_ids='preprocess')['ref'] }}",
        base_model="{{ params.base }}",
        config={"max_steps": 10, "batch_size": 16, "learning_rate": 2e-2, "max_length": 16},
        output_name="sentiment",
        **retry,
    )
    evaluate = fail_first_try_after(EvaluateModelOperator)(
        task_id="evaluate",
        dataset="{{ params.data }}",
        candidate="{{ ti.xcom_pull(task_ids='finetune')['ref'] }}",
        baseline=None,
        config={"replicates": 50, "max_length": 16},
        output_name="sentiment",
        **retry,
    )
    prep >> train >> evaluate
    fail_first_try_after(ComputeStatisticsOperator)(
        task_id="statistics", dataset="{{ params.data }}", output_name="reviews", **retry
    )


with DAG(
    dag_id="test_mlcrit_retry_alias",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    params={"candidate": "", "reason": ""},
) as alias_dag:
    retry = {"retries": 1, "retry_delay": datetime.timedelta(seconds=0)}
    promote = fail_first_try_after(PromoteModelOperator)(
        task_id="promote", candidate="{{ params.candidate }}", reason="{{ params.reason }}", **retry
    )
    rollback = fail_first_try_after(RollbackModelOperator)(
        task_id="rollback", artifact="model/churn", reason="{{ params.reason }}", **retry
    )
    promote >> rollback
