"""Jinja templates in a sandbox: undefined variables are errors, attribute escapes are blocked."""

from __future__ import annotations

from typing import Any

from airflow_mlcrit.exceptions import ConfigError


def compile_template(source: str) -> Any:
    from jinja2 import StrictUndefined, TemplateSyntaxError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(undefined=StrictUndefined, keep_trailing_newline=True)
    try:
        return env.from_string(source)
    except TemplateSyntaxError as exc:
        raise ConfigError(f"template has a syntax error on line {exc.lineno}: {exc.message}") from None
