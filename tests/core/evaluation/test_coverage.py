"""A seeded subset of dev/bench/bench_coverage.py (the full grid and its figures are in
docs/benchmarks.md): the same simulation code, through evaluate_predictions and decide, with the
exact figures these seeds give. The v0.1 percentile bootstrap is run on the first cell to show
the test can fail: it covered 0.454 there."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bench():
    path = Path(__file__).resolve().parents[3] / "dev" / "bench" / "bench_coverage.py"
    spec = importlib.util.spec_from_file_location("bench_coverage", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_accuracy_intervals_hold_their_level_on_small_slices_near_one(bench):
    first = bench.accuracy_coverage(30, 0.98, 1000, baseline=True)
    assert first == {"coverage": 0.976, "v0.1": 0.454, "width_vs_cp": 1.0}
    assert bench.accuracy_coverage(50, 0.98, 1000, baseline=False)["coverage"] == 0.985
    assert bench.accuracy_coverage(100, 0.95, 1000, baseline=False)["coverage"] == 0.982


def test_the_gate_blesses_a_candidate_at_the_margin_at_most_at_its_level(bench):
    assert bench.false_blessing(50, 0.97, correlated=False, sims=1000) == 0.008
    assert bench.false_blessing(50, 0.97, correlated=True, sims=1000) == 0.0


def test_one_slice_at_the_margin_is_blessed_at_most_at_the_level(bench):
    """Three slices of 60 rows, the candidate exactly at the margin on one: an undecided slice fails
    (no mode skips it), so false blessings stay below the one-sided 0.025."""
    gate = {"thresholds": [{"metric": "accuracy", "change": "non_inferiority", "margin": 0.1, "slices": {"spec": "s"}}]}
    sizes = {"s=a": 60, "s=b": 60, "s=c": 60}
    assert bench.gate_over_slices(sizes, gate, 0.9, 0.16, 300, at_margin="s=b", margin=0.1) == 1 / 300


def test_the_gate_plan_matches_a_simulation_of_the_gate(bench):
    assert bench.plan_against_simulation(4, 400, 0.05, 0.9, 0.9, 300) == {"planned": 0.5567, "simulated": 0.57}
