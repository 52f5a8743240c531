"""Four-eyes promotion: a person approves the blessed candidate, then it is promoted. Who may
approve, and for how long, is the alias policy's, in the store (the tests set it). Run by
dag.test() (tests/airflow/test_approval_operator.py) and on the edge module's real scheduler
(tests/e2e/test_edge.py)."""

import pendulum
from airflow.sdk import DAG

from airflow_mlcrit.operators import PromoteModelOperator, PromotionApprovalOperator

# test_mlcrit_approval_expiry: the same DAG, run where the policy keeps a request open 2 seconds
for dag_id in ("test_mlcrit_approval", "test_mlcrit_approval_expiry"):
    with DAG(
        dag_id=dag_id,
        schedule=None,
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        render_template_as_native_obj=True,
        params={"candidate": "adapter/clf@v2"},
    ) as dag:
        approve = PromotionApprovalOperator(task_id="approve", candidate="{{ params.candidate }}")
        promote = PromoteModelOperator(
            task_id="promote",
            candidate="{{ params.candidate }}",
            approval="{{ ti.xcom_pull(task_ids='approve')['approval'] }}",
            reason="approved",
        )
        approve >> promote
    globals()[dag_id] = dag
