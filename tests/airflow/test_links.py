"""Extra links: every mlcrit task links to its job in Marquez when [mlcrit] marquez_url is set."""

from types import SimpleNamespace

from airflow_mlcrit.operators import EvaluateModelOperator, EvaluationGateOperator, RegisterArtifactOperator
from airflow_mlcrit.operators.base import MarquezJobLink
from airflow_mlcrit.operators.evaluation import EvaluationReportLink, GateReportLink


def test_marquez_job_link(monkeypatch):
    key = SimpleNamespace(dag_id="mlcrit_text_classifier", task_id="gate", run_id="r", map_index=-1, try_number=1)
    op = RegisterArtifactOperator(task_id="register", artifact="dataset/x", path="/tmp/x")
    monkeypatch.setenv("AIRFLOW__MLCRIT__MARQUEZ_URL", "")
    assert MarquezJobLink().get_link(op, ti_key=key) == ""
    monkeypatch.setenv("AIRFLOW__MLCRIT__MARQUEZ_URL", "http://marquez.internal:3000/")
    monkeypatch.setenv("AIRFLOW__OPENLINEAGE__NAMESPACE", "prod ml")
    assert MarquezJobLink().get_link(op, ti_key=key) == (
        "http://marquez.internal:3000/lineage/job/prod%20ml/mlcrit_text_classifier.gate"
    )
    names = [type(link) for link in EvaluateModelOperator.operator_extra_links]
    assert names == [MarquezJobLink, EvaluationReportLink]
    gate = EvaluationGateOperator(task_id="gate", evaluation="evaluation/x@v1", config={"thresholds": []})
    assert [type(link) for link in gate.operator_extra_links] == [MarquezJobLink, GateReportLink]
    assert GateReportLink().get_link(gate, ti_key=key) == ""  # not judged yet: no link
    gate.report_url = "s3://ml/blessing/x/v000001/report.html"
    assert GateReportLink().get_link(gate, ti_key=key) == "s3://ml/blessing/x/v000001/report.html"
