"""Test DAGs: evaluate a candidate against production -> gate -> promote; and a rollback."""

import pendulum
from airflow.sdk import DAG

from airflow_mlcrit.operators import (
    EvaluateModelOperator,
    EvaluationGateOperator,
    PromoteModelOperator,
    RollbackModelOperator,
)

with DAG(
    dag_id="test_mlcrit_evaluate",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    render_template_as_native_obj=True,
    params={
        "candidate": "",
        "eval": "",
        "evaluate": {},
        "gate": {},
        "suites": [],
        "blessing": None,
        "reason": "",
        "baseline_evaluation": None,
    },
) as dag:
    evaluate = EvaluateModelOperator(
        task_id="evaluate",
        dataset="{{ params.eval }}",
        candidate="{{ params.candidate }}",
        suites="{{ params.suites }}",
        baseline_evaluation="{{ params.baseline_evaluation }}",
        config="{{ params.evaluate }}",
        output_name="sentiment",
    )
    gate = EvaluationGateOperator(
        task_id="gate", evaluation="{{ ti.xcom_pull(task_ids='evaluate')['ref'] }}", config="{{ params.gate }}"
    )
    promote = PromoteModelOperator(
        task_id="promote",
        candidate="{{ params.candidate }}",
        blessing="{{ params.blessing }}",
        reason="{{ params.reason }}",
        create_alias=True,  # the first promotion of each test's model creates production
    )
    evaluate >> gate >> promote

with DAG(
    dag_id="test_mlcrit_rollback",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    params={"artifact": "adapter/sentiment", "to_version": None, "reason": ""},
) as rollback_dag:
    RollbackModelOperator(
        task_id="rollback",
        artifact="{{ params.artifact }}",
        to_version="{{ params.to_version }}",
        reason="{{ params.reason }}",
    )

with DAG(
    dag_id="test_mlcrit_evaluate_tabular",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    render_template_as_native_obj=True,
    params={"evaluate": {}, "gate": {}},
) as tabular_dag:
    tab_eval = EvaluateModelOperator(
        task_id="evaluate",
        dataset="dataset/demand-eval@latest",
        candidate="model/demand@v2",
        config="{{ params.evaluate }}",
        output_name="demand",
    )
    tab_gate = EvaluationGateOperator(
        task_id="gate", evaluation="{{ ti.xcom_pull(task_ids='evaluate')['ref'] }}", config="{{ params.gate }}"
    )
    tab_eval >> tab_gate >> PromoteModelOperator(task_id="promote", candidate="model/demand@v2")

with DAG(
    dag_id="test_mlcrit_evaluate_mapped",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    render_template_as_native_obj=True,
    params={"evaluate": {}},
) as mapped_dag:
    # one evaluation per candidate column set: a mapped task, whose Evaluation tab carries its index
    EvaluateModelOperator.partial(
        task_id="evaluate", dataset="dataset/demand-eval@latest", candidate="model/demand@v2", output_name="demand"
    ).expand(
        config=[
            {"task": "regression", "label_column": "demand", "prediction_column": p, "slices": ["region"]}
            | {"baseline_prediction_column": "pred_v1", "replicates": 100}
            for p in ("pred_v1", "pred_v2")
        ]
    )
