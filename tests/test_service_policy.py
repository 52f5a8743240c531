"""Tests that need PostgreSQL or Redis skip, with the reason, only where the service is absent and
``CI`` is not set; in CI a missing service fails the run (tests/helpers/services.py)."""

import socket

import pytest

from tests.helpers.services import require_service


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
