"""Sliced, paired evaluation: values equal scikit-learn per slice; slicing specs; bad input."""

import re

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, f1_score, log_loss, mean_absolute_error, roc_auc_score

from airflow_mlcrit.core.evaluation.compute import Predictions, evaluate_predictions, register_metric
from airflow_mlcrit.core.evaluation.intervals import tango
from airflow_mlcrit.core.evaluation.metrics import expected_calibration_error, rouge_l, token_f1
from airflow_mlcrit.core.evaluation.slicing import build_slices
from airflow_mlcrit.exceptions import ConfigError, DataValidationError

LABELS = ["neg", "pos"]


def _data(n=3000, seed=1):
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "region": rng.choice(["CA", "NE", "TX"], n),
            "ts": pd.date_range("2026-03-02", periods=n, freq="17min", tz="UTC"),
            "amount": rng.uniform(0, 200, n),
            "text": rng.choice(["refund please", "hello there", "where is my order"], n),
        }
    )
    y = rng.integers(0, 2, n)
    pc = np.clip(y * 0.6 + rng.normal(0.2, 0.3, n), 0.001, 0.999)
    pb = np.clip(y * 0.4 + rng.normal(0.3, 0.3, n), 0.001, 0.999)
    cand = Predictions((pc > 0.5).astype(int), np.stack([1 - pc, pc], 1))
    base = Predictions((pb > 0.5).astype(int), np.stack([1 - pb, pb], 1))
    return frame, y, cand, base


def test_sliced_values_equal_scikit_learn_and_the_difference_is_paired():
    frame, y, cand, base = _data()
    result = evaluate_predictions(
        {"slices": ["region", ["region", {"column": "ts", "hour_of_day": True}]], "replicates": 200},
        frame,
        y,
        cand,
        base,
        labels=LABELS,
    )
    by_name = {s["name"]: s for s in result["slices"]}
    assert list(by_name)[:4] == ["overall", "region=CA", "region=NE", "region=TX"]
    assert len([s for s in result["slices"] if s["spec"] == "region x hour(ts)"]) == 72
    for name, rows in [("overall", np.arange(len(y)))] + [
        (f"region={r}", np.flatnonzero(frame.region == r)) for r in ("CA", "NE", "TX")
    ]:
        s = by_name[name]
        for role, p in (("candidate", cand), ("baseline", base)):
            m = s[role]
            assert m["accuracy"]["value"] == pytest.approx(accuracy_score(y[rows], p.pred[rows]), abs=1e-9)
            assert m["macro_f1"]["value"] == pytest.approx(f1_score(y[rows], p.pred[rows], average="macro"), abs=1e-9)
            assert m["weighted_f1"]["value"] == pytest.approx(
                f1_score(y[rows], p.pred[rows], average="weighted"), abs=1e-9
            )
            assert m["roc_auc"]["value"] == pytest.approx(roc_auc_score(y[rows], p.proba[rows, 1]), abs=1e-9)
            assert m["log_loss"]["value"] == pytest.approx(log_loss(y[rows], p.proba[rows]), abs=1e-9)
            assert m["accuracy"]["low"] < m["accuracy"]["value"] < m["accuracy"]["high"]
        d = s["difference"]["accuracy"]
        assert d["value"] == pytest.approx(s["candidate"]["accuracy"]["value"] - s["baseline"]["accuracy"]["value"])
        # paired replicates: the difference's interval is narrower than the two intervals combined
        width = d["high"] - d["low"]
        c, b = s["candidate"]["accuracy"], s["baseline"]["accuracy"]
        assert width < (c["high"] - c["low"]) + (b["high"] - b["low"])
    assert result["per_class"]["candidate"]["pos"]["support"] == int(y.sum())
    sizes = frame.groupby([frame.region, frame.ts.dt.hour]).size()
    small = evaluate_predictions(
        {"slices": [["region", {"column": "ts", "hour_of_day": True}]], "min_slice_size": 50, "replicates": 20},
        frame,
        y,
        cand,
        labels=LABELS,
    )
    assert 0 < len(small["skipped_slices"]) == int((sizes < 50).sum()) < 72
    assert small["skipped_slices"][0]["reason"] == ("fewer than min_slice_size=50 rows")
    assert all(s["difference"] is None for s in small["slices"])


def test_identical_models_differ_by_zero_with_an_interval_that_does_not_collapse():
    """No discordant row in 500 bounds the discordance, it does not prove it is zero: the
    difference is 0 and its interval is Tango's for b = c = 0 (symmetric, about +-0.0076)."""
    frame, y, cand, _ = _data(500)
    result = evaluate_predictions({"replicates": 200}, frame, y, cand, cand, labels=LABELS)
    d = result["slices"][0]["difference"]
    assert {m: v["value"] for m, v in d.items()} == {m: 0.0 for m in d}
    low, high = tango(0, 0, 500, 0.95)
    assert (d["accuracy"]["low"], d["accuracy"]["high"]) == (float(low), float(high))
    assert d["accuracy"]["high"] == pytest.approx(-d["accuracy"]["low"], abs=1e-12)
    assert d["accuracy"]["high"] == pytest.approx(0.0076243, abs=1e-7)
    for m, v in d.items():
        if m in ("roc_auc", "log_loss", "ece"):  # per-row scores equal on every row: 0 on every resample
            assert (v["low"], v["high"]) == (0.0, 0.0)
        else:
            assert v["low"] < 0 < v["high"] < 0.02, (m, v)


def test_slicing_specs():
    frame = pd.DataFrame(
        {
            "ts": ["2026-03-02T15:10:00Z", "2026-03-03T03:00:00Z", "2026-03-07T15:59:00Z", None],
            "amount": [5, 10, 150, None],
            "text": ["a refund", "hi", "RETURN it now please", "x"],
        }
    )
    names = lambda spec: [(s.name, s.rows.tolist()) for s in build_slices(frame, [spec])[1:]]  # noqa: E731
    assert names({"column": "ts", "hour_of_day": True}) == [
        ("hour(ts)=03", [1]),
        ("hour(ts)=15", [0, 2]),
        ("hour(ts)=<null>", [3]),
    ]
    assert names({"column": "ts", "day_of_week": True})[:2] == [("weekday(ts)=<null>", [3]), ("weekday(ts)=Mon", [0])]
    assert names({"column": "amount", "buckets": [10, 100]}) == [
        ("amount=< 10", [0]),
        ("amount=<null>", [3]),
        ("amount=>= 100", [2]),
        ("amount=[10, 100)", [1]),
    ]
    assert names({"column": "text", "regex": "(?i)refund|return", "name": "returns"}) == [
        ("returns=false", [1, 3]),
        ("returns=true", [0, 2]),
    ]
    assert names({"column": "text", "length_buckets": [5]}) == [("len(text)=< 5", [1, 3]), ("len(text)=>= 5", [0, 2])]
    with pytest.raises(DataValidationError, match=re.escape("slices[0]: slice column 'state' is not in the eval")):
        build_slices(frame, ["state"])
    with pytest.raises(ConfigError, match=re.escape("slices[0]: unknown or conflicting slicing options ['bins']")):
        build_slices(frame, [{"column": "amount", "bins": [1]}])


def test_generation_regression_and_user_metrics():
    frame = pd.DataFrame({"g": ["a", "a", "b", "b"]})
    refs = np.array(["the cat sat", "a dog", "yes", "blue sky today"], dtype=object)
    outs = Predictions(np.array(["The cat sat.", "a cat", "no", "sky blue"], dtype=object), loss=np.log([2, 4, 8, 2.0]))
    r = evaluate_predictions(
        {"task": "generation", "metrics": ["exact_match", "token_f1", "rouge_l", "perplexity"], "replicates": 20},
        frame,
        refs,
        outs,
    )
    m = r["slices"][0]["candidate"]
    assert m["exact_match"]["value"] == 0.25
    assert m["token_f1"]["value"] == pytest.approx((1 + 0.5 + 0 + token_f1("blue sky today", "sky blue")) / 4)
    assert rouge_l("blue sky today", "sky blue") == pytest.approx(2 * (1 / 2) * (1 / 3) / (1 / 2 + 1 / 3))
    assert m["perplexity"]["value"] == pytest.approx(np.exp(np.mean(np.log([2, 4, 8, 2.0]))))
    truth = np.array([1.0, 2.0, 3.0, 4.0])
    pred = Predictions(np.array([1.5, 2.0, 2.0, 5.0]))
    r = evaluate_predictions({"task": "regression", "replicates": 20}, frame, truth, pred)
    assert r["slices"][0]["candidate"]["mae"]["value"] == pytest.approx(mean_absolute_error(truth, pred.pred))
    assert r["slices"][0]["candidate"]["rmse"]["value"] == pytest.approx(np.sqrt(np.mean([0.25, 0, 1, 1])))
    assert r["lower_is_better"] == ["mae", "rmse"]
    register_metric("max_abs_error", lambda t, p, _: float(np.abs(t - p).max()), higher_is_better=False)
    r = evaluate_predictions({"task": "regression", "metrics": ["max_abs_error"], "replicates": 20}, frame, truth, pred)
    assert r["slices"][0]["candidate"]["max_abs_error"]["value"] == 1.0
    assert r["lower_is_better"] == ["max_abs_error"]


def test_ece_matches_a_direct_computation():
    rng = np.random.default_rng(0)
    proba = rng.dirichlet([1, 1, 1], 400)
    y = rng.integers(0, 3, 400)
    conf, pred = proba.max(1), proba.argmax(1)
    bins = np.minimum((conf * 15).astype(int), 14)
    direct = sum(abs((conf[bins == b] - (pred[bins == b] == y[bins == b])).sum()) for b in range(15)) / 400
    assert expected_calibration_error(y, proba) == pytest.approx(direct, abs=1e-12)


def test_bad_input_is_named():
    frame, y, cand, base = _data(100)
    with pytest.raises(DataValidationError, match=re.escape("baseline: 99 predictions for 100 eval rows")):
        evaluate_predictions({}, frame, y, cand, Predictions(base.pred[:99], base.proba[:99]), labels=LABELS)
    with pytest.raises(ConfigError, match=re.escape("unknown metric(s) ['acuracy'] for task 'classification'")):
        evaluate_predictions({"metrics": ["acuracy"]}, frame, y, cand, labels=LABELS)
    with pytest.raises(DataValidationError, match=re.escape("slice column 'state' is not in the eval dataset")):
        evaluate_predictions({"slices": ["state"]}, frame, y, cand, labels=LABELS)
    with pytest.raises(ConfigError, match=re.escape("metric(s) ['roc_auc'] cannot be computed: needs predicted")):
        evaluate_predictions({"metrics": ["roc_auc"]}, frame, y, Predictions(cand.pred), labels=LABELS)


def test_values_that_cannot_be_scored_are_refused_naming_the_row():
    """The reproductions of the issue: each gave a traceback from numpy or, for NaN
    probabilities, a silent ROC AUC of 0.9615. Each is now a DataValidationError naming the row."""
    frame = pd.DataFrame({"r": range(6)})
    t, half = np.array([0, 1, 0, 1, 0, 1]), np.full((6, 2), 0.5)
    cfg = {"metrics": ["accuracy", "roc_auc"], "replicates": 50}
    cases = [
        (
            t,
            Predictions(np.array([0, 1, np.nan, 1, 0, 1]), half),
            "candidate: prediction at row 2 is nan; every prediction must be finite",
        ),
        (
            np.array([0, 1, 2, 1, 0, 1]),
            Predictions(t, half),
            "true label at row 2 is 2, outside the 2 declared labels ['neg', 'pos'] (indices 0..1); fix the eval data or declare the label",
        ),
        (
            np.array([0, 1, -1, 1, 0, 1]),
            Predictions(t, half),
            "true label at row 2 is -1, outside the 2 declared labels ['neg', 'pos'] (indices 0..1); fix the eval data or declare the label",
        ),
        (
            np.array(["neg", "pos"] * 3),
            Predictions(t, half),
            "true label at row 0 is 'neg': classification truth must be class indices 0..1 into the labels ['neg', 'pos'] (map label names with evaluate(), which does)",
        ),
        (
            t,
            Predictions(t, np.array([[0.5, 0.5]] * 5 + [[np.nan, 0.5]])),
            "candidate: probabilities at row 5 are [nan, 0.5]; each must be a finite number in [0, 1]",
        ),
        (
            t,
            Predictions(t, np.full((6, 3), 1 / 3)),
            "candidate: probabilities have shape (6, 3), expected (6, 2): one per label",
        ),
        (
            t,
            Predictions(np.array([0, 1, 0, 7, 0, 1]), half),
            "candidate: prediction at row 3 is 7; predicted class indices must lie in 0..1 (or -1: no label)",
        ),
    ]
    for truth, pred, message in cases:
        with pytest.raises(DataValidationError) as info:
            evaluate_predictions(cfg, frame, truth, pred, labels=LABELS)
        assert str(info.value) == message
    with pytest.raises(DataValidationError) as info:  # the baseline is checked the same way
        evaluate_predictions(cfg, frame, t, Predictions(t, half), Predictions(t, half * np.inf), labels=LABELS)
    assert str(info.value) == "baseline: probabilities at row 0 are [inf, inf]; each must be a finite number in [0, 1]"
    regression = {"task": "regression", "metrics": ["mae"], "replicates": 50}
    with pytest.raises(DataValidationError) as info:
        evaluate_predictions(regression, frame, np.arange(6.0), Predictions(np.array([0, 1, 2, np.inf, 4, 5.0])))
    assert str(info.value) == "candidate: prediction at row 3 is inf; every prediction must be finite"


def test_a_reused_evaluation_must_match_dataset_and_baseline():
    from airflow_mlcrit.core.evaluation.evaluate import check_reusable

    meta = {"dataset_digest": "sha256:aa", "candidate_digest": "sha256:m1"}
    check_reusable("evaluation/x@v1", meta, "sha256:aa", ("adapter/x@v1", "sha256:m1"))
    with pytest.raises(
        DataValidationError,
        match=re.escape(
            "evaluation/x@v1 scored eval dataset digest sha256:aa, but this evaluation uses sha256:bb: the baseline "
            "and the candidate must be scored on the same eval dataset version"
        ),
    ):
        check_reusable("evaluation/x@v1", meta, "sha256:bb", None)
    with pytest.raises(
        DataValidationError, match=re.escape("evaluated digest sha256:m1, not the baseline adapter/x@v2")
    ):
        check_reusable("evaluation/x@v1", meta, "sha256:aa", ("adapter/x@v2", "sha256:m2"))


def test_count_metrics_over_many_classes_get_intervals_from_row_weights():
    """20 classes and a baseline: 20^3 joint cells pass the limit (4,096), so macro_f1 and weighted_f1 are
    bootstrapped on row weights (found by the bad-input corpus: they fell through to per-row
    values, which they do not have, and raised AssertionError)."""
    rng = np.random.default_rng(5)
    n, k = 400, 20
    y = rng.integers(0, k, n)
    cand = Predictions(np.where(rng.random(n) < 0.8, y, rng.integers(0, k, n)))
    base = Predictions(np.where(rng.random(n) < 0.6, y, rng.integers(0, k, n)))
    labels = [f"c{i}" for i in range(k)]
    cfg = {"metrics": ["accuracy", "macro_f1", "weighted_f1"], "replicates": 200, "labels": labels}
    result = evaluate_predictions(cfg, pd.DataFrame({"x": range(n)}), y, cand, base, labels=labels)
    overall = result["slices"][0]
    for metric, sk in (("macro_f1", "macro"), ("weighted_f1", "weighted")):
        m = overall["candidate"][metric]
        assert m["value"] == pytest.approx(f1_score(y, cand.pred, average=sk, labels=range(k), zero_division=0))
        assert m["low"] < m["value"] < m["high"]
        d = overall["difference"][metric]
        assert d["low"] < d["value"] < d["high"] and d["value"] > 0
