"""e2e DAG: a deferrable ArtifactVersionSensor (1 s polls) the test satisfies by committing a version."""

import pendulum
from airflow.sdk import DAG

from airflow_mlcrit.operators import ComputeStatisticsOperator
from airflow_mlcrit.sensors import ArtifactVersionSensor

with DAG(
    dag_id="e2e_mlcrit_wait",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    render_template_as_native_obj=True,
) as dag:
    wait = ArtifactVersionSensor(
        task_id="wait", artifact="dataset/e2e-incoming", after_version=0, poke_interval=1, timeout=600, deferrable=True
    )
    stats = ComputeStatisticsOperator(
        task_id="statistics", dataset="{{ ti.xcom_pull(task_ids='wait')['ref'] }}", output_name="e2e-incoming"
    )
    wait >> stats
