"""Prompt evaluation and the prompt-or-fine-tune branch (thin glue over core.prompting)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from airflow_mlcrit.exceptions import ConfigError
from airflow_mlcrit.operators.base import MlcritBaseOperator
from airflow_mlcrit.operators.evaluation import EvaluateModelOperator
from airflow_mlcrit.version_compat import BaseBranchOperator

BACKENDS = ("causal_lm", "encoder", "http")
RENDERED_FILE = "rendered.jsonl"


class PromptEvaluationOperator(EvaluateModelOperator):
    """Evaluate a ``prompt`` (or a chain of prompts) on an eval dataset with the same metrics,
    slices, intervals, suites, sensitivity and report as EvaluateModelOperator; commits an
    ``evaluation`` whose candidate is the prompt (so the gate can bless it).

    :param prompt: a ``prompt`` artifact reference, or a list of them (a chain: each step's
        ``output_variable`` feeds the next). (templated)
    :param backend: ``causal_lm`` (local model: generation or label log-likelihood), ``encoder``
        (local sentence encoder: zero-shot by similarity) or ``http`` (OpenAI-compatible endpoint).
    :param model: the model artifact (causal_lm, encoder: pinned and recorded with the blessing; a local
        directory can be evaluated but not blessed) or the hosted model's name (http). (templated)
    :param mode: ``generate``, ``score_labels`` or ``similarity``; default by backend. (templated)
    :param input_variable: the prompt variable that suites and sensitivity perturb; default the
        first declared one. (templated)
    :param http_conn_id: connection of the endpoint: host or extra ``base_url``; password = API key. (templated)
    :param cache_dir: response cache of the http backend; default ``$AIRFLOW_HOME/mlcrit/prompt-cache``. (templated)
    :param requests_per_second: http backend: the most requests per second; None: no limit.
    :param max_retries: http backend: retries of a 429 / 5xx / dropped request, with exponential backoff.
    :param few_shot_encoder: encoder directory or artifact for ``nearest`` few-shot selection. (templated)
    :param baseline: an alias of the prompt (default ``production``), a reference, or None. (templated)
    :param allow_model_change: a blessed prompt is pinned to the model it was blessed with; evaluating
        it (as candidate or baseline) on another model is refused unless this is True, and then
        recorded as ``model_overrides`` in the evaluation, its blessing and lineage.
    """

    fixed_params = ("candidate",)  # the prompt is the candidate
    template_fields: Sequence[str] = (
        *(f for f in EvaluateModelOperator.template_fields if f != "candidate"),
        "prompt",
        "model",
        "mode",
        "input_variable",
        "http_conn_id",
        "cache_dir",
        "few_shot_encoder",
        "allow_model_change",
    )

    def __init__(
        self,
        *,
        prompt: str | list[str],
        backend: str = "causal_lm",
        model: str | None = None,
        mode: str | None = None,
        input_variable: str | None = None,
        http_conn_id: str | None = None,
        cache_dir: str | None = None,
        few_shot_encoder: str | None = None,
        requests_per_second: float | None = None,
        max_retries: int = 5,
        allow_model_change: bool = False,
        **kwargs: Any,
    ):
        if backend not in BACKENDS:
            raise ConfigError(f"PromptEvaluationOperator backend must be one of {BACKENDS}, got {backend!r}")
        super().__init__(candidate="", **kwargs)
        self.prompt, self.backend, self.model, self.mode = prompt, backend, model, mode
        self.input_variable, self.http_conn_id, self.cache_dir = input_variable, http_conn_id, cache_dir
        self.few_shot_encoder, self.requests_per_second, self.max_retries = (
            few_shot_encoder,
            requests_per_second,
            max_retries,
        )
        self.allow_model_change = allow_model_change
        self._predictor: Any = None

    def _local_model(self, ref: str, work: Path, where: str) -> str:
        from airflow_mlcrit.core.tables import is_artifact_ref

        if is_artifact_ref(ref.split("@")[0]):
            m = self.read_input(ref)
            self.store.get(m.ref, work / where)
            return str(work / where)
        return ref

    def _pin_model(self) -> str | None:
        """Resolve the model now, once: the evaluation records exactly this version (a parent, with
        its digest), and the backend loads exactly it. A hosted model is recorded by endpoint and
        name: nothing here can pin what the endpoint serves."""
        from airflow_mlcrit.core.tables import is_artifact_ref

        self._model_manifest = None
        if self.backend == "http":
            self._model_binding = {"model": self.model, "model_digest": None, "endpoint": self._endpoint()[0]}
            return self.model
        if self.model and is_artifact_ref(self.model.split("@")[0]):
            m = self._model_manifest = self.read_input(self.model)
            self._model_binding = {"model": str(m.ref), "model_digest": m.digest}
            return str(m.ref)
        self._model_binding = {"model": self.model, "model_digest": None}
        return self.model

    def _endpoint(self) -> tuple[str, str | None]:
        """(base URL, API key) of the http connection."""
        from airflow_mlcrit.version_compat import BaseHook

        if not self.http_conn_id:
            raise ConfigError("the http backend needs http_conn_id (host or extra base_url, password = API key)")
        conn = BaseHook.get_connection(self.http_conn_id)
        base_url = conn.extra_dejson.get("base_url") or conn.host
        if base_url and not base_url.startswith(("http://", "https://")):
            base_url = f"{conn.schema or 'https'}://{base_url}" + (f":{conn.port}" if conn.port else "")
        return base_url or "", conn.password

    def _backend(self, cfg: Any, work: Path) -> Any:
        from airflow_mlcrit.core.prompting import backends

        if self.backend in ("causal_lm", "encoder"):
            # the version _pin_model resolved and recorded: fetched, not resolved again
            path = self._pinned
            if self._model_manifest is not None:
                self.store.get(self._model_manifest.ref, work / "model")
                path = str(work / "model")
            local = backends.CausalLMBackend if self.backend == "causal_lm" else backends.EncoderBackend
            return local(
                path,
                batch_size=cfg.batch_size,
                max_length=cfg.max_length,
                device=cfg.device,
                max_truncated_rate=cfg.max_truncated_rate,
            )
        from airflow_mlcrit.core.config import home_dir

        base_url, key = self._endpoint()
        # not [core] airflow_home: Airflow 3 has no such option, and "." put the cache in the cwd
        cache = self.cache_dir or home_dir("prompt-cache")
        return backends.OpenAIBackend(
            base_url,
            key,
            self.model,
            cache_dir=cache,
            max_retries=self.max_retries,
            requests_per_second=self.requests_per_second,
        )

    def _predictor_for(self, refs: list[str], backend: Any, embed: Any, mode: str) -> tuple[Any, list[Any]]:
        from airflow_mlcrit.core.prompting.predict import PromptPredictor
        from airflow_mlcrit.core.prompting.prompt import ChainStep, load_prompt

        steps, manifests = [], []
        for ref in refs:
            spec, manifest = load_prompt(self.store, ref)
            steps.append(ChainStep(spec, str(manifest.ref)))
            manifests.append(manifest)
        return PromptPredictor(steps, backend, mode=mode, input_variable=self.input_variable, embed=embed), manifests

    def _models(self, cfg: Any, work: Path, data_manifest: Any) -> tuple[Any, Any, Any, Any, str | None]:
        refs = [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)
        from airflow_mlcrit.core.evaluation.inference import Lazy

        if not self.model:
            raise ConfigError(f"PromptEvaluationOperator backend {self.backend!r} needs model")
        self._pinned = self._pin_model()
        # loaded on first use: a retry that finds its evaluation committed loads no model
        backend = Lazy(lambda: self._backend(cfg, work), kind=self.backend)
        embed = None
        if self.few_shot_encoder:
            from airflow_mlcrit.core.prompting.backends import EncoderBackend

            embed = EncoderBackend(self._local_model(self.few_shot_encoder, work, "few-shot-encoder")).embed
        mode = self.mode or {"causal_lm": "score_labels", "encoder": "similarity", "http": "generate"}[self.backend]
        predictor, manifests = self._predictor_for(refs, backend, embed, mode)
        if cfg.task == "classification" and not predictor.labels:
            raise ConfigError("task 'classification' needs the prompt's verbalizers; use task 'generation' otherwise")
        for m in manifests:
            self.lineage.add_input(self.store, m)
        # the chain's earlier steps, and the model it ran on when an artifact pins it
        self._more_parents = [str(m.ref) for m in manifests[:-1]]
        if self._model_binding.get("model_digest"):
            self._more_parents.append(self._model_binding["model"])
        if mode == "generate" and cfg.task == "classification":
            # labels read from generated text carry no probabilities: default to count metrics; and
            # the share that matched no label is always measured (the gate judges it by default)
            if cfg.metrics is None:
                cfg.metrics = ["accuracy", "macro_f1", "weighted_f1", "macro_precision", "macro_recall"]
            if "unparsed_rate" not in cfg.metrics:
                cfg.metrics = [*cfg.metrics, "unparsed_rate"]
        if predictor.input_variable != cfg.text_column:  # suites and sensitivity perturb the prompt's input
            cfg.text_column = predictor.input_variable
        cand_m = manifests[-1]
        base_ref = (
            self._baseline_ref(cand_m) if len(refs) == 1 else (self.baseline if "/" in str(self.baseline) else None)
        )
        baseline = base_m = None
        if base_ref:
            baseline, [base_m] = self._predictor_for([base_ref], backend, embed, mode)
            self.lineage.add_input(self.store, base_m)
        self._check_pins([("candidate", m) for m in manifests] + ([("baseline", base_m)] if base_m else []))
        self._predictor, self._backend_obj, self._manifests, self._mode = predictor, backend, manifests, mode
        return predictor, cand_m, baseline, base_m, base_ref

    def _check_pins(self, prompts: list[tuple[str, Any]]) -> None:
        """Each prompt runs on the model it is pinned to, before any inference (or the change is
        explicit, and recorded in the binding, which the evaluation, the blessing and lineage keep)."""
        from airflow_mlcrit.core.gating.blessing import check_model_pin

        changes = [
            c
            for role, m in prompts
            # only an explicit True (a rendered template gives a bool): never a truthy string
            if (c := check_model_pin(self.store, m, self._model_binding, role, self.allow_model_change is True))
        ]
        if changes:
            self._model_binding["model_overrides"] = changes
            for c in changes:
                self.log.warning(
                    "allow_model_change: the %s %s, pinned to %s by %s, is judged on %s",
                    c["role"],
                    c["prompt"],
                    c["pinned_model"],
                    c["pinned_by"],
                    c["model"],
                )

    def _extra(self, result: dict[str, Any], out: Path) -> None:
        p, backend = self._predictor, self._backend_obj
        with open(out / RENDERED_FILE, "w") as f:
            for row in range(len(p.rendered[0]) if p.rendered else 0):
                steps = [{"prompt": r[row], "output": o[row]} for r, o in zip(p.rendered, p.outputs, strict=False)]
                f.write(json.dumps({"row": row, "steps": steps}) + "\n")
        info = {
            # what it ran on, as pinned (never the temporary directory it was loaded from)
            "backend": {
                "kind": backend.kind,
                "model": self._model_binding["model"],
                **({"modelDigest": d} if (d := self._model_binding["model_digest"]) else {}),
                **({"endpoint": self._model_binding["endpoint"]} if "endpoint" in self._model_binding else {}),
            },
            "mode": self._mode,
            "steps": [
                {
                    "ref": step.ref,
                    "templateDigest": step.spec.digest,
                    "variables": step.spec.variables,
                    "verbalizers": step.spec.verbalizers,
                    "fewShot": {
                        "selection": step.spec.few_shot.get("selection", "fixed"),
                        "k": step.spec.few_shot.get("k", len(step.spec.few_shot.get("examples", []))),
                        "examples": len(step.spec.few_shot.get("examples", [])),
                    },
                    "decoding": step.spec.decoding,
                    "outputVariable": step.spec.output_variable,
                }
                for step in p.steps
            ],
            "unparsedOutputs": p.unparsed,
        }
        if p.unparsed:
            self.log.warning(
                "%s of %s generated outputs matched no verbalizer: each counts as wrong (unparsed_rate)",
                p.unparsed,
                len(p.outputs[-1]) if p.outputs else "?",
            )
        if backend.kind == "http":
            info["requests"] = {
                "sent": backend.requests_sent,
                "cacheHits": backend.cache_hits,
                "retries": backend.retries,
            }
            self.log.info("http backend: %s requests sent, %s cache hits, %s retries", *info["requests"].values())
        result["prompt"] = info

    def _facets(self, result: dict[str, Any]) -> dict[str, Any]:
        from airflow_mlcrit.core.lineage import facet

        return super()._facets(result) | {"mlcrit_prompt": facet("mlcrit_prompt", **result["prompt"])}


class PromptOrFineTuneBranchOperator(MlcritBaseOperator, BaseBranchOperator):
    """Follow ``promote_task_id`` when the prompt holds a BLESSED blessing of its exact digest
    (the given ``blessing``, or the newest one found), else ``finetune_task_id``: a prompt that is
    good enough costs no training.

    :param prompt: the ``prompt`` version that was gated. (templated)
    :param blessing: the gate's ``blessing`` reference; default: the newest one of the prompt. (templated)
    :param promote_task_id: the task followed when the prompt is BLESSED.
    :param finetune_task_id: the task followed otherwise.
    """

    template_fields: Sequence[str] = (*MlcritBaseOperator.template_fields, "prompt", "blessing")
    inherits_from_skipmixin = True

    def __init__(
        self,
        *,
        prompt: str,
        blessing: str | None = None,
        promote_task_id: str = "promote_prompt",
        finetune_task_id: str = "finetune",
        **kwargs: Any,
    ):
        kwargs.setdefault("multiple_outputs", False)  # returns the branch's task id, not a result
        super().__init__(**kwargs)
        self.prompt, self.blessing = prompt, blessing
        self.promote_task_id, self.finetune_task_id = promote_task_id, finetune_task_id

    def choose_branch(self, context: Any) -> str:
        from airflow_mlcrit.core.gating import blesses, find_blessing

        target = self.read_input(self.prompt)
        proof = self.store.resolve(self.blessing) if self.blessing else find_blessing(self.store, target.ref)
        blessed = proof is not None and blesses(proof, target.digest)
        if proof is not None:
            self.lineage.add_input(self.store, proof)
        choice = self.promote_task_id if blessed else self.finetune_task_id
        self.log.info(
            "%s is %s (%s): following %s",
            target.ref,
            "BLESSED" if blessed else "not blessed",
            proof.ref if proof is not None else "no blessing",
            choice,
        )
        return choice
