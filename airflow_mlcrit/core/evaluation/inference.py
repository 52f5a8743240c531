"""Load a fine-tuned model (adapter + base, or a full model directory) and score texts in batches."""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from airflow_mlcrit.core.evaluation.compute import Predictions
from airflow_mlcrit.core.trust import refuse_remote_code
from airflow_mlcrit.exceptions import ConfigError, MissingDependencyError


def length_batches(texts: list[str], size: int) -> list[list[int]]:
    """Row indices in batches of ``size``, shortest texts first: a batch is padded to its longest
    row, so batching rows of similar length scores about a quarter fewer tokens on short texts.
    Callers put each batch's outputs back at its indices."""
    order = sorted(range(len(texts)), key=lambda i: len(texts[i] or ""))
    return [order[start : start + size] for start in range(0, len(order), size)]


class ModelScorer:
    """``predict(texts) -> Predictions``: classification (class indices + probabilities) or
    generation (greedy continuation; ``loss(prompts, references)`` gives per-row LM loss)."""

    def __init__(
        self,
        path: str | Path,
        *,
        task: str,
        base_path: str | Path | None = None,
        batch_size: int = 32,
        max_length: int = 128,
        max_new_tokens: int = 32,
        device: str = "auto",
        allow_pickle: bool = False,
        trust_remote_code: bool = False,
        max_truncated_rate: float = 0.05,
        name: str | None = None,
    ):
        try:
            import torch
            import transformers
        except ImportError as exc:
            raise MissingDependencyError(exc.name or "torch", "train") from None
        self.torch, self.task = torch, task
        self.batch_size, self.max_length, self.max_new_tokens = batch_size, max_length, max_new_tokens
        self.max_truncated_rate, self.name = max_truncated_rate, name or str(path)
        path = Path(path)
        if not (path / "config.json").is_file() and not (path / "adapter_config.json").is_file():
            raise ConfigError(f"{path} is neither a model directory (config.json) nor an adapter (adapter_config.json)")
        if device == "cuda" and not torch.cuda.is_available():
            raise ConfigError("EvaluationConfig.device='cuda' but no CUDA GPU is available; use 'auto' or 'cpu'")
        self.device = torch.device("cuda" if device != "cpu" and torch.cuda.is_available() else "cpu")
        self.labels: list[str] | None = None
        if (path / "labels.json").is_file():
            self.labels = json.loads((path / "labels.json").read_text())
        adapter = (path / "adapter_config.json").is_file()
        model_dir = Path(base_path) if adapter else path
        if adapter and (base_path is None or not (Path(base_path) / "config.json").is_file()):
            raise ConfigError(f"{path} is a LoRA adapter: give its base model directory (base_path), got {base_path!r}")
        opts = {"local_files_only": True, "trust_remote_code": trust_remote_code, "use_safetensors": not allow_pickle}
        tok_dir = path if (path / "tokenizer_config.json").is_file() else model_dir
        for d in {model_dir, tok_dir}:
            refuse_remote_code(d, trust_remote_code)
        self.tokenizer = transformers.AutoTokenizer.from_pretrained(
            tok_dir, local_files_only=True, trust_remote_code=trust_remote_code
        )
        if task == "classification" and self.labels is None:
            raise ConfigError(f"{path} has no labels.json: it was not trained as a classifier by mlcrit")
        try:
            # an adapter brings its own classification head (modules_to_save), so the base's "head
            # MISSING, consider training" report is noise here; checked after the adapter loads
            quiet = _quiet_loading_report(transformers) if adapter else contextlib.nullcontext()
            with quiet:
                model = self._load(transformers, task, model_dir, opts)
        except OSError as exc:
            raise ConfigError(f"cannot load model from {model_dir}: {exc}. Pickle weights need allow_pickle") from None
        if adapter:
            import peft

            model = peft.PeftModel.from_pretrained(model, path)
            if task == "classification":
                _check_head(path)
            # scoring only: the LoRA deltas folded into the base weights (and the trained head
            # swapped in) give the same outputs (to ~1e-6) ~18% faster than the adapter layers
            model = model.merge_and_unload()
        self.model = model.to(self.device).eval()
        self.bf16 = self.device.type == "cuda" and torch.cuda.is_bf16_supported()

    def _load(self, transformers: Any, task: str, model_dir: Path, opts: dict[str, Any]) -> Any:
        if task == "classification":
            return transformers.AutoModelForSequenceClassification.from_pretrained(
                model_dir,
                num_labels=len(self.labels),
                id2label=dict(enumerate(self.labels)),
                label2id={v: i for i, v in enumerate(self.labels)},
                **opts,
            )
        model = transformers.AutoModelForCausalLM.from_pretrained(model_dir, **opts)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        # a prompt that must be cut loses its beginning, not the end the model continues from
        self.tokenizer.padding_side = self.tokenizer.truncation_side = "left"
        return model

    @property
    def context(self) -> int | None:
        """The most tokens the model takes at once (its position embeddings), if it says."""
        config = self.model.config
        return getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)

    def truncation(self, texts: list[str], what: str | None = None) -> np.ndarray:
        """Per text, whether max_length cuts it; refuses above max_truncated_rate (before inference)."""
        from airflow_mlcrit.core.truncation import refuse_truncation, token_lengths

        return refuse_truncation(
            token_lengths(self.tokenizer, texts),
            self.max_length,
            self.max_truncated_rate,
            what or self.name,
            "EvaluationConfig.max_truncated_rate",
        )

    def _autocast(self) -> Any:
        return self.torch.autocast(device_type=self.device.type, dtype=self.torch.bfloat16, enabled=self.bf16)

    def _batches(self, texts: list[str]) -> Any:
        """(row indices, encoded batch) pairs, rows of similar length together."""
        for rows in length_batches(texts, self.batch_size):
            enc = self.tokenizer(
                [texts[i] or "" for i in rows],
                truncation=True,
                max_length=self.max_length,
                padding=True,
                return_tensors="pt",
            ).to(self.device)
            yield rows, enc

    def predict(self, texts: list[str]) -> Predictions:
        torch = self.torch
        cut = self.truncation(texts)
        if self.task != "classification":
            return Predictions(np.array(self.generate(texts), dtype=object), truncated=cut)
        proba = np.zeros((0, len(self.labels or [])))
        with torch.no_grad():
            for rows, enc in self._batches(texts):
                with self._autocast():
                    logits = self.model(**enc).logits
                if not proba.size:
                    proba = np.zeros((len(texts), logits.shape[1]))
                proba[rows] = torch.softmax(logits.float(), dim=-1).cpu().numpy().astype(np.float64)
        return Predictions(proba.argmax(axis=1), proba, truncated=cut)

    def generate(self, prompts: list[str]) -> list[str]:
        torch, out = self.torch, [""] * len(prompts)
        with torch.no_grad():
            for rows, enc in self._batches(prompts):
                with self._autocast():
                    ids = self.model.generate(
                        **enc,
                        max_new_tokens=self.max_new_tokens,
                        do_sample=False,
                        pad_token_id=self.tokenizer.pad_token_id,
                    )
                texts = self.tokenizer.batch_decode(ids[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
                for i, text in zip(rows, texts, strict=True):
                    out[i] = text.strip()
        return out

    def loss(self, prompts: list[str], references: list[str]) -> np.ndarray:
        """Mean token loss of each reference given its prompt (prompt tokens masked)."""
        torch, out = self.torch, []
        with torch.no_grad():
            for prompt, ref in zip(prompts, references, strict=True):
                head = self.tokenizer(prompt, truncation=True, max_length=self.max_length)["input_ids"]
                full = self.tokenizer(
                    f"{prompt} {ref}", truncation=True, max_length=self.max_length, return_tensors="pt"
                )
                ids = full["input_ids"].to(self.device)
                labels = ids.clone()
                labels[:, : min(len(head), ids.shape[1] - 1)] = -100
                out.append(float(self.model(input_ids=ids, labels=labels).loss))
        return np.array(out)


class Lazy:
    """Builds the wrapped object on first use. An evaluation resolves its models first and loads
    them only to score: a retry that finds its evaluation committed loads none."""

    def __init__(self, build: Any, **known: Any):
        self._build, self._obj = build, None
        self.__dict__.update(known)  # attributes answered without building (a backend's kind)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        if self._obj is None:
            self._obj = self._build()
        return getattr(self._obj, name)


@contextlib.contextmanager
def _quiet_loading_report(transformers: Any) -> Any:
    logger = transformers.utils.logging.get_logger("transformers.modeling_utils")
    before = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(before)


def _check_head(adapter_dir: Path) -> None:
    """An adapter without a trained classification head would score with random head weights."""
    from safetensors import safe_open

    weights = adapter_dir / "adapter_model.safetensors"
    if weights.is_file():
        with safe_open(str(weights), "pt") as f:
            if not any(("classifier" in k or "score" in k) for k in f.keys()):
                raise ConfigError(
                    f"{adapter_dir} has no trained classification head (no classifier/score weights in "
                    "adapter_model.safetensors): train it with modules_to_save, as FineTuneOperator does"
                )


def materialize_model(store: Any, source: str, dest: Path) -> tuple[Path, Path | None, Any]:
    """(model or adapter directory, base model directory for an adapter, manifest or None) for an
    artifact reference or a local directory. An adapter artifact's base comes from its metadata."""
    from airflow_mlcrit.core.tables import is_artifact_ref

    if not is_artifact_ref(source.split("@")[0]):
        path = Path(source)
        base = None
        if (path / "adapter_config.json").is_file():
            base = Path(json.loads((path / "adapter_config.json").read_text())["base_model_name_or_path"])
        return path, base, None
    if store is None:
        raise ConfigError(f"{source!r} is an artifact reference but no store was given")
    manifest = store.resolve(source)
    if manifest.kind not in ("model", "adapter", "base_model"):
        raise ConfigError(f"{manifest.ref} is a {manifest.kind}; evaluate a model, adapter or base_model artifact")
    path = dest / "model"
    store.get(manifest.ref, path)
    base = None
    if manifest.kind == "adapter":
        base, _, _ = materialize_model(store, pinned_base(store, manifest), dest / "base")
    return path, base, manifest


def pinned_base(store: Any, adapter: Any) -> str:
    """The base model version an adapter was trained on, as recorded (``base_model/x@vN`` plus
    digest). A base whose digest differs from the recorded one is refused, naming both: an adapter
    on another base is another model."""
    from airflow_mlcrit.core.tables import is_artifact_ref
    from airflow_mlcrit.exceptions import ArtifactIntegrityError

    origin = adapter.metadata.get("base_model")
    if not origin:
        raise ConfigError(f"{adapter.ref} records no base_model in its metadata: cannot load the adapter")
    if not is_artifact_ref(origin.split("@")[0]):
        return origin  # trained from a local directory: that path is all there is to load
    recorded = adapter.metadata.get("base_model_digest")
    base = store.resolve(origin)
    if not recorded:
        from airflow_mlcrit.core.artifacts import parse_ref

        if parse_ref(origin).version is not None:
            return origin  # registered by hand with a version: immutable, and reads check its bytes
        raise ConfigError(
            f"{adapter.ref} records its base model as {origin!r}, which is not a pinned version and has no "
            "digest, so the base it was trained on is unknown; record base_model as kind/name@vN, or train again"
        )
    if base.digest != recorded:
        raise ArtifactIntegrityError(
            f"{adapter.ref} was trained on {origin} with digest {recorded}, but {base.ref} now has digest "
            f"{base.digest}: refusing to load the adapter on a different base model"
        )
    return str(base.ref)
