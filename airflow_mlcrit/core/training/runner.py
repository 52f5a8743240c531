"""Run fine-tuning in a child process with checkpoints kept in the artifact store, so a retry of
the same task (same idempotency key) resumes from the newest complete checkpoint."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from airflow_mlcrit import exceptions
from airflow_mlcrit.core.training.finetune import FineTuneResult


def checkpoint_key(output_name: str, idempotency_key: str) -> str:
    """The ``checkpoint`` artifact of one task instance's training run."""
    return f"checkpoint/{output_name}-{hashlib.sha256(idempotency_key.encode()).hexdigest()[:12]}"


def _die_with_parent(parent: int) -> Callable[[], None]:
    """For the child, before exec: SIGKILL it when the task process ``parent`` dies (Linux). A
    task killed by the OOM killer or a worker shutdown must not leave training running, holding
    the GPU, while its retry starts. A parent that died between the fork and the prctl sends no
    signal: the child sees it has been reparented and ends itself."""

    def arm() -> None:
        if sys.platform.startswith("linux"):
            import ctypes
            import signal

            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
            if os.getppid() != parent:
                os._exit(137)

    return arm


def watch_supervisor(supervisor: int, proc: subprocess.Popen, orphaned: threading.Event) -> None:
    """Stop the training child once this process's parent is no longer ``supervisor`` (it died
    and this process was reparented): Airflow 3.3 puts each task process in a process group of its
    own, so killing a worker's group leaves the task process, and its training, running."""
    while proc.poll() is None:
        if os.getppid() != supervisor:
            orphaned.set()
            stop_training(proc)
            return
        time.sleep(1.0)


def _tail(path: Path, limit: int = 64 * 1024) -> str:
    """The last ``limit`` bytes of a log file."""
    with open(path, "rb") as f:
        f.seek(max(0, f.seek(0, os.SEEK_END) - limit))
        return f.read().decode("utf-8", "replace")


def stop_training(proc: subprocess.Popen, grace: float = 10.0) -> None:
    """End a training child and everything it started (torchrun ranks): SIGTERM to its process
    group, SIGKILL after ``grace`` seconds."""
    import signal

    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            os.killpg(proc.pid, 0)  # ranks of the group may outlive the leader
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue


def run_training(
    cfg: dict[str, Any],
    train_path: str,
    *,
    workdir: Path,
    store: Any,
    ckpt_key: str,
    eval_path: str | None = None,
    on_event: Callable[[dict[str, Any]], None] | None = None,
    spawned: Callable[[subprocess.Popen], None] | None = None,
    provenance: dict[str, str] | None = None,
    producer: dict[str, Any] | None = None,
    supervisor: int | None = None,
) -> FineTuneResult:
    """Resume from the newest stored checkpoint if there is one, run the child, store each new
    checkpoint as it appears; raise the child's error (or a crash) as an MlcritError.

    The child leads its own process group (``stop_training`` ends it with every torchrun rank),
    and its stderr goes to a file: a pipe that nobody drains while stdout is read would block a
    child that writes more than the pipe holds (64 KiB of warnings) and hang the task.

    ``producer``: the task try, whose fencing token each checkpoint carries (a try that outlived
    its task cannot commit one after the retry began). ``supervisor``: the pid of the process that
    supervises this task process (Airflow's task supervisor); when it goes, training stops, so a
    task process left behind by a killed worker does not keep training beside its retry."""
    workdir.mkdir(parents=True, exist_ok=True)
    resume_from = None
    if store.versions(ckpt_key):
        latest = store.resolve(ckpt_key)
        resume_from = workdir / "resume" / f"v{latest.version}"
        store.get(latest.ref, resume_from)
        if on_event:
            on_event({"event": "resume", "checkpoint": str(latest.ref), "step": latest.metadata.get("step")})
    job = workdir / "job.json"
    job.write_text(
        json.dumps(
            {
                "config": cfg,
                "train": train_path,
                "eval": eval_path,
                "workdir": str(workdir / "run"),
                "resume_from": str(resume_from) if resume_from else None,
                "provenance": provenance,
            }
        )
    )
    worker = ["-m", "airflow_mlcrit.core.training.worker", str(job)]
    procs = int(cfg.get("nproc_per_node") or 1)
    if procs > 1:  # torchrun: one worker per process, rendezvous on a free local port
        launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={procs}"]
        worker = [*launcher, *worker]
    stderr_path = workdir / "stderr.log"
    with open(stderr_path, "w") as stderr_file:
        proc = subprocess.Popen(
            [sys.executable, *worker],
            stdout=subprocess.PIPE,
            stderr=stderr_file,
            text=True,
            env=dict(os.environ),
            preexec_fn=_die_with_parent(os.getpid()),
            start_new_session=True,
        )
    if spawned:
        spawned(proc)
    orphaned = threading.Event()
    if supervisor is not None:
        threading.Thread(target=watch_supervisor, args=(supervisor, proc, orphaned), daemon=True).start()
    done: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            if not line.startswith("{"):
                continue
            event = json.loads(line)
            if event["event"] == "checkpoint":
                # fenced (FencedError) once a newer try of the task has begun: a task process that
                # outlived its worker stores no checkpoint for its retry to resume from
                store.put(ckpt_key, event["path"], metadata={"step": event["step"]}, producer=producer)
            elif event["event"] == "done":
                done = event
            elif event["event"] == "error":
                error = event
            if on_event:
                try:
                    on_event(event)
                except Exception:
                    # progress reporting is best-effort: a log channel that broke (its supervisor
                    # died) neither stops the run nor keeps a checkpoint from being stored, or fenced
                    pass
    except BaseException:
        stop_training(proc)  # whatever stopped this loop, training does not go on without it
        raise
    code = proc.wait()
    stderr = _tail(stderr_path)
    if orphaned.is_set():
        raise exceptions.MlcritError(
            f"this task process lost its supervisor (pid {supervisor}): training was stopped, and a retry resumes "
            "from the newest checkpoint"
        )
    if error is not None:
        raise getattr(exceptions, error["type"], exceptions.MlcritError)(error["message"])
    if code != 0 or done is None:
        tail = "\n".join(stderr.strip().splitlines()[-15:])
        raise exceptions.MlcritError(
            f"the training process exited with code {code}"
            + (" (killed: out of memory or stopped)" if code < 0 else "")
            + "; a retry resumes from the newest checkpoint"
            + (f"\n{tail}" if tail else "")
        )
    merged = Path(done["merged_dir"]) if done.get("merged_dir") else None
    return FineTuneResult(Path(done["output_dir"]), done["metrics"], done["labels"], merged)
