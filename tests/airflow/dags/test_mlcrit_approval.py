"""Four-eyes promotion: a person approves the blessed candidate, then it is promoted. Run by
dag.test() (tests/airflow/test_approval_operator.py) and on the edge module's real scheduler
(tests/e2e/test_edge.py), which passes its own approvers."""

import pendulum
from airflow.sdk import DAG

from airflow_mlcrit.operators import PromoteModelOperator, PromotionApprovalOperator

# test_mlcrit_approval_expiry: the same, open for 2 seconds
for dag_id, hours in (("test_mlcrit_approval", 1.0), ("test_mlcrit_approval_expiry", 2 / 3600)):
    with DAG(
        dag_id=dag_id,
        schedule=None,
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        render_template_as_native_obj=True,
        params={"candidate": "adapter/clf@v2", "approvers": ["alice", "bob", "dag_test"]},
    ) as dag:
        approve = PromotionApprovalOperator(
            task_id="approve",
            candidate="{{ params.candidate }}",
            approvers="{{ params.approvers }}",  # dag_test: the user dag.test() triggers as
            expires_after_hours=hours,
        )
        promote = PromoteModelOperator(
            task_id="promote",
            candidate="{{ params.candidate }}",
            approval="{{ ti.xcom_pull(task_ids='approve')['approval'] }}",
            reason="approved",
        )
        approve >> promote
    globals()[dag_id] = dag
