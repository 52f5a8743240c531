"""Instruction-tune a causal LM with LoRA (loss on the responses only), evaluate its generations
against production (exact match, token F1, ROUGE-L, by topic), gate, promote."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Param

from airflow_mlcrit.operators import (
    EvaluateModelOperator,
    EvaluationGateOperator,
    FineTuneOperator,
    PromoteModelOperator,
)

with DAG(
    dag_id="mlcrit_instruction_tuning",
    schedule=None,
    start_date=pendulum.datetime(2026, 11, 1, tz="UTC"),
    catchup=False,
    render_template_as_native_obj=True,
    tags=["mlcrit", "example"],
    params={
        "dataset": Param("dataset/support-instructions@latest", type="string", description="prompt/response pairs"),
        "eval": Param("dataset/support-instructions-eval@latest", type="string"),
        "base_model": Param("base_model/support-lm@latest", type="string", description="a causal LM"),
        "template": Param("Q: {{ prompt }} A: {{ response }}", type="string"),
        "steps": Param(200, type="integer"),
        "gate": Param(
            {
                "thresholds": [
                    {"metric": "token_f1", "min": 0.5},
                    {"metric": "token_f1", "change": "non_inferiority", "margin": 0.02, "slices": "all"},
                ]
            },
            type="object",
        ),
    },
    doc_md=__doc__,
) as dag:
    finetune = FineTuneOperator(
        task_id="finetune",
        dataset="{{ params.dataset }}",
        base_model="{{ params.base_model }}",
        config={
            "task": "instruction",
            "prompt_column": "prompt",
            "response_column": "response",
            "template": "{{ params.template }}",
            "max_steps": "{{ params.steps }}",
            "batch_size": 8,
            "learning_rate": 5e-3,
            "max_length": 64,
            "checkpoint_every": 50,
        },
        output_name="support-lm",
    )
    evaluate = EvaluateModelOperator(
        task_id="evaluate",
        dataset="{{ params.eval }}",
        candidate=finetune.output["ref"],
        config={
            "task": "generation",
            "text_column": "question",
            "label_column": "answer",
            "metrics": ["token_f1", "exact_match", "rouge_l"],
            "slices": ["topic"],
            "min_slice_size": 5,
            "max_new_tokens": 8,
            "replicates": 500,
        },
        output_name="support-lm",
    )
    gate = EvaluationGateOperator(task_id="gate", evaluation=evaluate.output["ref"], config="{{ params.gate }}")
    promote = PromoteModelOperator(
        task_id="promote",
        candidate=finetune.output["ref"],
        blessing=gate.output["ref"],
        reason="blessed: generations at least as good as production on every topic",
        create_alias=True,  # the first promotion creates production
    )
    finetune >> evaluate >> gate >> promote
