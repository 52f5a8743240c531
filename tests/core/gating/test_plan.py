"""Planning a gate: exact power of its accuracy checks for a candidate as good as production, the
rows each slice needs for a stated power, the chance the whole gate blesses such a candidate, and
the CLI that prints them. The figures agree with simulations of the real gate
(tests/core/evaluation/test_coverage.py, dev/bench/bench_coverage.py)."""

import json

import pytest

from airflow_mlcrit.core.cli import main
from airflow_mlcrit.core.evaluation.power import change_power, needed_for_change
from airflow_mlcrit.core.gating.decide import GateConfig
from airflow_mlcrit.core.gating.plan import plan
from airflow_mlcrit.exceptions import ConfigError

NI = {"metric": "accuracy", "change": "non_inferiority", "margin": 0.03}


def test_rows_needed_are_for_a_stated_power_not_a_coin_flip():
    """The issue's case: n=62, both models at 0.9 with independent errors (discordance 0.18). The
    old message's 'about 790 rows' was the size for 50% power; 80% needs about twice that."""
    assert round(change_power(62, 0.03, discordance=0.18), 4) == 0.0709
    assert needed_for_change(62, 0.03, 0.18, 0.5, "non_inferiority", 0.95) == 780
    assert needed_for_change(62, 0.03, 0.18, 0.8, "non_inferiority", 0.95) == 1585
    assert round(change_power(1585, 0.03, discordance=0.18), 3) == 0.801
    # an equivalent candidate is not better: no size makes a superiority check pass
    assert needed_for_change(62, 0.03, 0.18, 0.8, "superiority", 0.95) is None


def test_the_chance_to_bless_is_the_product_over_slices():
    sizes = {"overall": 4000, **{f"s={i:02d}": 100 for i in range(40)}}
    doc = plan({"thresholds": [{**NI, "slices": "all"}]}, sizes, accuracy=0.9)
    assert len(doc["checks"]) == 41 and doc["power_target"] == 0.8 and doc["agreement"] == pytest.approx(0.82)
    each = [c["power"] for c in doc["checks"]]
    assert round(each[0], 4) == 0.9939 and {round(p, 4) for p in each[1:]} == {0.1029}
    assert doc["bless_equivalent"] == pytest.approx(each[0] * each[1] ** 40)
    assert doc["bless_equivalent"] < 1e-39  # 40 slices of 100 rows: an equivalent candidate is never blessed
    assert {c["rows_needed"] for c in doc["checks"][1:]} == {1585}
    # a threshold on a metric without an exact power is named, not guessed
    more = plan({"thresholds": [NI, {"metric": "macro_f1", "min": 0.8}]}, sizes, accuracy=0.9, power=0.9)
    assert more["unplanned"] == [
        "GateConfig.thresholds[1] (macro_f1): no exact power; simulate it (dev/bench/bench_coverage.py)"
    ]
    assert more["checks"][0]["rows_needed"] is None and more["power_target"] == 0.9


def test_bad_plans_and_permissive_modes_are_config_errors():
    with pytest.raises(ConfigError) as info:
        plan({"thresholds": [{**NI, "slices": ["state=NE"]}]}, {"overall": 10}, accuracy=0.9)
    assert str(info.value) == "GateConfig.thresholds[0]: no size given for slice(s) ['state=NE']; sizes: ['overall']"
    with pytest.raises(ConfigError) as info:
        plan({"thresholds": [NI]}, {"overall": 10}, accuracy=0.9, agreement=0.5)
    assert str(info.value) == (
        "agreement 0.5 is impossible for two models at accuracy 0.9: models each right on 90% of rows disagree on "
        "at most 20%"
    )
    for mode in ("warn", "skip"):
        with pytest.raises(ConfigError) as info:
            GateConfig.coerce({"thresholds": [NI], "underpowered": mode})
        assert str(info.value).startswith(
            f"GateConfig.underpowered={mode!r} is not accepted: blessing past a slice too small to decide blessed a "
            "candidate at the margin 199 times in 200."
        )


def test_the_cli_prints_the_plan(capsys, tmp_path):
    gate = tmp_path / "gate.json"
    gate.write_text(json.dumps({"thresholds": [{**NI, "slices": {"spec": "state"}}]}))
    assert (
        main(["gate", "plan", str(gate), "--sizes", "overall:4000,state=NE:62,state=CA:600", "--accuracy", "0.9"]) == 0
    )
    assert capsys.readouterr().out.splitlines() == [
        "an equivalent candidate: accuracy 0.900 like production, agreeing on 0.820 of rows; 95% intervals",
        "THRESHOLD  SLICE     N    POWER  ROWS FOR 80%",
        "---------  --------  ---  -----  ------------",
        "0          state=NE  62   0.071  1,585",
        "0          state=CA  600  0.403  1,585",
        "chance the gate blesses it: 0.0286 (the product of the 2 checks' powers)",
    ]
    assert main(["gate", "plan", str(gate), "--sizes", "state=NE=62", "--accuracy", "0.9"]) == 1
    assert capsys.readouterr().err == "mlcrit: error: --sizes: 'state=NE=62' is not NAME:N (e.g. state=NE:62)\n"
