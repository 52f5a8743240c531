"""Metrics equal scikit-learn's; bootstrap intervals cover the truth at their nominal rate."""

import re

import numpy as np
import pytest
from sklearn import metrics as skm

from airflow_mlcrit.core.evaluation.metrics import bootstrap, point_metrics, roc_auc
from airflow_mlcrit.exceptions import ConfigError, DataValidationError


def _predictions(n, seed, k=2):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k)) + 1.5 * np.eye(k)[y]
    proba = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    proba = np.round(proba, 2)  # ties in the scores, as real models produce
    proba = proba / proba.sum(1, keepdims=True)
    return y, proba.argmax(1), proba


@pytest.mark.parametrize("k", [2, 3])
def test_equal_to_scikit_learn_per_slice(k):
    y, pred, proba = _predictions(3000, seed=k, k=k)
    slices = np.random.default_rng(9).choice(["CA", "NE", "TX"], len(y))
    for s in ("CA", "NE", "TX"):
        m = slices == s
        got = point_metrics(y[m], pred[m], k, proba[m])
        assert abs(got["accuracy"] - skm.accuracy_score(y[m], pred[m])) < 1e-9
        assert abs(got["macro_f1"] - skm.f1_score(y[m], pred[m], average="macro")) < 1e-9
        assert abs(got["weighted_f1"] - skm.f1_score(y[m], pred[m], average="weighted")) < 1e-9
        assert abs(got["macro_precision"] - skm.precision_score(y[m], pred[m], average="macro")) < 1e-9
        assert abs(got["macro_recall"] - skm.recall_score(y[m], pred[m], average="macro")) < 1e-9
        assert abs(got["log_loss"] - skm.log_loss(y[m], proba[m], labels=list(range(k)))) < 1e-9
        if k == 2:
            assert abs(got["roc_auc"] - skm.roc_auc_score(y[m], proba[m][:, 1])) < 1e-9


def test_weighted_auc_equals_scikit_learn_with_sample_weights():
    y, _, proba = _predictions(500, seed=4)
    w = np.random.default_rng(1).poisson(1.0, size=(3, 500)).astype(float)
    got = roc_auc(y, proba[:, 1], w)
    for i in range(3):
        assert abs(got[i] - skm.roc_auc_score(y, proba[:, 1], sample_weight=w[i])) < 1e-9


def test_bootstrap_interval_covers_the_truth_93_to_97_percent():
    """400 repetitions: data with known true accuracy 0.8, 300 rows each, 95% intervals."""
    rng = np.random.default_rng(2026)
    covered = 0
    for rep in range(400):
        y = rng.integers(0, 2, 300)
        correct = rng.random(300) < 0.8
        pred = np.where(correct, y, 1 - y)
        ci = bootstrap(y, pred, 2, metrics=("accuracy",), replicates=1000, seed=rep)["accuracy"]
        covered += ci["low"] <= 0.8 <= ci["high"]
    assert 0.93 <= covered / 400 <= 0.97, covered / 400


def test_bootstrap_of_row_metrics_and_bad_input():
    y, pred, proba = _predictions(400, seed=3)
    ci = bootstrap(y, pred, 2, proba=proba, metrics=("accuracy", "roc_auc", "log_loss"), replicates=200)
    for m, v in ci.items():
        assert v["low"] <= v["value"] <= v["high"], (m, v)
    with pytest.raises(ConfigError, match=re.escape("unknown metric(s) ['acc']")):
        bootstrap(y, pred, 2, metrics=("acc",))
    with pytest.raises(DataValidationError, match=re.escape("399 predictions for 400 labels")):
        bootstrap(y, pred[:-1], 2)


def test_grouped_auc_equals_the_row_level_auc_for_tied_scores():
    from airflow_mlcrit.core.evaluation.metrics import auc_from_groups, auc_groups

    y, _, proba = _predictions(2000, seed=6)  # scores rounded: many ties
    pos, neg = auc_groups(y, proba[:, 1])
    assert abs(float(auc_from_groups(pos, neg)) - skm.roc_auc_score(y, proba[:, 1])) < 1e-12
    rng = np.random.default_rng(0)
    y2, s2 = rng.integers(0, 2, 50_000), rng.random(50_000)  # continuous: quantile bins
    pos, neg = auc_groups(y2, s2 + 0.2 * y2)  # 2048 quantile bins
    assert abs(float(auc_from_groups(pos, neg)) - skm.roc_auc_score(y2, s2 + 0.2 * y2)) < 1e-3
