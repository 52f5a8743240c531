"""Data schemas: inferred from statistics, edited by hand as YAML, checked by validation."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from airflow_mlcrit.core.configbase import Config, require
from airflow_mlcrit.exceptions import ConfigError

SCHEMA_FILE = "schema.yaml"
ENVIRONMENTS = ("TRAINING", "SERVING")


@dataclass
class SchemaConfig(Config):
    """How to turn statistics into a schema."""

    label_columns: list[str] = field(default_factory=list, metadata={"help": "present in TRAINING, absent in SERVING"})
    max_domain_size: int = field(default=100, metadata={"help": "categoricals with more values get no domain"})
    range_slack: float = field(default=0.0, metadata={"help": "widen numeric ranges by this fraction of their span"})
    max_missing_fraction: float = field(
        default=0.0, metadata={"help": "columns missing at most this often are required (no missing values)"}
    )

    def __post_init__(self) -> None:
        require(self.max_domain_size >= 1, f"SchemaConfig.max_domain_size must be >= 1, got {self.max_domain_size}")
        require(self.range_slack >= 0, f"SchemaConfig.range_slack must be >= 0, got {self.range_slack}")
        require(
            0 <= self.max_missing_fraction < 1,
            f"SchemaConfig.max_missing_fraction must be in [0, 1), got {self.max_missing_fraction}",
        )


def infer_schema(statistics: dict[str, Any], cfg: SchemaConfig | dict[str, Any] | None = None) -> dict[str, Any]:
    cfg = SchemaConfig.coerce(cfg or {})
    unknown = sorted(set(cfg.label_columns) - set(statistics["columns"]))
    if unknown:
        raise ConfigError(f"label_columns {unknown} are not columns of the data: {sorted(statistics['columns'])}")
    columns = []
    for name, col in statistics["columns"].items():
        missing_fraction = col["missing"] / col["rows"] if col["rows"] else 0.0
        spec: dict[str, Any] = {
            "name": name,
            "type": col["kind"],
            "arrow_type": col["arrow_type"],
            "required": missing_fraction <= cfg.max_missing_fraction,
            "environments": ["TRAINING"] if name in cfg.label_columns else list(ENVIRONMENTS),
        }
        if col.get("identifier"):  # drift skips it; edit to false if the values do describe rows
            spec["identifier"] = True
        if not spec["required"]:
            spec["max_missing_fraction"] = round(min(1.0, missing_fraction * 1.5 + 0.01), 6)
        if col["kind"] == "numeric" and col.get("count"):
            slack = (col["max"] - col["min"]) * cfg.range_slack
            spec["range"] = {"min": col["min"] - slack, "max": col["max"] + slack}
        elif (
            col["kind"] == "categorical"
            and "frequencies" in col
            and col["distinct"] <= cfg.max_domain_size
            and not col.get("identifier")
        ):
            spec["domain"] = sorted(col["frequencies"])
        elif col["kind"] == "text" and col["chars"].get("count"):
            spec["length"] = {"min": int(col["chars"]["min"]), "max": int(col["chars"]["max"])}
        columns.append(spec)
    return {"format": 1, "environments": list(ENVIRONMENTS), "columns": columns}


def dump_schema(schema: dict[str, Any]) -> str:
    import yaml

    header = (
        "# airflow-mlcrit data schema. Edit freely and register it as a `schema` artifact:\n"
        "#   mlcrit artifacts put schema/<name> schema.yaml\n"
    )
    return header + yaml.safe_dump(schema, sort_keys=False, allow_unicode=True)


def load_schema(text: str, where: str = "schema") -> dict[str, Any]:
    import yaml

    try:
        schema = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where} is not valid YAML: {exc}") from None
    return check_schema(schema, where)


def check_schema(schema: Any, where: str) -> dict[str, Any]:
    if not isinstance(schema, dict) or not isinstance(schema.get("columns"), list):
        raise ConfigError(f"{where} must be a mapping with a 'columns' list")
    for i, col in enumerate(schema["columns"]):
        if not isinstance(col, dict) or "name" not in col or "type" not in col:
            raise ConfigError(f"{where}: columns[{i}] needs at least 'name' and 'type'")
        if col["type"] not in ("numeric", "categorical", "text", "other"):
            raise ConfigError(
                f"{where}: column {col['name']!r} has type {col['type']!r}; use numeric, categorical, text or other"
            )
        for env in col.get("environments", ENVIRONMENTS):
            if env not in schema.get("environments", ENVIRONMENTS):
                raise ConfigError(f"{where}: column {col['name']!r} names unknown environment {env!r}")
    return schema
