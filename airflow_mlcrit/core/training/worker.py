"""The training child process: ``python -m airflow_mlcrit.core.training.worker JOB.json``.

Training runs in its own process so the Airflow worker gets all memory back and a crash (or an
OOM kill) is contained. The child speaks JSON lines on stdout: progress, checkpoint, done, error.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def emit(event: str, **fields: object) -> None:
    print(json.dumps({"event": event, **fields}, default=str), flush=True)


def main(job_path: str) -> int:
    from airflow_mlcrit.core.training.finetune import finetune
    from airflow_mlcrit.exceptions import MlcritError

    job = json.loads(Path(job_path).read_text())
    # Under torchrun every process runs this; only rank 0 speaks, the others exit quietly.
    lead = os.environ.get("RANK", "0") == "0"
    try:
        result = finetune(
            job["config"],
            job["train"],
            workdir=job["workdir"],
            resume_from=job.get("resume_from"),
            eval_data=job.get("eval"),
            provenance=job.get("provenance"),
            progress=(lambda p: emit("progress", **p)) if lead else None,
            on_checkpoint=(lambda path, step: emit("checkpoint", path=str(path), step=step)) if lead else None,
        )
    except MlcritError as exc:
        emit("error", type=type(exc).__name__, message=str(exc))
        return 2
    if not lead:
        return 0
    emit(
        "done",
        output_dir=str(result.output_dir),
        metrics=result.metrics,
        labels=result.labels,
        merged_dir=str(result.merged_dir) if result.merged_dir else None,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
