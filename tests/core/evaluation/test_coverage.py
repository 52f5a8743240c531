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
