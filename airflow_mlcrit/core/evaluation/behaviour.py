"""Behavioural tests (CheckList's MFT / INV / DIR suites) and sensitivity to perturbations.

A ``suite`` artifact holds ``suite.json``::

    {"name": "edge-cases", "tests": [
      {"name": "negation", "type": "MFT", "cases": [{"text": "not good at all", "expected": "neg"}]},
      {"name": "typos keep the label", "type": "INV", "perturbation": "typos", "texts": ["great service"]},
      {"name": "intensifier", "type": "DIR", "label": "pos", "direction": "up",
       "cases": [{"text": "good", "perturbed": "very good"}]}]}

INV cases give ``perturbed`` explicitly or name a built-in ``perturbation``; DIR compares the
probability of ``label`` (direction ``up`` / ``down``, with an optional ``tolerance``).
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from typing import Any

import numpy as np

from airflow_mlcrit.core.evaluation.config import PERTURBATIONS
from airflow_mlcrit.exceptions import ConfigError

SUITE_FILE = "suite.json"
_SYNONYMS = {
    "good": "fine",
    "great": "excellent",
    "bad": "poor",
    "terrible": "awful",
    "happy": "glad",
    "angry": "upset",
    "fast": "quick",
    "slow": "sluggish",
    "help": "assist",
    "buy": "purchase",
    "problem": "issue",
    "order": "purchase",
}
_ENTITIES = [
    ["California", "Nebraska", "Texas", "Ohio", "Florida", "Vermont", "Oregon", "Georgia"],
    ["Alice", "Bob", "Maria", "Wei", "Fatima", "John", "Priya", "Carlos"],
    ["Paris", "Lagos", "Tokyo", "Denver", "Omaha", "Berlin", "Mumbai", "Lima"],
]


def _typos(text: str, rng: random.Random) -> str:
    words = text.split(" ")
    long = [i for i, w in enumerate(words) if len(w) > 3]
    if not long:
        return text
    i = rng.choice(long)
    w = words[i]
    j = rng.randrange(len(w) - 1)
    words[i] = w[:j] + w[j + 1] + w[j] + w[j + 2 :]
    return " ".join(words)


def _casing(text: str, rng: random.Random) -> str:
    return rng.choice([str.upper, str.lower, str.title])(text)


def _whitespace(text: str, rng: random.Random) -> str:
    words = text.split(" ")
    return rng.choice(["  ", " \t", "   "]).join(words) + rng.choice(["", " ", "\n"])


def _punctuation(text: str, rng: random.Random) -> str:
    stripped = re.sub(r"[^\w\s]", "", text)
    return stripped if stripped != text else text + rng.choice(["!", "!!", ".", "?"])


def _synonyms(text: str, rng: random.Random, extra: dict[str, str] | None = None) -> str:
    table = {**_SYNONYMS, **(extra or {})}
    return re.sub(r"\b\w+\b", lambda m: _swap_case(m.group(0), table.get(m.group(0).lower())), text)


def _swap_case(word: str, new: str | None) -> str:
    if new is None:
        return word
    return new.capitalize() if word[:1].isupper() else new


def _numeric_jitter(text: str, rng: random.Random) -> str:
    def jitter(m: re.Match) -> str:
        value = float(m.group(0)) * rng.uniform(0.9, 1.1)
        return str(round(value)) if "." not in m.group(0) else f"{value:.2f}"

    return re.sub(r"\d+(?:\.\d+)?", jitter, text)


def _entity_swap(text: str, rng: random.Random) -> str:
    for group in _ENTITIES:
        pattern = re.compile(r"\b(" + "|".join(group) + r")\b")
        text = pattern.sub(lambda m, g=group: rng.choice([e for e in g if e != m.group(0)]), text)
    return text


_FUNCS: dict[str, Callable[..., str]] = {
    "typos": _typos,
    "casing": _casing,
    "whitespace": _whitespace,
    "punctuation": _punctuation,
    "synonyms": _synonyms,
    "numeric_jitter": _numeric_jitter,
    "entity_swap": _entity_swap,
}
assert set(_FUNCS) == set(PERTURBATIONS)


def perturb(name: str, texts: list[str], seed: int = 0, synonyms: dict[str, str] | None = None) -> list[str]:
    """Apply the built-in perturbation ``name`` to each text (seeded, so reruns agree)."""
    if name not in _FUNCS:
        raise ConfigError(f"unknown perturbation {name!r}; known: {', '.join(PERTURBATIONS)}")
    rng = random.Random(f"{name}:{seed}")
    fn = _FUNCS[name]
    if name == "synonyms":
        return [fn(t, rng, synonyms) for t in texts]
    return [fn(t, rng) for t in texts]


# ---- suites -----------------------------------------------------------------------------------


def check_suite(suite: Any, labels: list[str] | None) -> dict[str, Any]:
    """Validate a suite document; errors name the test and case."""
    if not isinstance(suite, dict) or not isinstance(suite.get("tests"), list) or not suite.get("name"):
        raise ConfigError("a suite is a JSON object with 'name' and a list of 'tests'")
    for i, test in enumerate(suite["tests"]):
        where = f"suite {suite['name']!r} tests[{i}]"
        kind = test.get("type") if isinstance(test, dict) else None
        if kind not in ("MFT", "INV", "DIR") or not test.get("name"):
            raise ConfigError(f"{where}: needs a 'name' and 'type' MFT, INV or DIR, got {test!r:.120}")
        cases = test.get("cases")
        if kind == "INV" and "perturbation" in test:
            perturb(test["perturbation"], [])  # validates the name
            if not isinstance(test.get("texts"), list) or not test["texts"]:
                raise ConfigError(f"{where}: an INV test with a perturbation needs a non-empty list 'texts'")
            continue
        if not isinstance(cases, list) or not cases:
            raise ConfigError(f"{where}: needs a non-empty list 'cases'")
        need = {"MFT": ("text", "expected"), "INV": ("text", "perturbed"), "DIR": ("text", "perturbed")}[kind]
        for j, case in enumerate(cases):
            if not isinstance(case, dict) or any(not isinstance(case.get(f), str) for f in need):
                raise ConfigError(f"{where} cases[{j}]: needs string fields {list(need)}")
            if kind == "MFT" and labels is not None and case["expected"] not in labels:
                raise ConfigError(f"{where} cases[{j}]: expected {case['expected']!r} is not a label {labels}")
        if kind == "DIR":
            if test.get("direction") not in ("up", "down"):
                raise ConfigError(f"{where}: DIR needs direction 'up' or 'down'")
            if labels is not None and test.get("label") not in labels:
                raise ConfigError(f"{where}: DIR needs 'label', one of {labels}")
    return suite


def run_suite(suite: dict[str, Any], predict: Callable[[list[str]], Any], labels: list[str] | None) -> dict[str, Any]:
    """Pass rate per test and for the suite. ``predict(texts)`` returns Predictions (class indices
    with probabilities for classification, texts for generation)."""
    results, passed_all, total_all = [], 0, 0
    for test in suite["tests"]:
        kind = test["type"]
        if kind == "INV" and "perturbation" in test:
            texts = list(test["texts"])
            cases = [
                {"text": t, "perturbed": p}
                for t, p in zip(texts, perturb(test["perturbation"], texts, seed=0), strict=True)
            ]
        else:
            cases = test["cases"]
        original = predict([c["text"] for c in cases])
        shown = _shown(original, labels)
        if kind == "MFT":
            ok = [s == c["expected"] for s, c in zip(shown, cases, strict=True)]
            got = shown
        else:
            after = predict([c["perturbed"] for c in cases])
            if kind == "INV":
                ok = [a == b for a, b in zip(shown, _shown(after, labels), strict=True)]
                got = _shown(after, labels)
            else:
                if original.proba is None:
                    raise ConfigError(f"DIR test {test['name']!r} needs class probabilities (classification)")
                li = (labels or []).index(test["label"])
                delta = after.proba[:, li] - original.proba[:, li]
                tol = float(test.get("tolerance", 0.0))
                ok = list(delta > -tol) if test["direction"] == "up" else list(delta < tol)
                got = [f"{d:+.4f}" for d in delta]
        passed = int(sum(ok))
        failures = [
            {"text": c["text"], **({"perturbed": c["perturbed"]} if "perturbed" in c else {}), "got": g}
            for c, g, o in zip(cases, got, ok, strict=True)
            if not o
        ][:5]
        results.append(
            {
                "name": test["name"],
                "type": kind,
                "cases": len(cases),
                "passed": passed,
                "pass_rate": passed / len(cases),
                "failures": failures,
            }
        )
        passed_all, total_all = passed_all + passed, total_all + len(cases)
    return {
        "name": suite["name"],
        "tests": results,
        "cases": total_all,
        "passed": passed_all,
        "pass_rate": passed_all / total_all if total_all else None,
    }


UNPARSED_SHOWN = "(unparsed)"


def _shown(p: Any, labels: list[str] | None) -> list[str]:
    if labels is not None:  # -1: an unparsed generation, which no expected label equals
        return [labels[int(i)] if i >= 0 else UNPARSED_SHOWN for i in p.pred]
    return [str(x).strip() for x in p.pred]


# ---- sensitivity ------------------------------------------------------------------------------


def sensitivity(
    names: list[str],
    texts: list[str],
    truth: np.ndarray,
    original: Any,
    predict: Callable[[list[str]], Any],
    slices: list[Any],
    *,
    rows: int,
    seed: int,
    labels: list[str] | None,
    synonyms: dict[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Per perturbation and slice: the share of (changed) inputs whose prediction flips, and the
    accuracy (or exact match) on perturbed minus original inputs."""
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(len(texts), size=min(rows, len(texts)), replace=False))
    base = _shown(original, labels)
    out = []
    for name in names:
        perturbed = perturb(name, [texts[i] for i in sample], seed=seed, synonyms=synonyms)
        changed = np.array([p != texts[i] for p, i in zip(perturbed, sample, strict=True)])
        # only changed inputs are scored again: an unchanged one keeps its prediction (and cannot
        # flip through the numeric noise of being batched with other rows)
        after = [base[i] for i in sample]
        moved = np.flatnonzero(changed)
        if len(moved):
            for j, shown in zip(moved, _shown(predict([perturbed[j] for j in moved]), labels), strict=True):
                after[j] = shown
        flips = np.array([after[j] != base[i] for j, i in enumerate(sample)])
        right_before = np.array([base[i] == str(_label(truth[i], labels)) for i in sample])
        right_after = np.array([after[j] == str(_label(truth[i], labels)) for j, i in enumerate(sample)])
        position = {int(i): j for j, i in enumerate(sample)}
        per_slice = []
        for sl in slices:
            js = np.array([position[int(i)] for i in sl.rows if int(i) in position], dtype=int)
            if not len(js):
                continue
            per_slice.append(
                {
                    "slice": sl.name,
                    "n": len(js),
                    "changed": int(changed[js].sum()),
                    "flip_rate": float(flips[js].mean()),
                    "metric_delta": float(right_after[js].mean() - right_before[js].mean()),
                }
            )
        out.append({"perturbation": name, "rows": len(sample), "slices": per_slice})
    return out


def _label(value: Any, labels: list[str] | None) -> Any:
    return labels[int(value)] if labels is not None else str(value).strip()
