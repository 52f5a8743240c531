"""Watch the incoming support messages for drift and retrain when it comes.

A deferrable DataDriftSensor waits (in the triggerer, holding no worker slot) for each new
version of ``dataset/support-messages``, profiles it against the version before it, and fires
only on drift beyond the thresholds; then ``mlcrit_text_classifier`` is triggered on it.
Versions within the thresholds are logged and the watch goes on.
"""

from __future__ import annotations

import pendulum
from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import DAG, Param

from airflow_mlcrit.sensors import DataDriftSensor

with DAG(
    dag_id="mlcrit_drift_watch",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 11, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["mlcrit", "example"],
    params={
        "after_version": Param(
            None, type=["null", "integer"], description="check versions after this one; empty: only new ones"
        )
    },
    doc_md=__doc__,
) as dag:
    drift = DataDriftSensor(
        task_id="wait_for_drift",
        artifact="dataset/support-messages",
        after_version="{{ params.after_version }}",
        columns=["channel", "state", "text"],
        thresholds={"js_divergence": 0.2, "linf": 0.15},
        poke_interval=300,
        timeout=24 * 3600,
        mode="reschedule",
        deferrable=True,
    )
    retrain = TriggerDagRunOperator(
        task_id="retrain",
        trigger_dag_id="mlcrit_text_classifier",
        conf={"dataset": drift.output["ref"]},
    )
    drift >> retrain
