"""Real Airflow components on 127.0.0.1 for the e2e tests: api-server, scheduler, dag-processor
and triggerer in a temporary AIRFLOW_HOME, driven through the REST API, and Celery or Edge
workers that run as separate "machines": each in its own mount, UTS and PID namespaces, with a
private /tmp (a tmpfs) holding its own copy of the DAGs and its AIRFLOW_HOME. Such a worker shares
nothing with the others but the network: the metadata DB, the broker and the S3 store.
Every process started is stopped."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.helpers.airflow_home import airflow_home
from tests.helpers.servers import free_port

REPO = Path(__file__).resolve().parents[2]
E2E_DAGS = REPO / "tests" / "e2e" / "dags"
# dag.test()'s DAGs that the e2e sites also run (test_edge.py: four-eyes approvals)
SHARED_DAGS = [REPO / "tests" / "airflow" / "dags" / "test_mlcrit_approval.py"]

# Preloading in the long-lived process whose task processes are forked from it (docs/deployment.md);
# logging is not configured yet this early, so what was loaded goes to a file the test reads.
LOCAL_SETTINGS = """import os, sys

if sys.argv[1:2] == ["scheduler"] or sys.argv[1:3] in (["celery", "worker"], ["edge", "worker"]):
    from airflow_mlcrit.preload import preload

    with open(os.path.join(os.environ["AIRFLOW_HOME"], "preloaded.txt"), "w") as f:
        f.write(",".join(preload()))
"""


def copy_dags(dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for f in [*(REPO / "dags").glob("*.py"), *E2E_DAGS.glob("*.py"), *SHARED_DAGS]:
        shutil.copy(f, dest / f.name)
    return dest


class Airflow:
    def __init__(
        self,
        root: Path,
        *,
        port: int | None = None,
        database: str | None = None,
        local_settings: str = LOCAL_SETTINGS,
        transport: dict | None = None,
        users: dict[str, str] | None = None,
        **extra_env: str,
    ):
        """``users``: {name: role} of the simple auth manager, each with password ``pw-<name>``; the
        first is the one this object calls the API as. None: everyone is an anonymous admin."""
        self.root, self.port = root, port or free_port()
        self.users = users
        self.url = f"http://127.0.0.1:{self.port}"
        self.local_settings = local_settings
        defaults = dict(
            AIRFLOW__CORE__EXECUTOR="LocalExecutor",
            AIRFLOW__CORE__PARALLELISM="2",
            AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS="True",
            AIRFLOW__API__PORT=str(self.port),
            AIRFLOW__API__HOST="127.0.0.1",
            AIRFLOW__API__BASE_URL=self.url,
            AIRFLOW__CORE__EXECUTION_API_SERVER_URL=f"{self.url}/execution/",
            AIRFLOW__API_AUTH__JWT_SECRET="e2e-secret-not-for-production",
            AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL="5",
            AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC="1",
            AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC="1",
            AIRFLOW__OPENLINEAGE__NAMESPACE="mlcrit-e2e",
            # two tasks at once on 2 cores: one torch thread each. With torch's default (all cores
            # per process) two concurrent fine-tunes took 130 s each instead of 17 s.
            OMP_NUM_THREADS="1",
            # The production tuning docs/deployment.md recommends: task processes forked from a
            # process that preloaded torch & co. (LOCAL_SETTINGS), a supervisor that notices a
            # finished task within 1 s instead of 5, and no re-parsing of unchanged DAG files every
            # 30 s. One flagship run: 96 s before, 60 s after.
            AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL="1",
            AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL="600",
        )
        self.env = airflow_home(
            root, dags=copy_dags(root / "dags"), database=database, transport=transport, **{**defaults, **extra_env}
        )
        self.home = Path(self.env["AIRFLOW_HOME"])
        if users:
            passwords = self.home / "passwords.json"
            passwords.write_text(json.dumps({u: f"pw-{u}" for u in users}))
            self.env.update(
                AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS="False",
                AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS=",".join(f"{u}:{r}" for u, r in users.items()),
                AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE=str(passwords),
            )
        config = self.home / "config"
        config.mkdir(parents=True, exist_ok=True)
        (config / "airflow_local_settings.py").write_text(local_settings)
        self.procs: list[subprocess.Popen] = []
        self.workers: list[Worker] = []

    def start(self) -> None:
        for component in (
            ["api-server", "--port", str(self.port), "--host", "127.0.0.1"],
            ["scheduler"],
            ["dag-processor"],
            ["triggerer"],
        ):
            log = open(self.root / f"{component[0]}.log", "w")
            self.procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "airflow", *component],
                    env=self.env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/api/v2/monitor/health", timeout=2):
                    break
            except OSError:
                time.sleep(1)
        else:
            raise AssertionError(f"api-server did not answer:\n{(self.root / 'api-server.log').read_text()[-3000:]}")
        self.token = self.token_for(next(iter(self.users))) if self.users else self._token(None)

    def _token(self, body: dict | None) -> str:
        data = json.dumps(body).encode() if body else None
        request = urllib.request.Request(
            f"{self.url}/auth/token", data=data, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=10) as r:
            return json.loads(r.read())["access_token"]

    def token_for(self, user: str) -> str:
        """An API token of ``user`` (one of ``users``), got as a user gets one: POST /auth/token."""
        return self._token({"username": user, "password": f"pw-{user}"})

    def stop(self) -> None:
        for w in self.workers:
            w.kill()
        for p in self.procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10  # a clean exit takes a few seconds; then they are killed
        for p in self.procs:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()

    def api(self, method: str, path: str, body: dict | None = None, *, token: str | None = None) -> dict:
        request = urllib.request.Request(
            f"{self.url}/api/v2{path}",
            data=json.dumps(body).encode() if body is not None else None,
            method=method,
            headers={"Authorization": f"Bearer {token or self.token}", "Content-Type": "application/json"},
        )
        # a GET that times out is asked again: with three test processes on two cores the
        # api-server once took longer than 30 s to answer a poll (a write is never repeated)
        tries = 3 if method == "GET" else 1
        for attempt in range(1, tries + 1):
            try:
                with urllib.request.urlopen(request, timeout=30) as r:
                    return json.loads(r.read())
            except urllib.error.HTTPError as exc:
                exc.msg = f"{exc.msg}: {method} {path}: {exc.read()[:1000]!r}"
                raise
            except TimeoutError:
                if attempt == tries:
                    raise

    def wait_for_dag(self, dag_id: str, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.api("GET", f"/dags/{dag_id}")
                return
            except urllib.error.HTTPError:
                time.sleep(1)
        raise AssertionError(f"{dag_id} was not parsed:\n{(self.root / 'dag-processor.log').read_text()[-3000:]}")

    def trigger(self, dag_id: str, conf: dict, *, user: str | None = None) -> str:
        """Trigger a run (as ``user``, one of ``users``; default: the first)."""
        self.wait_for_dag(dag_id)
        self.api("PATCH", f"/dags/{dag_id}", {"is_paused": False})
        token = self.token_for(user) if user else None
        run = self.api("POST", f"/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": conf}, token=token)
        return run["dag_run_id"]

    def wait_task(self, dag_id: str, run_id: str, task_id: str, state: str, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while (now := self.task_states(dag_id, run_id)).get(task_id) != state:
            if time.monotonic() > deadline:
                raise AssertionError(f"{dag_id} {run_id}: {task_id} never reached {state}: {now}\n{self.logs()}")
            time.sleep(1)

    def wait_parked(self, dag_id: str, run_id: str, task_id: str, timeout: float = 180) -> None:
        """The task waits in awaiting_input, and the scheduler has taken the executor's event for
        the process that parked it. Airflow 3.3's scheduler takes that stale event, when it comes
        after an answer has already re-queued the task, as the resumed try ending without a word
        and fails it ("finished with state success, but the task instance's state attribute is
        queued"). A person answers after that; a test answering within the same second must wait
        for it too, or it tests Airflow's race instead of this project."""
        self.wait_task(dag_id, run_id, task_id, "awaiting_input", timeout)
        seen = f"TaskInstanceKey(dag_id='{dag_id}', task_id='{task_id}', run_id='{run_id}'"
        deadline = time.monotonic() + timeout
        while not any(
            "Received executor event" in line and seen in line
            for line in (self.root / "scheduler.log").read_text(errors="replace").splitlines()
        ):
            if time.monotonic() > deadline:
                raise AssertionError(f"{dag_id} {run_id}: the scheduler never took {task_id}'s pause\n{self.logs()}")
            time.sleep(0.5)

    def clear(self, dag_id: str, run_id: str, task_ids: list[str]) -> None:
        """Clear task instances (what a user's "clear" does): they run again, with a new try."""
        body = {"dry_run": False, "dag_run_id": run_id, "task_ids": task_ids, "only_failed": False}
        self.api("POST", f"/dags/{dag_id}/clearTaskInstances", body)

    def task_instances(self, dag_id: str, run_id: str) -> dict[str, dict]:
        tis = self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances")["task_instances"]
        return {t["task_id"]: t for t in tis}

    def tries(self, dag_id: str, run_id: str, task_id: str) -> list[dict]:
        """Every try of a task instance, the current one included, oldest first."""
        path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/tries"
        return sorted(self.api("GET", path)["task_instances"], key=lambda t: t["try_number"])

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str]:
        return {t: ti["state"] for t, ti in self.task_instances(dag_id, run_id).items()}

    def task_log(self, dag_id: str, run_id: str, task_id: str) -> str:
        """The task's log files in the home of whichever process wrote them: this one's (local
        executors), and each live worker's private one."""
        homes = [self.home, *(w.home for w in self.workers if w.alive)]
        rel = Path("logs") / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={task_id}"
        return "\n".join(p.read_text() for home in homes for p in sorted((home / rel).glob("attempt=*.log")))

    def wait_run(self, dag_id: str, run_id: str, timeout: float = 600, on_state=None) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}")["state"]
            if on_state:
                on_state(self.task_states(dag_id, run_id))
            if state in ("success", "failed"):
                return state
            time.sleep(1)
        raise AssertionError(f"{dag_id} {run_id} still running: {self.task_states(dag_id, run_id)}\n{self.logs()}")

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-2000:]}" for p in sorted(self.root.glob("*.log")))


# A worker's "machine": its hostname, then a tmpfs over /tmp holding its own copy of what it was
# staged with (reached through a bind mount made before /tmp is covered). Only then the worker.
_MACHINE = r"""set -eu
hostname "$1"; shift
mount --bind "$MLCRIT_WORKER_STAGE" /mnt
mount -t tmpfs -o mode=1777 tmpfs /tmp
mkdir /tmp/worker
cp -a /mnt/. /tmp/worker/
umount /mnt
cd /tmp/worker
# The machine's init (PID 1) starts the worker in a session of its own, as on a real host, reaps
# whatever is left to it and ends when nothing is: a kill of the worker's process group leaves
# the task processes Airflow 3.3 put in groups of their own (Worker.kill loses the whole machine).
# (Its /proc is the machine's own: an orphan is reparented to it only once its parent has died,
# so "no children" alone is not "nothing left".)
exec "$1" -c 'import os, subprocess, sys, time
subprocess.Popen(sys.argv[1:], start_new_session=True)
while True:
    try:
        os.wait()
    except ChildProcessError:
        if not [p for p in os.listdir("/proc") if p.isdigit() and p != "1"]:
            break
        time.sleep(0.2)
' "$@"
"""


class Worker:
    """An Airflow worker process (``airflow celery worker`` or ``airflow edge worker``) on a
    "machine" of its own: ``unshare`` gives it mount, UTS and PID namespaces, so its hostname is
    ``name``, its /tmp is a private tmpfs (its AIRFLOW_HOME, logs and task work dirs live there),
    and killing it ends every process it started, as losing the machine would."""

    def __init__(self, airflow: Airflow, name: str, command: list[str], **extra_env: str):
        self.airflow, self.name = airflow, name
        self.namespace: str | None = None  # known once the machine runs; cleanup may come first
        temp = Path(tempfile.gettempdir()).resolve()
        for what, path in (("the interpreter", Path(sys.executable)), ("the checkout", Path(__file__))):
            if path.resolve().is_relative_to(temp) or path.absolute().is_relative_to("/tmp"):
                raise RuntimeError(
                    f"{what} is under {temp} ({path}), which every worker machine replaces with a private "
                    "tmpfs, so the worker could not start it: run the e2e tests from a checkout outside the "
                    "temporary directory"
                )
        stage = airflow.root / f"{name}-stage-{time.monotonic_ns()}"
        copy_dags(stage / "dags")
        (stage / "home" / "config").mkdir(parents=True)
        (stage / "home" / "config" / "airflow_local_settings.py").write_text(airflow.local_settings)
        env = {
            **airflow.env,
            "AIRFLOW_HOME": "/tmp/worker/home",
            "AIRFLOW__CORE__DAGS_FOLDER": "/tmp/worker/dags",
            "TMPDIR": "/tmp",
            "MLCRIT_WORKER_STAGE": str(stage),
            # what Airflow records as the task instance's hostname: this machine's
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": "socket.gethostname",
            **extra_env,
        }
        unshare = ["unshare", "--mount", "--uts", "--pid", "--fork", "--kill-child", "--mount-proc"]
        self.log = airflow.root / f"worker-{name}-{time.monotonic_ns()}.log"
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen(
                [*unshare, "sh", "-c", _MACHINE, "machine", name, sys.executable, "-m", "airflow", *command],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        airflow.workers.append(self)
        deadline = time.monotonic() + 60
        while not (self.home / "config").is_dir():  # its /tmp is mounted and staged
            assert self.proc.poll() is None and time.monotonic() < deadline, self.log.read_text()[-3000:]
            time.sleep(0.2)
        self.namespace = os.readlink(f"/proc/{self.proc.pid}/ns/pid_for_children")

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    @property
    def home(self) -> Path:
        """Its AIRFLOW_HOME, read from outside through its mount namespace while it runs."""
        return Path(f"/proc/{self.proc.pid}/root/tmp/worker/home")

    def processes(self) -> dict[int, tuple[int, str]]:
        """{pid: (parent pid, command line)} of every process of its machine (its PID namespace)."""
        found = {}
        for p in Path("/proc").iterdir():
            try:
                if p.name.isdigit() and os.readlink(p / "ns" / "pid") == self.namespace:
                    ppid = int((p / "stat").read_text().rsplit(")", 1)[1].split()[1])
                    found[int(p.name)] = (ppid, (p / "cmdline").read_bytes().replace(bytes(1), b" ").decode())
            except (OSError, ValueError):
                continue
        return found

    def kill_worker_group(self) -> None:
        """SIGKILL the Celery worker's own process group (``kill -9 -<pgid>``), not its machine:
        what Airflow 3.3 started in process groups of their own survives."""
        procs = self.processes()
        [init] = [pid for pid, (parent, _) in procs.items() if parent not in procs]
        # the main process: the one the machine's init started (pool children, their supervisors
        # and the task processes forked from those all descend from it and share its command line)
        [leader] = [pid for pid, (parent, cmd) in procs.items() if parent == init and "celery worker" in cmd]
        os.killpg(leader, signal.SIGKILL)

    def kill(self) -> list[str]:
        """SIGKILL its whole process group, as a lost machine goes; returns what survived of its
        PID namespace (nothing may: the namespace's init goes, and the kernel ends the rest)."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        if self.namespace is None:  # it never got as far as its PID namespace: nothing else of it runs
            return []
        deadline, left = time.monotonic() + 10, ["?"]
        while left and time.monotonic() < deadline:
            left = []
            for p in Path("/proc").iterdir():
                try:
                    if p.name.isdigit() and os.readlink(p / "ns" / "pid") == self.namespace:
                        command = (p / "cmdline").read_bytes().replace(bytes(1), b" ")[:200]
                        left.append(f"{p.name}: {command!r}")
                except OSError:
                    continue
            time.sleep(0.2 * bool(left))
        return left


def celery_settings(
    *, database: str, redis: str, api_url: str, jwt_secret: str, s3_root: str, s3_endpoint: str
) -> dict:
    """CeleryExecutor on PostgreSQL with a Redis broker and the artifact store on S3: the settings
    docs/deployment.md documents (tests/test_compose.py checks that they are the same), here for
    the given endpoints. ``database`` is ``user[:password]@host:port/name``, ``redis`` ``host:port/db``."""
    return {
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"postgresql+psycopg2://{database}",
        "AIRFLOW__CELERY__BROKER_URL": f"redis://{redis}",
        "AIRFLOW__CELERY__RESULT_BACKEND": f"db+postgresql+psycopg2://{database}",
        # longer than the longest task: Redis hands a task that is not acknowledged within this
        # time to another worker while the first may still run it (the default is 24 h)
        "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT": "86400",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{api_url}/execution/",
        "AIRFLOW__API_AUTH__JWT_SECRET": jwt_secret,
        "AIRFLOW__MLCRIT__ARTIFACT_ROOT": s3_root,
        "AIRFLOW__MLCRIT__S3_ENDPOINT_URL": s3_endpoint,
    }


def edge_settings(*, api_url: str) -> dict:
    """EdgeExecutor, the default, with LocalExecutor beside it for the central site's own tasks:
    edge workers pull their work from the api-server at ``api_url`` over HTTP (docs/deployment.md,
    "EdgeExecutor")."""
    return {
        "AIRFLOW__CORE__EXECUTOR": "airflow.providers.edge3.executors.EdgeExecutor,LocalExecutor",
        "AIRFLOW__EDGE__API_ENABLED": "True",
        "AIRFLOW__EDGE__API_URL": f"{api_url}/edge_worker/v1/rpcapi",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{api_url}/execution/",
    }


def short_run_conf(store, tmp_path: Path, gate: dict) -> dict:
    """DAG params for a short run of the flagship DAG, as a user would set them: the first 300 rows
    of the demo's golden set (stored as ``dataset/support-golden-300``), 30 training steps, 100
    bootstrap replicates and ``gate``'s thresholds. For tests about where and in what order tasks
    run, not about the model or its intervals."""
    import pandas as pd

    store.get("dataset/support-golden@v1", tmp_path / "golden")
    golden = pd.read_parquet(tmp_path / "golden" / "golden.parquet").head(300)
    golden.to_parquet(tmp_path / "golden-300.parquet", index=False)
    small = store.put("dataset/support-golden-300", tmp_path / "golden-300.parquet")
    return {"replicates": 100, "steps": 30, "golden": str(small.ref), "gate": gate}
