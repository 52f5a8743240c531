"""The fine-tuning loop (plain PyTorch + peft): deterministic on CPU, progress every N steps."""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from airflow_mlcrit.core.training.config import DEFAULT_TARGETS, FineTuneConfig
from airflow_mlcrit.core.trust import refuse_remote_code
from airflow_mlcrit.exceptions import ConfigError, DataValidationError, MissingDependencyError, some

METRICS_FILE = "training_metrics.json"
LABELS_FILE = "labels.json"


@dataclass
class FineTuneResult:
    output_dir: Path
    metrics: dict[str, Any]
    labels: list[str]
    merged_dir: Path | None = None


def _imports() -> tuple[Any, Any, Any]:
    try:
        import peft
        import torch
        import transformers
    except ImportError as exc:
        raise MissingDependencyError(exc.name or "torch", "train") from None
    return torch, transformers, peft


def load_columns(source: str, columns: dict[str, str], store: Any = None) -> dict[str, list[Any]]:
    """The named columns of a dataset ({config field: column}); a missing one names the field."""
    from airflow_mlcrit.core.tables import iter_batches, open_table

    out: dict[str, list[Any]] = {field_name: [] for field_name in columns}
    with open_table(source, store=store) as table:
        for batch in iter_batches(table):
            names = batch.schema.names
            for field_name, column in columns.items():
                if column not in names:
                    raise DataValidationError(
                        f"FineTuneConfig.{field_name} is {column!r}, but {table.description} has no such column; "
                        f"columns: {some(names)}"
                    )
                out[field_name] += batch.column(column).to_pylist()
    return out


def _canonical_order(data: dict[str, list[Any]]) -> dict[str, list[Any]]:
    """Rows sorted by their content: distributed preprocessing (Beam) writes rows in no fixed
    order, and the seeded shuffle must see the same sequence every time for a repeatable run."""
    fields = list(data)
    n = len(data[fields[0]]) if fields else 0
    order = sorted(range(n), key=lambda i: tuple(str(data[f][i]) for f in fields))
    return {f: [data[f][i] for i in order] for f in fields}


def _columns(cfg: FineTuneConfig) -> dict[str, str]:
    if cfg.task == "sequence_classification":
        return {"text_column": cfg.text_column, "label_column": cfg.label_column}
    if cfg.task == "causal_lm":
        return {"text_column": cfg.text_column}
    return {"prompt_column": cfg.prompt_column, "response_column": cfg.response_column}  # type: ignore[dict-item]


def _cut(cfg: FineTuneConfig, tokenizer: Any, texts: list[str], what: str) -> int:
    """How many examples max_length cuts; refused above max_truncated_rate, before any step."""
    from airflow_mlcrit.core.truncation import refuse_truncation, token_lengths

    lengths = token_lengths(tokenizer, texts)
    return int(
        refuse_truncation(
            lengths, cfg.max_length, cfg.max_truncated_rate, what, "FineTuneConfig.max_truncated_rate"
        ).sum()
    )


def _classification_data(
    cfg: FineTuneConfig, data: dict[str, list[Any]], tokenizer: Any, labels: list[str], what: str = "training data"
) -> dict:
    import torch

    cut = _cut(cfg, tokenizer, [t or "" for t in data["text_column"]], what)
    enc = tokenizer(
        [t or "" for t in data["text_column"]],
        truncation=True,
        max_length=cfg.max_length,
        padding="longest",
        return_tensors="pt",
    )
    return {**enc, "labels": torch.tensor([labels.index(str(v)) for v in data["label_column"]]), "truncated": cut}


def _lm_data(cfg: FineTuneConfig, data: dict[str, list[Any]], tokenizer: Any, what: str = "training data") -> dict:
    """Causal LM batches; for instruction tuning the prompt (and padding) tokens get label -100, so
    the loss covers the response only."""
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if cfg.task == "causal_lm":
        texts, heads = [t or "" for t in data["text_column"]], None
    else:
        rendered = [
            render_instruction(cfg, tokenizer, p or "", r or "")
            for p, r in zip(data["prompt_column"], data["response_column"], strict=True)
        ]
        texts, heads = [f for f, _ in rendered], [h for _, h in rendered]
    cut = _cut(cfg, tokenizer, texts, what)
    enc = tokenizer(texts, truncation=True, max_length=cfg.max_length, padding="longest", return_tensors="pt")
    labels = enc["input_ids"].clone()
    labels[enc["attention_mask"] == 0] = -100
    if heads is not None:
        head_lens = [len(ids) for ids in tokenizer(heads, truncation=True, max_length=cfg.max_length)["input_ids"]]
        for i, n in enumerate(head_lens):
            labels[i, :n] = -100
    return {**enc, "labels": labels, "truncated": cut}


def render_instruction(cfg: FineTuneConfig, tokenizer: Any, prompt: str, response: str) -> tuple[str, str]:
    """(full text, prompt part) through the Jinja template or the tokenizer's chat template."""
    if cfg.template is not None:
        from airflow_mlcrit.core.preprocessing.templates import compile_template

        template = compile_template(cfg.template, "FineTuneConfig.template")
        return template.render(prompt=prompt, response=response), template.render(prompt=prompt, response="")
    if not getattr(tokenizer, "chat_template", None):
        raise ConfigError("FineTuneConfig.template is not set and the tokenizer has no chat template; set template")
    messages = [{"role": "user", "content": prompt}]
    head = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template([*messages, {"role": "assistant", "content": response}], tokenize=False)
    return full, head


def _resolve_base(cfg: FineTuneConfig, store: Any, workdir: Path) -> Path:
    from airflow_mlcrit.core.tables import is_artifact_ref

    if is_artifact_ref(cfg.base_model.split("@")[0]):
        if store is None:
            raise ConfigError(f"base_model {cfg.base_model!r} is an artifact reference but no store was given")
        dest = workdir / "base_model"
        store.get(cfg.base_model, dest)
        return dest
    path = Path(cfg.base_model)
    if not (path / "config.json").is_file():
        raise ConfigError(
            f"base_model {cfg.base_model!r} is not a Hugging Face model directory (no config.json there); "
            "give a local path or a base_model artifact reference (models are never downloaded at run time)"
        )
    return path


def _load(cfg: FineTuneConfig, base: Path, labels: list[str] | None) -> tuple[Any, Any]:
    _torch, transformers, _peft = _imports()
    refuse_remote_code(base, cfg.trust_remote_code, "base_model")
    tokenizer = transformers.AutoTokenizer.from_pretrained(
        base, local_files_only=True, trust_remote_code=cfg.trust_remote_code
    )
    common = {
        "local_files_only": True,
        "trust_remote_code": cfg.trust_remote_code,
        "use_safetensors": not cfg.allow_pickle,
        **_quantization(cfg),
    }
    try:
        if labels is None:
            model = transformers.AutoModelForCausalLM.from_pretrained(base, **common)
        else:
            model = transformers.AutoModelForSequenceClassification.from_pretrained(
                base,
                num_labels=len(labels),
                id2label=dict(enumerate(labels)),
                label2id={v: i for i, v in enumerate(labels)},
                **common,
            )
    except OSError as exc:
        raise ConfigError(
            f"cannot load base model from {base}: {exc}. Pickle (.bin) weights load only with allow_pickle=True"
        ) from None
    limit = getattr(model.config, "max_position_embeddings", None) or getattr(model.config, "n_positions", None)
    if limit is not None and cfg.max_length > limit:
        raise ConfigError(
            f"FineTuneConfig.max_length {cfg.max_length} is above the model's maximum sequence "
            f"length {limit}; lower max_length"
        )
    return tokenizer, model


def _quantization(cfg: FineTuneConfig) -> dict[str, Any]:
    """QLoRA: load the frozen base in 4-bit NF4 (double quantization, bf16 compute) on the GPU."""
    if cfg.method != "qlora":
        return {}
    torch, transformers, _peft = _imports()
    import importlib.util

    if importlib.util.find_spec("bitsandbytes") is None or not torch.cuda.is_available() or cfg.device == "cpu":
        raise ConfigError(
            "FineTuneConfig.method='qlora' needs bitsandbytes (pip install bitsandbytes) and a CUDA GPU; "
            "use method='lora' where either is missing"
        )
    quant = transformers.BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
        llm_int8_skip_modules=["classifier", "score", "lm_head"],  # heads stay trainable in full precision
    )
    rank = int(os.environ.get("LOCAL_RANK", "0"))
    return {"quantization_config": quant, "device_map": {"": rank % torch.cuda.device_count()}}


def _apply_method(cfg: FineTuneConfig, model: Any) -> Any:
    _torch, _transformers, peft = _imports()
    if cfg.method == "full":
        return model
    if cfg.method == "qlora":
        model = peft.prepare_model_for_kbit_training(model, use_gradient_checkpointing=cfg.gradient_checkpointing)
    targets = cfg.target_modules or DEFAULT_TARGETS.get(model.config.model_type)
    if not targets:
        raise ConfigError(
            f"no default LoRA target_modules for model_type {model.config.model_type!r}; "
            "set FineTuneConfig.target_modules"
        )
    names = {n.split(".")[-1] for n, _ in model.named_modules()}
    missing = [t for t in targets if t not in names]
    if missing:
        raise ConfigError(
            f"LoRA target_modules {missing} match no module of {model.config.model_type}; "
            f"linear layers include: {sorted(n for n in names if n)[:20]}"
        )
    lora = peft.LoraConfig(
        task_type=peft.TaskType.SEQ_CLS if cfg.task == "sequence_classification" else peft.TaskType.CAUSAL_LM,
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=targets,
    )
    return peft.get_peft_model(model, lora)


def finetune(
    cfg: FineTuneConfig | dict[str, Any],
    train: str,
    *,
    workdir: str | Path,
    store: Any = None,
    progress: Callable[[dict[str, Any]], None] | None = None,
    resume_from: str | Path | None = None,
    on_checkpoint: Callable[[Path, int], None] | None = None,
    eval_data: str | None = None,
    provenance: dict[str, str] | None = None,
) -> FineTuneResult:
    """Fine-tune ``cfg.base_model`` on the ``train`` dataset; write a standard adapter (or model).

    ``provenance`` names what the local paths stand for (``base_model``, ``train``: pinned artifact
    references), so the model card and ``adapter_config.json`` name those, not temporary paths.

    With ``checkpoint_every``, a complete checkpoint (trainable weights, optimizer, scheduler,
    RNG states, data position) lands in ``workdir/checkpoints/step-N`` and ``on_checkpoint`` is
    called; ``resume_from`` continues from such a directory exactly where it stopped.
    """
    torch, transformers, _peft = _imports()
    cfg = FineTuneConfig.coerce(cfg)
    workdir = Path(workdir)
    out = workdir / "output"
    out.mkdir(parents=True, exist_ok=True)
    data = _canonical_order(load_columns(train, _columns(cfg), store))
    n = len(next(iter(data.values())))
    if n == 0:
        raise DataValidationError(f"training dataset {train} has no rows")
    labels = None
    if cfg.task == "sequence_classification":
        labels = sorted({str(v) for v in data["label_column"]})
        if len(labels) < 2:
            raise DataValidationError(
                f"column {cfg.label_column!r} has {len(labels)} distinct value(s); classification needs at least 2"
            )
    base = _resolve_base(cfg, store, workdir)
    torch.manual_seed(cfg.seed)  # before loading: a new classification head is initialised there
    tokenizer, model = _load(cfg, base, labels)
    rank, world = _distributed(cfg, torch)
    device = _device(cfg, torch, rank)
    torch.manual_seed(cfg.seed)
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    model = _apply_method(cfg, model)
    memory = _preflight(cfg, model, device)
    if progress and cfg.device == "auto" and device.type == "cpu":
        progress({"notice": "device='auto' found no CUDA GPU: training on the CPU"})
    if cfg.method != "qlora":  # a 4-bit model is placed on its GPU while loading and cannot move
        model = model.to(device)
    bf16 = _use_bf16(cfg, device, torch)
    enc = _classification_data(cfg, data, tokenizer, labels) if labels else _lm_data(cfg, data, tokenizer)
    truncated = enc.pop("truncated")
    eval_enc = None
    if eval_data is not None:
        edata = load_columns(eval_data, _columns(cfg), store)
        if labels:
            unknown = sorted({str(v) for v in edata["label_column"]} - set(labels))
            if unknown:
                raise DataValidationError(f"eval data has labels {unknown} that the training data lacks")
        eval_enc = (
            _classification_data(cfg, edata, tokenizer, labels, "eval data")
            if labels
            else _lm_data(cfg, edata, tokenizer, "eval data")
        )
        eval_enc.pop("truncated")
    elif cfg.eval_every:
        raise ConfigError("FineTuneConfig.eval_every is set but no eval data was given")
    chunk_size = cfg.batch_size * cfg.gradient_accumulation_steps * world
    steps_per_epoch = math.ceil(n / chunk_size)
    total = cfg.max_steps or cfg.epochs * steps_per_epoch
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    scheduler = transformers.get_scheduler(
        cfg.lr_scheduler, optimizer, num_warmup_steps=int(cfg.warmup_ratio * total), num_training_steps=total
    )
    gen = torch.Generator().manual_seed(cfg.seed)
    losses: list[float] = []
    evals: list[list[float]] = []  # [step, eval loss]
    stopped_early = False
    tokens = 0
    started = time.monotonic()
    step = 0
    skip = 0  # chunks of the current epoch already done (when resuming)
    epoch_gen_state = gen.get_state()
    if resume_from is not None:
        state = load_checkpoint(Path(resume_from), model, optimizer, scheduler)
        step, skip, losses, tokens = state["step"], state["chunk"], state["losses"], state["tokens"]
        evals = state.get("evals", [])
        epoch_gen_state = state["epoch_generator"]
        torch.set_rng_state(state["torch_rng"])
        if progress:
            progress({"resumed_from_step": step, "total": total})
    model.train()
    while step < total:
        gen.set_state(epoch_gen_state)
        order = torch.randperm(n, generator=gen)
        next_epoch_state = gen.get_state()
        for chunk_index, start in enumerate(range(0, n, chunk_size)):
            if chunk_index < skip:
                continue
            if step >= total:
                break
            chunk = order[start : start + chunk_size]
            optimizer.zero_grad()
            loss_sum = 0.0
            # Each process takes a contiguous share of the chunk; scaling by the whole chunk's size
            # and summing gradients across processes gives exactly the one-process gradient.
            share = -(-len(chunk) // world)
            mine = chunk[rank * share : (rank + 1) * share]
            step_tokens = 0
            for micro in mine.split(cfg.batch_size):
                batch = {k: v[micro].to(device) for k, v in enc.items()}
                with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16):
                    outputs = model(**batch)
                (outputs.loss * len(micro) / len(chunk)).backward()
                loss_sum += outputs.loss.detach().item() * len(micro) / len(chunk)
                step_tokens += int(batch["attention_mask"].sum())
            if world > 1:
                loss_sum, step_tokens = _sum_gradients(params, [loss_sum, step_tokens], device)
            tokens += int(step_tokens)
            torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
            optimizer.step()
            scheduler.step()
            step += 1
            losses.append(loss_sum)
            if eval_enc is not None and cfg.eval_every and step % cfg.eval_every == 0:
                evals.append([step, _eval_loss(model, eval_enc, cfg.batch_size, device)])
                if progress:
                    progress({"eval_step": step, "eval_loss": round(evals[-1][1], 6)})
                if _patience_exhausted(evals, cfg.early_stopping_patience):
                    stopped_early, total = True, step
            if rank == 0 and cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and step < total:
                path = save_checkpoint(
                    workdir / "checkpoints",
                    model,
                    optimizer,
                    scheduler,
                    {
                        "step": step,
                        "chunk": chunk_index + 1,
                        "losses": losses,
                        "tokens": tokens,
                        "evals": evals,
                        "epoch_generator": epoch_gen_state,
                        "torch_rng": torch.get_rng_state(),
                    },
                )
                if on_checkpoint:
                    on_checkpoint(path, step)
            if progress and (step % cfg.log_every == 0 or step == total):
                elapsed = time.monotonic() - started
                progress(
                    {
                        "step": step,
                        "total": total,
                        "loss": round(loss_sum, 6),
                        "lr": scheduler.get_last_lr()[0],
                        "tokens_per_s": round(tokens / max(elapsed, 1e-9), 1),
                        "eta_s": round(elapsed / step * (total - step), 1),
                    }
                )
        skip = 0
        epoch_gen_state = next_epoch_state
    wall = time.monotonic() - started
    model.eval()
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total_params = sum(p.numel() for p in model.parameters())
    if rank != 0:  # every process holds the same weights; rank 0 writes them
        return FineTuneResult(out, {"steps": step, "rank": rank}, labels or [])
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    if labels is not None:
        (out / LABELS_FILE).write_text(json.dumps(labels))
    metrics = {
        "loss_curve": losses,
        "final_loss": _tail_mean(losses),
        "final_loss_steps": min(len(losses), LOSS_TAIL),
        "last_step_loss": losses[-1] if losses else None,
        "steps": step,
        "examples": n,
        "truncated_examples": truncated,  # cut at max_length (at most max_truncated_rate of them)
        "tokens_seen": tokens,
        "wall_seconds": round(wall, 3),
        "trainable_params": trainable,
        "memory_estimate_bytes": memory,
        "eval_curve": evals,
        "best_eval_loss": min((e[1] for e in evals), default=None),
        "eval_loss": evals[-1][1] if evals else None,
        "stopped_early": stopped_early,
        "precision": "bf16" if bf16 else "fp32",
        "quantization": "nf4" if cfg.method == "qlora" else None,
        "total_params": total_params,
        "device": str(device),
        "processes": world,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": _peft.__version__,
    }
    names = {"base_model": cfg.base_model, "train": train, **(provenance or {})}
    # the config as the user gave it: the base model by its pinned name, never the temporary
    # directory it was fetched into for this run
    metrics["config"] = {**cfg.to_dict(), "base_model": names["base_model"]}
    _name_base_model(out, names["base_model"])
    (out / METRICS_FILE).write_text(json.dumps(metrics, indent=2))
    card = model_card(cfg, metrics, names["train"], labels, base_model=names["base_model"])
    (out / "README.md").write_text(card)
    merged = None
    if cfg.merge_adapter and cfg.method == "lora":
        merged = workdir / "merged"
        model.merge_and_unload().save_pretrained(merged, safe_serialization=True)
        tokenizer.save_pretrained(merged)
        (merged / "README.md").write_text(card.replace("library_name: peft", "library_name: transformers", 1))
    return FineTuneResult(out, metrics, labels or [], merged)


def _eval_loss(model: Any, enc: dict, batch_size: int, device: Any) -> float:
    import torch

    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        n = len(enc["labels"])
        for start in range(0, n, batch_size):
            batch = {k: v[start : start + batch_size].to(device) for k, v in enc.items()}
            rows = len(batch["labels"])
            total += model(**batch).loss.item() * rows
            count += rows
    model.train()
    return total / count


def _patience_exhausted(evals: list[list[float]], patience: int | None) -> bool:
    """True when the last ``patience`` evals brought no improvement over the best one before them."""
    if not patience or len(evals) <= patience:
        return False
    best_before = min(e[1] for e in evals[:-patience])
    return all(e[1] >= best_before for e in evals[-patience:])


def save_checkpoint(root: Path, model: Any, optimizer: Any, scheduler: Any, state: dict[str, Any]) -> Path:
    """Write ``root/step-N`` atomically (temp dir + rename); COMPLETE marks it usable."""
    import shutil

    import torch
    from safetensors.torch import save_file

    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{state['step']:08d}"
    tmp = root / f".tmp-step-{state['step']:08d}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    trainable = {k: v.detach().cpu().contiguous() for k, v in model.named_parameters() if v.requires_grad}
    save_file(trainable, str(tmp / "trainable.safetensors"))
    # optimizer/scheduler/RNG state: tensors and plain containers only, read back with weights_only=True
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), **state}, tmp / "state.pt")
    (tmp / "COMPLETE").write_text(str(state["step"]))
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    return final


def newest_checkpoint(root: Path) -> Path | None:
    done = sorted(p for p in root.glob("step-*") if (p / "COMPLETE").is_file()) if root.is_dir() else []
    return done[-1] if done else None


def load_checkpoint(path: Path, model: Any, optimizer: Any, scheduler: Any) -> dict[str, Any]:
    import torch
    from safetensors.torch import load_file

    if not (path / "COMPLETE").is_file():
        raise ConfigError(f"checkpoint {path} is incomplete (no COMPLETE marker); it cannot be resumed")
    weights = load_file(str(path / "trainable.safetensors"))
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in weights.items():
            params[name].copy_(value)
    state = torch.load(path / "state.pt", weights_only=True)
    optimizer.load_state_dict(state.pop("optimizer"))
    scheduler.load_state_dict(state.pop("scheduler"))
    return state


def _preflight(cfg: FineTuneConfig, model: Any, device: Any) -> dict[str, int]:
    from airflow_mlcrit.core.training.preflight import GIB, available_memory, check_fits, estimate_memory

    c = model.config
    estimate = estimate_memory(
        sum(p.numel() for p in model.parameters()),
        sum(p.numel() for p in model.parameters() if p.requires_grad),
        batch_size=cfg.batch_size,
        seq_len=cfg.max_length,
        hidden=getattr(c, "hidden_size", None) or getattr(c, "n_embd", 768),
        layers=getattr(c, "num_hidden_layers", None) or getattr(c, "n_layer", 12),
        heads=getattr(c, "num_attention_heads", None) or getattr(c, "n_head", 12),
        gradient_checkpointing=cfg.gradient_checkpointing,
    )
    limit = int(cfg.memory_limit_gb * GIB) if cfg.memory_limit_gb else available_memory(device)
    where = "the configured memory_limit_gb" if cfg.memory_limit_gb else f"the {device} device"
    check_fits(
        estimate,
        limit,
        method=cfg.method,
        gradient_checkpointing=cfg.gradient_checkpointing,
        batch_size=cfg.batch_size,
        where=where,
    )
    return estimate


def _use_bf16(cfg: FineTuneConfig, device: Any, torch: Any) -> bool:
    capable = device.type == "cuda" and torch.cuda.is_bf16_supported()
    if cfg.precision == "bf16" and not capable:
        raise ConfigError(
            f"FineTuneConfig.precision='bf16' needs a CUDA GPU with bf16 support; this run is on "
            f"{device}. Use precision='auto' or 'fp32'"
        )
    return cfg.precision == "bf16" or (cfg.precision == "auto" and capable)


def _device(cfg: FineTuneConfig, torch: Any, rank: int = 0) -> Any:
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("FineTuneConfig.device='cuda' but no CUDA GPU is available; use device='auto' or 'cpu'")
    if cfg.device == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", rank % torch.cuda.device_count())


def _distributed(cfg: FineTuneConfig, torch: Any) -> tuple[int, int]:
    """(rank, world size). Under torchrun, join the process group: NCCL when every process has
    its own GPU, gloo otherwise (CPU, or several processes sharing one GPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1
    if world != cfg.nproc_per_node:
        raise ConfigError(f"WORLD_SIZE is {world} but FineTuneConfig.nproc_per_node is {cfg.nproc_per_node}")
    dist = torch.distributed
    if not dist.is_initialized():
        gpus = torch.cuda.device_count() if cfg.device != "cpu" and torch.cuda.is_available() else 0
        dist.init_process_group("nccl" if gpus >= world else "gloo")
    return dist.get_rank(), world


def _sum_gradients(params: list[Any], scalars: list[float], device: Any) -> list[float]:
    """All-reduce (sum) every gradient in one flat buffer, plus the step's scalars."""
    import torch

    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads] + [torch.tensor(scalars, dtype=grads[0].dtype, device=device)])
    torch.distributed.all_reduce(flat)
    offset = 0
    for p, g in zip(params, grads, strict=True):
        p.grad = flat[offset : offset + g.numel()].view_as(g).clone()
        offset += g.numel()
    return flat[offset:].tolist()


LOSS_TAIL = 20  # the card's and the summary's "final loss" is the mean of this many last steps


def _tail_mean(losses: list[float]) -> float | None:
    """Mean loss of the last LOSS_TAIL steps: one step's loss is too noisy to report."""
    tail = losses[-LOSS_TAIL:]
    return round(sum(tail) / len(tail), 6) if tail else None


def _name_base_model(out: Path, base_model: str) -> None:
    """``adapter_config.json`` names the base model as ``provenance`` gives it, not a temp path."""
    path = out / "adapter_config.json"
    if path.is_file():
        config = json.loads(path.read_text())
        config["base_model_name_or_path"] = base_model
        path.write_text(json.dumps(config, indent=2, sort_keys=True))


def model_card(
    cfg: FineTuneConfig,
    metrics: dict[str, Any],
    train: str,
    labels: list[str] | None,
    *,
    base_model: str | None = None,
) -> str:
    """A Hugging Face model card: YAML metadata the Hub and tools read, then a short summary."""
    import yaml

    base_model = base_model or cfg.base_model
    meta = {
        "base_model": base_model,
        "library_name": "transformers" if cfg.method == "full" else "peft",
        "pipeline_tag": "text-classification" if cfg.task == "sequence_classification" else "text-generation",
        "datasets": [train],
        "tags": ["airflow-mlcrit", cfg.method],
        "model-index": [{"name": "fine-tuned", "results": []}],
    }
    hyper = {
        k: cfg.to_dict()[k]
        for k in (
            "learning_rate",
            "lr_scheduler",
            "warmup_ratio",
            "epochs",
            "max_steps",
            "batch_size",
            "gradient_accumulation_steps",
            "weight_decay",
            "seed",
            "lora_r",
            "lora_alpha",
            "lora_dropout",
            "max_length",
        )
    }
    loss = metrics["final_loss"]
    summary = (f"Labels: {', '.join(labels)}. " if labels else "") + (
        f"Trained by airflow-mlcrit on `{train}`: {metrics['steps']} steps, "
        + (f"mean loss of the last {metrics['final_loss_steps']} steps {loss:.4f}" if loss is not None else "no loss")
        + (f", eval loss {metrics['eval_loss']:.4f}" if metrics.get("eval_loss") is not None else ", no eval loss")
        + "."
    )
    return (
        "---\n"
        + yaml.safe_dump(meta, sort_keys=False)
        + f"---\n\n# Fine-tuned {base_model} ({cfg.method})\n\n{summary}\n\n## Training hyperparameters\n\n"
        + "".join(f"- {k}: {v}\n" for k, v in hyper.items())
    )
