"""Test DAGs: prompt evaluation per backend, and gate -> prompt-or-fine-tune branch."""

import pendulum
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG

from airflow_mlcrit.operators import (
    EvaluationGateOperator,
    PromoteModelOperator,
    PromptEvaluationOperator,
    PromptOrFineTuneBranchOperator,
)

PARAMS = {
    "prompt": "",
    "dataset": "",
    "model": "",
    "mode": None,
    "evaluate": {},
    "gate": {},
    "http_conn_id": None,
    "cache_dir": None,
    "suites": [],
}

for backend in ("causal_lm", "encoder", "http"):
    with DAG(
        dag_id=f"test_mlcrit_prompt_{backend}",
        schedule=None,
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        render_template_as_native_obj=True,
        params=PARAMS,
    ) as dag:
        PromptEvaluationOperator(
            task_id="evaluate_prompt",
            dataset="{{ params.dataset }}",
            prompt="{{ params.prompt }}",
            backend=backend,
            model="{{ params.model }}",
            mode="{{ params.mode }}",
            http_conn_id="{{ params.http_conn_id }}",
            cache_dir="{{ params.cache_dir }}",
            suites="{{ params.suites }}",
            config="{{ params.evaluate }}",
            output_name="prompt-eval",
        )
    globals()[dag.dag_id] = dag

with DAG(
    dag_id="test_mlcrit_prompt_branch",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    render_template_as_native_obj=True,
    params=PARAMS,
) as branch_dag:
    evaluate = PromptEvaluationOperator(
        task_id="evaluate_prompt",
        dataset="{{ params.dataset }}",
        prompt="{{ params.prompt }}",
        backend="encoder",
        model="{{ params.model }}",
        config="{{ params.evaluate }}",
        output_name="branch-eval",
    )
    gate = EvaluationGateOperator(
        task_id="gate",
        evaluation="{{ ti.xcom_pull(task_ids='evaluate_prompt')['ref'] }}",
        config="{{ params.gate }}",
        short_circuit=False,  # the branch reads the decision
    )
    branch = PromptOrFineTuneBranchOperator(
        task_id="branch", prompt="{{ params.prompt }}", blessing="{{ ti.xcom_pull(task_ids='gate')['ref'] }}"
    )
    promote = PromoteModelOperator(
        task_id="promote_prompt", candidate="{{ params.prompt }}", reason="prompt is good enough"
    )
    finetune = EmptyOperator(task_id="finetune")  # stands for the fine-tuning branch of a real pipeline
    evaluate >> gate >> branch >> [promote, finetune]

with DAG(
    dag_id="test_mlcrit_prompt_gated_http",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    render_template_as_native_obj=True,
    params=PARAMS,
) as gated_dag:
    gated = PromptEvaluationOperator(
        task_id="evaluate_prompt",
        dataset="{{ params.dataset }}",
        prompt="{{ params.prompt }}",
        backend="http",
        model="{{ params.model }}",
        http_conn_id="{{ params.http_conn_id }}",
        cache_dir="{{ params.cache_dir }}",
        config="{{ params.evaluate }}",
        output_name="gated-eval",
    )
    gated >> EvaluationGateOperator(
        task_id="gate",
        evaluation="{{ ti.xcom_pull(task_ids='evaluate_prompt')['ref'] }}",
        config="{{ params.gate }}",
        short_circuit=False,
    )
