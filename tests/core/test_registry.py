"""The registry's read model (core/registry.py) and its CLI (`mlcrit history`, `mlcrit diff`) on a
store holding what the operators commit: datasets with statistics and validation reports, adapter
versions with evaluations (slice metrics with intervals, against a baseline) and blessings, and
alias moves, on the local store and on S3 (moto)."""

from __future__ import annotations

import json
import math

import pytest

from airflow_mlcrit.core.cli import main
from airflow_mlcrit.core.registry import diff, history
from airflow_mlcrit.exceptions import ConfigError
from tests.helpers.registry import FIRST, STRICT, add_adapter_version, add_dataset_version


@pytest.fixture
def registry(store, tmp_path):
    """dataset/msgs v1 (CA 20, NE 20) and v2 (CA 30, NE 10), each with statistics and a validation
    report; adapter/clf v1 (right on 16 of 20 NE rows) and v2 (10 of 20), each evaluated (v2
    against v1) and gated; production: v1, then forced to v2, then rolled back to v1."""
    work = tmp_path / "work"
    work.mkdir()
    add_dataset_version(store, work, 20, 20, "PASSED")
    add_dataset_version(store, work, 30, 10, "FAILED")
    results = {
        1: add_adapter_version(store, work, 16, baseline=None, base_right=0, gate=FIRST)[1],
        2: add_adapter_version(store, work, 10, baseline=1, base_right=16, gate=STRICT)[1],
    }
    store.move_alias("adapter/clf@v1", "production", reason="blessed", actor="alice")
    store.move_alias("adapter/clf@v2", "production", reason="override", actor="bob", forced=True)
    store.move_alias("adapter/clf@v1", "production", reason="phone regression", actor="carol")
    return store, results


def test_model_history_holds_every_version_s_slice_metrics_gate_and_alias_spans(registry):
    store, results = registry
    doc = history(store, "adapter/clf", metric="accuracy")
    assert [v["version"] for v in doc["versions"]] == [1, 2] and doc["metrics"] == ["accuracy"]
    assert doc["slices"] == ["overall", "state=CA", "state=NE"]
    v1, v2 = doc["versions"]
    assert (v1["evaluation"], v1["baseline"], v2["evaluation"], v2["baseline"]) == (
        "evaluation/clf@v1",
        None,
        "evaluation/clf@v2",
        "adapter/clf@v1",
    )
    values = {
        v["version"]: {s["name"]: s["candidate"]["accuracy"]["value"] for s in v["slices"]} for v in doc["versions"]
    }
    assert values == {
        1: {"overall": 0.9, "state=CA": 1.0, "state=NE": 0.8},
        2: {"overall": 0.75, "state=CA": 1.0, "state=NE": 0.5},
    }
    for v in doc["versions"]:  # the bands are the evaluation's own intervals, around the value
        stored = {s["name"]: s for s in results[v["version"]]["slices"]}
        for s in v["slices"]:
            m, want = s["candidate"]["accuracy"], stored[s["name"]]["candidate"]["accuracy"]
            assert (m["low"], m["high"]) == (want["low"], want["high"]) and m["low"] <= m["value"] <= m["high"]
    ne = next(s for s in v2["slices"] if s["name"] == "state=NE")
    assert ne["difference"]["accuracy"]["value"] == pytest.approx(-0.3)
    assert v1["gate"]["decision"] == "BLESSED" and v1["gate"]["failed_slices"] == []
    # CA: no worse, but 20 rows cannot show non-inferiority within 0.05: the gate fails it too
    assert v2["gate"]["decision"] == "NOT_BLESSED" and v2["gate"]["failed_slices"] == [
        "overall",
        "state=CA",
        "state=NE",
    ]
    spans = [(s["alias"], s["version"], s["forced"], s["actor"], s["until"] is None) for s in doc["aliases"]]
    assert spans == [
        ("production", 1, False, "alice", False),
        ("production", 2, True, "bob", False),
        ("production", 1, False, "carol", True),
    ]
    assert [s["until"] for s in doc["aliases"][:2]] == [s["since"] for s in doc["aliases"][1:]]
    only = history(store, "adapter/clf", slice_name="state=NE")
    assert [[s["name"] for s in v["slices"]] for v in only["versions"]] == [["state=NE"], ["state=NE"]]


def test_dataset_history_has_each_column_s_statistics_drift_and_the_validation_verdict(registry):
    store, _ = registry
    doc = history(store, "dataset/msgs")
    v1, v2 = doc["versions"]
    assert (v1["rows"], v2["rows"]) == (40, 40)
    assert (v1["validation"]["status"], v2["validation"]["status"]) == ("PASSED", "FAILED")
    assert v1["drift"] == {} and v2["drift_against"] == "dataset/msgs@v1"
    state = v2["columns"]["state"]
    assert (state["kind"], state["missing"], state["distinct"], state["top"]) == (
        "categorical",
        0,
        2,
        [["CA", 30], ["NE", 10]],
    )
    assert v1["columns"]["length"]["mean"] == 4.5
    drift = v2["drift"]["state"]  # CA 50% -> 75%, NE 50% -> 25%
    assert drift["measure"] == "linf" and drift["value"] == pytest.approx(0.25)
    assert (drift["over"], drift["limits"]) == (["value"], {"linf": 0.1, "psi": None})  # ValidationConfig's
    assert drift["psi"] == pytest.approx(0.25 * math.log(1.5) + 0.25 * math.log(2))
    assert v2["drift"]["length"]["value"] == pytest.approx(0.0, abs=1e-12)  # the same lengths


def test_diff_puts_two_versions_side_by_side(registry, tmp_path):
    store, _ = registry
    metrics = diff(store, "adapter/clf@v1", "adapter/clf@v2")
    rows = {(r["slice"], r["metric"]): r for r in metrics["metrics"]}
    # v2 was judged against v1: both on that evaluation's golden set, with the paired interval
    assert (metrics["same_data"], metrics["evaluations"]) == (True, ["evaluation/clf@v2"])
    ne = rows[("state=NE", "accuracy")]
    assert (ne["a"]["value"], ne["b"]["value"], ne["change"]) == (0.8, 0.5, pytest.approx(-0.3))
    low, high = ne["change_interval"]
    assert low < -0.3 < high < 0
    assert rows[("state=CA", "accuracy")]["change"] == 0.0
    # the other way round: the same evaluation, the signs and the interval flipped
    back = {(r["slice"], r["metric"]): r for r in diff(store, "adapter/clf@v2", "adapter/clf@v1")["metrics"]}
    assert back[("state=NE", "accuracy")]["change"] == pytest.approx(0.3)
    assert back[("state=NE", "accuracy")]["change_interval"] == [pytest.approx(-high), pytest.approx(-low)]
    assert metrics["parents"] == {"both": [], "only_a": [], "only_b": []}
    # two versions no evaluation compared: each on its own data, and said so
    add_adapter_version(store, tmp_path / "work", 12, baseline=1, base_right=16, gate=STRICT)  # v3, against v1
    apart = diff(store, "adapter/clf@v2", "adapter/clf@v3")
    assert (apart["same_data"], apart["evaluations"]) == (False, ["evaluation/clf@v2", "evaluation/clf@v3"])
    ne = next(r for r in apart["metrics"] if r["slice"] == "state=NE")
    assert (ne["change"], ne["change_interval"]) == (pytest.approx(0.1), None)
    stats = diff(store, "dataset/msgs@v1", "dataset/msgs@v2")
    state = next(c for c in stats["columns"] if c["column"] == "state")
    assert (state["a"]["top"], state["b"]["top"]) == ([["CA", 20], ["NE", 20]], [["CA", 30], ["NE", 10]])
    assert state["drift"]["value"] == pytest.approx(0.25)
    with pytest.raises(
        ConfigError, match=r"diff compares two versions of one artifact, got adapter/clf@v1 and dataset/msgs@v1"
    ):
        diff(store, "adapter/clf@v1", "dataset/msgs@v1")


def test_mistakes_get_errors_that_say_what_to_do(registry):
    store, _ = registry
    with pytest.raises(ConfigError, match=r"no evaluation of adapter/clf has the metric 'f1'; it has: \['accuracy'\]"):
        history(store, "adapter/clf", metric="f1")
    with pytest.raises(ConfigError, match=r"no evaluation of adapter/clf has the slice 'state=TX'"):
        history(store, "adapter/clf", slice_name="state=TX")
    with pytest.raises(ConfigError, match=r"adapter/nope has no committed version"):
        history(store, "adapter/nope")
    with pytest.raises(ConfigError, match=r"--metric and --slice apply to evaluated artifacts, not to a dataset"):
        history(store, "dataset/msgs", metric="accuracy")


def test_the_cli_prints_the_history_and_the_diff(registry, store_spec, capsys, monkeypatch):
    store, _ = registry
    root, options = store_spec
    if options:
        monkeypatch.setenv("AWS_ENDPOINT_URL", options["endpoint_url"])
    assert main(["--root", root, "history", "adapter/clf", "--metric", "accuracy", "--slice", "state=NE"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [
        "VERSION",
        "CREATED_AT",
        "SLICE",
        "METRIC",
        "VALUE",
        "INTERVAL",
        "CHANGE",
        "GATE",
        "ALIASES",
    ]
    v1, v2 = lines[2].split(), lines[3].split()
    assert (v1[0], v1[2:5], v1[-2:]) == ("v1", ["state=NE", "accuracy", "0.8000"], ["BLESSED", "production"])
    assert (v2[0], v2[2:5], v2[-3:]) == ("v2", ["state=NE", "accuracy", "0.5000"], ["NOT_BLESSED", "(failed", "here)"])
    assert v2[7] == "-0.3000"
    assert "production: v2 from" in "\n".join(lines) and "(forced)" in "\n".join(lines)
    assert main(["--root", root, "--json", "diff", "dataset/msgs@v1", "dataset/msgs@v2"]) == 0
    assert json.loads(capsys.readouterr().out) == json.loads(
        json.dumps(diff(store, "dataset/msgs@v1", "dataset/msgs@v2"))
    )
    assert main(["--root", root, "history", "adapter/clf", "--metric", "f1"]) == 1
    assert "mlcrit: error: no evaluation of adapter/clf has the metric 'f1'" in capsys.readouterr().err


def test_last_keeps_the_newest_versions_and_a_dataset_s_drift_against_the_one_before(registry):
    store, _ = registry
    assert [v["version"] for v in history(store, "adapter/clf", last=1)["versions"]] == [2]
    [v2] = history(store, "dataset/msgs", last=1)["versions"]
    assert (v2["version"], v2["drift_against"]) == (2, "dataset/msgs@v1")
    assert v2["drift"]["state"]["value"] == pytest.approx(0.25)
    with pytest.raises(ConfigError, match="--last must be 1 or more, got 0"):
        history(store, "adapter/clf", last=0)


def test_a_malformed_blessing_is_flagged_and_the_rest_of_the_history_still_reads(registry, tmp_path):
    """A blessing whose document is not JSON (written by hand into the store): the history of the
    artifact still reads, that version's gate says MALFORMED, the other versions are unchanged."""
    store, _ = registry
    evaluation = max((c for c in store.children("adapter/clf@v2") if c.kind == "evaluation"), key=lambda m: m.version)
    (tmp_path / "blessing.json").write_text("{not json")
    bad = store.put(
        "blessing/clf",
        tmp_path / "blessing.json",
        parents=[str(evaluation.ref), "adapter/clf@v2"],
        metadata={"decision": "BLESSED", "candidate": "adapter/clf@v2"},
    )
    doc = history(store, "adapter/clf", metric="accuracy")
    gates = {v["version"]: v["gate"] for v in doc["versions"]}
    assert (gates[2]["ref"], gates[2]["decision"]) == (str(bad.ref), "MALFORMED")
    assert gates[1]["decision"] == "BLESSED"
