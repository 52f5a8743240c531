"""Bring a raw data file into the artifact store as a new `dataset` version, profile it and
validate it: drift against the previous version's statistics, duplicates, empty texts and
personal data (rows with PII or duplicates are quarantined; everything else only warns).

Trigger with ``{"path": "/data/reviews-2026-11-26.parquet", "source": "crm"}``. Downstream
DAGs can be scheduled on the ``mlcrit:dataset/reviews`` asset.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Param

from airflow_mlcrit.operators import ComputeStatisticsOperator, RegisterArtifactOperator, ValidateDataOperator

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
    register = RegisterArtifactOperator(
        task_id="register",
        artifact="dataset/reviews",
        path="{{ params.path }}",
        metadata={"source": "{{ params.source }}"},
        description="Raw customer reviews as delivered by the CRM export.",
    )
    statistics = ComputeStatisticsOperator(
        task_id="statistics",
        dataset=register.output["ref"],
        output_name="reviews",
    )
    validate = ValidateDataOperator(
        task_id="validate",
        dataset=register.output["ref"],
        config={
            "default_policy": "warn",
            "policies": {"pii": "quarantine", "duplicates": "quarantine"},
            "drift_thresholds": {"js_divergence": 0.05, "linf": 0.05},
        },
        output_name="reviews",
    )
    register >> statistics >> validate
