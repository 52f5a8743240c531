"""Run a Great Expectations 1.x suite through GX's own API and keep its Data Docs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from airflow_mlcrit.exceptions import ConfigError, MissingDependencyError


def suite_from_schema(schema: dict[str, Any] | None, environment: str = "TRAINING") -> dict[str, Any]:
    """A GX suite (as a dict) expressing the schema: presence, non-null, domains and ranges."""
    if not schema:
        raise ConfigError("suite='from_schema' needs a schema (set ValidationConfig.schema)")
    expectations: list[dict[str, Any]] = []
    for col in schema["columns"]:
        if environment not in col.get("environments", [environment]):
            continue
        name = col["name"]
        expectations.append({"type": "expect_column_to_exist", "kwargs": {"column": name}})
        if col.get("required"):
            expectations.append({"type": "expect_column_values_to_not_be_null", "kwargs": {"column": name}})
        if "domain" in col:
            expectations.append(
                {"type": "expect_column_values_to_be_in_set", "kwargs": {"column": name, "value_set": col["domain"]}}
            )
        if "range" in col:
            expectations.append(
                {
                    "type": "expect_column_values_to_be_between",
                    "kwargs": {"column": name, "min_value": col["range"]["min"], "max_value": col["range"]["max"]},
                }
            )
    return {"name": "mlcrit_from_schema", "expectations": expectations}


def _load_suite(spec: Any, schema: dict[str, Any] | None) -> dict[str, Any]:
    if spec == "from_schema":
        return suite_from_schema(schema)
    if isinstance(spec, dict):
        return spec
    path = Path(str(spec))
    if not path.is_file():
        raise ConfigError(f"suite {spec!r} must be 'from_schema', a dict, or a path to a GX suite JSON file")
    try:
        return json.loads(path.read_text())
    except ValueError as exc:
        raise ConfigError(f"suite file {path} is not valid JSON: {exc}") from None


def _class_name(expectation_type: str) -> str:
    return "".join(part.capitalize() for part in expectation_type.split("_"))


def run_suite(
    spec: Any, source: str, store: Any, schema: dict[str, Any] | None, workdir: Path, fmt: str = "auto"
) -> tuple[list[dict[str, Any]], Path]:
    """Validate the whole table with the suite; return per-expectation results and the Data Docs dir."""
    import os

    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")  # air-gapped sites: no usage pings
    try:
        import great_expectations as gx
    except ImportError:
        raise MissingDependencyError("great-expectations", "validation") from None
    from airflow_mlcrit.core.tables import iter_batches, open_table

    suite_dict = _load_suite(spec, schema)
    with open_table(source, store=store, fmt=fmt) as table:
        import pyarrow as pa

        df = pa.Table.from_batches(list(iter_batches(table))).to_pandas()
    workdir.mkdir(parents=True, exist_ok=True)
    context = gx.get_context(mode="file", project_root_dir=str(workdir))
    context.variables.progress_bars = {"globally": False}
    suite = gx.ExpectationSuite(name=suite_dict.get("name") or "mlcrit_suite")
    for i, exp in enumerate(suite_dict.get("expectations", [])):
        etype = exp.get("type") or exp.get("expectation_type")
        cls = getattr(gx.expectations, _class_name(etype or ""), None)
        if cls is None:
            raise ConfigError(f"suite expectation #{i} has unknown type {etype!r}; see GX's expectation gallery")
        try:
            suite.add_expectation(cls(**exp.get("kwargs", {})))
        except Exception as exc:  # GX raises pydantic errors for bad kwargs
            raise ConfigError(f"suite expectation #{i} ({etype}) has invalid kwargs: {exc}") from None
    suite = context.suites.add(suite)
    batch_def = (
        context.data_sources.add_pandas("mlcrit")
        .add_dataframe_asset("data")
        .add_batch_definition_whole_dataframe("all")
    )
    validation = context.validation_definitions.add(
        gx.ValidationDefinition(data=batch_def, suite=suite, name="mlcrit_validation")
    )
    checkpoint = context.checkpoints.add(
        gx.Checkpoint(
            name="mlcrit_checkpoint",
            validation_definitions=[validation],
            actions=[gx.checkpoint.UpdateDataDocsAction(name="data_docs")],
        )
    )
    run = checkpoint.run(batch_parameters={"dataframe": df})
    results = []
    for vr in run.run_results.values():
        for r in vr.results:
            cfg = r.expectation_config
            results.append(
                {
                    "expectation_type": cfg.type,
                    "column": cfg.kwargs.get("column"),
                    "kwargs": {k: v for k, v in cfg.kwargs.items() if k != "batch_id"},
                    "success": bool(r.success),
                    "observed": _observed(r.result),
                }
            )
    return results, Path(context.root_directory) / "uncommitted" / "data_docs" / "local_site"


def _observed(result: dict[str, Any]) -> Any:
    for key in ("observed_value", "unexpected_count"):
        if key in result:
            value = result[key]
            return value if isinstance(value, (int, float, str, bool, type(None))) else str(value)
    return None
