"""Predictions that must not pass for a useful model: unparsed generations, a constant answer,
a class never predicted."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score

from airflow_mlcrit.core.evaluation.compute import UNPARSED, Predictions, evaluate_predictions
from airflow_mlcrit.core.evaluation.intervals import tango
from airflow_mlcrit.core.gating.decide import decide

LABELS = ["negative", "neutral", "positive"]


def _data(n: int = 300, seed: int = 0):
    rng = np.random.default_rng(seed)
    truth = rng.choice(3, size=n, p=[0.66, 0.2, 0.14])
    return pd.DataFrame({"airline": rng.choice(["a", "b"], size=n)}), truth


def test_unparsed_outputs_are_wrong_for_every_row_and_count_for_no_class():
    frame, truth = _data()
    rng = np.random.default_rng(1)
    pred = np.where(rng.random(len(truth)) < 0.7, truth, rng.integers(0, 3, len(truth)))
    pred[rng.random(len(truth)) < 0.1] = UNPARSED
    metrics = ["accuracy", "macro_f1", "weighted_f1", "macro_precision", "macro_recall", "unparsed_rate"]
    result = evaluate_predictions(
        {"metrics": metrics, "replicates": 50}, frame, truth, Predictions(pred), labels=LABELS
    )
    cand = result["slices"][0]["candidate"]
    # sklearn on the real labels only: an unparsed row is a miss of its true class, a prediction of none
    kw = {"labels": [0, 1, 2], "zero_division": 0}
    assert cand["accuracy"]["value"] == pytest.approx(accuracy_score(truth, pred), abs=1e-12)
    assert cand["macro_f1"]["value"] == pytest.approx(f1_score(truth, pred, average="macro", **kw), abs=1e-12)
    assert cand["weighted_f1"]["value"] == pytest.approx(f1_score(truth, pred, average="weighted", **kw), abs=1e-12)
    assert cand["macro_precision"]["value"] == pytest.approx(
        precision_score(truth, pred, average="macro", **kw), abs=1e-12
    )
    assert cand["macro_recall"]["value"] == pytest.approx(recall_score(truth, pred, average="macro", **kw), abs=1e-12)
    unparsed = int((pred == UNPARSED).sum())
    assert cand["unparsed_rate"]["value"] == unparsed / len(truth)
    assert cand["unparsed_rate"]["low"] < unparsed / len(truth) < cand["unparsed_rate"]["high"]
    assert result["interval_methods"]["unparsed_rate"] == {"model": "clopper-pearson", "difference": "tango-score"}
    assert result["prediction_rates"]["candidate"]["(unparsed)"] == unparsed / len(truth)
    assert sum(result["prediction_rates"]["candidate"].values()) == pytest.approx(1.0, abs=1e-12)


def test_all_unparsed_generations_are_not_blessed_and_the_gate_names_the_rate():
    frame, truth = _data()
    pred = np.full(len(truth), UNPARSED)
    metrics = ["accuracy", "unparsed_rate"]
    result = evaluate_predictions(
        {"metrics": metrics, "replicates": 50}, frame, truth, Predictions(pred), labels=LABELS
    )
    decision = decide({"thresholds": [{"metric": "accuracy", "min": 0.0}]}, result)
    assert not decision.blessed
    assert decision.failures == ["unparsed_rate on slice 'overall' is 1.0000 (CI [0.9878, 1.0000]), needs <= 0.0200"]
    # a threshold that names the metric replaces the default
    loose = {"thresholds": [{"metric": "accuracy", "min": 0.0}, {"metric": "unparsed_rate", "max": 1.0}]}
    assert decide(loose, result).blessed


def test_a_constant_majority_answer_fails_better_than_majority_and_warns_of_classes_never_predicted():
    frame, truth = _data()
    constant = np.zeros(len(truth), dtype=np.int64)  # always "negative", the majority class
    cfg = {"metrics": ["accuracy"], "slices": ["airline"]}
    result = evaluate_predictions(cfg, frame, truth, Predictions(constant), labels=LABELS)
    share = float(np.mean(truth == 0))
    assert result["majority"] == {"label": "negative", "share": share}
    low, high = (float(v) for v in tango(0, 0, len(truth), 0.95))  # no discordant row
    assert result["slices"][0]["majority"] == {
        "accuracy": share,
        "difference": {"value": 0.0, "low": low, "high": high},
    }
    gate = {"thresholds": [{"metric": "accuracy", "min": 0.6}, {"better_than": "majority", "slices": "all"}]}
    decision = decide(gate, result)
    assert not decision.blessed
    majority = [c for c in decision.checks if c["kind"] == "majority"]
    assert [c["status"] for c in majority] == ["failed"] * 3 and [c["slice"] for c in majority] == [
        "overall",
        "airline=a",
        "airline=b",
    ]
    assert majority[0]["message"].startswith(
        f"accuracy on slice 'overall' is {share:.4f} against {share:.4f} for always answering 'negative': "
        "candidate - majority = 0.0000"
    )
    warned = [c["message"] for c in decision.checks if c["status"] == "warned"]
    assert warned == [
        "the candidate never predicts 'neutral' on the 300 eval rows",
        "the candidate never predicts 'positive' on the 300 eval rows",
    ]
    # a useful model clears it
    good = truth.copy()
    good[:20] = (good[:20] + 1) % 3
    result = evaluate_predictions(cfg, frame, truth, Predictions(good), labels=LABELS)
    decision = decide({"thresholds": [{"better_than": "majority"}]}, result)
    assert decision.blessed and [c["status"] for c in decision.checks] == ["passed"]
