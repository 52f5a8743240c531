"""e2e DAGs: four-eyes promotion on a real scheduler. `e2e_mlcrit_approval` waits up to an hour for
a person; `e2e_mlcrit_approval_expiry` 3 seconds, so that the scheduler's timeout sweep ends it."""

import pendulum
from airflow.sdk import DAG

from airflow_mlcrit.operators import PromoteModelOperator, PromotionApprovalOperator

for dag_id, seconds in (("e2e_mlcrit_approval", 3600), ("e2e_mlcrit_approval_expiry", 3)):
    with DAG(
        dag_id=dag_id,
        schedule=None,
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        render_template_as_native_obj=True,
        params={"candidate": "adapter/clf@v2", "approvers": ["ops", "alice", "bob"]},
    ) as dag:
        approve = PromotionApprovalOperator(
            task_id="approve",
            candidate="{{ params.candidate }}",
            approvers="{{ params.approvers }}",
            expires_after_hours=seconds / 3600,
        )
        promote = PromoteModelOperator(
            task_id="promote",
            candidate="{{ params.candidate }}",
            approval="{{ ti.xcom_pull(task_ids='approve')['approval'] }}",
            reason="approved",
        )
        approve >> promote
    globals()[dag_id] = dag
