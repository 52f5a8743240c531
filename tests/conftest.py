"""Shared fixtures: an isolated AIRFLOW_HOME (set before anything imports airflow), stores on
a local directory and on S3 through a real moto server on 127.0.0.1."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
if os.environ.get("MLCRIT_TEST_QUEUE"):
    # two test processes share the cores: one compute thread each (and in every process they start),
    # or torch's per-core thread pools oversubscribe them and everything slows several times over
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, "1")
_HOME = Path(tempfile.mkdtemp(prefix="mlcrit-airflow-home-"))
os.environ.update(
    {
        "AIRFLOW_HOME": str(_HOME),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "tests" / "airflow" / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{_HOME}/airflow.db",
        "AIRFLOW__OPENLINEAGE__TRANSPORT": (
            '{"type": "file", "log_file_path": "%s", "append": true}' % (_HOME / "lineage.jsonl")
        ),
        "AIRFLOW__OPENLINEAGE__NAMESPACE": "mlcrit-tests",
        # a task's events are emitted by a forked process that is killed after this many seconds
        # (default 10): on 2 busy cores that dropped an event now and then
        "AIRFLOW__OPENLINEAGE__EXECUTION_TIMEOUT": "60",
        "MLCRIT_ARTIFACT_ROOT": "",
        "AIRFLOW__MLCRIT__ARTIFACT_ROOT": "",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
)


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """A migrated SQLite metadata DB in the session's AIRFLOW_HOME."""
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True, env=os.environ)
    return _HOME


@pytest.fixture(scope="session")
def lineage_file(airflow_db) -> Path:
    return _HOME / "lineage.jsonl"


@pytest.fixture(scope="session")
def moto_server():
    from tests.helpers.servers import MotoServer

    server = MotoServer()
    yield server
    server.stop()


def make_s3_root(moto_server) -> str:
    bucket = f"b-{uuid.uuid4().hex[:12]}"
    moto_server.client().create_bucket(Bucket=bucket)
    return f"s3://{bucket}/ml/artifacts"


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> str:
    """Path of a tiny BERT (2 layers, hidden 32) with its own WordPiece tokenizer, built here."""
    from tests.helpers.models import build_tiny_bert

    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory):
    """SeaweedFS's S3 gateway on 127.0.0.1: a real S3-compatible server besides moto."""
    from tests.helpers.servers import SeaweedFS

    server = SeaweedFS(tmp_path_factory.mktemp("seaweedfs"))
    yield server
    server.stop()


def store_spec_for(request, tmp_path, backend: str) -> tuple[str, dict]:
    """(root, boto3 options) of an empty store: a local directory, or a fresh bucket on moto
    (``s3``) or on SeaweedFS (``seaweedfs``)."""
    if backend == "local":
        return str(tmp_path / "store"), {}
    server = request.getfixturevalue("moto_server" if backend == "s3" else "seaweedfs")
    return make_s3_root(server), {"endpoint_url": server.endpoint_url, "region_name": "us-east-1"}


@pytest.fixture(autouse=True)
def _no_log_handlers_on_closed_streams():
    """A library that configured logging during an earlier test (Airflow does) can keep a handler
    on that test's captured stderr, closed since; each later log record then prints a "--- Logging
    error ---" traceback into whatever stderr the next test captures. Drop such handlers."""
    import logging

    loggers = [logging.getLogger(), *(v for v in logging.Logger.manager.loggerDict.values() if hasattr(v, "handlers"))]
    for logger in loggers:
        for handler in list(logger.handlers):
            if getattr(getattr(handler, "stream", None), "closed", False):
                logger.removeHandler(handler)


@pytest.fixture(params=["local", "s3"])
def store_spec(request, tmp_path):
    return store_spec_for(request, tmp_path, request.param)


@pytest.fixture
def store(store_spec):
    from airflow_mlcrit.core.artifacts import open_store

    root, options = store_spec
    return open_store(root, **options)


# The longest modules first (longest-processing-time order): dev/run-tests starts two pytest
# processes that take whole modules from a shared queue, the next one whenever one finishes; a
# long module started near the end would leave the other process idle. Measured durations.
_LONGEST_FIRST = (
    "tests/e2e/test_celery.py",
    "tests/e2e/test_edge.py",
    "tests/e2e/test_example_dags.py",
    "tests/reliability/test_crash_safety.py",
    "tests/reliability/test_bad_input.py",
    "tests/reliability/test_lineage_outage.py",
    "tests/airflow/test_evaluation_operators.py",
    "tests/airflow/test_on_kill.py",
    "tests/core/preprocessing/test_dataplane.py",
    "tests/core/training/test_runner.py",
    "tests/airflow/test_finetune_operator.py",
    "tests/airflow/test_prompt_operators.py",
    "tests/reliability/test_storage_faults.py",
)


def pytest_collection_modifyitems(config, items):
    def rank(item):
        path = item.nodeid.split("::")[0]
        return _LONGEST_FIRST.index(path) if path in _LONGEST_FIRST else len(_LONGEST_FIRST)

    items.sort(key=rank)  # stable: the order within a module and among the rest is kept


def _claim(queue: Path, module: str) -> bool:
    """Take a module for this process; False when the other process took it first."""
    try:
        os.close(os.open(queue / module.replace("/", "__"), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


@pytest.hookimpl(tryfirst=True)
def pytest_runtestloop(session):
    """With MLCRIT_TEST_QUEUE (set by dev/run-tests), each of the pytest processes that share the
    queue runs the modules it claims, whole, in collection order. Plain processes instead of
    pytest-xdist's workers: no channel between them to break (a broken one hung CI until its
    timeout), and each writes its own log."""
    queue = os.environ.get("MLCRIT_TEST_QUEUE")
    if not queue or session.config.option.collectonly:
        return None
    if session.testsfailed and not session.config.option.continue_on_collection_errors:
        raise session.Interrupted(f"{session.testsfailed} error(s) during collection")
    groups: dict[str, list] = {}
    for item in session.items:
        groups.setdefault(item.nodeid.split("::")[0], []).append(item)
    pending = iter(groups.items())

    def next_group() -> list:
        for module, items in pending:
            if _claim(Path(queue), module):
                return items
        return []

    group = next_group()
    while group:
        started = _usage()
        for i, item in enumerate(group):
            # the next module is claimed before the last test of this one ends, so that pytest
            # keeps the session's fixtures (servers, the Airflow DB) for it
            following = group[i + 1 : i + 2] or next_group()
            item.config.hook.pytest_runtest_protocol(item=item, nextitem=following[0] if following else None)
            if session.shouldfail:
                raise session.Failed(session.shouldfail)
            if session.shouldstop:
                raise session.Interrupted(session.shouldstop)
        ended = _usage()
        _MODULE_COST[group[0].nodeid.split("::")[0]] = (ended[0] - started[0], ended[1] - started[1])
        group = following
    return True


_MODULE_COST: dict[str, tuple[float, float]] = {}


def _usage() -> tuple[float, float]:
    """(wall, CPU) seconds so far: this process's CPU and that of the children it has reaped
    (Airflow's components, servers and task processes once they end)."""
    import resource
    import time

    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.monotonic(), own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def pytest_terminal_summary(terminalreporter):
    """The modules this process ran, costliest first: where the suite's 2 cores go."""
    if _MODULE_COST:
        terminalreporter.write_sep("=", "modules by CPU seconds (with the processes they started), and wall seconds")
        for module, (wall, cpu) in sorted(_MODULE_COST.items(), key=lambda kv: -kv[1][1])[:15]:
            terminalreporter.write_line(f"{cpu:8.1f} CPU s {wall:8.1f} s  {module}")


def pytest_unconfigure(config) -> None:
    """The session's AIRFLOW_HOME goes with the session (it was left behind in the temp directory)."""
    import shutil

    shutil.rmtree(_HOME, ignore_errors=True)
