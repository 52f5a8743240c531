"""FineTuneOperator: LoRA or full fine-tuning in a child process, resumable across retries."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from airflow_mlcrit.operators.base import DatasetStepOperator


class FineTuneOperator(DatasetStepOperator):
    """Fine-tune a pretrained model and commit an ``adapter`` (LoRA) or ``model`` (full) artifact.

    Training runs in a child process (the worker gets its memory back; a crash is contained) and
    streams step/total, loss, learning rate, tokens/s and ETA into the task log. With
    ``checkpoint_every``, checkpoints go to the artifact store under this task instance's
    idempotency key, so an Airflow retry resumes from the newest one; they are purged once the
    output commits. Outputs are standard: ``adapter_config.json`` + ``adapter_model.safetensors``
    (or ``model.safetensors``), tokenizer files, ``training_metrics.json``, ``labels.json`` and a
    Hugging Face model card.

    :param dataset: training data: a ``dataset``/``transformed_dataset`` reference or a path. (templated)
    :param base_model: a local model directory or a ``base_model`` artifact reference. (templated)
    :param split: the split folder of a transformed_dataset to train on. (templated)
    :param eval_split: its split for eval loss and early stopping when ``eval_every`` is set. (templated)
    :param config: :class:`~airflow_mlcrit.core.training.config.FineTuneConfig` fields. (templated)
    :param output_name: name of the output artifact; default derived from the dag_id. (templated)
    """

    template_fields: Sequence[str] = (*DatasetStepOperator.template_fields, "base_model", "split", "eval_split")

    def __init__(self, *, base_model: str, split: str = "train", eval_split: str = "eval", **kwargs: Any):
        config = kwargs.get("config")
        method = config.get("method") if isinstance(config, dict) else getattr(config, "method", None)
        self.output_kind = "model" if method == "full" else "adapter"  # a templated config: adapter
        super().__init__(**kwargs)
        self.base_model = base_model
        self.split = split
        self.eval_split = eval_split

    def execute(self, context: Any) -> dict[str, Any]:
        from airflow_mlcrit.core.lineage import facet
        from airflow_mlcrit.core.tables import is_artifact_ref
        from airflow_mlcrit.core.training.config import FineTuneConfig
        from airflow_mlcrit.core.training.runner import checkpoint_key, run_training

        cfg = FineTuneConfig.from_dict({**self.config_dict(), "base_model": self.base_model})
        kind = "model" if cfg.method == "full" else "adapter"
        name = self.output_name_for(context)
        key = f"{kind}/{name}"
        source, data_manifest = self.pin(self.dataset)
        parents = [source] if data_manifest else []
        contract_ref = None
        with tempfile.TemporaryDirectory(prefix="mlcrit-finetune-") as tmp:
            work = Path(tmp)
            train_path, eval_path = source, None
            if data_manifest is not None:
                self.store.get(data_manifest.ref, work / "data")
                train_path = str(work / "data")
                if data_manifest.kind == "transformed_dataset":
                    train_path = str(work / "data" / self.split)
                    if cfg.eval_every and (work / "data" / self.eval_split).is_dir():
                        eval_path = str(work / "data" / self.eval_split)
                    contract_ref = next(
                        (p["ref"] for p in data_manifest.parents if p["ref"].startswith("transform_contract/")), None
                    )
            self.record_input(source, data_manifest)
            base_digest = None
            if is_artifact_ref(cfg.base_model.split("@")[0]):
                base = self.read_input(cfg.base_model)
                self.store.get(base.ref, work / "base")
                parents.append(str(base.ref))
                base_digest = base.digest
                cfg = FineTuneConfig.from_dict({**cfg.to_dict(), "base_model": str(work / "base")})
            if contract_ref:
                parents.append(contract_ref)
                self.read_input(contract_ref)
            ckpt = checkpoint_key(name, self.idempotency_key(context, key))
            result = run_training(
                cfg.to_dict(),
                train_path,
                workdir=work / "train",
                store=self.store,
                ckpt_key=ckpt,
                eval_path=eval_path,
                on_event=self._log_event,
            )
            m = result.metrics
            out = self.commit(
                context,
                key,
                result.output_dir,
                parents=parents,
                metadata={
                    "labels": result.labels,
                    "final_loss": m["final_loss"],
                    "steps": m["steps"],
                    "method": cfg.method,
                    "base_model": self.base_model,
                    "transform_contract": contract_ref,
                },
                libraries={"torch": m["torch"], "transformers": m["transformers"], "peft": m["peft"]},
                mlcrit_model=facet(
                    "mlcrit_model",
                    baseModel=self.base_model,
                    baseModelDigest=base_digest,
                    task=cfg.task,
                    method=cfg.method,
                    trainableParams=m["trainable_params"],
                    totalParams=m["total_params"],
                    labels=result.labels,
                    transformContract=contract_ref,
                    lora=None
                    if cfg.method == "full"
                    else {
                        "r": cfg.lora_r,
                        "alpha": cfg.lora_alpha,
                        "dropout": cfg.lora_dropout,
                        "targetModules": cfg.target_modules or [],
                    },
                ),
            )
            if result.merged_dir is not None:
                merged = self.commit(
                    context,
                    f"model/{name}",
                    result.merged_dir,
                    parents=[str(out.ref), *parents[1:]],
                    metadata={"merged_from": str(out.ref), "labels": result.labels},
                )
                self.log.info("merged model committed as %s", merged.ref)
        self.lineage.run_facets["mlcrit_training"] = facet(
            "mlcrit_training",
            hyperparameters={k: v for k, v in cfg.to_dict().items() if k != "base_model"},
            seed=cfg.seed,
            steps=m["steps"],
            examples=m["examples"],
            tokensSeen=m["tokens_seen"],
            wallSeconds=m["wall_seconds"],
            hardware=m["device"],
            finalLoss=m["final_loss"],
            libraries={"torch": m["torch"], "transformers": m["transformers"], "peft": m["peft"]},
        )
        purged = self.store.purge(ckpt)
        if purged:
            self.log.info("removed %s checkpoint version(s) of %s", purged, ckpt)
        return out.summary() | {
            "summary": {
                "final_loss": m["final_loss"],
                "steps": m["steps"],
                "labels": result.labels,
                "trainable_params": m["trainable_params"],
            }
        }

    def _log_event(self, event: dict[str, Any]) -> None:
        if event["event"] == "progress" and "step" in event:
            self.log.info(
                "step %s/%s loss %.4f lr %.2e %.0f tokens/s ETA %.0fs",
                event["step"],
                event["total"],
                event["loss"],
                event["lr"],
                event["tokens_per_s"],
                event["eta_s"],
            )
        elif event["event"] == "progress" and "eval_step" in event:
            self.log.info("step %s eval loss %.4f", event["eval_step"], event["eval_loss"])
        elif event["event"] == "progress" and "notice" in event:
            self.log.warning("%s", event["notice"])
        elif event["event"] == "resume":
            self.log.info("resuming from %s (step %s)", event["checkpoint"], event["step"])
        elif event["event"] == "checkpoint":
            self.log.info("checkpoint at step %s stored", event["step"])
