"""MFT / INV / DIR suites and perturbations, on a keyword model whose behaviour is known."""

import re

import numpy as np
import pytest

from airflow_mlcrit.core.evaluation.behaviour import check_suite, perturb, run_suite, sensitivity
from airflow_mlcrit.core.evaluation.compute import Predictions
from airflow_mlcrit.core.evaluation.slicing import build_slices
from airflow_mlcrit.exceptions import ConfigError

LABELS = ["neg", "pos"]


def keyword_model(texts):
    """pos probability: 0.49 + 0.2 per 'good' - 0.2 per 'bad' (case-sensitive on purpose)."""
    p = np.array([np.clip(0.5 + 0.2 * t.count("good") - 0.2 * t.count("bad") - 0.01, 0, 1) for t in texts])
    proba = np.stack([1 - p, p], 1)
    return Predictions(proba.argmax(1), proba)


SUITE = {
    "name": "edge-cases",
    "tests": [
        {
            "name": "basic",
            "type": "MFT",
            "cases": [{"text": "good", "expected": "pos"}, {"text": "bad", "expected": "pos"}],
        },
        {
            "name": "casing",
            "type": "INV",
            "cases": [{"text": "good", "perturbed": "GOOD"}, {"text": "bad", "perturbed": "bad"}],
        },
        {
            "name": "intensifier",
            "type": "DIR",
            "label": "pos",
            "direction": "up",
            "cases": [{"text": "good", "perturbed": "good good"}],
        },
        {"name": "typos", "type": "INV", "perturbation": "typos", "texts": ["very good service", "a day"]},
    ],
}


def test_suite_pass_rates_per_test_and_suite():
    result = run_suite(check_suite(SUITE, LABELS), keyword_model, LABELS)
    rates = {t["name"]: (t["passed"], t["cases"]) for t in result["tests"]}
    typo_kept = int("good" in perturb("typos", ["very good service"])[0])  # else the typo hit "good"
    assert rates == {"basic": (1, 2), "casing": (1, 2), "intensifier": (1, 1), "typos": (1 + typo_kept, 2)}
    assert (result["passed"], result["cases"]) == (4 + typo_kept, 7)
    assert result["tests"][0]["failures"] == [{"text": "bad", "got": "neg"}]
    assert result["tests"][1]["failures"] == [{"text": "good", "perturbed": "GOOD", "got": "neg"}]


def test_bad_suites_are_named():
    with pytest.raises(ConfigError, match=re.escape("suite 's' tests[0] cases[1]: expected 'maybe' is not a label")):
        check_suite(
            {
                "name": "s",
                "tests": [
                    {
                        "name": "m",
                        "type": "MFT",
                        "cases": [{"text": "a", "expected": "pos"}, {"text": "b", "expected": "maybe"}],
                    }
                ],
            },
            LABELS,
        )
    with pytest.raises(ConfigError, match=re.escape("suite 's' tests[0]: DIR needs direction 'up' or 'down'")):
        check_suite(
            {
                "name": "s",
                "tests": [{"name": "d", "type": "DIR", "label": "pos", "cases": [{"text": "a", "perturbed": "b"}]}],
            },
            LABELS,
        )
    with pytest.raises(ConfigError, match=re.escape("unknown perturbation 'emoji'")):
        check_suite(
            {"name": "s", "tests": [{"name": "i", "type": "INV", "perturbation": "emoji", "texts": ["a"]}]}, LABELS
        )


def test_perturbations_are_seeded_and_do_what_they_say():
    texts = ["Alice in California paid 100 dollars, good service!", "bad order from Paris"]
    for name in ("typos", "casing", "whitespace", "punctuation", "synonyms", "numeric_jitter", "entity_swap"):
        assert perturb(name, texts, seed=3) == perturb(name, texts, seed=3)
    assert perturb("synonyms", texts) == [
        "Alice in California paid 100 dollars, fine service!",
        "poor purchase from Paris",
    ]
    assert perturb("punctuation", texts)[0] == "Alice in California paid 100 dollars good service"
    swapped = perturb("entity_swap", texts, seed=1)
    assert "California" not in swapped[0] and "Alice" not in swapped[0] and "Paris" not in swapped[1]
    assert re.search(r"paid (9\d|10\d|110) dollars", perturb("numeric_jitter", texts)[0])


def test_sensitivity_flip_rates_per_slice():
    import pandas as pd

    texts = ["good", "good day", "bad", "bad day"] * 5
    frame = pd.DataFrame({"text": texts, "g": ["a", "a", "b", "b"] * 5})
    truth = np.array([1, 1, 0, 0] * 5)
    original = keyword_model(texts)
    [casing] = sensitivity(
        ["casing"], texts, truth, original, keyword_model, build_slices(frame, ["g"]), rows=20, seed=0, labels=LABELS
    )
    by = {s["slice"]: s for s in casing["slices"]}
    upper = [t for t in perturb("casing", texts, seed=0)]
    flipped_pos = sum(1 for t, u in zip(texts, upper, strict=True) if "good" in t and "good" not in u)
    assert by["g=a"]["flip_rate"] == flipped_pos / 10 and by["g=b"]["flip_rate"] == 0.0
    assert by["overall"]["metric_delta"] == -flipped_pos / 20
