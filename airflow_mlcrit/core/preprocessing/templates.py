"""Jinja templates in a sandbox: undefined variables are errors, attribute escapes are blocked,
and every render runs under limits on time, output size, loop iterations and the size of the
numbers, strings and sequences it computes, that no template can escape:

- every loop (``for``), every ``range``, every intercepted call, attribute and item access and
  every filter counts against one budget of steps and checks the render's deadline;
- any number a filter or a string/list method is given (a width, a count, a repetition) is capped,
  and so are the widths inside format strings (``format``, ``%``, ``str.format``);
- nothing runs when a template is compiled: filters and tests never fold at compile time (each is
  a context function, which Jinja cannot evaluate early), nor do ``**``, ``*`` and ``%``;
- ``lipsum`` (which builds text of any size) is not offered.
"""

from __future__ import annotations

import contextvars
import math
import re
import time
from typing import Any

from airflow_mlcrit.exceptions import ConfigError

MAX_SECONDS = 5.0  # per render
MAX_OUTPUT_CHARS = 1_000_000
MAX_ITERATIONS = 1_000_000  # loop steps, range() steps, calls and lookups per render, all together
MAX_INT_BITS = 4096
MAX_SEQUENCE = 1_000_000  # items or characters a '*' may build
MAX_ARGUMENT = 100_000  # a number given to a filter or a str/list method (a width, a count)
_ITER = "mlcrit_bounded_iter"  # the name every loop's sequence goes through (see Bounded.compile)
_LIMITS: contextvars.ContextVar[list[float]] = contextvars.ContextVar("mlcrit_template_limits")
_WIDTH = re.compile(r"\d+")


def _step(n: int = 1) -> None:
    """Count ``n`` steps of the current render against its budget, and check its deadline."""
    from jinja2.exceptions import SecurityError

    limits = _LIMITS.get(None)
    if limits is None:  # outside a render (never during compilation: nothing is folded)
        return
    limits[1] -= n
    if limits[1] < 0:
        raise SecurityError(f"the template takes more than {MAX_ITERATIONS:,} steps")
    if time.monotonic() > limits[0]:
        raise SecurityError(f"rendering took longer than {MAX_SECONDS:g} s")


def _check_arguments(what: str, args: tuple, kwargs: dict) -> None:
    from jinja2.exceptions import SecurityError

    for v in (*args, *kwargs.values()):
        if _is_int(v) and abs(v) > MAX_ARGUMENT:
            raise SecurityError(f"{what} was given {v:,}, more than {MAX_ARGUMENT:,}")
        if isinstance(v, float) and math.isfinite(v) and abs(v) > MAX_ARGUMENT and what != "round":
            raise SecurityError(f"{what} was given {v:g}, more than {MAX_ARGUMENT:,}")


def _check_format(fmt: Any) -> None:
    """Refuse a format string with a width (or precision) over the cap: ``"%999999999d"``."""
    from jinja2.exceptions import SecurityError

    if isinstance(fmt, str) and any(len(w) > 6 or int(w) > MAX_ARGUMENT for w in _WIDTH.findall(fmt)):
        raise SecurityError(f"a format width over {MAX_ARGUMENT:,} in {fmt[:40]!r}")


def _bounded_iter(seq: Any) -> Any:
    from jinja2.runtime import Undefined

    if isinstance(seq, Undefined):
        yield from seq  # StrictUndefined raises, naming the variable
        return
    for i, item in enumerate(seq):
        if i % 256 == 0:
            _step(256)
        yield item


def _bounded_filter(name: str, func: Any) -> Any:
    """``func`` as a context filter: never folded at compile time, counted, its numbers capped."""
    from jinja2 import pass_context

    # what Jinja passes the filter first (its pass_context/pass_eval_context/pass_environment mark)
    passes = getattr(getattr(func, "jinja_pass_arg", None), "name", None)

    @pass_context
    def bounded(context: Any, value: Any, *args: Any, **kwargs: Any) -> Any:
        _step()
        _check_arguments(f"the filter {name!r}", args, kwargs)
        if name == "format":
            _check_format(value)
        if passes == "context":
            return func(context, value, *args, **kwargs)
        if passes == "eval_context":
            return func(context.eval_ctx, value, *args, **kwargs)
        if passes == "environment":
            return func(context.environment, value, *args, **kwargs)
        return func(value, *args, **kwargs)

    return bounded


def _environment() -> Any:
    from jinja2 import StrictUndefined, nodes
    from jinja2.exceptions import SecurityError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class Bounded(ImmutableSandboxedEnvironment):
        # intercepted operators are never folded at compile time (jinja2.nodes.BinExpr.as_const)
        intercepted_binops = frozenset(["**", "*", "%"])

        def compile(
            self, source: Any, name: Any = None, filename: Any = None, raw: bool = False, defer_init: bool = False
        ) -> Any:
            # every loop's sequence is counted: {% for x in s %} iterates mlcrit_bounded_iter(s)
            tree = self._parse(source, name, filename) if isinstance(source, str) else source
            if any(n.name == _ITER for n in tree.find_all(nodes.Name)):
                raise SecurityError(f"the name {_ITER!r} is reserved")
            for loop in tree.find_all(nodes.For):
                loop.iter = nodes.Call(nodes.Name(_ITER, "load"), [loop.iter], [], None, None, lineno=loop.lineno)
            return super().compile(tree, name, filename, raw, defer_init)

        def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
            _step()
            if operator == "**" and _is_int(left) and _is_int(right) and abs(left) > 1 and right > 0:
                if right * math.log2(abs(left)) > MAX_INT_BITS:
                    raise SecurityError(f"{left} ** {right} has more than {MAX_INT_BITS} bits")
            if operator == "*":
                for seq, n in ((left, right), (right, left)):
                    if isinstance(seq, (str, list, tuple)) and _is_int(n) and len(seq) * n > MAX_SEQUENCE:
                        raise SecurityError(f"'*' would build {len(seq) * n:,} items (limit {MAX_SEQUENCE:,})")
                if _is_int(left) and _is_int(right) and left.bit_length() + right.bit_length() > MAX_INT_BITS:
                    raise SecurityError(f"a product of more than {MAX_INT_BITS} bits")
            if operator == "%":
                _check_format(left)
            return super().call_binop(context, operator, left, right)

        def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
            _step()
            owner = getattr(__obj, "__self__", None)
            if isinstance(owner, (str, list, tuple, dict)):  # a method of data: ljust, center, zfill, ...
                _check_arguments(f"{getattr(__obj, '__name__', 'a method')}()", args, kwargs)
                if getattr(__obj, "__name__", "") in ("format", "format_map"):
                    _check_format(owner)
            return super().call(__context, __obj, *args, **kwargs)

        def wrap_str_format(self, value: Any) -> Any:
            # str.format reaches a template through here, not through call(): check its widths
            if getattr(value, "__name__", "") in ("format", "format_map"):
                _check_format(getattr(value, "__self__", None))
            return super().wrap_str_format(value)

        def getattr(self, obj: Any, attribute: str) -> Any:
            _step()
            return super().getattr(obj, attribute)

        def getitem(self, obj: Any, argument: Any) -> Any:
            _step()
            return super().getitem(obj, argument)

    env = Bounded(undefined=StrictUndefined, keep_trailing_newline=True)
    env.filters = {name: _bounded_filter(name, f) for name, f in env.filters.items()}
    env.tests = {name: _bounded_filter(name, f) for name, f in env.tests.items()}
    env.globals.pop("lipsum", None)
    env.globals[_ITER] = _bounded_iter
    return env


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

        deadline = time.monotonic() + MAX_SECONDS
        budget = [MAX_ITERATIONS]
        token = _LIMITS.set([deadline, MAX_ITERATIONS])
        try:
            return self._generate(variables, deadline, budget)
        finally:
            _LIMITS.reset(token)

    def _generate(self, variables: dict[str, Any], deadline: float, budget: list[int]) -> str:
        from jinja2.exceptions import SecurityError

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
        for chunk in self._template.generate(**{**variables, _ITER: _bounded_iter}, range=bounded_range):
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
