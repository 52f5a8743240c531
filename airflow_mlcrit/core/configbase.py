"""Base of the step configs: stdlib dataclasses with a JSON round trip and clear field errors."""

from __future__ import annotations

import dataclasses
import json
from typing import Any, TypeVar

from airflow_mlcrit.exceptions import ConfigError

C = TypeVar("C", bound="Config")


class Config:
    """Mixin for ``@dataclass`` configs: ``from_dict`` names unknown fields, ``to_dict`` is JSON-able."""

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self), default=list))  # tuples -> lists

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any]) -> C:
        if isinstance(data, cls):
            return data
        if not isinstance(data, dict):
            raise ConfigError(f"{cls.__name__} must be a dict or {cls.__name__}, got {type(data).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"unknown {cls.__name__} field(s) {unknown}; valid fields: {sorted(names)}")
        try:
            return cls(**data)
        except TypeError as exc:
            raise ConfigError(f"{cls.__name__}: {exc}") from None

    @classmethod
    def coerce(cls: type[C], value: C | dict[str, Any]) -> C:
        return value if isinstance(value, cls) else cls.from_dict(value)


def require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)
