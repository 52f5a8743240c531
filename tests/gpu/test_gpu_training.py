"""GPU checks (marked `gpu`; skipped without CUDA). Run them on a GPU machine when one is available."""

import pytest

torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def test_bf16_lora_on_gpu(tiny_bert, tmp_path):
    from airflow_mlcrit.core.training.finetune import finetune
    from tests.helpers.models import sentiment

    sentiment(256).to_parquet(tmp_path / "train.parquet", index=False)
    result = finetune(
        {
            "base_model": tiny_bert,
            "max_steps": 100,
            "batch_size": 16,
            "learning_rate": 2e-2,
            "max_length": 16,
            "device": "cuda",
            "precision": "auto",
        },
        str(tmp_path / "train.parquet"),
        workdir=tmp_path / "w",
    )
    m = result.metrics
    assert m["device"].startswith("cuda") and m["precision"] == ("bf16" if torch.cuda.is_bf16_supported() else "fp32")
    assert sum(m["loss_curve"][-10:]) < 0.5 * sum(m["loss_curve"][:10])
