"""e2e DAG: tasks that use connections holding secrets: an S3 artifact store (an `mlcrit`
connection whose password is the secret key) and an OpenAI-compatible endpoint (API key)."""

import pendulum
from airflow.sdk import DAG

from airflow_mlcrit.operators import (
    ComputeStatisticsOperator,
    PromptEvaluationOperator,
    RegisterArtifactOperator,
    ValidateDataOperator,
)

with DAG(
    dag_id="e2e_mlcrit_secrets",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    render_template_as_native_obj=True,
    params={"path": "", "prompt": "", "dataset": ""},
) as dag:
    register = RegisterArtifactOperator(
        task_id="register", artifact="dataset/secret-scan", path="{{ params.path }}", store_conn_id="mlcrit_s3"
    )
    ref = "{{ ti.xcom_pull(task_ids='register')['ref'] }}"
    statistics = ComputeStatisticsOperator(task_id="statistics", dataset=ref, store_conn_id="mlcrit_s3")
    validate = ValidateDataOperator(
        task_id="validate", dataset=ref, config={"default_policy": "warn"}, store_conn_id="mlcrit_s3"
    )
    prompt = PromptEvaluationOperator(
        task_id="evaluate_prompt",
        dataset="{{ params.dataset }}",
        prompt="{{ params.prompt }}",
        backend="http",
        model="canned-1",
        http_conn_id="fake_openai",
        config={"replicates": 50},
        output_name="secret-scan",
    )
    register >> statistics >> validate >> prompt
