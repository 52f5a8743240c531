"""Retrain the support-message sentiment classifier, every Monday and whenever a new version of
``dataset/support-messages`` lands, and promote it only if it is shown to be at least as good as
production on every state, channel and hour of day.

statistics -> validate (drift vs the previous version) -> Beam preprocess -> try the prompt
first (zero-shot with the encoder) -> prompt good enough? promote the prompt : LoRA fine-tune ->
evaluate vs production on the golden set (slices, edge-case suite, sensitivity) -> gate ->
approve (four eyes, when the policy of ``production`` asks for it) -> promote.

Who may approve is the alias policy's, in the store, never a run param that the person who
triggers the run could choose: ``mlcrit aliases policy set adapter/support-sentiment production
--approvals 1 --approvers alice,bob`` (docs/evaluation.md). Without such a policy the run is
unattended and the gate alone decides. The first promotion creates ``production``
(``create_alias``); from then on a misspelled alias is refused.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Param
from airflow.timetables.assets import AssetOrTimeSchedule
from airflow.timetables.trigger import CronTriggerTimetable

from airflow_mlcrit.operators import (
    BeamPreprocessOperator,
    ComputeStatisticsOperator,
    EvaluateModelOperator,
    EvaluationGateOperator,
    FineTuneOperator,
    PromoteModelOperator,
    PromotionApprovalOperator,
    PromptEvaluationOperator,
    PromptOrFineTuneBranchOperator,
    ValidateDataOperator,
)
from airflow_mlcrit.operators.base import artifact_asset

SLICES = [
    "state",
    "channel",
    {"column": "ts", "hour_of_day": True},
    ["channel", {"column": "hour", "buckets": [6, 18], "name": "daypart"}],
]
# Each slice's margin is one its golden rows can decide (docs/evaluation.md, "Underpowered slices"):
# ~400 rows per state against 0.05, ~400-1,000 per channel against 0.03.
GATE = {
    "thresholds": [
        {"metric": "accuracy", "min": 0.8},
        {"metric": "accuracy", "change": "non_inferiority", "margin": 0.05, "slices": {"spec": "state"}},
        {"metric": "accuracy", "change": "non_inferiority", "margin": 0.03, "slices": {"spec": "channel"}},
        {"metric": "macro_f1", "change": "non_inferiority", "margin": 0.02},
        {"max_flip_rate": 0.15, "perturbation": "typos"},
        {"min_pass_rate": 0.75, "suite": "support-edge-cases"},
    ]
}
# a prompt must also beat always answering the majority class (a constant is not a model)
PROMPT_GATE = {
    "thresholds": [
        {"metric": "accuracy", "min": 0.95, "use_ci": True, "slices": {"spec": "channel"}},
        {"better_than": "majority"},
    ]
}

with DAG(
    dag_id="mlcrit_text_classifier",
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable("0 3 * * 1", timezone="UTC"),
        assets=artifact_asset("dataset/support-messages"),
    ),
    start_date=pendulum.datetime(2026, 11, 1, tz="UTC"),
    catchup=False,
    render_template_as_native_obj=True,
    tags=["mlcrit", "example"],
    params={
        "dataset": Param("dataset/support-messages@latest", type="string", description="training data"),
        "golden": Param("dataset/support-golden@latest", type="string", description="curated eval set"),
        "base_model": Param("base_model/all-minilm-l6-v2@latest", type="string"),
        "prompt": Param("prompt/support-zero-shot@latest", type="string", description="tried before training"),
        "suite": Param("suite/support-edge-cases@latest", type="string"),
        "steps": Param(150, type="integer", description="LoRA steps"),
        "replicates": Param(1000, type="integer", description="bootstrap replicates"),
        "gate": Param(GATE, type="object", description="evaluation gate thresholds"),
        "prompt_gate": Param(PROMPT_GATE, type="object", description="thresholds a prompt must pass"),
    },
    doc_md=__doc__,
) as dag:
    statistics = ComputeStatisticsOperator(
        task_id="statistics", dataset="{{ params.dataset }}", output_name="support-messages"
    )
    validate = ValidateDataOperator(
        task_id="validate",
        dataset="{{ params.dataset }}",
        config={
            "default_policy": "warn",
            "policies": {"duplicates": "quarantine", "pii": "quarantine"},
            "drift_thresholds": {"js_divergence": 0.1, "linf": 0.1},
        },
        output_name="support-messages",
    )
    preprocess = BeamPreprocessOperator(
        task_id="preprocess",
        dataset=validate.output["clean"],  # what passed validation: quarantined rows never reach training
        config={"label_column": "label", "splits": {"train": 0.9, "eval": 0.1}, "exact_dedup": True},
        output_name="support-messages",
    )
    evaluate_prompt = PromptEvaluationOperator(
        task_id="evaluate_prompt",
        dataset="{{ params.golden }}",
        prompt="{{ params.prompt }}",
        backend="encoder",
        model="{{ params.base_model }}",
        config={"slices": ["channel"], "replicates": "{{ params.replicates }}"},
        output_name="support-prompt",
    )
    gate_prompt = EvaluationGateOperator(
        task_id="gate_prompt",
        evaluation=evaluate_prompt.output["ref"],
        config="{{ params.prompt_gate }}",
        short_circuit=False,
    )
    branch = PromptOrFineTuneBranchOperator(
        task_id="prompt_or_finetune",
        prompt="{{ params.prompt }}",
        blessing=gate_prompt.output["ref"],
    )
    promote_prompt = PromoteModelOperator(
        task_id="promote_prompt",
        candidate="{{ params.prompt }}",
        reason="the prompt passed its gate: no training",
        create_alias=True,
    )
    finetune = FineTuneOperator(
        task_id="finetune",
        dataset=preprocess.output["ref"],
        base_model="{{ params.base_model }}",
        config={
            "max_steps": "{{ params.steps }}",
            "batch_size": 16,
            "learning_rate": 2e-3,
            "max_length": 32,
            "checkpoint_every": 50,
            "log_every": 25,
        },
        output_name="support-sentiment",
        # CeleryExecutor: only workers started with `--queues default,gpu` take it (docs/deployment.md);
        # other executors ignore the queue
        queue="gpu",
        # a lost worker: the retry, on any worker of the queue, resumes from the newest stored checkpoint
        retries=2,
    )
    evaluate = EvaluateModelOperator(
        task_id="evaluate",
        dataset="{{ params.golden }}",
        candidate=finetune.output["ref"],
        suites=["{{ params.suite }}"],
        config={
            "slices": SLICES,
            "min_slice_size": 40,
            "replicates": "{{ params.replicates }}",
            "sensitivity": ["typos", "casing", "entity_swap"],
            "max_length": 32,
        },
        output_name="support-sentiment",
    )
    gate = EvaluationGateOperator(task_id="gate", evaluation=evaluate.output["ref"], config="{{ params.gate }}")
    approve = PromotionApprovalOperator(
        task_id="approve",
        candidate=finetune.output["ref"],
        blessing=gate.output["ref"],
    )
    promote = PromoteModelOperator(
        task_id="promote",
        candidate=finetune.output["ref"],
        blessing=gate.output["ref"],
        approval="{{ ti.xcom_pull(task_ids='approve')['approval'] }}",
        reason="blessed: non-inferior on every state and channel",
        create_alias=True,
    )
    statistics >> validate >> preprocess >> evaluate_prompt >> gate_prompt >> branch
    branch >> promote_prompt
    branch >> finetune >> evaluate >> gate >> approve >> promote
