"""Reliability DAG: statistics -> Beam preprocess -> LoRA fine-tune (checkpointed) -> evaluation,
on small data and a tiny model; the crash-safety test SIGKILLs it at random points."""

import pendulum
from airflow.sdk import DAG

from airflow_mlcrit.operators import (
    BeamPreprocessOperator,
    ComputeStatisticsOperator,
    EvaluateModelOperator,
    FineTuneOperator,
)

with DAG(
    dag_id="reliability_crash",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    render_template_as_native_obj=True,
    params={"data": "dataset/crash@v1", "golden": "dataset/crash-golden@v1", "base": ""},
) as dag:
    statistics = ComputeStatisticsOperator(task_id="statistics", dataset="{{ params.data }}", output_name="crash")
    preprocess = BeamPreprocessOperator(
        task_id="preprocess",
        dataset="{{ params.data }}",
        config={"splits": {"train": 0.9, "eval": 0.1}, "exact_dedup": False},
        output_name="crash",
    )
    finetune = FineTuneOperator(
        task_id="finetune",
        dataset="{{ ti.xcom_pull(task_ids='preprocess')['ref'] }}",
        base_model="{{ params.base }}",
        config={
            "max_steps": 60,
            "batch_size": 16,
            "learning_rate": 2e-2,
            "max_length": 16,
            "checkpoint_every": 10,
            "seed": 3,
        },
        output_name="crash",
    )
    evaluate = EvaluateModelOperator(
        task_id="evaluate",
        dataset="{{ params.golden }}",
        candidate="{{ ti.xcom_pull(task_ids='finetune')['ref'] }}",
        baseline=None,
        config={"slices": ["label"], "replicates": 200},
        output_name="crash",
    )
    statistics >> preprocess >> finetune >> evaluate
