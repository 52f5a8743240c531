"""The package is a real Airflow provider: registered, described, its metadata schema-valid."""

import json
import os
import subprocess
import sys
from pathlib import Path

from airflow_mlcrit.get_provider_info import get_provider_info

AIRFLOW = [sys.executable, "-m", "airflow"]


def _airflow(*args):
    result = subprocess.run([*AIRFLOW, *args], capture_output=True, text=True, env=os.environ, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_provider_info_validates_against_airflows_schema():
    import airflow
    import jsonschema

    schema = json.loads((Path(airflow.__file__).parent / "provider_info.schema.json").read_text())
    info = get_provider_info()
    jsonschema.validate(info, schema)
    assert info["package-name"] == "airflow-mlcrit"
    assert info["connection-types"][0]["hook-class-name"] == "airflow_mlcrit.hooks.artifacts.ArtifactStoreHook"
    options = info["config"]["mlcrit"]["options"]
    assert options["artifact_root"]["type"] == "string" and options["s3_max_attempts"]["type"] == "integer"
    # every module the provider lists imports
    import importlib

    for section in ("operators", "hooks", "sensors", "triggers"):
        for entry in info.get(section, []):
            for module in entry["python-modules"]:
                importlib.import_module(module)


def test_airflow_providers_list_and_get(airflow_db):
    out = _airflow("providers", "list", "--output", "json")
    packages = {p["package_name"]: p for p in json.loads(out)}
    assert packages["airflow-mlcrit"]["version"] == "0.1.0"
    described = json.loads(_airflow("providers", "get", "airflow-mlcrit", "--output", "json"))
    assert described[0]["Provider"] == "airflow-mlcrit" and described[0]["Version"] == "0.1.0"


def test_mlcrit_connection_type_and_config_section_are_registered(airflow_db):
    hooks = json.loads(_airflow("providers", "hooks", "--output", "json"))
    assert any(
        h["connection_type"] == "mlcrit" and h["class"] == "airflow_mlcrit.hooks.artifacts.ArtifactStoreHook"
        for h in hooks
    )
    out = _airflow("config", "get-value", "mlcrit", "s3_max_attempts")
    assert out.strip() == "5"


def test_preload_imports_what_is_installed_and_names_what_is_not(caplog):
    import logging
    import sys

    from airflow_mlcrit.preload import DEFAULT, preload

    caplog.set_level(logging.INFO, logger="airflow_mlcrit.preload")
    sys.modules.pop("colorsys", None)
    assert preload(["colorsys", "no_such_library_xyz"]) == ["colorsys"]
    assert "colorsys" in sys.modules
    assert caplog.messages == ["mlcrit: preloaded colorsys; not installed: no_such_library_xyz (no_such_library_xyz)"]
    assert {"torch", "transformers", "peft", "apache_beam"} <= set(DEFAULT) and "great_expectations" not in DEFAULT


def test_airflow_plugins_lists_the_ml_registry():
    [plugin] = [p for p in json.loads(_airflow("plugins", "--output", "json")) if p["name"] == "mlcrit_registry"]
    assert [(v["name"], v["destination"], v["href"]) for v in plugin["external_views"]] == [
        ("ML registry", "nav", "/mlcrit/"),
        ("Evaluation", "task_instance", "/mlcrit/ti/{DAG_ID}/{RUN_ID}/{TASK_ID}?map_index={MAP_INDEX}"),
        ("Artifacts", "dag_run", "/mlcrit/run/{DAG_ID}/{RUN_ID}"),
    ]
    assert [(a["url_prefix"], a["name"]) for a in plugin["fastapi_apps"]] == [("/mlcrit", "ML registry")]
