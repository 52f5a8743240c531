"""Statistics, schema and validation operators through real dag.test() runs."""

import json

import pytest

from airflow_mlcrit.core.artifacts import open_store
from tests.airflow.conftest import run_dag, task_states
from tests.core.validation.data import DIRTY_FINDINGS, clean, dirty, write
from tests.helpers.openlineage import validate_event


def _report(store, ref="validation_report/reviews@latest"):
    return json.loads(store.read_bytes(ref, "report.json"))


def _week1(tmp_path):
    """First version: clean data; its statistics become the drift baseline of the next version."""
    dr = run_dag("test_mlcrit_validation", {"data": write(clean(), tmp_path / "week1.parquet")})
    assert dr.state == "success", task_states(dr)


def test_clean_data_passes_and_lineage_carries_quality_facets(store_root, tmp_path, lineage_tail):
    _week1(tmp_path)
    store = open_store(store_root)
    report = _report(store)
    assert report["status"] == "PASSED" and report["findings"] == []
    assert [p.ref.key for p in store.parents("validation_report/reviews@v1")] == ["dataset/reviews", "schema/reviews"]
    stats = json.loads(store.read_bytes("statistics/reviews@v1", "statistics.json"))
    assert stats["rows"] == 4000 and stats["columns"]["region"]["distinct"] == 4
    assert "schema.yaml" in [f["path"] for f in store.resolve("schema/reviews@v1").files]
    events = lineage_tail.events()
    for event in events:
        validate_event(event)
    [done] = [e for e in events if e["eventType"] == "COMPLETE" and e["job"]["name"].endswith(".validate")]
    [data_in] = [i for i in done["inputs"] if i["name"].endswith("/dataset/reviews")]
    assert data_in["inputFacets"]["dataQualityMetrics"]["rowCount"] == 4000
    assert data_in["inputFacets"]["dataQualityMetrics"]["columnMetrics"]["region"]["distinctCount"] == 4
    assertions = data_in["inputFacets"]["dataQualityAssertions"]["assertions"]
    assert sorted(a["assertion"] for a in assertions) == sorted(
        ["schema", "missing", "domain", "range", "duplicates", "empty_text", "pii"]
    )  # no drift baseline at v1
    assert all(a["success"] for a in assertions)
    assert validate_event(done) >= {"dataQualityMetrics", "dataQualityAssertions", "mlcrit_artifact", "schema"}
    assert data_in["facets"]["schema"]["fields"][:2] == [
        {"name": "id", "type": "int64", "description": "numeric"},
        {"name": "amount", "type": "double", "description": "numeric"},
    ]


def test_defects_fail_the_task_naming_each_column_and_check(store_root, tmp_path):
    _week1(tmp_path)
    store = open_store(store_root)
    dr = run_dag(
        "test_mlcrit_validation", {"data": write(dirty(), tmp_path / "week2.parquet"), "schema": "schema/reviews@v1"}
    )
    assert dr.state == "failed"
    assert task_states(dr)["validate"][0] == "failed"
    report = _report(store, "validation_report/reviews@v2")  # committed before failing, for the audit
    assert report["status"] == "FAILED"
    assert sorted({(f["check"], f.get("column")) for f in report["findings"]}) == DIRTY_FINDINGS
    drift = next(f for f in report["findings"] if f["check"] == "drift")
    assert drift["expected"] == "<= 0.1" and drift["observed"] > 0.5
    # the drift baseline defaulted to the statistics of dataset/reviews@v1
    assert "statistics/reviews@v1" in [p["ref"] for p in store.resolve("validation_report/reviews@v2").parents]


def test_warn_passes_and_quarantine_splits_rows(store_root, tmp_path):
    _week1(tmp_path)
    store = open_store(store_root)
    dr = run_dag(
        "test_mlcrit_validation",
        {
            "data": write(dirty(), tmp_path / "week2.parquet"),
            "schema": "schema/reviews@v1",
            "validation": {"default_policy": "warn", "suite": "from_schema"},
        },
    )
    assert dr.state == "success"
    report = _report(store)
    assert len([f for f in report["findings"] if f["check"] != "expectations"]) == 6
    failed = sorted((e["expectation_type"], e["column"]) for e in report["expectations"] if not e["success"])
    assert failed == [
        ("expect_column_values_to_be_between", "amount"),
        ("expect_column_values_to_be_in_set", "region"),
        ("expect_column_values_to_not_be_null", "region"),
    ]
    files = [f["path"] for f in store.resolve("validation_report/reviews@latest").files]
    assert "data_docs/index.html" in files and "statistics.json" in files
    dr = run_dag(
        "test_mlcrit_validation",
        {
            "data": write(dirty(), tmp_path / "week3.parquet"),
            "schema": "schema/reviews@v1",
            "validation": {
                "default_policy": "warn",
                "policies": {
                    "missing": "quarantine",
                    "domain": "quarantine",
                    "duplicates": "quarantine",
                    "pii": "quarantine",
                },
            },
        },
    )
    assert dr.state == "success"
    report = _report(store)
    assert report["quarantine"] == {"input_rows": 4200, "clean_rows": 3880, "quarantined_rows": 320}
    import pyarrow.parquet as pq

    out = tmp_path / "out"
    store.get("dataset/reviews-clean@latest", out / "clean")
    store.get("quarantine/reviews@latest", out / "q")
    assert pq.read_table(out / "clean" / "clean.parquet").num_rows == 3880
    assert pq.read_table(out / "q" / "quarantine.parquet").num_rows == 320


@pytest.mark.parametrize(
    "content",
    [b"", b'text,label\n"unbalanced,1\nok,0\n', b"text,label\ncaf\xe9,1\n"],
    ids=["empty", "unbalanced-quotes", "latin-1"],
)
def test_bad_input_fails_before_any_artifact(store_root, tmp_path, content):
    (tmp_path / "bad.csv").write_bytes(content)
    dr = run_dag("test_mlcrit_validation", {"data": str(tmp_path / "bad.csv")})
    assert dr.state == "failed"
    assert task_states(dr)["statistics"][0] == "failed"
    store = open_store(store_root)
    assert store.list_artifacts() == ["dataset/reviews"]  # only the raw file that was registered


def test_a_retry_after_the_commit_reuses_the_validation_and_fails_the_same_way(
    store_root, tmp_path, monkeypatch, lineage_tail
):
    """A try that committed its report, quarantine and clean rows, then lost its worker: the retry
    returns them without validating again. A try that failed validation (after committing its
    report) fails its retry the same way, again without a second pass over the data."""
    import airflow_mlcrit.core.validation.validate as validation
    from tests.airflow.conftest import xcom

    _week1(tmp_path)
    calls = []
    real = validation.validate
    monkeypatch.setattr(validation, "validate", lambda *a, **k: calls.append(1) or real(*a, **k))
    store = open_store(store_root)
    data = write(dirty(), tmp_path / "week2.parquet")
    quarantine = {"missing": "quarantine", "domain": "quarantine", "duplicates": "quarantine", "pii": "quarantine"}
    dr = run_dag(
        "test_mlcrit_validation_retry",
        {"data": data, "validation": {"schema": "schema/reviews@v1", "default_policy": "warn", "policies": quarantine}},
    )
    assert task_states(dr) == {"validate": ("success", 2)} and len(calls) == 1
    for key in ("validation_report/retried", "quarantine/retried", "dataset/retried-clean"):
        assert store.versions(key) == [1] and store.resolve(key).producer["try_number"] == 1
    result = xcom(dr, "validate")
    summary = result["summary"]
    assert {k: summary[k] for k in ("status", "clean_rows", "quarantined_rows")} == {
        "status": "PASSED",
        "clean_rows": 3880,
        "quarantined_rows": 320,
    }
    assert {k: result[k] for k in ("ref", "report", "clean", "quarantine")} == {
        "ref": "validation_report/retried@v1",
        "report": "validation_report/retried@v1",
        "clean": "dataset/retried-clean@v1",
        "quarantine": "quarantine/retried@v1",
    }
    # the rest is quarantined; drift has no baseline for a path (no previous version)
    assert [w.split(":")[0] for w in summary["warned"]] == ["[range] column 'amount'"]

    calls.clear()
    dr = run_dag("test_mlcrit_validation_retry", {"data": data, "validation": {"schema": "schema/reviews@v1"}})
    assert task_states(dr) == {"validate": ("failed", 2)} and len(calls) == 1
    assert store.versions("validation_report/retried") == [1, 2]
    assert _report(store, "validation_report/retried@v2")["status"] == "FAILED"
    errors = [
        e["run"]["facets"]["errorMessage"]["message"]
        for e in lineage_tail.events()
        if e["eventType"] == "FAIL"
        and e["job"]["name"] == "test_mlcrit_validation_retry.validate"
        and e["run"]["facets"]["airflow"]["dagRun"]["run_id"] == dr.run_id
    ]
    assert len(errors) == 2 and errors[0] == errors[1]
    assert errors[0].startswith("data validation failed 5 check(s) on ")
