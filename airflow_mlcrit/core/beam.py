"""Beam runner options shared by every Beam-backed step (no Beam import at module level)."""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Iterator
from typing import Any

from airflow_mlcrit import exceptions
from airflow_mlcrit.exceptions import ConfigError, MissingDependencyError

# The last "<OurError>: message" in a worker's traceback, as Beam relays it in its own error's text
# (FnApiRunner re-raises the worker's exception; portable runners send its text). Beam may append
# " [while running 'Step']" to the line.
_WORKER_ERROR = re.compile(
    r"(?:airflow_mlcrit\.exceptions\.)?\b(DataValidationError|ArtifactIntegrityError|ConfigError): (.+?)"
    r"(?: \[while running '[^']*'\])?$",
    re.MULTILINE,
)


@contextlib.contextmanager
def worker_errors() -> Iterator[None]:
    """Run a pipeline so that an error of ours raised in a worker (bad input, a corrupt file)
    reaches the caller as that error with its message, not as the runner's wrapper of it."""
    try:
        yield
    except exceptions.MlcritError:
        raise
    except Exception as exc:
        found = _WORKER_ERROR.findall(str(exc))
        if not found:
            raise
        name, message = found[-1]
        raise getattr(exceptions, name)(message.strip()) from exc


_RUNNER_THREAD = "mlcrit-beam-pipeline"


def run_pipeline(p: Any, on_started: Any = None) -> Any:
    """Run pipeline ``p`` to the end and return its result, calling ``on_started`` with the
    PipelineResult once the runner has it. The runner works in a thread of its own while this one
    waits: an exception raised here by a signal handler (Airflow's execution_timeout, SIGTERM)
    interrupts the wait, and the pipeline is stopped (``stop_pipeline``) before it propagates, so
    that no worker outlives the try or writes on. Raised inside the runner instead, FnApiRunner's
    own clean-up joined a worker that was still starting, and the task hung for good."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            result = outcome["started"] = p.run()
            if on_started is not None:
                on_started(result)
            result.wait_until_finish()
            outcome["result"] = result
        except BaseException as exc:
            outcome["error"] = exc

    spare = child_pids()
    runner = threading.Thread(target=run, name=_RUNNER_THREAD, daemon=True)
    runner.start()
    try:
        runner.join()
    except BaseException:
        stop_pipeline(outcome.get("started"), spare)
        raise
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


def pipeline_args(runner: str | None, options: dict[str, Any] | None) -> list[str]:
    """Beam command-line style args from a runner name and an options dict (passed verbatim)."""
    opts = dict(options or {})
    runner = runner or "FnApiRunner"
    if runner == "FnApiRunner":
        opts.setdefault("direct_running_mode", "multi_processing")
        if opts["direct_running_mode"] != "in_memory":
            # one worker process: Beam 2.77's FnApiRunner with several lost elements between stages
            # at about 500 MB, silently (docs/benchmarks.md, "Beam data plane"); one did not. A user
            # who sets more still has the row check, which fails such a run instead of committing it.
            opts.setdefault("direct_num_workers", 1)
    args = [f"--runner={runner}"]
    for key, value in opts.items():
        if isinstance(value, bool):
            if value:
                args.append(f"--{key}")
        elif isinstance(value, (list, tuple)):
            args += [f"--{key}={v}" for v in value]
        else:
            args.append(f"--{key}={value}")
    return args


def pipeline_options(runner: str | None, options: dict[str, Any] | None) -> Any:
    """Beam PipelineOptions; an option Beam rejects becomes a ConfigError naming it."""
    try:
        from apache_beam.options.pipeline_options import PipelineOptions
    except ImportError:
        raise MissingDependencyError("apache-beam", "beam") from None
    try:
        return PipelineOptions(pipeline_args(runner, options))
    except SystemExit:  # argparse inside Beam exits on a bad value
        raise ConfigError(f"invalid Beam pipeline options {options!r} for runner {runner or 'FnApiRunner'!r}") from None


def child_pids() -> set[int]:
    """The processes this process has started and that still run (recursively)."""
    import psutil

    return {p.pid for p in psutil.Process().children(recursive=True)}


def stop_pipeline(result: Any, spare: set[int]) -> list[str]:
    """Stop a Beam pipeline this process runs: cancel its job (remote runners), then end the
    worker processes started since ``spare`` was taken (``child_pids()`` before the run), SIGTERM
    then SIGKILL: FnApiRunner's and the portable runner's local workers, nothing else this process
    runs. Returns what was done, for the log."""
    import psutil

    done = []
    if result is not None:
        try:
            result.cancel()
            done.append("job cancelled")
        except Exception as exc:  # FnApiRunner has no cancel: its work is in the processes below
            done.append(f"cancel not supported ({type(exc).__name__})")
    # until the runner's thread (run_pipeline) has given up: a runner still starting may start a
    # worker after the first round
    ended, deadline = 0, time.monotonic() + 60
    while True:
        children = [p for p in psutil.Process().children(recursive=True) if p.pid not in spare]
        for child in children:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.terminate()
        _, alive = psutil.wait_procs(children, timeout=10)
        for child in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()
        ended += len(children)
        runners = [t for t in threading.enumerate() if t.name == _RUNNER_THREAD and t.is_alive()]
        if not runners:
            break
        if time.monotonic() > deadline:
            done.append("the runner's thread still runs after 60 s")
            break
        runners[0].join(0.5)
    done.append(f"{ended} worker process(es) ended")
    return done
