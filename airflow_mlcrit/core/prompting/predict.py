"""PromptPredictor: a prompt (or chain) + a backend behaving like a model for core.evaluation:
``predict_frame`` scores the eval rows, ``predict`` scores bare texts (suites, sensitivity)."""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from airflow_mlcrit.core.evaluation.compute import UNPARSED, Predictions
from airflow_mlcrit.core.prompting.prompt import ChainStep, check_chain, select_examples
from airflow_mlcrit.exceptions import ConfigError, DataValidationError, some

MODES = ("generate", "score_labels", "similarity")


class PromptPredictor:
    def __init__(
        self,
        steps: list[ChainStep],
        backend: Any,
        *,
        mode: str = "generate",
        input_variable: str | None = None,
        embed: Any = None,
        temperature: float = 0.05,
    ):
        check_chain(steps)
        if mode not in MODES:
            raise ConfigError(f"prompt mode must be one of {MODES}, got {mode!r}")
        final = steps[-1].spec
        if mode != "generate" and not final.verbalizers:
            raise ConfigError(f"mode {mode!r} needs the last prompt's verbalizers (label -> words)")
        if mode == "similarity" and (len(steps) > 1 or backend.kind != "encoder"):
            raise ConfigError("mode 'similarity' runs one prompt on an encoder backend (an encoder cannot generate)")
        if mode == "score_labels" and backend.kind != "causal_lm":
            raise ConfigError("mode 'score_labels' needs a causal_lm backend (token log-likelihoods)")
        if mode == "generate" and backend.kind == "encoder":
            raise ConfigError("an encoder backend cannot generate: use mode 'similarity'")
        self.steps, self.backend, self.mode = steps, backend, mode
        self.input_variable = input_variable or steps[0].spec.variables[0]
        self.embed = embed or (backend.embed if backend.kind == "encoder" else None)
        self.temperature = temperature
        self.labels = final.labels
        self.unparsed = 0
        self.rendered: list[list[str]] = []  # per step, per row (of the last predict_frame)
        self.outputs: list[list[str]] = []

    # ---- rows --------------------------------------------------------------------------------
    def predict(self, texts: list[str]) -> Predictions:
        return self._run([{self.input_variable: t} for t in texts], keep=False)

    def predict_frame(self, frame: Any) -> Predictions:
        first = self.steps[0].spec
        missing = [v for v in first.variables if v not in frame.columns]
        if missing:
            raise DataValidationError(
                f"prompt {self.steps[0].ref} needs variable(s) {missing}, which the eval dataset lacks; "
                f"columns: {some(frame.columns)}"
            )
        available = set(frame.columns)
        for i, step in enumerate(self.steps[1:], start=1):
            available.add(self.steps[i - 1].spec.output_variable)
            gap = [v for v in step.spec.variables if v not in available]
            if gap:
                raise DataValidationError(f"chain step {i} ({step.ref}) needs {gap}: no column and no earlier output")
        return self._run(frame.to_dict("records"), keep=True)

    def _run(self, rows: list[dict[str, Any]], *, keep: bool) -> Predictions:
        rendered_all, outputs_all = [], []
        rows = [dict(r) for r in rows]
        cut = None  # per row: was any step's input cut at max_length
        for i, step in enumerate(self.steps):
            spec = step.spec
            inputs = [str(r.get(self.input_variable, "")) for r in rows]
            shots = select_examples(spec, inputs, self.embed)
            # render every row before any inference: a missing variable fails here, naming it
            prompts = [spec.render(r, s, row=n) for n, (r, s) in enumerate(zip(rows, shots, strict=True))]
            rendered_all.append(prompts)
            last = i == len(self.steps) - 1
            # lengths and context checked before this step's inference: a cut prompt is another prompt
            scoring = last and self.mode == "score_labels"
            step_cut = self.backend.truncated(
                prompts,
                f"prompt {step.ref}",
                new_tokens=0 if (last and self.mode != "generate") else int(spec.decoding.get("max_new_tokens", 16)),
                continuations=[spec.verbalizers[label] for label in self.labels] if scoring else [],
            )
            if step_cut is not None:
                cut = step_cut if cut is None else cut | step_cut
            if last and self.mode != "generate":
                result = self._classify(spec, prompts)
                outputs_all.append([self.labels[k] for k in result.pred])
                break
            outs = self.backend.generate(prompts, spec.decoding, step.spec.digest)
            outputs_all.append(outs)
            if last:
                result = self._from_text(spec, outs)
            else:
                for r, o in zip(rows, outs, strict=True):
                    r[spec.output_variable] = o
        if keep:
            self.rendered, self.outputs = rendered_all, outputs_all
        result.truncated = cut
        return result

    def _classify(self, spec: Any, prompts: list[str]) -> Predictions:
        labels = self.labels
        if self.mode == "score_labels":
            scores = self.backend.label_logprobs(prompts, [spec.verbalizers[label] for label in labels])
        else:
            texts = self.embed(prompts)
            described = self.embed([spec.label_description(label) for label in labels])
            scores = texts @ described.T / self.temperature
        z = scores - scores.max(axis=1, keepdims=True)
        proba = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
        return Predictions(proba.argmax(axis=1), proba)

    def _from_text(self, spec: Any, outs: list[str]) -> Predictions:
        if not self.labels:
            return Predictions(np.array([o.strip() for o in outs], dtype=object))
        # generation read back into labels: the first verbalizer that appears as a word
        pattern = {
            label: re.compile(r"\b" + re.escape(spec.verbalizers[label].lower()) + r"\b") for label in self.labels
        }
        pred = []
        for o in outs:
            low = o.lower()
            hits = sorted((m.start(), k) for k, label in enumerate(self.labels) if (m := pattern[label].search(low)))
            if not hits:
                self.unparsed += 1
            pred.append(hits[0][1] if hits else UNPARSED)  # wrong for every row, never a real label
        return Predictions(np.array(pred, dtype=np.int64))
