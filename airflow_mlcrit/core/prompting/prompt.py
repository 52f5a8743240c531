"""PromptSpec: a sandboxed Jinja template, its declared variables, few-shot examples and label
verbalizers. A ``prompt`` artifact holds it as ``prompt.json``; its digest identifies it.

    {"template": "{% for e in examples %}Review: {{ e.text }} -> {{ e.label }}\\n{% endfor %}Review: {{ text }} ->",
     "variables": ["text"],
     "verbalizers": {"pos": "positive", "neg": "negative"},
     "label_template": "This review is {{ label }}.",
     "few_shot": {"examples": [{"text": "great", "label": "positive"}], "selection": "fixed", "k": 1},
     "decoding": {"max_new_tokens": 8},
     "output_variable": "summary"}
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from airflow_mlcrit.core.configbase import Config, require
from airflow_mlcrit.exceptions import ConfigError, DataValidationError

PROMPT_FILE = "prompt.json"
CHAIN_FILE = "chain.json"


@dataclass
class PromptSpec(Config):
    """One prompt (JSON round trip: to_dict / from_dict)."""

    template: str = field(metadata={"help": "Jinja template (sandboxed; undefined variables are errors)"})
    variables: list[str] = field(default_factory=list, metadata={"help": "declared input variables"})
    verbalizers: dict[str, str] = field(
        default_factory=dict, metadata={"help": "label -> the words that stand for it (classification)"}
    )
    label_template: str = field(
        default="{{ label }}",
        metadata={"help": "encoder backend: the description of a label, rendered with {{ label }} = its verbalizer"},
    )
    few_shot: dict[str, Any] = field(
        default_factory=dict,
        metadata={"help": "{examples: [...], selection: fixed|random|nearest, k, seed, key}; rendered as `examples`"},
    )
    decoding: dict[str, Any] = field(
        default_factory=lambda: {"max_new_tokens": 16},
        metadata={"help": "generation: greedy decoding parameters (max_new_tokens)"},
    )
    output_variable: str | None = field(
        default=None, metadata={"help": "chains: the variable this step's output fills"}
    )
    name: str = field(
        default="", metadata={"help": "the prompt's name (informational; the artifact name identifies it)"}
    )

    def __post_init__(self) -> None:
        from jinja2 import meta

        from airflow_mlcrit.core.preprocessing.templates import parse_template

        require(bool(self.template), "PromptSpec.template is empty")
        require(bool(self.variables), "PromptSpec.variables must declare the template's input variables")
        compiled = _compile(self.template, "template", self.name)
        _compile(self.label_template, "label_template", self.name)
        used = meta.find_undeclared_variables(parse_template(self.template))
        undeclared = sorted(used - set(self.variables) - {"examples"})
        require(
            not undeclared,
            f"PromptSpec.template uses {undeclared} but declares only {self.variables}; add them to variables",
        )
        selection = self.few_shot.get("selection", "fixed")
        require(
            selection in ("fixed", "random", "nearest"),
            f"PromptSpec.few_shot.selection must be fixed, random or nearest, got {selection!r}",
        )
        examples = self.few_shot.get("examples", [])
        require(isinstance(examples, list), "PromptSpec.few_shot.examples must be a list of dicts")
        self._compiled = compiled

    @property
    def digest(self) -> str:
        body = json.dumps({k: v for k, v in self.to_dict().items() if k != "name"}, sort_keys=True)
        return "sha256:" + hashlib.sha256(body.encode()).hexdigest()

    @property
    def labels(self) -> list[str] | None:
        return sorted(self.verbalizers) if self.verbalizers else None

    def render(self, variables: dict[str, Any], examples: list[dict[str, Any]] = (), *, row: int | None = None) -> str:
        from jinja2 import UndefinedError

        try:
            return self._compiled.render(**variables, examples=list(examples))
        except UndefinedError as exc:
            where = f" (row {row})" if row is not None else ""
            raise DataValidationError(
                f"prompt {self.name or '(unnamed)'}{where}: {exc.message}; declared: {self.variables}"
            ) from None

    def label_description(self, label: str) -> str:
        template = _compile(self.label_template, "label_template", self.name)
        return template.render(label=self.verbalizers.get(label, label))


def _compile(source: str, what: str, name: str) -> Any:
    from airflow_mlcrit.core.preprocessing.templates import compile_template

    try:
        return compile_template(source, f"prompt {name or '(unnamed)'}")
    except ConfigError as exc:
        raise ConfigError(f"PromptSpec.{what}: {exc}") from None


def select_examples(spec: PromptSpec, inputs: list[str], embed: Any = None) -> list[list[dict[str, Any]]]:
    """The few-shot examples for each input: the first k (fixed), a seeded sample (random, the same
    for every row), or the k nearest by embedding cosine similarity (nearest; needs ``embed``)."""
    fs = spec.few_shot
    examples = list(fs.get("examples", []))
    k = int(fs.get("k", len(examples)))
    if not examples or k <= 0:
        return [[] for _ in inputs]
    selection = fs.get("selection", "fixed")
    if selection == "fixed":
        return [examples[:k] for _ in inputs]
    if selection == "random":
        rng = np.random.default_rng(int(fs.get("seed", 0)))
        chosen = [examples[i] for i in sorted(rng.choice(len(examples), size=min(k, len(examples)), replace=False))]
        return [chosen for _ in inputs]
    if embed is None:
        raise ConfigError("few_shot.selection='nearest' needs an embedding model (few_shot_encoder)")
    key = fs.get("key", spec.variables[0])
    missing = [i for i, e in enumerate(examples) if key not in e]
    if missing:
        raise ConfigError(f"few_shot.examples[{missing[0]}] has no {key!r} to compare inputs with (few_shot.key)")
    ex = embed([str(e[key]) for e in examples])
    q = embed(inputs)
    sims = q @ ex.T
    order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return [[examples[j] for j in row] for row in order]


@dataclass
class ChainStep:
    spec: PromptSpec
    ref: str


def check_chain(steps: list[ChainStep]) -> None:
    """Every step but the last names the variable its output fills, and a later step uses it."""
    require(bool(steps), "a prompt chain needs at least one step")
    for i, step in enumerate(steps[:-1]):
        var = step.spec.output_variable
        require(bool(var), f"chain step {i} ({step.ref}) needs output_variable: the variable the next step reads")
        require(
            var in steps[i + 1].spec.variables,
            f"chain step {i} ({step.ref}) fills {var!r}, which step {i + 1} ({steps[i + 1].ref}) does not declare",
        )


ScoreMode = Literal["generate", "score_labels"]


def load_prompt(store: Any, ref: str) -> tuple[PromptSpec, Any]:
    """(spec, manifest) of a ``prompt`` artifact holding prompt.json."""
    manifest = store.resolve(ref)
    if manifest.kind != "prompt":
        raise ConfigError(f"{manifest.ref} is a {manifest.kind}, not a prompt artifact")
    data = json.loads(store.read_bytes(manifest.ref, PROMPT_FILE))
    spec = PromptSpec.from_dict({**data, "name": str(manifest.ref)})
    return spec, manifest
