"""Test DAGs: prompt evaluation per backend, gate -> prompt-or-fine-tune branch, and a gated
http prompt."""

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
    "allow_model_change": False,
}


def _dag(dag_id: str) -> DAG:
    return DAG(
        dag_id=dag_id,
        schedule=None,
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        render_template_as_native_obj=True,
        params=PARAMS,
    )


def _evaluate(backend: str, output_name: str) -> PromptEvaluationOperator:
    return PromptEvaluationOperator(
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
        allow_model_change="{{ params.allow_model_change }}",
        output_name=output_name,
    )


def _gate() -> EvaluationGateOperator:
    return EvaluationGateOperator(
        task_id="gate",
        evaluation="{{ ti.xcom_pull(task_ids='evaluate_prompt')['ref'] }}",
        config="{{ params.gate }}",
        short_circuit=False,  # the branch reads the decision
    )


for backend in ("causal_lm", "encoder", "http"):
    with _dag(f"test_mlcrit_prompt_{backend}") as dag:
        _evaluate(backend, "prompt-eval")
    globals()[dag.dag_id] = dag

with _dag("test_mlcrit_prompt_branch") as branch_dag:
    branch = PromptOrFineTuneBranchOperator(
        task_id="branch", prompt="{{ params.prompt }}", blessing="{{ ti.xcom_pull(task_ids='gate')['ref'] }}"
    )
    promote = PromoteModelOperator(
        task_id="promote_prompt", candidate="{{ params.prompt }}", reason="prompt is good enough", create_alias=True
    )
    finetune = EmptyOperator(task_id="finetune")  # stands for the fine-tuning branch of a real pipeline
    _evaluate("encoder", "branch-eval") >> _gate() >> branch >> [promote, finetune]

with _dag("test_mlcrit_prompt_gated_http") as gated_dag:
    _evaluate("http", "gated-eval") >> _gate()
