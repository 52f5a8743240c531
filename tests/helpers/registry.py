"""A store holding what the pipeline's operators commit, for the registry's tests: datasets with
statistics and validation reports, and adapter versions with evaluations (slice metrics with
intervals, against the production baseline) and blessings bound to their digests."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from airflow_mlcrit.core.evaluation.evaluate import evaluate
from airflow_mlcrit.core.gating.decide import decide
from airflow_mlcrit.core.validation.statistics import compute_statistics

STRICT = {"thresholds": [{"metric": "accuracy", "change": "non_inferiority", "margin": 0.05, "slices": "all"}]}
FIRST = {"thresholds": [{"metric": "accuracy", "min": 0.6}]}
LENIENT = {"thresholds": [{"metric": "accuracy", "change": "non_inferiority", "margin": 0.5}]}


def messages(ca: int, ne: int) -> pd.DataFrame:
    n = ca + ne
    return pd.DataFrame(
        {
            "state": ["CA"] * ca + ["NE"] * ne,
            "length": [float(i % 10) for i in range(n)],
            "label": ["pos", "neg"] * (n // 2),
        }
    )


def golden(right_on_ne: int, base_right_on_ne: int) -> pd.DataFrame:
    """40 rows, 20 per state; the candidate ("pred") and the baseline ("base") are right on every
    CA row and on the first ``right_on_ne`` / ``base_right_on_ne`` NE rows."""
    label = ["pos", "neg"] * 20
    flip = {"pos": "neg", "neg": "pos"}

    def preds(right: int) -> list[str]:
        return label[:20] + [y if i < right else flip[y] for i, y in enumerate(label[20:])]

    return pd.DataFrame(
        {
            "state": ["CA"] * 20 + ["NE"] * 20,
            "label": label,
            "pred": preds(right_on_ne),
            "base": preds(base_right_on_ne),
        }
    )


def put_json(store, key: str, work: Path, filename: str, doc: dict, *, parents, metadata, extra_files=None):
    folder = work / f"{key.replace('/', '-')}-{len(list(work.iterdir()))}"
    folder.mkdir()
    (folder / filename).write_text(json.dumps(doc))
    for name, text in (extra_files or {}).items():
        (folder / name).write_text(text)
    return store.put(key, folder, parents=parents, metadata=metadata)


def add_dataset_version(store, work: Path, ca: int, ne: int, status: str):
    """dataset/msgs's next version, with its statistics and a validation report."""
    path = work / f"msgs-{len(list(work.iterdir()))}.parquet"
    messages(ca, ne).to_parquet(path, index=False)
    data = store.put("dataset/msgs", path)
    stats = compute_statistics({"source": str(path)}).statistics
    put_json(store, "statistics/msgs", work, "statistics.json", stats, parents=[str(data.ref)], metadata={})
    report = {"status": status}
    put_json(store, "validation_report/msgs", work, "report.json", report, parents=[str(data.ref)], metadata=report)
    return data


def add_adapter_version(store, work: Path, right_on_ne: int, *, baseline: int | None, base_right: int, gate: dict):
    """adapter/clf's next version, evaluated (against ``baseline`` read through ``production``)
    and gated as EvaluateModelOperator and EvaluationGateOperator commit them."""
    folder = work / f"adapter-{len(list(work.iterdir()))}"
    folder.mkdir()
    (folder / "adapter_model.safetensors").write_bytes(f"weights {right_on_ne}".encode())
    m = store.put("adapter/clf", folder)
    return m, judge(store, work, m, right_on_ne, baseline=baseline, base_right=base_right, gate=gate)


def judge(store, work: Path, m, right_on_ne: int, *, baseline: int | None, base_right: int, gate: dict):
    """Evaluate and gate adapter version ``m`` (again): a new evaluation and blessing, its newest
    judgement. Returns the evaluation result."""
    cfg = {"task": "classification", "prediction_column": "pred", "metrics": ["accuracy"], "slices": ["state"]}
    cfg |= {"min_slice_size": 10, "replicates": 200, "seed": 7}
    if baseline:
        cfg["baseline_prediction_column"] = "base"
    result, _ = evaluate(cfg, golden(right_on_ne, base_right), None)
    candidate = str(m.ref)
    base = store.resolve(f"adapter/clf@v{baseline}") if baseline else None
    binding = {
        "candidate": candidate,
        "candidate_digest": m.digest,
        "baseline": str(base.ref) if base else None,
        "baseline_digest": base.digest if base else None,
        "baseline_alias": "production" if base else None,
    }
    parents = [candidate, *([str(base.ref)] if base else [])]
    report = f"<html><body><h1>Evaluation of {candidate}</h1></body></html>"
    ev = put_json(
        store,
        "evaluation/clf",
        work,
        "evaluation.json",
        result,
        parents=parents,
        metadata=binding | {"task": "classification"},
        extra_files={"report.html": report},
    )
    decision = decide(gate, result)
    doc = decision.to_dict() | binding | {"evaluation": str(ev.ref)}
    meta = {"decision": decision.decision, **binding, "evaluation": str(ev.ref)}
    put_json(store, "blessing/clf", work, "blessing.json", doc, parents=[str(ev.ref), candidate], metadata=meta)
    return result
