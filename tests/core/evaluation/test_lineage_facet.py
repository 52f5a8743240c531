"""The evaluation facet validates against its schema for any evaluation, after OpenLineage's own
serialization (which drops nulls): 2-5 classes, metrics undefined on some slices, empty slices."""

import json

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openlineage.client.serde import Serde

from airflow_mlcrit.core.evaluation.compute import Predictions, evaluate_predictions
from airflow_mlcrit.core.evaluation.lineage import evaluation_facet
from airflow_mlcrit.core.lineage import facet
from airflow_mlcrit.core.lineage.validate import validate_facet

BINDING = {
    "candidate": "adapter/m@v2",
    "candidate_digest": "sha256:" + "a" * 64,
    "baseline": None,
    "baseline_digest": None,
    "dataset": "dataset/golden@v1",
    "dataset_digest": "sha256:" + "b" * 64,
}


def _predictions(rng, truth, k):
    proba = rng.dirichlet(np.ones(k), len(truth))
    proba[np.arange(len(truth)), truth] += rng.uniform(0, 1, len(truth))
    proba /= proba.sum(1, keepdims=True)
    return Predictions(proba.argmax(1), proba)


@st.composite
def evaluations(draw):
    k = draw(st.integers(2, 5))
    n = draw(st.integers(1, 80))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    # a slice with one class only leaves roc_auc undefined there; few rows leave slices ungated
    truth = rng.integers(0, draw(st.integers(1, k)), n) if draw(st.booleans()) else rng.integers(0, k, n)
    frame = pd.DataFrame({"region": rng.choice(["CA", "NE", "TX"], n), "amount": rng.uniform(0, 100, n)})
    with_baseline = draw(st.booleans())
    # buckets beyond the data leave a slice empty
    slices = ["region", {"column": "amount", "buckets": [50, 1000, 2000], "name": "amount_band"}]
    result = evaluate_predictions(
        {"slices": slices, "replicates": 20, "min_slice_size": draw(st.integers(1, 30)), "seed": seed},
        frame,
        truth,
        _predictions(rng, truth, k),
        _predictions(rng, truth, k) if with_baseline else None,
        labels=[f"c{i}" for i in range(k)],
    )
    binding = dict(BINDING, baseline="adapter/m@v1", baseline_digest="sha256:" + "c" * 64) if with_baseline else BINDING
    return {**result, "binding": binding}


def _as_emitted(payload):
    """The facet exactly as OpenLineage's client serializes it into an event."""
    return json.loads(json.dumps(Serde.remove_nulls_and_enums(payload)))


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(evaluations())
def test_every_evaluation_facet_validates_after_serialization(result):
    emitted = _as_emitted(facet("mlcrit_evaluation", **evaluation_facet(result)))
    validate_facet(emitted)
    # nothing was lost in serialization: every slice, every metric, explicit when undefined
    assert [s["name"] for s in emitted["slices"]] == [s["name"] for s in result["slices"]]
    for sent, s in zip(emitted["slices"], result["slices"], strict=True):
        assert set(sent["candidate"]) == set(s["candidate"])
        for metric, interval in s["candidate"].items():
            if interval["value"] is None:
                assert sent["candidate"][metric] == {"undefined": True, "reason": interval["reason"]}
                assert interval["reason"]
            else:
                assert sent["candidate"][metric]["value"] == interval["value"]


def test_roc_auc_of_a_single_class_slice_is_explicitly_undefined():
    rng = np.random.default_rng(3)
    truth = np.array([0] * 30 + [1] * 30 + [2] * 30)
    frame = pd.DataFrame({"region": ["CA"] * 30 + ["NE"] * 60})
    result = evaluate_predictions(
        {"slices": ["region"], "replicates": 20, "metrics": ["accuracy", "roc_auc"]},
        frame,
        truth,
        _predictions(rng, truth, 3),
        labels=["a", "b", "c"],
    )
    emitted = _as_emitted(facet("mlcrit_evaluation", **evaluation_facet({**result, "binding": BINDING})))
    validate_facet(emitted)
    ca = next(s for s in emitted["slices"] if s["name"] == "region=CA")
    assert ca["candidate"]["roc_auc"] == {
        "undefined": True,
        "reason": "one-vs-rest ROC AUC needs every class, and this slice has no ['b', 'c'] rows",
    }
    assert set(ca["candidate"]["accuracy"]) == {"value", "low", "high"}
    assert emitted["intervalMethods"] == {
        "accuracy": {"model": "clopper-pearson", "difference": "tango-score"},
        "roc_auc": {
            "model": "bayesian-bootstrap-score-groups+prior",
            "difference": "bayesian-bootstrap-score-groups+prior",
        },
    }
