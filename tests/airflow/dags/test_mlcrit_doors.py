"""The operator door of the door matrix (tests/airflow/test_doors.py): PromoteModelOperator with
what the test passes, recording why it failed. And an approval step alone, whose decision the
test then uses through the other doors."""

import json
import os

import pendulum
from airflow.sdk import DAG

from airflow_mlcrit.operators import PromoteModelOperator, PromotionApprovalOperator


def record_failure(context) -> None:
    """Where the test reads the operator's refusal: its exception's class and message."""
    exc = context.get("exception")
    with open(os.environ["MLCRIT_TEST_FAILURES"], "a") as f:
        f.write(json.dumps({"class": type(exc).__name__, "message": str(exc)}) + "\n")


with DAG(
    dag_id="test_mlcrit_doors",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    render_template_as_native_obj=True,
    params={"candidate": "adapter/clf@v2", "alias": "production", "approval": ""},
) as doors:
    PromoteModelOperator(
        task_id="promote",
        candidate="{{ params.candidate }}",
        alias="{{ params.alias }}",
        approval="{{ params.approval }}",
        reason="the operator door",
        on_failure_callback=record_failure,
    )

with DAG(
    dag_id="test_mlcrit_approve_only",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    params={"candidate": "adapter/clf@v2"},
) as approve_only:
    PromotionApprovalOperator(task_id="approve", candidate="{{ params.candidate }}")
