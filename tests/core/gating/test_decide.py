"""The gate fails closed and judges change thresholds on the paired interval."""

import re

import numpy as np
import pandas as pd
import pytest

from airflow_mlcrit.core.evaluation.compute import Predictions, evaluate_predictions
from airflow_mlcrit.core.gating import decide
from airflow_mlcrit.exceptions import ConfigError, DataValidationError

LABELS = ["neg", "pos"]


def _models(n_per_region=400, seed=0, *, worse_region="NE", better_by=0.10, worse_by=0.15):
    """Candidate and baseline predictions: the candidate is right more often everywhere except
    in ``worse_region``, where it is worse by ``worse_by``."""
    rng = np.random.default_rng(seed)
    regions = np.repeat(["CA", "NE", "TX", "OH"], n_per_region)
    y = rng.integers(0, 2, len(regions))
    u = rng.uniform(size=len(y))
    base_right = u < 0.75
    cand_acc = np.where(regions == worse_region, 0.75 - worse_by, 0.75 + better_by)
    cand_right = rng.uniform(size=len(y)) < cand_acc
    pred = lambda right: np.where(right, y, 1 - y)  # noqa: E731
    return pd.DataFrame({"region": regions}), y, Predictions(pred(cand_right)), Predictions(pred(base_right))


def _evaluation(frame, y, cand, base, **cfg):
    return evaluate_predictions(
        {"metrics": ["accuracy", "macro_f1"], "slices": ["region"], "replicates": 1000, **cfg},
        frame,
        y,
        cand,
        base,
        labels=LABELS,
    )


def test_better_overall_but_worse_on_one_slice_is_not_blessed_and_names_the_slice():
    ev = _evaluation(*_models())
    overall = ev["slices"][0]
    assert overall["difference"]["accuracy"]["low"] > 0  # clearly better overall
    gate = {"thresholds": [{"metric": "accuracy", "change": "non_inferiority", "margin": 0.05, "slices": "all"}]}
    decision = decide(gate, ev)
    assert decision.decision == "NOT_BLESSED"
    assert len(decision.failures) == 1
    assert decision.failures[0].startswith("accuracy non_inferiority on slice 'region=NE': candidate - baseline = -")
    assert decision.failures[0].endswith("needs lower bound > -0.0500")
    passed = [c["slice"] for c in decision.checks if c["status"] == "passed"]
    assert passed == ["overall", "region=CA", "region=OH", "region=TX"]


def test_superiority_needs_the_lower_bound_not_the_point_estimate():
    frame, y, cand, base = _models(n_per_region=60, better_by=0.03, worse_by=-0.03, seed=3)
    ev = _evaluation(frame, y, cand, base)
    d = ev["slices"][0]["difference"]["accuracy"]
    assert d["value"] > 0 and d["low"] < 0  # the point beats the baseline, the interval does not
    decision = decide({"thresholds": [{"metric": "accuracy", "change": "superiority"}]}, ev)
    assert decision.decision == "NOT_BLESSED"
    assert decision.checks[0]["observed"] == d["value"] and decision.checks[0]["ci"] == [d["low"], d["high"]]
    assert decide({"thresholds": [{"metric": "accuracy", "min": 0.5}]}, ev).blessed


MISSING_WY = (
    "GateConfig.thresholds[0].slices: slice 'region=WY' matches no row of the eval data; the slices of 'region' "
    "present are ['region=CA', 'region=NE', 'region=OH', 'region=TX']. A misspelt value or a slice that vanished "
    "from the data: fix the threshold or the eval data (allow_missing_slices=True skips it, recorded as skipped)"
)


def test_fail_closed_configurations():
    ev = _evaluation(*_models(n_per_region=50))
    with pytest.raises(ConfigError, match=re.escape("GateConfig.thresholds is empty: a gate with no thresholds")):
        decide({"thresholds": []}, ev)
    with pytest.raises(ConfigError, match=re.escape("GateConfig.thresholds[0]: give exactly one of min/max")):
        decide({"thresholds": [{"metric": "accuracy"}]}, ev)
    with pytest.raises(ConfigError) as info:
        decide({"thresholds": [{"metric": "roc_auc", "min": 0.5}]}, ev)
    assert str(info.value) == (
        "GateConfig.thresholds[0]: metric 'roc_auc' is not evaluated; evaluated: ['accuracy', 'macro_f1']"
    )
    with pytest.raises(DataValidationError) as info:  # a value the data lacks: a person decides, not the gate
        decide({"thresholds": [{"metric": "accuracy", "min": 0.1, "slices": ["region=WY"]}]}, ev)
    assert str(info.value) == MISSING_WY
    allowed = decide(
        {
            "thresholds": [{"metric": "accuracy", "min": 0.1, "slices": ["overall", "region=WY"]}],
            "allow_missing_slices": True,
        },
        ev,
    )
    assert allowed.blessed and [c["status"] for c in allowed.checks] == ["skipped", "passed"]
    small = evaluate_predictions(
        {"metrics": ["accuracy"], "slices": ["region"], "min_slice_size": 100, "replicates": 20},
        *_models(n_per_region=50)[:3],
        labels=LABELS,
    )
    too_small = decide({"thresholds": [{"metric": "accuracy", "min": 0.1, "slices": ["region=CA"]}]}, small)
    assert too_small.failures == ["slice 'region=CA' has 50 rows, below min_slice_size 100"]


def test_first_model_policies():
    frame, y, cand, _ = _models(n_per_region=50)
    ev = evaluate_predictions({"metrics": ["accuracy"], "replicates": 50}, frame, y, cand, labels=LABELS)
    change = {"metric": "accuracy", "change": "superiority"}
    only_change = decide({"thresholds": [change]}, ev)
    assert not only_change.blessed
    assert only_change.failures == ["no threshold could be judged (all skipped): nothing shows the candidate is fit"]
    both = decide({"thresholds": [change, {"metric": "accuracy", "min": 0.5}]}, ev)
    assert both.blessed and [c["status"] for c in both.checks] == ["skipped", "passed"]
    refused = decide({"thresholds": [{"metric": "accuracy", "min": 0.5}], "no_baseline": "refuse"}, ev)
    assert refused.failures == ["no baseline to compare with and GateConfig.no_baseline='refuse'"]


def test_parity_sensitivity_and_suite_thresholds():
    ev = _evaluation(*_models())
    parity = decide({"thresholds": [{"metric": "accuracy", "max_gap": 0.05, "slices": {"spec": "region"}}]}, ev)
    assert not parity.blessed and "gap between slices" in parity.failures[0]
    ev["sensitivity"] = [
        {
            "perturbation": "typos",
            "rows": 10,
            "slices": [{"slice": "overall", "n": 10, "changed": 9, "flip_rate": 0.2, "metric_delta": -0.1}],
        }
    ]
    ev["suites"] = {
        "candidate": [
            {
                "name": "edge",
                "pass_rate": 0.8,
                "passed": 8,
                "cases": 10,
                "tests": [{"name": "negation", "type": "MFT", "passed": 4, "cases": 4, "pass_rate": 1.0}],
            }
        ]
    }
    d = decide(
        {
            "thresholds": [
                {"max_flip_rate": 0.1, "perturbation": "typos"},
                {"min_pass_rate": 0.9, "suite": "edge"},
                {"min_pass_rate": 1.0, "suite": "edge", "test": "negation"},
            ]
        },
        ev,
    )
    assert d.failures == [
        "typos flips 0.2000 of predictions on slice 'overall', limit 0.1000",
        "edge pass rate 0.8000 (8/10), needs >= 0.9000",
    ]


def test_a_misspelled_name_in_a_gate_is_a_config_error_listing_the_valid_ones_not_a_failed_model():
    ev = _evaluation(*_models())
    ev["sensitivity"] = [{"perturbation": "typos", "rows": 10, "slices": []}]
    ev["suites"] = {"candidate": [{"name": "edge", "pass_rate": 1.0, "passed": 1, "cases": 1, "tests": []}]}
    cases = {
        "GateConfig.thresholds[0].slices: spec 'regions' is not a slicing spec of the evaluation; "
        "valid: ['overall', 'region']": {"metric": "accuracy", "min": 0.5, "slices": {"spec": "regions"}},
        "GateConfig.thresholds[0].slices: 'regoin=CA' is not a slice any spec of the evaluation makes (a name is "
        "'overall' or 'feature=value', e.g. 'state=NE'); specs: ['overall', 'region']": {
            "metric": "accuracy",
            "min": 0.5,
            "slices": ["overall", "regoin=CA"],
        },
        "GateConfig.thresholds[0]: perturbation 'casing' is not measured; measured: ['typos']": {
            "max_flip_rate": 0.1,
            "perturbation": "casing",
        },
        "GateConfig.thresholds[0]: suite 'edges' is not run; run: ['edge']": {"min_pass_rate": 0.9, "suite": "edges"},
    }
    for message, threshold in cases.items():
        with pytest.raises(ConfigError) as info:
            decide({"thresholds": [threshold]}, ev)
        assert str(info.value) == message
    # a well-formed name of a slice the data does not have is refused too, naming the values it has
    with pytest.raises(DataValidationError) as info:
        decide({"thresholds": [{"metric": "accuracy", "min": 0.1, "slices": ["region=WY"]}]}, ev)
    assert str(info.value) == MISSING_WY
