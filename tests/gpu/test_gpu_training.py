"""GPU checks (marked `gpu`; skipped without CUDA). Run them on a GPU machine when one is available:
they need only torch, transformers, peft and pyarrow (no Airflow), so `pytest tests/gpu` runs on a
bare CUDA image with the repository on PYTHONPATH."""

import json
import shutil

import pytest

torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

CFG = {"max_steps": 60, "batch_size": 16, "learning_rate": 2e-2, "max_length": 16, "device": "cuda"}


@pytest.fixture
def train_file(tmp_path):
    from tests.helpers.models import sentiment

    sentiment(256).to_parquet(tmp_path / "train.parquet", index=False)
    return str(tmp_path / "train.parquet")


def _learned(m):
    return sum(m["loss_curve"][-10:]) < 0.5 * sum(m["loss_curve"][:10])


def test_bf16_lora_on_gpu(tiny_bert, train_file, tmp_path):
    from airflow_mlcrit.core.training.finetune import finetune

    # 100 steps: GPU kernels (cuDNN attention) are not deterministic, so give the curve room
    cfg = {"base_model": tiny_bert, **CFG, "max_steps": 100, "precision": "auto"}
    result = finetune(cfg, train_file, workdir=tmp_path / "w")
    m = result.metrics
    assert m["device"] == "cuda:0" and m["precision"] == ("bf16" if torch.cuda.is_bf16_supported() else "fp32")
    assert _learned(m), m["loss_curve"]


def test_two_process_torchrun_on_one_gpu_matches_one_process(tiny_bert, train_file, tmp_path):
    # Two ranks share the one GPU here, so the process group is gloo over CUDA tensors; with a GPU
    # per rank it is NCCL. Dropout off: masks are drawn per process.
    from safetensors.torch import load_file

    from airflow_mlcrit.core.artifacts import open_store
    from airflow_mlcrit.core.training.runner import run_training

    base = tmp_path / "bert"
    shutil.copytree(tiny_bert, base)
    config = json.loads((base / "config.json").read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (base / "config.json").write_text(json.dumps(config))
    store = open_store(tmp_path / "store")
    cfg = {"base_model": str(base), **CFG, "precision": "fp32", "batch_size": 8, "checkpoint_every": 20}
    one = run_training(
        {**cfg, "batch_size": 16}, train_file, workdir=tmp_path / "a", store=store, ckpt_key="checkpoint/a"
    )
    two = run_training(
        {**cfg, "nproc_per_node": 2}, train_file, workdir=tmp_path / "b", store=store, ckpt_key="checkpoint/b"
    )
    assert two.metrics["processes"] == 2 and two.metrics["device"] == "cuda:0"
    assert len(store.versions("checkpoint/b")) == 2
    assert two.metrics["loss_curve"] == pytest.approx(one.metrics["loss_curve"], abs=1e-4)
    a = load_file(str(one.output_dir / "adapter_model.safetensors"))
    b = load_file(str(two.output_dir / "adapter_model.safetensors"))
    assert max(float((a[k] - b[k]).abs().max()) for k in a) <= 1e-4
    assert _learned(two.metrics)


def test_qlora_trains_a_4bit_base(tiny_bert, train_file, tmp_path):
    pytest.importorskip("bitsandbytes")
    from airflow_mlcrit.core.training.finetune import finetune

    result = finetune(
        {"base_model": tiny_bert, **CFG, "method": "qlora", "max_steps": 80}, train_file, workdir=tmp_path / "w"
    )
    m = result.metrics
    assert m["quantization"] == "nf4" and m["precision"] == "bf16"
    assert (result.output_dir / "adapter_model.safetensors").is_file()
    assert not list(result.output_dir.glob("*.bin"))
    assert _learned(m), m["loss_curve"]
