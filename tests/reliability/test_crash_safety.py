"""Crash safety: dag.test() of statistics -> Beam preprocess -> fine-tune -> evaluation is
SIGKILLed inside each stage in turn (at a seeded random point; the fine-tune twice: before its
first checkpoint and just after one), and the same DAG run is run again after each kill, as Airflow re-runs a task instance whose worker died. In the end every
output has exactly one committed version for its idempotency key (a Beam step's killed attempt
keeps its claimed number, never reused: its workers may still be writing there), nothing partial
is ever visible, the fine-tune resumes from its stored checkpoint, no training process outlives its
killed task, and the results equal those of an uninterrupted run.

The kill hits the task's own process (as the OOM killer or a lost worker would), not its
children: the training child must go with it."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from airflow_mlcrit.core.artifacts import open_store
from tests.helpers.airflow_home import airflow_home
from tests.helpers.models import sentiment
from tests.helpers.store_scan import temporary_paths

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]
DAGS = Path(__file__).parent / "dags"
STAGES = ("statistics", "preprocess", "finetune", "evaluate")
OUTPUTS = {
    "statistics": "statistics/crash",
    "preprocess": "transformed_dataset/crash",
    "finetune": "adapter/crash",
    "evaluate": "evaluation/crash",
}
# The same DAG run each time: dag.test() names the run after run_after, so a fixed run_after
# gives the same run_id, and each task the same task instance identity, as an Airflow re-run.
RUN = f"""
import json, sys, pendulum
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder={str(DAGS)!r})
assert not bag.import_errors, bag.import_errors
when = pendulum.datetime(2026, 11, 2, tz="UTC")
dr = bag.get_dag("reliability_crash").test(run_after=when, logical_date=when, run_conf=json.loads(sys.argv[1]))
print("DAG RUN", dr.run_id, dr.state)
sys.exit(0 if dr.state == "success" else 1)
"""


class DagsTest:
    """One dag.test() of reliability_crash, with its stage start/end times from the log."""

    def __init__(self, env: dict, base: str):
        self.env = env
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-c", RUN, json.dumps({"base": base})],
            # unbuffered: a stage's start line reaches the reader when it is printed, not when a
            # block fills, so a kill timed from it lands inside the stage
            env={**env, "PYTHONUNBUFFERED": "1"},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.lines: list[str] = []
        self.begun: dict[str, float] = {}
        self.ended: dict[str, float] = {}
        self.begun_line: dict[str, int] = {}
        self.changed = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            with self.changed:
                self.lines.append(line)
                for stage in STAGES:
                    if f"[DAG TEST] starting task_id={stage} " in line:
                        self.begun[stage] = time.monotonic()
                        self.begun_line[stage] = len(self.lines)
                    elif f"[DAG TEST] end task task_id={stage} " in line:
                        self.ended[stage] = time.monotonic()
                self.changed.notify_all()
        with self.changed:
            self.changed.notify_all()

    def wait(self, timeout: float = 600) -> int:
        code = self.proc.wait(timeout)
        time.sleep(0.2)  # the reader drains the pipe
        return code

    def said_since_begun(self, stage: str, text: str) -> bool:
        """Whether the run printed ``text`` since ``stage`` began."""
        with self.changed:
            return stage in self.begun_line and any(text in line for line in self.lines[self.begun_line[stage] :])

    def kill_during(self, stage: str, delay: float, once=None) -> str:
        """SIGKILL the task process ``delay`` seconds after ``stage`` starts, or after ``once(self)``
        first holds when it has; says where it hit. A delay drawn from the reference run's timing
        can outlast the stage on this run: the kill then comes as soon as the stage ends, never
        later, so the next stage has not committed anything (a later kill let the fine-tune commit,
        and the next run's kill inside the fine-tune found nothing to kill)."""
        with self.changed:
            ok = self.changed.wait_for(lambda: stage in self.begun or self.proc.poll() is not None, timeout=600)
        assert ok and stage in self.begun, self.output[-4000:]
        start = self.begun[stage]
        while once is not None and not once(self):
            assert self.proc.poll() is None, f"the run ended before the kill:\n{self.output[-4000:]}"
            assert time.monotonic() < start + 300, "the condition to kill on never held"
            time.sleep(0.02)
        deadline = (start if once is None else time.monotonic()) + delay
        while time.monotonic() < deadline and self.proc.poll() is None and stage not in self.ended:
            time.sleep(0.01)
        assert self.proc.poll() is None, f"the run ended before the kill:\n{self.output[-4000:]}"
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        hit = "after" if stage in self.ended else "inside"
        time.sleep(1)  # a child with PR_SET_PDEATHSIG dies at once; give it a moment to be reaped
        orphans = _training_processes(self.env["TMPDIR"])
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # the rest of the group, if any
        assert not orphans, f"training outlived its killed task: {orphans}"
        return hit

    @property
    def output(self) -> str:
        return "".join(self.lines)


def _training_processes(tmpdir: str) -> list[str]:
    """Training children of this run (their work dir is under the run's own TMPDIR; tests on the
    other test process train too)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if "airflow_mlcrit.core.training.worker" in cmd and f"{tmpdir}/mlcrit-finetune-" in cmd:
            found.append(f"{proc.name}: {cmd}")
    return found


def _freeze_training(tmpdir: str) -> bool:
    """SIGSTOP this run's training children, if any are running: a frozen child writes no
    checkpoint, so a kill that follows lands before the first one however loaded the machine is
    (a SIGKILL, from the test or PR_SET_PDEATHSIG, still ends a stopped process)."""
    found = False
    for entry in _training_processes(tmpdir):
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(entry.split(":", 1)[0]), signal.SIGSTOP)
            found = True
    return found


def _home(root: Path, tiny_bert: str) -> dict:
    (root / "tmp").mkdir(exist_ok=True)
    env = airflow_home(root, dags=DAGS, TMPDIR=str(root / "tmp"))
    store = open_store(root / "artifacts")
    sentiment(240, seed=1).to_parquet(root / "train.parquet", index=False)
    sentiment(80, seed=9).to_parquet(root / "golden.parquet", index=False)
    store.put("dataset/crash", root / "train.parquet")
    store.put("dataset/crash-golden", root / "golden.parquet")
    return env


def _results(store) -> dict:
    ev = json.loads(store.read_bytes("evaluation/crash@v1", "evaluation.json"))
    return {
        "statistics": {  # all of it but the wall time
            k: v
            for k, v in json.loads(store.read_bytes("statistics/crash@v1", "statistics.json")).items()
            if k != "seconds"
        },
        "rows": store.resolve("transformed_dataset/crash@latest").metadata["row_counts"],
        "accuracy": ev["slices"][0]["candidate"]["accuracy"]["value"],
        "steps": store.resolve("adapter/crash@v1").metadata["steps"],
    }


def _nothing_partial(store) -> None:
    """Every listed version resolves, verifies and is the only one of its output."""
    for key in OUTPUTS.values():
        versions = store.versions(key)
        assert len(versions) <= 1 and (versions in ([], [1]) or key == OUTPUTS["preprocess"]), f"{key}: {versions}"
        for v in versions:
            store.verify(f"{key}@v{v}")


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_bert):
    root = tmp_path_factory.mktemp("uninterrupted")
    run = DagsTest(_home(root, tiny_bert), tiny_bert)
    assert run.wait() == 0, run.output[-4000:]
    durations = {s: run.ended[s] - run.begun[s] for s in STAGES}
    # statistics, Beam, fine-tune and evaluation: no scratch directory reaches a stored file
    assert temporary_paths(root / "artifacts") == {}
    return _results(open_store(root / "artifacts")), durations


def test_sigkill_at_random_points_then_rerun(tmp_path, tiny_bert, reference):
    expected, durations = reference
    env = _home(tmp_path, tiny_bert)
    store = open_store(tmp_path / "artifacts")
    rng = random.Random(2)
    kills = [
        ("statistics", rng.uniform(0, durations["statistics"]), None),
        ("preprocess", rng.uniform(0, durations["preprocess"]), None),
        # as soon as the training child runs, frozen there: before its first checkpoint
        ("finetune", 0.0, lambda run: _freeze_training(env["TMPDIR"])),
        # just after the first checkpoint committed: the next run must resume from it
        ("finetune", rng.uniform(0, 0.2), lambda run: bool(store.list_artifacts("checkpoint"))),
        # once the evaluation has loaded its model: inside the stage, before its commit (the
        # evaluation of 80 rows can be over before a delay drawn from the reference run)
        ("evaluate", 0.0, lambda run: run.said_since_begun("evaluate", "Loading weights")),
    ]
    hits, runs = [], []
    for stage, delay, once in kills:
        runs.append(DagsTest(env, tiny_bert))
        hits.append((stage, runs[-1].kill_during(stage, delay, once)))
        _nothing_partial(store)
        if len(runs) == 3:
            assert store.list_artifacts("checkpoint") == []
        if len(runs) == 4:
            [ckpt] = store.list_artifacts("checkpoint")
            resumed_from = store.resolve(f"{ckpt}@latest").metadata["step"]
    assert hits[2:] == [("finetune", "inside"), ("finetune", "inside"), ("evaluate", "inside")], hits
    final = DagsTest(env, tiny_bert)
    assert final.wait() == 0, final.output[-4000:]
    _nothing_partial(store)
    for key in OUTPUTS.values():
        assert len(store.versions(key)) == 1 and (store.versions(key) == [1] or key == OUTPUTS["preprocess"]), key
    assert store.list_artifacts("checkpoint") == []  # purged once the adapter committed
    # the run after the second fine-tune kill went on from the checkpoint, not from step 0
    assert f"resuming from {ckpt}@v" in runs[4].output and f"(step {resumed_from})" in runs[4].output
    assert _results(store) == expected
    print(f"kills landed {hits}; the fine-tune resumed from step {resumed_from}")
