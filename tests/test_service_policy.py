"""Tests that need PostgreSQL or Redis skip, with the reason, only where the service is absent and
``CI`` is not set; in CI a missing service fails the run. What a killed run leaves in them, the next
run removes (tests/helpers/services.py)."""

import os
import socket
import subprocess

import pytest

from tests.helpers.services import POSTGRES, REDIS, postgres_database, redis_prefix, require_service


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the block ends: nothing listens there


def test_a_missing_service_skips_with_the_reason_outside_ci(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    port = _closed_port()
    with pytest.raises(pytest.skip.Exception, match=f"Redis is not running on 127.0.0.1:{port}"):
        require_service("Redis", ("127.0.0.1", port))


def test_a_missing_service_fails_in_ci(monkeypatch):
    monkeypatch.setenv("CI", "true")
    port = _closed_port()
    with pytest.raises(pytest.fail.Exception, match="CI machines run it, so this is a failure, not a skip"):
        require_service("PostgreSQL", ("127.0.0.1", port))


def test_a_running_service_passes(monkeypatch):
    monkeypatch.setenv("CI", "true")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        require_service("PostgreSQL", s.getsockname())


def test_what_a_killed_run_left_in_postgresql_and_redis_goes_and_a_live_runs_stays():
    import psycopg2
    import redis

    gone = subprocess.Popen(["true"])
    gone.wait()  # a process that has ended: the run it stood for was killed before its cleanup
    admin = psycopg2.connect(host=POSTGRES[0], port=POSTGRES[1], user="postgres", dbname="postgres")
    admin.autocommit = True
    client = redis.Redis(host=REDIS[0], port=REDIS[1])
    left, live = f"mlcrit_sweep_{gone.pid}_0123456789", f"mlcrit_sweep_{os.getpid()}_0123456789"
    left_key, live_key = f"mlcrit-sweep-{gone.pid}-0123456789:unacked", f"mlcrit-sweep-{os.getpid()}-0123456789:unacked"

    def databases() -> list[str]:
        with admin.cursor() as cur:
            cur.execute("SELECT datname FROM pg_database WHERE starts_with(datname, 'mlcrit_sweep_')")
            return sorted(name for (name,) in cur.fetchall())

    try:
        with admin.cursor() as cur:
            for name in (left, live):
                cur.execute(f'CREATE DATABASE "{name}"')
        client.set(left_key, b"1")
        client.set(live_key, b"1")
        with postgres_database("mlcrit_sweep") as ours, redis_prefix("mlcrit-sweep") as prefix:
            assert databases() == sorted([live, ours.rsplit("/", 1)[1]])
            client.set(f"{prefix}unacked", b"1")
            assert sorted(client.scan_iter(match="mlcrit-sweep-*")) == sorted(
                [live_key.encode(), f"{prefix}unacked".encode()]
            )
        assert databases() == [live]  # its own went at the end, the other live run's stays
        assert list(client.scan_iter(match="mlcrit-sweep-*")) == [live_key.encode()]
    finally:
        with admin.cursor() as cur:
            for name in (left, live):
                cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        client.delete(*client.scan_iter(match="mlcrit-sweep-*"), "mlcrit-sweep-none")
        admin.close()
        client.close()
