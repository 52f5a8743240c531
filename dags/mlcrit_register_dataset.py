"""Bring a raw data file into the artifact store as a new `dataset` version.

Trigger with ``{"path": "/data/reviews-2026-11-26.parquet", "name": "reviews"}``. Downstream
DAGs can be scheduled on the ``mlcrit:dataset/<name>`` asset.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Param

from airflow_mlcrit.operators import RegisterArtifactOperator

with DAG(
    dag_id="mlcrit_register_dataset",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["mlcrit", "example"],
    params={
        "path": Param("/data/incoming/reviews.parquet", type="string", description="file or directory to register"),
        "source": Param("manual", type="string", description="where the data came from (kept in metadata)"),
    },
    doc_md=__doc__,
) as dag:
    RegisterArtifactOperator(
        task_id="register",
        artifact="dataset/reviews",
        path="{{ params.path }}",
        metadata={"source": "{{ params.source }}"},
        description="Raw customer reviews as delivered by the CRM export.",
    )
