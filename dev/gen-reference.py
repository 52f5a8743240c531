"""Write docs/reference.md from the operators' and sensors' signatures and docstrings, their result
shapes (operators/results.py) and every config dataclass's fields, types, defaults and help.

.venv/bin/python dev/gen-reference.py          # rewrite
.venv/bin/python dev/gen-reference.py --check  # exit 1 if the file is out of date (a test runs this)
"""

from __future__ import annotations

import inspect
import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

OUT = Path(__file__).resolve().parents[1] / "docs" / "reference.md"
BASE_PARAMS = {"store_conn_id", "artifact_root", "config", "output_name", "dataset"}


def _classes():
    import airflow_mlcrit.operators as ops
    import airflow_mlcrit.sensors as sensors

    return [("Operators", getattr(ops, n)) for n in sorted(ops.__all__)] + [
        ("Sensors", getattr(sensors, n)) for n in sorted(sensors.__all__)
    ]


def _params(cls) -> list[tuple[str, str, bool, str]]:
    """(name, default, templated, help) for every keyword of the class and its mlcrit bases."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not klass.__module__.startswith("airflow_mlcrit"):
            continue
        for name, text in re.findall(r":param (\w+): (.*?)(?=\n\s*:param|\Z)", inspect.getdoc(klass) or "", re.S):
            docs[name] = " ".join(text.split())
    seen, out = set(), []
    for klass in cls.__mro__:
        if not klass.__module__.startswith("airflow_mlcrit") or "__init__" not in klass.__dict__:
            continue
        for p in inspect.signature(klass.__init__).parameters.values():
            if p.kind is not p.KEYWORD_ONLY or p.name in seen or p.name in getattr(cls, "fixed_params", ()):
                continue
            seen.add(p.name)
            default = "required" if p.default is p.empty else f"`{p.default!r}`"
            out.append((p.name, default, p.name in getattr(cls, "template_fields", ()), docs.get(p.name, "")))
    return out


CONFIGS = [
    ("airflow_mlcrit.core.validation.statistics", "StatisticsConfig"),
    ("airflow_mlcrit.core.validation.schema", "SchemaConfig"),
    ("airflow_mlcrit.core.validation.validate", "ValidationConfig"),
    ("airflow_mlcrit.core.preprocessing.config", "PreprocessConfig"),
    ("airflow_mlcrit.core.training.config", "FineTuneConfig"),
    ("airflow_mlcrit.core.evaluation.config", "EvaluationConfig"),
    ("airflow_mlcrit.core.gating.decide", "GateConfig"),
    ("airflow_mlcrit.core.prompting.prompt", "PromptSpec"),
]


def _default(f) -> str:
    import dataclasses

    if f.default is not dataclasses.MISSING:
        return f"`{json.dumps(f.default)}`"
    if f.default_factory is not dataclasses.MISSING:
        return f"`{json.dumps(f.default_factory())}`"
    return "required"


def _configs() -> list[str]:
    import dataclasses
    import importlib
    import typing

    from airflow_mlcrit.core.configbase import type_name

    lines = [
        "",
        "## Configs",
        "",
        "Operators take these as a dataclass or a dict (dicts are templated). Every field is checked",
        "against its type: a rendered string converts where the type is a number, a bool or optional",
        '(`"150"` -> 150, `"true"` -> True, `"None"` -> None); anything else is a `ConfigError` naming',
        "the field, the value and what is allowed. Unknown fields are errors too.",
    ]
    for module, name in CONFIGS:
        cls = getattr(importlib.import_module(module), name)
        hints = typing.get_type_hints(cls)
        doc = " ".join((inspect.getdoc(cls) or "").split())
        lines += ["", f"### `{name}`", "", f"`{module}.{name}`: {doc}", ""]
        lines += ["| field | type | default | description |", "|---|---|---|---|"]
        for f in dataclasses.fields(cls):
            kind = type_name(hints[f.name]).replace("|", "\\|")
            lines.append(f"| `{f.name}` | {kind} | {_default(f)} | {f.metadata.get('help', '')} |")
    return lines


def _results() -> list[str]:
    import typing

    import airflow_mlcrit.operators.results as results
    from airflow_mlcrit.core.configbase import type_name

    source = inspect.getsource(results)
    comments = dict(re.findall(r"^    (\w+): [^#\n]*# (.*)$", source, re.M))
    lines = ["", "## Results", "", " ".join(inspect.getdoc(results).split()), ""]
    for name in ("ArtifactResult", *sorted(n for n in dir(results) if n.endswith("Result") and n != "ArtifactResult")):
        cls = getattr(results, name)
        own = cls.__annotations__ if name == "ArtifactResult" else {k: v for k, v in cls.__annotations__.items()}
        lines += ["", f"### `{name}`", "", " ".join((inspect.getdoc(cls) or "").split()), ""]
        hints = typing.get_type_hints(cls)
        extra = [k for k in own if name == "ArtifactResult" or k not in results.ArtifactResult.__annotations__]
        if name != "ArtifactResult":
            lines += ["Keys: those of `ArtifactResult`" + (", and:" if extra else "."), ""]
        if extra:
            lines += ["| key | type | description |", "|---|---|---|"]
            for key in extra:
                kind = type_name(hints[key]).replace("|", "\\|")
                lines.append(f"| `{key}` | {kind} | {comments.get(key, '')} |")
    return lines


def render() -> str:
    lines = [
        "# Reference",
        "",
        "Generated by `dev/gen-reference.py` from the code (a test keeps it current). Every class also",
        "takes Airflow's `BaseOperator` arguments (`task_id`, `retries`, `pool`, ...).",
    ]
    section = None
    for group, cls in _classes():
        if group != section:
            lines += ["", f"## {group}"]
            section = group
        summary = (inspect.getdoc(cls) or "").split(":param")[0].strip()
        lines += ["", f"### `{cls.__name__}`", "", f"`{cls.__module__}.{cls.__name__}`", "", summary, ""]
        lines += ["| parameter | default | templated | description |", "|---|---|---|---|"]
        for name, default, templated, text in _params(cls):
            lines.append(
                f"| `{name}` | {default} | {'yes' if templated else ''} | {text.replace('(templated)', '').strip()} |"
            )
    lines += _results() + _configs()
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    text = render()
    if "--check" in sys.argv:
        sys.exit(0 if OUT.exists() and OUT.read_text() == text else 1)
    OUT.write_text(text)
    print(f"wrote {OUT}")
