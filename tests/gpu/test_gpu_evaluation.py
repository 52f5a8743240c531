"""GPU evaluation (marked `gpu`; skipped without CUDA): batched bf16 inference agrees with the CPU."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def test_bf16_scoring_on_gpu_agrees_with_the_cpu(tiny_bert, tmp_path):
    from airflow_mlcrit.core.evaluation.evaluate import evaluate
    from airflow_mlcrit.core.evaluation.inference import ModelScorer
    from airflow_mlcrit.core.training.finetune import finetune
    from tests.helpers.models import sentiment

    sentiment(256).to_parquet(tmp_path / "train.parquet", index=False)
    cfg = {"base_model": tiny_bert, "max_steps": 60, "batch_size": 16, "learning_rate": 2e-2, "max_length": 16}
    adapter = finetune(cfg, str(tmp_path / "train.parquet"), workdir=tmp_path / "w").output_dir
    frame = sentiment(500, seed=9)
    texts = frame.text.tolist()
    gpu = ModelScorer(adapter, task="classification", base_path=tiny_bert, device="cuda", batch_size=64)
    cpu = ModelScorer(adapter, task="classification", base_path=tiny_bert, device="cpu", batch_size=64)
    assert gpu.device.type == "cuda" and gpu.bf16 == torch.cuda.is_bf16_supported()
    g, c = gpu.predict(texts), cpu.predict(texts)
    assert np.abs(g.proba - c.proba).max() < 0.05
    assert (g.pred == c.pred).mean() >= 0.98
    result, _ = evaluate({"replicates": 200, "sensitivity": ["casing"]}, frame, gpu, cpu)
    assert result["slices"][0]["candidate"]["accuracy"]["value"] > 0.8
    assert abs(result["slices"][0]["difference"]["accuracy"]["value"]) <= 0.02
