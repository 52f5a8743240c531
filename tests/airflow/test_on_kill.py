"""Killing a running task stops its work: the training child's process group and Beam's worker
processes end (no orphan), and a SageMaker job is stopped (see test_sagemaker_backend.py)."""

import psutil

from tests.airflow.conftest import run_dag, task_states
from tests.helpers.models import sentiment


def _leftovers():
    """Processes this test process started (dag.test runs tasks in-process) that still run."""
    alive = []
    for p in psutil.Process().children(recursive=True):
        try:
            cmd = " ".join(p.cmdline())
        except psutil.NoSuchProcess:
            continue
        if "training.worker" in cmd or "apache_beam" in cmd or "sdk_worker" in cmd:
            alive.append(cmd)
    return alive


def test_a_timed_out_fine_tune_and_beam_pipeline_leave_no_process(store_root, tmp_path, tiny_bert, moto_server):
    """Only the task's own processes go: a server this process started before (here moto, which
    dag.test's in-process tasks share with the test) keeps running."""
    sentiment(256).to_parquet(tmp_path / "train.parquet", index=False)
    assert _leftovers() == []
    dr = run_dag("test_mlcrit_kill", {"data": str(tmp_path / "train.parquet"), "base": tiny_bert})
    assert task_states(dr) == {"finetune": ("failed", 1), "preprocess": ("failed", 1)}
    psutil.wait_procs(
        [p for p in psutil.Process().children(recursive=True) if p.pid != moto_server.proc.pid], timeout=5
    )
    assert _leftovers() == []
    assert moto_server.proc.poll() is None
