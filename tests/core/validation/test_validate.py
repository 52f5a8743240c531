import json
import re

import numpy as np
import pyarrow.parquet as pq
import pytest

from airflow_mlcrit.core.validation.drift import numeric_distance
from airflow_mlcrit.core.validation.schema import dump_schema, infer_schema, load_schema
from airflow_mlcrit.core.validation.statistics import compute_statistics
from airflow_mlcrit.core.validation.textchecks import luhn_ok, pii_masks
from airflow_mlcrit.core.validation.validate import ValidationConfig, validate
from airflow_mlcrit.exceptions import ConfigError, DataValidationError
from tests.core.validation.data import DIRTY_FINDINGS, clean, dirty, write


@pytest.fixture
def baseline(tmp_path):
    stats = compute_statistics({"source": write(clean(), tmp_path / "clean.parquet")}).statistics
    return stats, infer_schema(stats, {"label_columns": ["label"]})


def _kinds(result):
    return sorted({(f.check, f.column) for f in result.findings})


EXPECTED = DIRTY_FINDINGS


def test_clean_data_passes(tmp_path, baseline):
    stats, schema = baseline
    result = validate(
        {"source": write(clean(seed=5), tmp_path / "new.parquet"), "schema": schema, "baseline_statistics": stats},
        workdir=tmp_path / "w",
    )
    assert result.findings == [] and result.report["status"] == "PASSED"
    result.raise_for_failures()


def test_each_defect_fails_naming_column_and_check(tmp_path, baseline):
    stats, schema = baseline
    result = validate(
        {"source": write(dirty(), tmp_path / "d.parquet"), "schema": schema, "baseline_statistics": stats},
        workdir=tmp_path / "w",
    )
    assert _kinds(result) == EXPECTED
    assert result.report["status"] == "FAILED"
    by = {(f.check, f.column): f for f in result.findings}
    assert by[("missing", "region")].rows == 40 and by[("missing", "region")].sample_rows == [0, 1, 2, 3, 4]
    assert (
        by[("domain", "region")].rows == 40 and by[("domain", "region")].expected == "one of ['CA', 'NE', 'NY', 'TX']"
    )
    assert by[("duplicates", None)].rows == 200
    assert by[("pii", "text:email")].rows == 40
    with pytest.raises(DataValidationError) as err:
        result.raise_for_failures()
    message = str(err.value)
    assert message.startswith(f"data validation failed 6 check(s) on {tmp_path / 'd.parquet'}:")
    for line in (
        "[missing] column 'region': required column has missing values (observed 40 of 4200 rows (0.95%)",
        "[domain] column 'region': values outside the schema's domain",
        "[range] column 'amount': values outside the schema's range",
        "[drift] column 'amount': js_divergence vs the baseline statistics is above the threshold",
        "[duplicates]: exact duplicate rows (observed 200 of 4200 rows (4.76%), expected no rows)",
        "[pii] column 'text:email': personal data pattern found (observed 40 of 4200 rows",
    ):
        assert line in message


def test_warn_passes_and_reports_the_same_findings(tmp_path, baseline):
    stats, schema = baseline
    result = validate(
        {
            "source": write(dirty(), tmp_path / "d.parquet"),
            "schema": schema,
            "baseline_statistics": stats,
            "default_policy": "warn",
        },
        workdir=tmp_path / "w",
    )
    assert _kinds(result) == EXPECTED
    assert result.report["status"] == "PASSED" and {f.policy for f in result.findings} == {"warn"}
    result.raise_for_failures()
    report = json.loads((tmp_path / "w" / "report.json").read_text())
    assert sorted({(f["check"], f.get("column")) for f in report["findings"]}) == EXPECTED


def test_quarantine_counts_add_up(tmp_path, baseline):
    stats, schema = baseline
    df = dirty()
    policies = {c: "quarantine" for c in ("missing", "domain", "duplicates", "pii")}
    result = validate(
        {
            "source": write(df, tmp_path / "d.parquet"),
            "schema": schema,
            "policies": policies,
            "default_policy": "warn",
            "baseline_statistics": stats,
        },
        workdir=tmp_path / "w",
    )
    clean_rows = pq.read_table(result.clean_path)
    bad = pq.read_table(result.quarantine_path)
    assert clean_rows.num_rows + bad.num_rows == len(df) == 4200
    assert bad.num_rows == 40 + 40 + 40 + 200  # null region, ZZ region, emails, duplicates: disjoint here
    assert result.report["quarantine"] == {"input_rows": 4200, "clean_rows": 3880, "quarantined_rows": 320}
    reasons = bad.column("_mlcrit_reasons").to_pylist()
    assert reasons.count("missing:region") == 40 and reasons.count("duplicates") == 200
    assert clean_rows.column_names == df.columns.tolist()
    recheck = validate({"source": str(result.clean_path), "schema": schema}, workdir=tmp_path / "w2")
    assert {f.check for f in recheck.findings} == {"range"}  # the shift is dataset-wide, not row-level


def test_js_divergence_matches_scipy_on_the_same_histograms():
    from scipy.spatial.distance import jensenshannon

    rng = np.random.default_rng(7)
    base, cur = rng.normal(0, 1, 10_000), rng.normal(0.5, 1.2, 10_000)
    d = numeric_distance(base.tolist(), cur.tolist(), bins=10)
    p = np.asarray(d["baseline"]) / sum(d["baseline"])
    q = np.asarray(d["current"]) / sum(d["current"])
    assert abs(d["js_divergence"] - jensenshannon(p, q, base=2) ** 2) < 1e-6
    assert d["js_divergence"] > 0.02
    same = numeric_distance(base.tolist(), base.tolist())
    assert same["js_divergence"] == 0.0 and same["psi"] == 0.0


def test_skew_against_training_statistics(tmp_path, baseline):
    stats, _ = baseline
    serving = clean(seed=9).drop(columns=["label"])
    serving["region"] = "CA"
    result = validate(
        {
            "source": write(serving, tmp_path / "s.parquet"),
            "training_statistics": stats,
            "drift_thresholds": {"linf": 0.5},
        },
        workdir=tmp_path / "w",
    )
    [finding] = result.findings
    assert (finding.check, finding.column, finding.expected) == ("skew", "region", "<= 0.5")
    assert finding.observed == pytest.approx(0.75, abs=0.03)


def test_serving_environment_expects_no_label(tmp_path, baseline):
    _, schema = baseline
    serving = clean(seed=9).drop(columns=["label"])
    ok = validate(
        {"source": write(serving, tmp_path / "s.parquet"), "schema": schema, "environment": "SERVING"},
        workdir=tmp_path / "w",
    )
    assert ok.findings == []
    missing = validate({"source": str(tmp_path / "s.parquet"), "schema": schema}, workdir=tmp_path / "w2")
    assert [(f.check, f.column, f.message) for f in missing.findings] == [("schema", "label", "column is missing")]


def test_contamination_exact_and_normalized(tmp_path):
    train = clean(1000)
    evalset = clean(200, seed=3)
    evalset.loc[0, "text"] = train.loc[10, "text"]
    evalset.loc[1, "text"] = train.loc[11, "text"].upper() + "!!"
    result = validate(
        {
            "source": write(evalset, tmp_path / "e.parquet"),
            "contamination_reference": write(train, tmp_path / "t.parquet"),
        },
        workdir=tmp_path / "w",
    )
    [finding] = result.findings
    assert (finding.check, finding.rows, finding.sample_rows) == ("contamination", 2, [0, 1])


def test_text_length_limit_at_percentile(tmp_path):
    df = clean(500)
    result = validate(
        {"source": write(df, tmp_path / "t.parquet"), "text_length_limits": {"text": 8}}, workdir=tmp_path / "w"
    )
    [finding] = result.findings
    assert finding.check == "text_length" and finding.column == "text" and finding.observed > 8


def test_pii_patterns_and_luhn():
    import pyarrow as pa

    texts = pa.array(
        [
            "mail a.b@c.io",
            "call (555) 123-4567",
            "card 4111 1111 1111 1111",
            "order 4111111111111112",
            "nothing here",
            None,
        ]
    )
    masks = pii_masks(texts)
    assert masks["email"].tolist() == [True, False, False, False, False, False]
    assert masks["phone"].tolist() == [False, True, False, False, False, False]
    assert masks["card"].tolist() == [False, False, True, False, False, False]
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")


def test_schema_yaml_round_trip_and_errors(baseline):
    _, schema = baseline
    assert load_schema(dump_schema(schema)) == schema
    with pytest.raises(ConfigError, match=re.escape("column 'x' has type 'float'; use numeric, categorical, text")):
        load_schema("columns: [{name: x, type: float}]")


def test_config_errors_name_the_field():
    with pytest.raises(ConfigError, match=re.escape("policies['drift'] = 'quarantine' is not possible")):
        ValidationConfig(source="x", policies={"drift": "quarantine"})
    with pytest.raises(ConfigError, match=re.escape("unknown check 'dupes'")):
        ValidationConfig(source="x", policies={"dupes": "warn"})
    with pytest.raises(ConfigError, match=re.escape("unknown ValidationConfig field(s) ['treshold']")):
        ValidationConfig.from_dict({"source": "x", "treshold": 1})


def test_great_expectations_suite_from_schema_with_data_docs(tmp_path, baseline):
    _, schema = baseline
    df = clean(300)
    df.loc[0, "region"] = "ZZ"
    result = validate(
        {
            "source": write(df, tmp_path / "t.parquet"),
            "schema": schema,
            "suite": "from_schema",
            "default_policy": "warn",
        },
        workdir=tmp_path / "w",
    )
    failed = [e for e in result.report["expectations"] if not e["success"]]
    assert [(e["expectation_type"], e["column"], e["observed"]) for e in failed] == [
        ("expect_column_values_to_be_in_set", "region", 1)
    ]
    assert len(result.report["expectations"]) == 14  # exist + not_null per column, domain/range where known
    assert (result.data_docs_dir / "index.html").is_file()
    assert ("expectations", "region") in _kinds(result)


def test_a_misspelt_drift_measure_is_a_config_error():
    from airflow_mlcrit.core.validation.validate import ValidationConfig

    with pytest.raises(
        ConfigError, match=re.escape("ValidationConfig.drift_thresholds has unknown measure(s) ['js_divergance']")
    ):
        ValidationConfig.from_dict({"source": "x", "drift_thresholds": {"js_divergance": 0.1}})
    with pytest.raises(
        ConfigError, match=re.escape("ValidationConfig.column_thresholds['amount'] has unknown measure(s) ['ks']")
    ):
        ValidationConfig.from_dict({"source": "x", "column_thresholds": {"amount": {"ks": 0.1}}})
