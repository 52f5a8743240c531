"""The records the store writes, in one place for the store and the alias ledger: canonical
JSON, digests over every field but the digest itself, timestamps and who wrote them."""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import socket
import sys
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any


def utcnow() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, indent=2, sort_keys=True).encode()


def digest_except(fields: Mapping[str, Any], own: str) -> str:
    body = {k: v for k, v in fields.items() if k not in (own, "signature")}  # the signature signs the digest
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def login_name() -> str:
    """This process's user: the login name, else the uid (a container user without a passwd entry)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


def default_producer() -> dict[str, str]:
    """Who made a version when no Airflow task did (the CLI, a notebook)."""
    return {"tool": os.path.basename(sys.argv[0]) or "python", "user": login_name(), "host": socket.gethostname()}
