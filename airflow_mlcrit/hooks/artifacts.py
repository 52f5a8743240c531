"""ArtifactStoreHook: an Airflow connection (or ``[mlcrit] artifact_root``) -> ArtifactStore."""

from __future__ import annotations

from typing import Any

from airflow_mlcrit.core.artifacts import ArtifactStore, Signer, open_store
from airflow_mlcrit.core.artifacts.signing import signer_from_text
from airflow_mlcrit.core.config import embedded_default_root, signer_from_env
from airflow_mlcrit.exceptions import ConfigError
from airflow_mlcrit.version_compat import BaseHook, conf


def aws_options(conn: Any, service: str) -> dict[str, Any]:
    """boto3 keyword options from an ``aws`` or ``mlcrit`` connection: login/password are the access
    key, extras ``aws_session_token``, ``region_name`` and ``endpoint_url`` (or the Amazon
    provider's ``service_config.<service>.endpoint_url``). Unset values are left to boto3."""
    extra = conn.extra_dejson
    endpoint = extra.get("endpoint_url") or ((extra.get("service_config") or {}).get(service) or {}).get("endpoint_url")
    options = {
        "aws_access_key_id": conn.login or None,
        "aws_secret_access_key": conn.password or None,
        "aws_session_token": extra.get("aws_session_token"),
        "region_name": extra.get("region_name"),
        "endpoint_url": endpoint,
    }
    return {k: v for k, v in options.items() if v is not None}


class ArtifactStoreHook(BaseHook):
    """Builds the artifact store an operator reads and writes.

    Connection types:

    * ``mlcrit``: extra ``root`` (a directory or ``s3://bucket/prefix``); for S3, login/password
      are the access key id/secret (empty: boto3's default chain) and extras ``endpoint_url``,
      ``region_name``, ``aws_session_token``, ``max_attempts``.
    * ``aws`` (the Amazon provider's type): the same credentials and extras, with the store root
      in extra ``artifact_root``.

    Without a connection: ``[mlcrit] artifact_root`` (+ ``s3_endpoint_url``), else the embedded
    default ``$AIRFLOW_HOME/mlcrit/artifacts``.

    Signing (docs/reliability.md): the key is the password of the connection named by
    ``[mlcrit] signing_conn_id`` (any connection type, so a secrets backend can hold it), with
    extra ``previous_keys`` (a list) still accepted while rotating; else ``MLCRIT_SIGNING_KEY``.

    :param store_conn_id: connection id, or None for the configured default.
    :param root: overrides the root from the connection or config.
    """

    conn_name_attr = "store_conn_id"
    default_conn_name = "mlcrit_default"
    conn_type = "mlcrit"
    hook_name = "ML Critical artifact store"

    def __init__(self, store_conn_id: str | None = None, root: str | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.store_conn_id = store_conn_id
        self.root = root

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        return {
            "hidden_fields": ["schema", "port", "host"],
            "relabeling": {"login": "AWS access key id (S3 only)", "password": "AWS secret access key (S3 only)"},
            "placeholders": {
                "extra": '{"root": "s3://bucket/prefix", "endpoint_url": "http://minio:9000", '
                '"region_name": "us-east-1"}'
            },
        }

    def store_options(self) -> tuple[str, dict[str, Any]]:
        """(root, S3 keyword options) without building the store; secrets stay out of logs."""
        if not self.store_conn_id:
            root = self.root or conf.get("mlcrit", "artifact_root", fallback="") or embedded_default_root()
            options: dict[str, Any] = {}
            if root.startswith("s3://"):
                endpoint = conf.get("mlcrit", "s3_endpoint_url", fallback="")
                if endpoint:
                    options["endpoint_url"] = endpoint
                options["max_attempts"] = conf.getint("mlcrit", "s3_max_attempts", fallback=5)
            return root, options
        conn = self.get_connection(self.store_conn_id)
        extra = conn.extra_dejson
        field = "artifact_root" if conn.conn_type == "aws" else "root"
        root = self.root or extra.get(field) or extra.get("artifact_root") or extra.get("root")
        if not root:
            raise ConfigError(
                f"connection {self.store_conn_id!r} (type {conn.conn_type}) has no artifact store root: "
                f"set extra {field!r} to a directory or 's3://bucket/prefix'"
            )
        if not str(root).startswith("s3://"):
            return str(root), {}
        options = aws_options(conn, service="s3")
        options["max_attempts"] = int(extra.get("max_attempts", 5))
        return str(root), options

    def signer(self) -> Signer | None:
        """The store's signer from ``[mlcrit] signing_conn_id`` or the environment; None: unsigned."""
        conn_id = conf.get("mlcrit", "signing_conn_id", fallback="")
        if not conn_id:
            return signer_from_env()
        conn = self.get_connection(conn_id)
        if not conn.password:
            raise ConfigError(
                f"[mlcrit] signing_conn_id names the connection {conn_id!r}, which has no password: "
                "put the signing key (32+ random bytes) in its password"
            )
        previous = conn.extra_dejson.get("previous_keys", [])
        if not isinstance(previous, list) or not all(isinstance(k, str) for k in previous):
            raise ConfigError(f"connection {conn_id!r}: extra 'previous_keys' must be a list of strings")
        return signer_from_text(conn.password, previous)

    def witness(self) -> str | None:
        """The URL of the alias witness's database (core/artifacts/witness.py): the connection
        ``[mlcrit] witness_conn_id`` (its URI, e.g. a PostgreSQL database that writers of the
        bucket cannot reach), else ``MLCRIT_WITNESS_URL``; None: no witness."""
        import os

        conn_id = conf.get("mlcrit", "witness_conn_id", fallback="")
        if not conn_id:
            return os.environ.get("MLCRIT_WITNESS_URL") or None
        return self.get_connection(conn_id).get_uri()

    def get_store(self) -> ArtifactStore:
        root, options = self.store_options()
        return open_store(root, signer=self.signer(), witness=self.witness(), **options)

    def get_conn(self) -> ArtifactStore:
        return self.get_store()
