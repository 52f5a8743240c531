"""ArtifactStoreHook: connections and config -> stores; S3 through a connection end to end."""

import json
import re

import pytest

from airflow_mlcrit.core.artifacts import LocalBackend, S3Backend, open_store
from airflow_mlcrit.exceptions import ConfigError
from airflow_mlcrit.hooks.artifacts import ArtifactStoreHook
from tests.airflow.conftest import run_dag
from tests.conftest import make_s3_root


def _conn(monkeypatch, conn_id, **fields):
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(fields))


def test_default_is_the_embedded_root(monkeypatch, tmp_path):
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    monkeypatch.setenv("AIRFLOW__MLCRIT__ARTIFACT_ROOT", "")
    store = ArtifactStoreHook().get_store()
    assert isinstance(store.backend, LocalBackend)
    assert store.backend.root == tmp_path / "mlcrit" / "artifacts"


def test_config_root_and_endpoint(monkeypatch, moto_server):
    root = make_s3_root(moto_server)
    monkeypatch.setenv("AIRFLOW__MLCRIT__ARTIFACT_ROOT", root)
    monkeypatch.setenv("AIRFLOW__MLCRIT__S3_ENDPOINT_URL", moto_server.endpoint_url)
    store = ArtifactStoreHook().get_store()
    assert isinstance(store.backend, S3Backend) and store.root_uri == root
    assert store.backend.client.meta.endpoint_url == moto_server.endpoint_url


def test_mlcrit_connection_local(monkeypatch, tmp_path):
    _conn(monkeypatch, "my_store", conn_type="mlcrit", extra={"root": str(tmp_path / "s")})
    assert ArtifactStoreHook("my_store").get_store().backend.root == tmp_path / "s"


def test_aws_connection_credentials_and_endpoint(monkeypatch, moto_server):
    root = make_s3_root(moto_server)
    _conn(
        monkeypatch,
        "aws_ml",
        conn_type="aws",
        login="AKIDEXAMPLE",
        password="s3cr3t-value",
        extra={"artifact_root": root, "endpoint_url": moto_server.endpoint_url, "region_name": "eu-west-1"},
    )
    hook = ArtifactStoreHook("aws_ml")
    root_out, options = hook.store_options()
    assert root_out == root
    assert options == {
        "aws_access_key_id": "AKIDEXAMPLE",
        "aws_secret_access_key": "s3cr3t-value",
        "region_name": "eu-west-1",
        "endpoint_url": moto_server.endpoint_url,
        "max_attempts": 5,
    }
    client = hook.get_store().backend.client
    assert client.meta.region_name == "eu-west-1"


def test_connection_without_root_names_the_field(monkeypatch):
    _conn(monkeypatch, "aws_noroot", conn_type="aws", extra={"region_name": "us-east-1"})
    with pytest.raises(
        ConfigError,
        match=re.escape("connection 'aws_noroot' (type aws) has no artifact store root: set extra 'artifact_root'"),
    ):
        ArtifactStoreHook("aws_noroot").get_store()


def test_operators_write_to_s3_through_a_connection(monkeypatch, moto_server, dag_files, airflow_db):
    root = make_s3_root(moto_server)
    _conn(
        monkeypatch,
        "s3_store",
        conn_type="mlcrit",
        login="testing",
        password="testing",
        extra={"root": root, "endpoint_url": moto_server.endpoint_url, "region_name": "us-east-1"},
    )
    dr = run_dag("test_mlcrit_register", {**dag_files, "conn_id": "s3_store"})
    assert dr.state == "success"
    store = open_store(root, endpoint_url=moto_server.endpoint_url, region_name="us-east-1")
    assert store.versions("model/clf") == [1]
    assert [p.ref.key for p in store.parents("model/clf@v1")] == ["dataset/reviews"]
    assert store.resolve("model/clf@v1").uri.startswith(root + "/model/clf/v000001")


def test_signing_key_from_the_configured_connection(monkeypatch, tmp_path):
    from airflow_mlcrit.core.artifacts.signing import key_id

    key, old = "k" * 40, "o" * 40
    monkeypatch.setenv("AIRFLOW__MLCRIT__ARTIFACT_ROOT", str(tmp_path / "s"))
    monkeypatch.setenv("AIRFLOW__MLCRIT__SIGNING_CONN_ID", "mlcrit_signing")
    _conn(monkeypatch, "mlcrit_signing", conn_type="generic", password=key, extra={"previous_keys": [old]})
    signer = ArtifactStoreHook().get_store().signer
    assert (signer.key_id, repr(signer).count(key_id(old.encode()))) == (key_id(key.encode()), 1)
    (tmp_path / "f").write_bytes(b"f")
    ArtifactStoreHook().get_store().put("dataset/d", tmp_path / "f")
    manifest = json.loads((tmp_path / "s" / "dataset/d/v000001/_MANIFEST.json").read_text())
    assert manifest["signature"]["key_id"] == key_id(key.encode())

    _conn(monkeypatch, "mlcrit_signing", conn_type="generic")
    with pytest.raises(ConfigError, match="names the connection 'mlcrit_signing', which has no password"):
        ArtifactStoreHook().get_store()
    monkeypatch.setenv("AIRFLOW__MLCRIT__SIGNING_CONN_ID", "")
    with pytest.raises(ConfigError, match="holds signed records"):  # no key configured any more: refused
        ArtifactStoreHook().get_store().resolve("dataset/d@v1")
