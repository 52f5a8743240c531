"""The Airflow api-server's app in process (the app `airflow api-server` serves, with the plugins
loaded as Airflow loads them), on the test session's metadata DB, with the simple auth manager."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any
from unittest import mock

SECRET = "in-process-api-secret-not-for-production-" + "0" * 24


@contextlib.contextmanager
def api_app(users: dict[str, str], **env: str) -> Iterator[tuple[Any, dict[str, str]]]:
    """(TestClient, {user: token}) for ``users`` ({name: role}); ``env`` adds settings, kept until
    the context ends."""
    from fastapi.testclient import TestClient

    settings = {
        "AIRFLOW__CORE__AUTH_MANAGER": "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join(f"{u}:{r}" for u, r in users.items()),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
        "AIRFLOW__API__SECRET_KEY": SECRET,
        "AIRFLOW__API_AUTH__JWT_SECRET": SECRET,
        **env,
    }
    with mock.patch.dict(os.environ, settings):
        from airflow.api_fastapi.app import create_app, get_auth_manager
        from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

        client = TestClient(create_app(), base_url="http://airflow.test")
        tokens = {
            u: get_auth_manager().generate_jwt(SimpleAuthManagerUser(username=u, role=r)) for u, r in users.items()
        }
        yield client, tokens


@contextlib.contextmanager
def serve(app: Any) -> Iterator[str]:
    """``app`` served over real HTTP on 127.0.0.1 (uvicorn, in a thread): its base URL."""
    import threading
    import time

    import uvicorn

    from tests.helpers.servers import free_port

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline:
            raise AssertionError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
