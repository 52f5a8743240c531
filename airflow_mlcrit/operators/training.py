"""FineTuneOperator: LoRA or full fine-tuning in a child process or on a remote backend."""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from airflow_mlcrit.exceptions import ConfigError, MlcritError
from airflow_mlcrit.operators.base import DatasetStepOperator
from airflow_mlcrit.operators.results import FineTuneResult, artifact_result
from airflow_mlcrit.version_compat import conf


class FineTuneOperator(DatasetStepOperator):
    """Fine-tune a pretrained model and commit an ``adapter`` (LoRA) or ``model`` (full) artifact.

    ``backend="local"`` (default) trains in a child process of the worker (its memory comes back, a
    crash is contained) and streams step/total, loss, learning rate, tokens/s and ETA into the task
    log. With ``checkpoint_every``, checkpoints go to the artifact store under this task instance's
    idempotency key, so an Airflow retry resumes from the newest one; they are purged once the
    output commits. ``backend="sagemaker"`` submits a SageMaker training job reading the artifacts
    straight from an S3 artifact store; with ``deferrable`` the wait happens in the triggerer.
    Outputs are standard: ``adapter_config.json`` + ``adapter_model.safetensors`` (or
    ``model.safetensors``), tokenizer files, ``training_metrics.json``, ``labels.json``, a model card.

    :param dataset: training data: a ``dataset``/``transformed_dataset`` reference or a path. (templated)
    :param base_model: a local model directory or a ``base_model`` artifact reference. (templated)
    :param split: the split folder of a transformed_dataset to train on. (templated)
    :param eval_split: its split for eval loss and early stopping when ``eval_every`` is set. (templated)
    :param config: :class:`~airflow_mlcrit.core.training.config.FineTuneConfig` fields. (templated)
    :param backend: ``local`` or ``sagemaker``.
    :param backend_options: remote backend settings, e.g. SageMaker ``image_uri``, ``role_arn``,
        ``instance_type``. (templated)
    :param aws_conn_id: connection of the remote backend's account. (templated)
    :param deferrable: wait for a remote job in the triggerer (default ``[operators] default_deferrable``).
    :param poll_interval: seconds between status checks of a remote job.
    :param output_name: name of the output artifact; default derived from the dag_id. (templated)
    """

    template_fields: Sequence[str] = (
        *DatasetStepOperator.template_fields,
        "base_model",
        "split",
        "eval_split",
        "backend_options",
        "aws_conn_id",
    )

    def __init__(
        self,
        *,
        base_model: str,
        split: str = "train",
        eval_split: str = "eval",
        backend: str = "local",
        backend_options: dict[str, Any] | None = None,
        aws_conn_id: str | None = None,
        deferrable: bool | None = None,
        poll_interval: float = 60.0,
        **kwargs: Any,
    ):
        config = kwargs.get("config")
        method = config.get("method") if isinstance(config, dict) else getattr(config, "method", None)
        self.output_kind = "model" if method == "full" else "adapter"  # a templated config: adapter
        super().__init__(**kwargs)
        if backend not in ("local", "sagemaker"):
            raise ConfigError(f"FineTuneOperator backend must be 'local' or 'sagemaker', got {backend!r}")
        self.base_model = base_model
        self.split = split
        self.eval_split = eval_split
        self.backend = backend
        self.backend_options = backend_options
        self.aws_conn_id = aws_conn_id
        self.deferrable = (
            conf.getboolean("operators", "default_deferrable", fallback=False) if deferrable is None else deferrable
        )
        self.poll_interval = poll_interval
        self._child: Any = None  # the local training process, for on_kill
        self._remote_job: str | None = None  # the remote job this try submitted or waits for

    # ---- inputs ------------------------------------------------------------------------------
    def _inputs(self, cfg: Any) -> dict[str, Any]:
        """Pinned references of everything the run reads (recorded as lineage inputs and parents)."""
        from airflow_mlcrit.core.tables import is_artifact_ref

        source, data = self.pin(self.dataset)
        self.record_input(source, data)
        pins: dict[str, Any] = {
            "source": source,
            "data": str(data.ref) if data else None,
            "base": None,
            "base_digest": None,
            "contract": None,
            "transformed": bool(data) and data.kind == "transformed_dataset",
        }
        if data is not None and data.kind == "transformed_dataset":
            pins["contract"] = next(
                (p["ref"] for p in data.parents if p["ref"].startswith("transform_contract/")), None
            )
        if is_artifact_ref(cfg.base_model.split("@")[0]):
            base = self.read_input(cfg.base_model)
            pins["base"], pins["base_digest"] = str(base.ref), base.digest
        pins["base_model"] = pins["base"] or cfg.base_model  # what the model names as its base: pinned
        if pins["contract"]:
            self.read_input(pins["contract"])
        return pins

    @staticmethod
    def _parents(pins: dict[str, Any]) -> list[str]:
        return [r for r in (pins["data"], pins["base"], pins["contract"]) if r]

    # ---- execution -----------------------------------------------------------------------------
    def execute(self, context: Any) -> FineTuneResult:
        from airflow_mlcrit.core.training.config import FineTuneConfig

        cfg = FineTuneConfig.from_dict({**self.config_dict(), "base_model": self.base_model})
        pins = self._inputs(cfg)
        done = self._already_trained(context, cfg, pins)
        if done is not None:
            return done
        if self.backend != "local":
            return self._run_remote(context, cfg, pins)
        from airflow_mlcrit.core.training.runner import checkpoint_key, run_training

        key = self._key(context, cfg)
        with tempfile.TemporaryDirectory(prefix="mlcrit-finetune-") as tmp:
            work = Path(tmp)
            train_path, eval_path = pins["source"], None
            if pins["data"]:
                self.store.get(pins["data"], work / "data")
                train_path = str(work / "data")
                if pins["transformed"]:
                    train_path = str(work / "data" / self.split)
                    if cfg.eval_every and (work / "data" / self.eval_split).is_dir():
                        eval_path = str(work / "data" / self.eval_split)
            if pins["base"]:
                self.store.get(pins["base"], work / "base")
                cfg = FineTuneConfig.from_dict({**cfg.to_dict(), "base_model": str(work / "base")})
            if pins["contract"]:
                from airflow_mlcrit.core.preprocessing.contract import CONTRACT_FILE, check_tokenizer

                check_tokenizer(json.loads(self.store.read_bytes(pins["contract"], CONTRACT_FILE)), cfg.base_model)
            ckpt = checkpoint_key(self.output_name_for(context), self.idempotency_key(context, key))
            result = run_training(
                cfg.to_dict(),
                train_path,
                workdir=work / "train",
                store=self.store,
                ckpt_key=ckpt,
                eval_path=eval_path,
                on_event=self._log_event,
                spawned=self._spawned,
                provenance={
                    "base_model": pins["base_model"],
                    "train": (f"{pins['data']}/{self.split}" if pins["transformed"] else pins["data"])
                    or pins["source"],
                },
                producer=self.producer(context),
                supervisor=os.getppid(),  # Airflow's task supervisor: training stops if it goes
            )
            summary = self._commit(
                context, cfg, key, pins, result.output_dir, result.metrics, result.labels, result.merged_dir
            )
        purged = self.store.purge(ckpt)
        if purged:
            self.log.info("removed %s checkpoint version(s) of %s", purged, ckpt)
        return summary

    def _spawned(self, proc: Any) -> None:
        self._child = proc

    def on_kill(self) -> None:
        """Stop what this try started: the training child's process group, or the remote job."""
        if self._child is not None and self._child.poll() is None:
            from airflow_mlcrit.core.training.runner import stop_training

            self.log.info("stopping the training process group %s", self._child.pid)
            stop_training(self._child)
        if self._remote_job:
            from airflow_mlcrit.hooks.training import FineTuneJobHook

            self.log.info("stopping training job %s", self._remote_job)
            FineTuneJobHook(self.backend, self.aws_conn_id).get_backend().stop(self._remote_job)

    def _already_trained(self, context: Any, cfg: Any, pins: dict[str, Any]) -> FineTuneResult | None:
        """The summary of what an earlier try committed (all outputs), or None: train."""
        parents = self._parents(pins)
        key, merged_key = self._key(context, cfg), self._merged_key(context)
        out = self.find_committed(context, key, parents)
        if out is None:
            return None
        merged = self.find_committed(context, merged_key, [str(out.ref), *parents[1:]]) if cfg.merge_adapter else None
        if cfg.merge_adapter and merged is None:
            return None  # train again; the adapter's commit returns the same version
        self._record_output(context, key, out)
        if merged is not None:
            self._record_output(context, merged_key, merged)
        return self._summary(out, out.metadata, out.metadata["labels"], merged)

    @staticmethod
    def _summary(out: Any, m: dict[str, Any], labels: list[str], merged: Any) -> FineTuneResult:
        summary = {
            "final_loss": m.get("final_loss"),
            "eval_loss": m.get("eval_loss"),
            "steps": m.get("steps"),
            "labels": labels,
            "trainable_params": m.get("trainable_params"),
            "base_model": out.metadata.get("base_model"),
        }
        return artifact_result(FineTuneResult, out, summary, merged=str(merged.ref) if merged is not None else None)

    def _key(self, context: Any, cfg: Any) -> str:
        return f"{'model' if cfg.method == 'full' else 'adapter'}/{self.output_name_for(context)}"

    def _merged_key(self, context: Any) -> str:
        return f"model/{self.output_name_for(context)}"

    def _commit(
        self,
        context: Any,
        cfg: Any,
        key: str,
        pins: dict[str, Any],
        output_dir: Path,
        m: dict[str, Any],
        labels: list[str],
        merged_dir: Path | None,
    ) -> dict[str, Any]:
        from airflow_mlcrit.core.lineage import facet

        parents = self._parents(pins)
        libraries = {k: m[k] for k in ("torch", "transformers", "peft") if k in m}
        out = self.commit(
            context,
            key,
            output_dir,
            parents=parents,
            metadata={
                "labels": labels,
                "final_loss": m.get("final_loss"),
                "eval_loss": m.get("eval_loss"),
                "steps": m.get("steps"),
                "trainable_params": m.get("trainable_params"),
                "method": cfg.method,
                # pinned: kind/name@vN and its digest, so inference loads exactly this base
                "base_model": pins["base_model"],
                "base_model_digest": pins["base_digest"],
                "transform_contract": pins["contract"],
                "backend": self.backend,
            },
            libraries=libraries,
            mlcrit_model=facet(
                "mlcrit_model",
                baseModel=pins["base_model"],
                baseModelDigest=pins["base_digest"],
                task=cfg.task,
                method=cfg.method,
                trainableParams=m.get("trainable_params", 0),
                totalParams=m.get("total_params", 0),
                labels=labels,
                transformContract=pins["contract"],
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
        merged = None
        if merged_dir is not None:
            merged = self.commit(
                context,
                self._merged_key(context),
                merged_dir,
                parents=[str(out.ref), *parents[1:]],
                metadata={"merged_from": str(out.ref), "labels": labels},
            )
            self.log.info("merged model committed as %s", merged.ref)
        self.lineage.run_facets["mlcrit_training"] = facet(
            "mlcrit_training",
            hyperparameters={k: v for k, v in cfg.to_dict().items() if k != "base_model"},
            seed=cfg.seed,
            steps=m.get("steps", 0),
            examples=m.get("examples"),
            tokensSeen=m.get("tokens_seen"),
            wallSeconds=m.get("wall_seconds"),
            hardware=m.get("device", self.backend),
            finalLoss=m.get("final_loss"),
            libraries=libraries,
        )
        return self._summary(out, m, labels, merged)

    # ---- remote backends ----------------------------------------------------------------------
    def _job_name(self, context: Any, key: str) -> str:
        digest = hashlib.sha256(self.idempotency_key(context, key).encode()).hexdigest()[:12]
        name = re.sub(r"[^a-zA-Z0-9-]+", "-", self.output_name_for(context))[:40].strip("-")
        return f"mlcrit-{name}-{digest}"

    def _run_remote(self, context: Any, cfg: Any, pins: dict[str, Any]) -> dict[str, Any]:
        from airflow_mlcrit.core.artifacts import S3Backend
        from airflow_mlcrit.core.training.backends import RUNNING, JobSpec
        from airflow_mlcrit.hooks.training import FineTuneJobHook

        if not isinstance(self.store.backend, S3Backend):
            raise ConfigError(
                "the sagemaker backend reads its inputs from the artifact store: use an S3 store "
                "(store_conn_id or [mlcrit] artifact_root = s3://...)"
            )
        if not pins["data"] or not pins["base"]:
            raise ConfigError("the sagemaker backend needs dataset and base_model as artifact references")
        key = self._key(context, cfg)
        job = self._job_name(context, key)
        data_uri = self.store.resolve(pins["data"]).uri + (f"/{self.split}" if pins["transformed"] else "")
        channels = {"train": data_uri, "base_model": self.store.resolve(pins["base"]).uri}
        backend = FineTuneJobHook(self.backend, self.aws_conn_id).get_backend()
        job_cfg = {**cfg.to_dict(), "base_model": "/opt/ml/input/data/base_model"}
        from botocore.exceptions import ClientError

        self._remote_job = job
        try:
            backend.status(job)
            self.log.info("training job %s already exists (a retry): waiting for it", job)
        except ClientError as exc:
            if "Could not find" not in str(exc):
                raise
            backend.submit(JobSpec(job, job_cfg, channels, f"{self.store.root_uri}/_jobs", self.backend_options or {}))
            self.log.info("submitted training job %s", job)
        if self.deferrable:
            from airflow_mlcrit.triggers.training import FineTuneJobTrigger

            self.defer(
                trigger=FineTuneJobTrigger(job, self.backend, self.aws_conn_id, self.poll_interval),
                method_name="execute_complete",
                kwargs={"pins": pins},
            )
        while (status := backend.status(job)).state == RUNNING:
            self.log.info("training job %s is %s", job, status.raw_status)
            time.sleep(self.poll_interval)
        return self.execute_complete(
            context,
            {"job_id": job, "state": status.state, "message": status.message, "output_uri": status.output_uri},
            pins=pins,
        )

    def execute_complete(self, context: Any, event: dict[str, Any], pins: dict[str, Any] | None = None) -> dict:
        from airflow_mlcrit.core.training.backends import SUCCEEDED, JobStatus
        from airflow_mlcrit.core.training.config import FineTuneConfig
        from airflow_mlcrit.hooks.training import FineTuneJobHook

        if event["state"] != SUCCEEDED:
            raise MlcritError(f"training job {event['job_id']} failed: {event['message']}")
        cfg = FineTuneConfig.from_dict({**self.config_dict(), "base_model": self.base_model})
        pins = pins or self._inputs(cfg)
        for ref in (pins["data"], pins["base"], pins["contract"]):
            if ref:
                self.lineage.add_input(self.store, self.store.resolve(ref))
        backend = FineTuneJobHook(self.backend, self.aws_conn_id).get_backend()
        with tempfile.TemporaryDirectory(prefix="mlcrit-finetune-") as tmp:
            out = backend.fetch_output(JobStatus(SUCCEEDED, "", event["output_uri"]), Path(tmp) / "output")
            metrics_file = out / "training_metrics.json"
            metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
            labels_file = out / "labels.json"
            labels = json.loads(labels_file.read_text()) if labels_file.is_file() else []
            return self._commit(context, cfg, self._key(context, cfg), pins, out, metrics, labels, None)

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
