"""The machine's own services (PostgreSQL, Redis) for the production-shaped tests, each test
with a database or key prefix of its own that it removes afterwards, and an OpenLineage HTTP
endpoint that validates every event it receives."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

POSTGRES = ("127.0.0.1", 5432)
REDIS = ("127.0.0.1", 6379)


def require_service(name: str, address: tuple[str, int]) -> None:
    """Skip when ``name`` does not answer at ``address``, with the reason; in CI (``CI`` set) a
    missing service fails the run instead: CI machines have it, so its absence is a fault."""
    try:
        socket.create_connection(address, timeout=3).close()
    except OSError as exc:
        message = f"{name} is not running on {address[0]}:{address[1]} ({exc}); start it to run this test"
        if os.environ.get("CI"):
            pytest.fail(f"{message}. CI machines run it, so this is a failure, not a skip")
        pytest.skip(message)


def require_program(name: str, package: str) -> str:
    """The path of ``name``; skipped with the reason where it is missing, a failure in CI (dev/run-tests
    installs the Debian ``package`` that has it)."""
    import shutil

    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (Debian package {package}; ./dev/run-tests installs it as root)"
        if os.environ.get("CI"):
            pytest.fail(f"{message}. CI machines have it, so this is a failure, not a skip")
        pytest.skip(message)
    return path


def _orphaned(name: str, prefix: str, sep: str) -> bool:
    """Whether ``name`` (``<prefix><sep><pid><sep><hex>``) was made by a process that has gone: a
    test run killed before its cleanup, whose leftovers the next run removes."""
    pid = name[len(prefix) + 1 :].split(sep, 1)[0]
    return pid.isdigit() and not os.path.exists(f"/proc/{pid}")


@contextlib.contextmanager
def postgres_database(prefix: str = "mlcrit_e2e") -> Iterator[str]:
    """A new, empty database (trust auth as ``postgres``); yields its host/name part
    (``postgres@127.0.0.1:5432/<name>``) and drops it, with any connection left, at the end.
    Databases of this prefix left by a killed run (their process is gone) are dropped first."""
    import psycopg2

    require_service("PostgreSQL", POSTGRES)
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(host=POSTGRES[0], port=POSTGRES[1], user="postgres", dbname="postgres")
    admin.autocommit = True
    try:
        with admin.cursor() as cur:
            cur.execute("SELECT datname FROM pg_database WHERE starts_with(datname, %s)", (f"{prefix}_",))
            for (old,) in cur.fetchall():
                if _orphaned(old, prefix, "_"):
                    cur.execute(f'DROP DATABASE IF EXISTS "{old}" WITH (FORCE)')
            cur.execute(f'CREATE DATABASE "{name}"')
        yield f"postgres@{POSTGRES[0]}:{POSTGRES[1]}/{name}"
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@contextlib.contextmanager
def redis_prefix(prefix: str = "mlcrit-e2e") -> Iterator[str]:
    """A key prefix of this test's own (Celery's ``global_keyprefix``); its keys go at the end,
    and so do those of earlier runs of this prefix whose process is gone."""
    import redis

    require_service("Redis", REDIS)
    value = f"{prefix}-{os.getpid()}-{uuid.uuid4().hex[:10]}:"
    client = redis.Redis(host=REDIS[0], port=REDIS[1])
    try:
        stale = [k for k in client.scan_iter(match=f"{prefix}-*") if _orphaned(k.decode(), prefix, "-")]
        if stale:
            client.delete(*stale)
        yield value
    finally:
        keys = list(client.scan_iter(match=f"{value}*"))
        if keys:
            client.delete(*keys)
        client.close()


class LineageReceiver:
    """An OpenLineage HTTP endpoint on 127.0.0.1 (the ``http`` transport's ``url``): every event
    posted is validated against the vendored official schemas and ours, and kept; an invalid one
    is answered 400 and kept in ``invalid`` with the reason."""

    def __init__(self) -> None:
        from airflow_mlcrit.core.lineage.validate import validate_event

        self.events: list[dict] = []
        self.invalid: list[tuple[dict, str]] = []
        lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    event = json.loads(body)
                except ValueError as exc:
                    event, error = {"body": body[:200].decode(errors="replace")}, f"not JSON: {exc}"
                else:
                    try:
                        validate_event(event)
                        error = ""
                    except Exception as exc:
                        error = str(exc)[:2000]
                with lock:
                    (receiver.invalid.append((event, error)) if error else receiver.events.append(event))
                self.send_response(400 if error else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def transport(self) -> dict:
        """OpenLineage's http transport for this endpoint, bounded as docs/reliability.md recommends."""
        return {
            "type": "http",
            "url": self.url,
            "endpoint": "api/v1/lineage",
            "timeout": 5,
            "retry": {"total": 0, "connect": 0, "read": 0},
        }

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
