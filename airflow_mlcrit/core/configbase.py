"""Base of the step configs: stdlib dataclasses with a JSON round trip, typed fields and clear errors."""

from __future__ import annotations

import dataclasses
import functools
import json
import types
import typing
from typing import Any, Literal, TypeVar, Union

from airflow_mlcrit.exceptions import ConfigError

C = TypeVar("C", bound="Config")
_TRUE, _FALSE = {"true", "yes", "on", "1"}, {"false", "no", "off", "0"}
_NONE = {"none", "null", ""}


class Config:
    """Mixin for ``@dataclass`` configs: ``from_dict`` names unknown fields, ``to_dict`` is JSON-able,
    and every field is checked against its annotation before the class's own ``__post_init__``.

    Rendered Jinja gives strings, so a string is converted where the annotation is numeric,
    boolean or optional ("150" -> 150, "true" -> True, "None" -> None); anything else of the
    wrong type is a ConfigError naming the field, the value and what is allowed.
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # the class's own checks, or the nearest base's, run after the type checks
        own = cls.__dict__.get("__post_init__") or getattr(cls, "_own_post_init", None)
        cls._own_post_init = own  # type: ignore[attr-defined]

        def __post_init__(self: Config) -> None:
            self._check_types()
            if own is not None:
                own(self)

        cls.__post_init__ = __post_init__  # type: ignore[attr-defined]

    def _check_types(self) -> None:
        hints = _hints(type(self))
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            where = f"{type(self).__name__}.{f.name}"
            object.__setattr__(self, f.name, check_value(where, getattr(self, f.name), hints[f.name]))

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
        required = [
            f.name
            for f in dataclasses.fields(cls)  # type: ignore[arg-type]
            if f.init and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ]
        missing = [name for name in required if name not in data]
        if missing:
            raise ConfigError(f"{cls.__name__} needs field(s) {missing}; got {sorted(data) or 'none'}")
        try:
            return cls(**data)
        except TypeError as exc:
            raise ConfigError(f"{cls.__name__}: {exc}") from None

    @classmethod
    def coerce(cls: type[C], value: C | dict[str, Any]) -> C:
        return value if isinstance(value, cls) else cls.from_dict(value)


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def type_name(tp: Any) -> str:
    """How an annotation reads in errors and in docs/reference.md."""
    if tp is Any:
        return "any"
    if tp is type(None):
        return "None"
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(json.dumps(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " | ".join(type_name(a) for a in typing.get_args(tp))
    if origin is not None:
        return f"{origin.__name__}[{', '.join(type_name(a) for a in typing.get_args(tp))}]"
    return getattr(tp, "__name__", str(tp))


def check_value(where: str, value: Any, tp: Any) -> Any:
    """``value`` as type ``tp`` (converting a rendered string to a number, bool or None), or a
    ConfigError naming ``where``, the value and the allowed type or values."""
    ok, converted = _convert(value, tp)
    if ok:
        return converted
    origin = typing.get_origin(tp)
    if origin is Literal:
        allowed = ", ".join(repr(a) for a in typing.get_args(tp))
        raise ConfigError(f"{where} must be one of {allowed}; got {value!r}")
    raise ConfigError(f"{where} must be {type_name(tp)}; got {value!r} ({type(value).__name__})")


def _convert(value: Any, tp: Any) -> tuple[bool, Any]:
    if tp is Any:
        return True, value
    if tp is type(None):
        if value is None or (isinstance(value, str) and value.strip().lower() in _NONE):
            return True, None
        return False, value
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Literal:
        return (value in args and type(value) in {type(a) for a in args}), value
    if origin in (Union, types.UnionType):
        for arg in sorted(args, key=lambda a: a is str):  # str last: "None" or "3" means None or 3
            ok, converted = _convert(value, arg)
            if ok:
                return True, converted
        return False, value
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            return False, value
        inner = args[0] if args else Any
        items = [_convert(v, inner) for v in value]
        return all(ok for ok, _ in items), [v for _, v in items]
    if origin is dict:
        if not isinstance(value, dict):
            return False, value
        inner = args[1] if len(args) == 2 else Any
        items = {k: _convert(v, inner) for k, v in value.items()}
        return all(isinstance(k, str) for k in value) and all(ok for ok, _ in items.values()), {
            k: v for k, (_, v) in items.items()
        }
    if tp is bool:
        if isinstance(value, bool):
            return True, value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return True, value.strip().lower() in _TRUE
        return False, value
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return True, value
        if isinstance(value, float) and value.is_integer():
            return True, int(value)
        if isinstance(value, str):
            try:
                return True, int(value.strip())
            except ValueError:
                return False, value
        return False, value
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return True, float(value)
        if isinstance(value, str):
            try:
                return True, float(value.strip())
            except ValueError:
                return False, value
        return False, value
    if isinstance(tp, type):
        return isinstance(value, tp), value
    return True, value


def require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)
