"""A signal that stops a task (Airflow's execution_timeout raises in the task's main thread, and
SIGTERM's handler does the same) while a Beam pipeline starts its workers: the wait is
interrupted at once, and every worker process has ended by the time the exception reaches the
caller. Raised inside FnApiRunner instead, its clean-up joined a worker that never ended, and the
task hung for good (seen in a full run: the on_kill test under load, its timeout firing while the
workers started)."""

import signal
import threading
import time

import psutil
import pytest

from airflow_mlcrit.core.beam import child_pids, pipeline_options, run_pipeline
from tests.helpers.slow_pipeline import _forever


class Timeout(Exception):
    pass


def _raise(*_):
    raise Timeout("execution_timeout")


@pytest.mark.timeout(120, method="thread")  # SIGALRM is the test's own
def test_a_timeout_while_workers_start_interrupts_the_pipeline_and_leaves_no_process():
    import apache_beam as beam

    spare = child_pids()
    p = beam.Pipeline(options=pipeline_options(None, {"direct_num_workers": 1}))
    _ = p | beam.Create([1]) | beam.FlatMap(_forever)

    workers = set()

    def alarm_when_a_worker_appears():  # the worker process is still importing Beam then
        while not workers:
            workers.update(child_pids() - spare)
            time.sleep(0.05)
        signal.setitimer(signal.ITIMER_REAL, 0.01)

    previous = signal.signal(signal.SIGALRM, _raise)
    threading.Thread(target=alarm_when_a_worker_appears, daemon=True).start()
    try:
        with pytest.raises(Timeout):
            run_pipeline(p)
    finally:
        signal.signal(signal.SIGALRM, previous)
    assert workers and child_pids() - spare == set()
    assert not [t for t in threading.enumerate() if t.name == "mlcrit-beam-pipeline" and t.is_alive()]
    assert not [pid for pid in workers if psutil.pid_exists(pid)]
