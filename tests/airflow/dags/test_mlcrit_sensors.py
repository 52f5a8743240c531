"""Test DAG: deferrable sensors on the artifact store."""

import pendulum
from airflow.sdk import DAG

from airflow_mlcrit.sensors import ArtifactVersionSensor, DataDriftSensor

with DAG(
    dag_id="test_mlcrit_sensors",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    render_template_as_native_obj=True,
    params={"after": 1},
) as dag:
    ArtifactVersionSensor(
        task_id="new_version",
        artifact="dataset/incoming",
        after_version="{{ params.after }}",
        poke_interval=0.3,
        timeout=120,
        deferrable=True,
    ) >> DataDriftSensor(
        task_id="drift",
        artifact="dataset/incoming",
        after_version="{{ params.after }}",
        columns=["channel", "text"],
        thresholds={"js_divergence": 0.2, "linf": 0.15},
        poke_interval=0.3,
        timeout=120,
        deferrable=True,
    )
