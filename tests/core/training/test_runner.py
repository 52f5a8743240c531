"""The training child process: SIGKILL after the second checkpoint, rerun, exact resume."""

import re
import signal
import sys
import time
from pathlib import Path

import pytest

from airflow_mlcrit.core.artifacts import open_store
from airflow_mlcrit.core.training.runner import checkpoint_key, run_training
from airflow_mlcrit.exceptions import ConfigError, MlcritError
from tests.core.training.test_finetune import CFG


def test_sigkilled_child_resumes_from_its_second_checkpoint(tiny_bert, train_file, tmp_path):
    from safetensors.torch import load_file

    store = open_store(tmp_path / "store")
    cfg = {"base_model": tiny_bert, **CFG, "max_steps": 40, "checkpoint_every": 10}
    key = checkpoint_key("clf", "dag/run/train/-1/adapter/clf")
    reference = run_training(cfg, train_file, workdir=tmp_path / "ref", store=store, ckpt_key="checkpoint/ref")

    procs = []
    real_put = store.put

    def kill_when_storing_the_second(key_, source, **kwargs):
        # Kill as the parent starts storing checkpoint 20, not after: a durable put can take
        # longer than the tiny model's next 10 steps, and checkpoint 30 would be stored too.
        if kwargs.get("metadata", {}).get("step") == 20:
            procs[0].send_signal(signal.SIGKILL)
        return real_put(key_, source, **kwargs)

    store.put = kill_when_storing_the_second
    with pytest.raises(MlcritError, match=re.escape("the training process exited with code -9 (killed")):
        run_training(cfg, train_file, workdir=tmp_path / "try1", store=store, ckpt_key=key, spawned=procs.append)
    store.put = real_put
    assert [
        store.resolve(key.replace("checkpoint/", "checkpoint/") + f"@v{v}").metadata["step"]
        for v in store.versions(key)
    ] == [10, 20]
    events = []
    result = run_training(cfg, train_file, workdir=tmp_path / "try2", store=store, ckpt_key=key, on_event=events.append)
    assert events[0] == {"event": "resume", "checkpoint": f"{key}@v2", "step": 20}
    assert {"event": "progress", "resumed_from_step": 20, "total": 40} in events
    assert [e["step"] for e in events if e["event"] == "checkpoint"] == [30]  # only what was left to do
    assert result.metrics["loss_curve"] == pytest.approx(reference.metrics["loss_curve"], abs=1e-6)
    a = load_file(str(reference.output_dir / "adapter_model.safetensors"))
    b = load_file(str(result.output_dir / "adapter_model.safetensors"))
    assert max(float((a[k] - b[k]).abs().max()) for k in a) <= 1e-6
    assert store.purge(key) == 3 and store.versions(key) == []


def test_child_errors_come_back_with_their_type(tiny_bert, train_file, tmp_path):
    store = open_store(tmp_path / "store")
    with pytest.raises(ConfigError, match=re.escape("LoRA target_modules ['nope'] match no module of bert")):
        run_training(
            {"base_model": tiny_bert, **CFG, "target_modules": ["nope"]},
            train_file,
            workdir=tmp_path / "w",
            store=store,
            ckpt_key="checkpoint/x",
        )


def test_only_checkpoints_can_be_purged(tmp_path):
    with pytest.raises(ConfigError, match="only checkpoint artifacts can be purged"):
        open_store(tmp_path / "s").purge("model/m")


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status  # a zombie has exited; only its parent has not reaped it


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")
def test_the_training_child_dies_with_its_task_process():
    """A task process SIGKILLed (OOM killer, lost worker) takes its training child with it at
    once, rather than leaving it to hold the GPU while the retry starts. (Without the prctl the
    child sleeps on: this test fails.)"""
    import subprocess

    code = (
        "import os, subprocess, sys, time\n"
        "from airflow_mlcrit.core.training.runner import _die_with_parent\n"
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'], preexec_fn=_die_with_parent(os.getpid()))\n"
        "print(p.pid, flush=True)\n"
        "time.sleep(120)\n"
    )
    task = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    child = int(task.stdout.readline())
    assert _alive(child)
    task.kill()
    task.wait()
    deadline = time.monotonic() + 5
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")
def test_a_child_whose_parent_died_before_the_prctl_ends_itself():
    """The race: a task killed between the fork and the prctl sends no death signal. The child
    checks it still has the parent it was forked from (here: a pid that is not its parent)."""
    import os
    import subprocess

    from airflow_mlcrit.core.training.runner import _die_with_parent

    child = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(120)"], preexec_fn=_die_with_parent(os.getpid() + 10**7)
    )
    assert child.wait(timeout=10) == 137


@pytest.mark.timeout(300)
def test_a_child_that_writes_a_mebibyte_to_stderr_finishes(tiny_bert, train_file, tmp_path, monkeypatch):
    """stderr goes to a file: a pipe that nobody drains while stdout is read blocks the child once
    it holds 64 KiB, and the task hangs. A sitecustomize makes the real child write 1 MiB first."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "import sys\nfor _ in range(1024):\n    sys.stderr.write('w' * 1023 + '\\n')\nsys.stderr.flush()\n"
    )
    monkeypatch.setenv("PYTHONPATH", f"{site}:{Path.cwd()}")
    store = open_store(tmp_path / "store")
    cfg = {"base_model": tiny_bert, **CFG, "max_steps": 2}
    result = run_training(cfg, train_file, workdir=tmp_path / "run", store=store, ckpt_key="checkpoint/noisy")
    assert result.metrics["steps"] == 2
    assert (tmp_path / "run" / "stderr.log").stat().st_size >= 1024 * 1024


def test_stop_training_ends_the_whole_process_group(tiny_bert, train_file, tmp_path):
    """on_kill's stop: the child and everything it started (torchrun ranks) get SIGTERM, then SIGKILL."""
    import os
    import threading

    from airflow_mlcrit.core.training.runner import stop_training

    store = open_store(tmp_path / "store")
    cfg = {"base_model": tiny_bert, **CFG, "max_steps": 100000, "log_every": 1}
    procs, errors = [], []

    def train():
        try:
            run_training(
                cfg,
                train_file,
                workdir=tmp_path / "run",
                store=store,
                ckpt_key="checkpoint/x",
                spawned=procs.append,
                on_event=lambda e: started.set(),
            )
        except MlcritError as exc:
            errors.append(exc)

    started = threading.Event()
    thread = threading.Thread(target=train)
    thread.start()
    assert started.wait(120)
    stop_training(procs[0], grace=5)
    thread.join(60)
    assert not thread.is_alive() and procs[0].returncode is not None
    with pytest.raises(ProcessLookupError):
        os.killpg(procs[0].pid, 0)  # nothing of the group is left
    assert "exited with code" in str(errors[0])
