"""Jinja templates in a sandbox: undefined variables are errors, attribute escapes are blocked,
and every render runs under limits on time, output size, loop iterations and the size of the
numbers and sequences it computes. Nothing a template computes runs when it is compiled: the
operators that could make huge values (``**``, ``*``) are never constant-folded."""

from __future__ import annotations

import math
import time
from typing import Any

from airflow_mlcrit.exceptions import ConfigError

MAX_SECONDS = 5.0  # per render
MAX_OUTPUT_CHARS = 1_000_000
MAX_ITERATIONS = 1_000_000  # range() steps per render, all loops together
MAX_INT_BITS = 4096
MAX_SEQUENCE = 1_000_000  # items or characters a '*' may build


def _environment() -> Any:
    from jinja2 import StrictUndefined
    from jinja2.exceptions import SecurityError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class Bounded(ImmutableSandboxedEnvironment):
        # intercepted operators are never folded at compile time (jinja2.nodes.BinExpr.as_const)
        intercepted_binops = frozenset(["**", "*"])

        def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
            if operator == "**" and _is_int(left) and _is_int(right) and abs(left) > 1 and right > 0:
                if right * math.log2(abs(left)) > MAX_INT_BITS:
                    raise SecurityError(f"{left} ** {right} has more than {MAX_INT_BITS} bits")
            if operator == "*":
                for seq, n in ((left, right), (right, left)):
                    if isinstance(seq, (str, list, tuple)) and _is_int(n) and len(seq) * n > MAX_SEQUENCE:
                        raise SecurityError(f"'*' would build {len(seq) * n:,} items (limit {MAX_SEQUENCE:,})")
                if _is_int(left) and _is_int(right) and left.bit_length() + right.bit_length() > MAX_INT_BITS:
                    raise SecurityError(f"a product of more than {MAX_INT_BITS} bits")
            return super().call_binop(context, operator, left, right)

    return Bounded(undefined=StrictUndefined, keep_trailing_newline=True)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


class BoundedTemplate:
    """A compiled template whose ``render`` stops at the limits above, and at what the sandbox
    refuses, with a ConfigError naming the template."""

    def __init__(self, template: Any, name: str):
        self._template, self.name = template, name

    def render(self, **variables: Any) -> str:
        from jinja2.exceptions import SecurityError

        try:
            return self._render(variables)
        except SecurityError as exc:
            raise ConfigError(f"{self.name}: the sandbox refused: {exc}") from None
        except (OverflowError, MemoryError, RecursionError) as exc:
            raise ConfigError(f"{self.name}: the sandbox refused: {type(exc).__name__}: {exc}") from None

    def _render(self, variables: dict[str, Any]) -> str:
        from jinja2.exceptions import SecurityError

        deadline = time.monotonic() + MAX_SECONDS
        budget = [MAX_ITERATIONS]

        def bounded_range(*args: int) -> Any:
            try:
                steps = range(*args)
            except (TypeError, ValueError) as exc:
                raise SecurityError(f"range{args}: {exc}") from None
            try:
                n = len(steps)
            except OverflowError:
                n = MAX_ITERATIONS + 1
            if n > budget[0]:
                raise SecurityError(f"range{args} has more steps than a render may loop ({MAX_ITERATIONS:,} in all)")
            budget[0] -= n
            for i in steps:
                if i % 1024 == 0 and time.monotonic() > deadline:
                    raise SecurityError(f"rendering took longer than {MAX_SECONDS:g} s")
                yield i

        out, size = [], 0
        for chunk in self._template.generate(**variables, range=bounded_range):
            size += len(chunk)
            if size > MAX_OUTPUT_CHARS:
                raise SecurityError(f"the output is longer than {MAX_OUTPUT_CHARS:,} characters")
            if time.monotonic() > deadline:
                raise SecurityError(f"rendering took longer than {MAX_SECONDS:g} s")
            out.append(chunk)
        return "".join(out)


def parse_template(source: str) -> Any:
    """The template's syntax tree, in the bounded environment (so analysing it folds nothing)."""
    return _environment().parse(source)


def compile_template(source: str, name: str = "template") -> BoundedTemplate:
    from jinja2 import TemplateSyntaxError
    from jinja2.exceptions import SecurityError

    try:
        return BoundedTemplate(_environment().from_string(source), name)
    except TemplateSyntaxError as exc:
        raise ConfigError(f"template has a syntax error on line {exc.lineno}: {exc.message}") from None
    except (SecurityError, OverflowError, MemoryError) as exc:  # what folding the rest could still raise
        raise ConfigError(f"template cannot be compiled safely: {exc}") from None
