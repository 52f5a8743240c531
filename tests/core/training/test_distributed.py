"""Data-parallel training under torchrun (gloo on the CPU): two processes compute exactly the
one-process gradient, so both runs end with the same weights."""

import json
import shutil

import pytest

from airflow_mlcrit.core.artifacts import open_store
from airflow_mlcrit.core.training.runner import run_training
from tests.core.training.test_finetune import CFG


@pytest.fixture
def bert_without_dropout(tiny_bert, tmp_path):
    # dropout masks are drawn per process, so only a dropout-free model can match bit for bit
    path = tmp_path / "bert-no-dropout"
    shutil.copytree(tiny_bert, path)
    config = json.loads((path / "config.json").read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (path / "config.json").write_text(json.dumps(config))
    return str(path)


def test_two_torchrun_processes_match_one_process(bert_without_dropout, train_file, tmp_path):
    from safetensors.torch import load_file

    store = open_store(tmp_path / "store")
    # 256 rows, 8 per process: the last chunk of each epoch (256 % 48 = 16 rows) is split unevenly
    cfg = {"base_model": bert_without_dropout, **CFG, "max_steps": 12, "batch_size": 8, "checkpoint_every": 5}
    one = run_training(
        {**cfg, "batch_size": 16}, train_file, workdir=tmp_path / "one", store=store, ckpt_key="checkpoint/one"
    )
    events = []
    two = run_training(
        {**cfg, "nproc_per_node": 2, "gradient_accumulation_steps": 3, "batch_size": 8},
        train_file,
        workdir=tmp_path / "two",
        store=store,
        ckpt_key="checkpoint/two",
        on_event=events.append,
    )
    one_x3 = run_training(
        {**cfg, "batch_size": 16, "gradient_accumulation_steps": 3},
        train_file,
        workdir=tmp_path / "one3",
        store=store,
        ckpt_key="checkpoint/one3",
    )
    assert one.metrics["processes"] == 1 and two.metrics["processes"] == 2
    # one line per step from rank 0 alone; the checkpoints of rank 0 alone
    assert [e["step"] for e in events if e["event"] == "checkpoint"] == [5, 10]
    assert len(store.versions("checkpoint/two")) == 2
    assert two.metrics["steps"] == 12 and two.metrics["tokens_seen"] == one_x3.metrics["tokens_seen"]
    assert two.metrics["loss_curve"] == pytest.approx(one_x3.metrics["loss_curve"], abs=1e-5)
    a = load_file(str(one_x3.output_dir / "adapter_model.safetensors"))
    b = load_file(str(two.output_dir / "adapter_model.safetensors"))
    assert max(float((a[k] - b[k]).abs().max()) for k in a) <= 1e-5
    # and the global batch really is 2 x 8 x 3 = 48 rows: not the 16-row run
    assert two.metrics["loss_curve"][1] != pytest.approx(one.metrics["loss_curve"][1], abs=1e-5)
