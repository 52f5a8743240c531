"""Fencing (core/artifacts/store.py): every version a task try claims carries its token (dag,
run, task, map index, try). Once a newer try of the same task instance has begun, an older try's
commit is refused at the commit point (staged versions, puts, checkpoints), and the version it
was writing is reclaimed, so a process that outlived its task cannot commit beside its retry. And
training stops when its task process loses its supervisor. On the local store and on S3."""

from __future__ import annotations

import re
import subprocess
import threading

import pytest

from airflow_mlcrit.exceptions import FencedError

TRY = {"dag_id": "train", "run_id": "manual__1", "task_id": "finetune", "map_index": -1}


def test_an_older_try_cannot_commit_once_the_retry_has_begun(store, tmp_path):
    (tmp_path / "w.bin").write_bytes(b"weights of try 1")
    first, second = {**TRY, "try_number": 1}, {**TRY, "try_number": 2}
    # try 1 claims the adapter's version and keeps writing it (the survivor of a killed worker)
    staged = store.stage("adapter/clf", producer=first)
    entry = {"path": "adapter_model.safetensors", "size": 16, "sha256": "0" * 64}
    # try 2 begins: it commits the adapter and a checkpoint of its own
    (tmp_path / "w2.bin").write_bytes(b"weights of try 2")
    adapter = store.put("adapter/clf", tmp_path / "w2.bin", producer=second, idempotency_key="train/finetune/adapter")
    assert adapter.version == 2
    with pytest.raises(
        FencedError, match=re.escape(f"{staged.ref} was reclaimed by try 2 of finetune of train run manual__1")
    ):
        store.commit_staged(staged, [entry], producer=first, idempotency_key="train/finetune/adapter")
    message = (
        "is not committed: try 2 of finetune of train run manual__1 has begun, and this is try 1 (a process that "
        "outlived its task try): fencing refuses its writes"
    )
    with pytest.raises(FencedError, match=re.escape(message)):
        store.put("checkpoint/clf-run", tmp_path / "w.bin", producer=first, metadata={"step": 25})
    # the same output put again by try 1: what try 2 committed comes back, nothing is written
    late = store.put("adapter/clf", tmp_path / "w.bin", producer=first, idempotency_key="train/finetune/adapter")
    assert late == adapter
    assert store.versions("adapter/clf") == [2] and store.versions("checkpoint/clf-run") == []
    # the retry itself writes on; another task instance is not fenced by it
    assert store.put("checkpoint/clf-run", tmp_path / "w2.bin", producer=second).version == 2
    other = {**TRY, "task_id": "evaluate", "try_number": 1}
    assert store.put("evaluation/clf", tmp_path / "w.bin", producer=other).version == 1
    # gc does not count a fenced-off version as a leftover: its number is a tombstone, kept
    assert store.gc(grace_seconds=0) == []


def test_a_retry_returns_what_the_older_try_committed_before_it_began(store, tmp_path):
    (tmp_path / "w.bin").write_bytes(b"weights")
    done = store.put("adapter/clf", tmp_path / "w.bin", producer={**TRY, "try_number": 1}, idempotency_key="k")
    again = store.put("adapter/clf", tmp_path / "w.bin", producer={**TRY, "try_number": 2}, idempotency_key="k")
    assert again == done and store.versions("adapter/clf") == [1]


def test_training_stops_when_its_task_process_loses_its_supervisor():
    """The watcher of run_training: this process's parent is not the supervisor it was given (as
    after the supervisor died and the task process was reparented): the child's process group is
    ended and the run is marked orphaned."""
    import os

    from airflow_mlcrit.core.training.runner import watch_supervisor

    child = subprocess.Popen(["sleep", "300"], start_new_session=True)
    orphaned = threading.Event()
    watch_supervisor(os.getppid() + 10**6, child, orphaned)
    assert orphaned.is_set() and child.wait(timeout=30) != 0
