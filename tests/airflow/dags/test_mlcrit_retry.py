"""Test DAG: a task that commits its output and then dies on its first try (a worker lost after
the commit); Airflow retries it."""

import datetime

import pendulum
from airflow.sdk import DAG

from airflow_mlcrit.operators import RegisterArtifactOperator


class CommitThenFailOnce(RegisterArtifactOperator):
    def execute(self, context):
        result = super().execute(context)
        if context["ti"].try_number == 1:
            raise RuntimeError("worker lost after the commit (simulated)")
        return result


with DAG(
    dag_id="test_mlcrit_retry",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    params={"data": "", "model": ""},
) as dag:
    CommitThenFailOnce(
        task_id="register",
        artifact="dataset/reviews",
        path="{{ params.data }}",
        retries=1,
        retry_delay=datetime.timedelta(seconds=0),
    )
