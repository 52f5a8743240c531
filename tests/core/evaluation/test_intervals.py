"""The interval methods against published reference values, and the boundary cases the issue
"Gate statistics you can stake a release on" reported (44/44 correct gave [1, 1])."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from airflow_mlcrit.core.evaluation.compute import Predictions, evaluate_predictions
from airflow_mlcrit.core.evaluation.intervals import clopper_pearson, tango
from airflow_mlcrit.core.gating.decide import decide
from airflow_mlcrit.exceptions import ConfigError

# Newcombe RG (1998). Two-sided confidence intervals for the single proportion: comparison of
# seven methods. Statistics in Medicine 17:857-872, Table II, method 5 ("exact", Clopper-Pearson).
NEWCOMBE_1998 = [
    ((81, 263), (0.2527, 0.3676)),
    ((15, 148), (0.0578, 0.1617)),
    ((0, 20), (0.0, 0.1684)),
    ((1, 29), (0.0009, 0.1776)),
]

# Tango's score interval as computed by R's PropCIs 0.3.0, scoreci.mp (the reference
# implementation of Tango (1998), Statistics in Medicine 17:891-908), with the discordant counts
# ordered (only first right, only second right, pairs); its root finder stops at ~1e-7.
PROPCIS_SCORECI_MP = [
    (7, 0, 14, 0.95, 0.17703378200531006, 0.73200792074203491),
    (0, 0, 14, 0.95, -0.21531081199645996, 0.21531075239181519),
    (3, 2, 14, 0.95, -0.26107772759028841, 0.38899629882403786),
    (14, 0, 14, 0.95, 0.56937837600708008, 1.0),
    (2, 9, 20, 0.95, -0.60163156986236577, -0.027414342761039694),
    (10, 3, 50, 0.95, -0.0014977478981018086, 0.28547489047050478),
    (25, 12, 200, 0.95, 0.005635504722595221, 0.12694109946489335),
    (10, 3, 50, 0.90, 0.023380527496337893, 0.26074491620063783),
    (1, 1, 2, 0.95, -0.81093764305114746, 0.81093758344650269),
]


@pytest.mark.parametrize(("xn", "expected"), NEWCOMBE_1998)
def test_clopper_pearson_matches_newcombe_1998(xn, expected):
    low, high = clopper_pearson(*xn, 0.95)
    assert (round(float(low), 4), round(float(high), 4)) == expected


def test_clopper_pearson_at_the_boundary_has_its_closed_form():
    # x = n: lower = (alpha/2)^(1/n); x = 0: upper = 1 - (alpha/2)^(1/n) (Clopper & Pearson 1934)
    low, high = clopper_pearson(44, 44, 0.95)
    assert (float(low), float(high)) == (pytest.approx(0.025 ** (1 / 44), abs=1e-12), 1.0)
    assert float(low) == pytest.approx(0.919580, abs=1e-6) and float(low) < 0.93
    low, high = clopper_pearson(0, 20, 0.95)
    assert (float(low), float(high)) == (0.0, pytest.approx(1 - 0.025 ** (1 / 20), abs=1e-12))
    assert float(high) > 0.1


@pytest.mark.parametrize(("only_first", "only_second", "n", "level", "low", "high"), PROPCIS_SCORECI_MP)
def test_tango_matches_propcis(only_first, only_second, n, level, low, high):
    got = tango(only_first, only_second, n, level)
    assert (float(got[0]), float(got[1])) == (pytest.approx(low, abs=2e-7), pytest.approx(high, abs=2e-7))


def test_tango_matches_the_published_worked_example():
    # Fagerland MW, Lydersen S, Laake P (2014). Recommended tests and confidence intervals for
    # paired binomial proportions. Statistics in Medicine 33:2850-2875, the worked example of
    # complete response before and after consolidation therapy (Cavo et al. 2012): pairs
    # (59, 6; 16, 80), N = 161, Tango's asymptotic score interval -0.0621 (95% CI -0.1240 to
    # -0.0054). The worked example is also in the authors' book (Statistical Analysis of
    # Contingency Tables, 2017, chapter 8); their R package contingencytables checks these very
    # figures in tests/testthat/test-ch8.R.
    low, high = tango(6, 16, 161, 0.95)
    assert round((6 - 16) / 161, 4) == -0.0621
    assert (round(float(low), 4), round(float(high), 4)) == (-0.1240, -0.0054)


def _slice(n: int, right: int) -> tuple[pd.DataFrame, np.ndarray, Predictions]:
    truth = np.arange(n) % 2
    pred = truth.copy()
    pred[right:] = 1 - pred[right:]
    return pd.DataFrame({"state": ["NE"] * n}), truth, Predictions(pred)


def test_44_of_44_correct_does_not_pass_a_95_percent_lower_bound():
    frame, truth, cand = _slice(44, 44)
    result = evaluate_predictions({"metrics": ["accuracy"]}, frame, truth, cand, labels=["a", "b"])
    acc = result["slices"][0]["candidate"]["accuracy"]
    assert acc["value"] == 1.0 and acc["high"] == 1.0
    assert acc["low"] == pytest.approx(0.025 ** (1 / 44), abs=1e-12)
    assert result["interval_methods"]["accuracy"] == {"model": "clopper-pearson", "difference": "tango-score"}
    gate = {"thresholds": [{"metric": "accuracy", "min": 0.95, "use_ci": True}]}
    decision = decide(gate, result)
    assert not decision.blessed
    assert decision.failures == [
        "accuracy CI lower bound on slice 'overall' is 0.9196 (CI [0.9196, 1.0000]), needs >= 0.9500"
    ]


def test_0_of_20_correct_keeps_an_upper_bound_above_0_1():
    frame, truth, cand = _slice(20, 0)
    acc = evaluate_predictions({"metrics": ["accuracy"]}, frame, truth, cand, labels=["a", "b"])["slices"][0]
    assert acc["candidate"]["accuracy"]["value"] == 0.0
    assert acc["candidate"]["accuracy"]["high"] == pytest.approx(1 - 0.025 ** (1 / 20), abs=1e-12)


def test_macro_f1_of_a_perfect_slice_has_an_interval_below_one():
    frame, truth, cand = _slice(60, 60)
    f1 = evaluate_predictions({"metrics": ["macro_f1"]}, frame, truth, cand, labels=["a", "b"])["slices"][0]
    iv = f1["candidate"]["macro_f1"]
    assert iv["value"] == 1.0 and iv["high"] == 1.0 and 0.85 < iv["low"] < 0.99


def test_three_class_auc_equals_sklearn_and_has_an_interval():
    rng = np.random.default_rng(7)
    n = 400
    truth = rng.integers(0, 3, n)
    proba = rng.dirichlet(np.ones(3), n)
    proba[np.arange(n), truth] += rng.uniform(0, 0.6, n)
    proba /= proba.sum(1, keepdims=True)
    frame = pd.DataFrame({"state": rng.choice(["CA", "NE"], n)})
    result = evaluate_predictions(
        {"metrics": ["roc_auc"], "slices": ["state"], "replicates": 300},
        frame,
        truth,
        Predictions(proba.argmax(1), proba),
        labels=["neg", "neu", "pos"],
    )
    for s in result["slices"]:
        rows = np.arange(n) if s["name"] == "overall" else np.flatnonzero(frame.state == s["name"].split("=")[1])
        auc = s["candidate"]["roc_auc"]
        expected = roc_auc_score(truth[rows], proba[rows], multi_class="ovr", average="macro")
        assert auc["value"] == pytest.approx(expected, abs=1e-9)
        assert auc["low"] < auc["value"] < auc["high"]
        assert auc["high"] - auc["low"] < 0.2


def test_holm_step_down_and_tango_p_values_agree_with_the_interval():
    from airflow_mlcrit.core.evaluation.intervals import holm, tango_p_value

    # sorted: 0.005 <= 0.05/4, 0.01 <= 0.05/3, then 0.03 > 0.05/2 stops: the first two only
    assert holm([0.01, 0.04, 0.03, 0.005], 0.05) == [True, False, False, True]
    assert holm([0.2], 0.05) == [False] and holm([], 0.05) == []
    # the test inverts the interval: at the lower bound the one-sided p-value is alpha / 2 exactly
    for b, c, n in ((25, 12, 200), (10, 3, 50), (7, 0, 14)):
        low, _ = tango(b, c, n, 0.95)
        assert tango_p_value(b, c, n, float(low)) == pytest.approx(0.025, abs=1e-9)


def test_superiority_on_several_slices_with_holm():
    from airflow_mlcrit.core.evaluation.intervals import tango_p_value

    rows = {"CA": (400, 30, 5), "NE": (200, 14, 4), "TX": (150, 9, 6)}  # n, only-candidate, only-baseline right
    truth, cand, base, state = [], [], [], []
    for name, (n, b, c) in rows.items():
        t = np.arange(n) % 2
        cr, br = t.copy(), t.copy()
        br[:b] = 1 - br[:b]
        cr[b : b + c] = 1 - cr[b : b + c]
        truth += list(t)
        cand += list(cr)
        base += list(br)
        state += [name] * n
    ev = evaluate_predictions(
        {"metrics": ["accuracy"], "slices": ["state"]},
        pd.DataFrame({"state": state}),
        np.array(truth),
        Predictions(np.array(cand)),
        Predictions(np.array(base)),
        labels=["a", "b"],
    )
    gate = {
        "thresholds": [
            {"metric": "accuracy", "change": "superiority", "slices": {"spec": "state"}, "correction": "holm"}
        ]
    }
    checks = {c["slice"]: c for c in decide(gate, ev).checks}
    expected = {name: tango_p_value(b, c, n, 0.0) for name, (n, b, c) in rows.items()}
    assert {s: c["p_value"] for s, c in checks.items()} == pytest.approx(
        {f"state={k}": v for k, v in expected.items()}, abs=1e-12
    )
    # p: CA 1.2e-5 <= 0.025/3, NE 0.0092 <= 0.025/2, TX 0.219 > 0.025: Holm rejects CA and NE only
    assert {s: c["status"] for s, c in checks.items()} == {
        "state=CA": "passed",
        "state=NE": "passed",
        "state=TX": "failed",
    }
    assert checks["state=TX"]["correction"] == "holm"
    with pytest.raises(ConfigError, match="correction='holm' is for superiority claims"):
        decide({"thresholds": [{**gate["thresholds"][0], "change": "non_inferiority", "margin": 0.01}]}, ev)


def test_a_threshold_on_an_undefined_metric_fails_with_the_reason():
    truth = np.array([0] * 40 + [1] * 20 + [2] * 40)
    proba = np.full((100, 3), 1 / 3)
    frame = pd.DataFrame({"state": ["CA"] * 60 + ["NE"] * 40})  # NE: class 2 only
    ev = evaluate_predictions(
        {"metrics": ["roc_auc"], "slices": ["state"]},
        frame,
        truth,
        Predictions(proba.argmax(1), proba),
        labels=["a", "b", "c"],
    )
    ne = next(s for s in ev["slices"] if s["name"] == "state=NE")
    reason = "one-vs-rest ROC AUC needs every class, and this slice has no ['a', 'b'] rows"
    assert ne["candidate"]["roc_auc"] == {"value": None, "low": None, "high": None, "reason": reason}
    decision = decide({"thresholds": [{"metric": "roc_auc", "min": 0.5, "slices": "all"}]}, ev)
    assert f"roc_auc on slice 'state=NE' is undefined: {reason}" in decision.failures
    assert not decision.blessed


def _separated(n: int):
    """The issue's reproduction: t = arange(n) % 3, probability 0.9 on the true class, 0.05 elsewhere."""
    t = np.arange(n) % 3
    proba = np.full((n, 3), 0.05)
    proba[np.arange(n), t] = 0.9
    return t, proba


def test_perfect_separation_and_many_classes_never_give_a_collapsed_interval():
    """3-class ROC AUC perfectly separated at n=45 was [0.99999999, 1.0000000002] and passed
    {"min": 0.99, "use_ci": true}; 20 classes, n=60, every row right, with a baseline, gave macro
    F1 [1, 1]. Now an interval that cannot hold its level at that size is not given, with the
    reason, and a gate on it fails saying so; at a size where it holds, it is wide enough."""
    auc = {"thresholds": [{"metric": "roc_auc", "min": 0.99, "use_ci": True}]}
    t, proba = _separated(45)
    result = evaluate_predictions(
        {"metrics": ["roc_auc"]}, pd.DataFrame({"r": t}), t, Predictions(t, proba), labels=list("abc")
    )
    reason = (
        "roc_auc's interval needs at least 50 true rows of every class on a slice, and here a (15), b (15), c (15) "
        "have fewer: with so few its interval does not hold its level, so none is given (gate this slice on "
        "accuracy, or collect more rows)"
    )
    assert result["slices"][0]["candidate"]["roc_auc"] == {"value": 1.0, "low": None, "high": None, "reason": reason}
    assert decide(auc, result).failures == [
        f"roc_auc CI lower bound on slice 'overall' is n/a (CI [n/a, n/a]), needs >= 0.9900: {reason}"
    ]
    t, proba = _separated(150)  # 50 rows a class: an interval, which reaches 1 and stays below 0.99
    result = evaluate_predictions(
        {"metrics": ["roc_auc"]}, pd.DataFrame({"r": t}), t, Predictions(t, proba), labels=list("abc")
    )
    iv = result["slices"][0]["candidate"]["roc_auc"]
    assert (round(iv["low"], 4), iv["high"]) == (0.9874, 1.0) and not decide(auc, result).blessed
    f1 = {"thresholds": [{"metric": "macro_f1", "min": 0.99, "use_ci": True}]}
    labels = [f"c{i}" for i in range(20)]
    for n, low in ((60, None), (400, 0.9317)):
        t = np.arange(n) % 20
        result = evaluate_predictions(
            {"metrics": ["macro_f1"]}, pd.DataFrame({"r": t}), t, Predictions(t), Predictions(t), labels=labels
        )
        iv = result["slices"][0]["candidate"]["macro_f1"]
        assert (None if iv["low"] is None else round(iv["low"], 4), iv["high"]) == (low, None if low is None else 1.0)
        assert not decide(f1, result).blessed
