"""Will it fit? Estimate training memory before the first step and refuse with a way out."""

from __future__ import annotations

from typing import Any

from airflow_mlcrit.exceptions import ConfigError

GIB = 1024**3


def estimate_memory(
    total_params: int,
    trainable_params: int,
    *,
    batch_size: int,
    seq_len: int,
    hidden: int,
    layers: int,
    heads: int,
    bytes_per_value: int = 4,
    gradient_checkpointing: bool = False,
) -> dict:
    """Bytes for weights, gradients, AdamW states (two per trainable value, fp32) and activations.

    Activations per layer follow Korthikanti et al. (2022): s*b*h*(34 + 5*a*s/h) bytes in 16-bit,
    scaled to the value size; with gradient checkpointing only each layer's input (2*s*b*h) stays.
    """
    weights = total_params * bytes_per_value
    gradients = trainable_params * bytes_per_value
    optimizer = trainable_params * 8
    s, b, h, a = seq_len, batch_size, hidden, heads
    per_layer = 2 * s * b * h if gradient_checkpointing else s * b * h * (34 + 5 * a * s / h)
    activations = int(per_layer * layers * bytes_per_value / 2)
    return {
        "weights": weights,
        "gradients": gradients,
        "optimizer": optimizer,
        "activations": activations,
        "total": weights + gradients + optimizer + activations,
    }


def available_memory(device: Any) -> int:
    if getattr(device, "type", str(device)) == "cuda":
        import torch

        return int(torch.cuda.mem_get_info(device)[0])
    import psutil

    return int(psutil.virtual_memory().available)


def check_fits(
    estimate: dict[str, int], available: int, *, method: str, gradient_checkpointing: bool, batch_size: int, where: str
) -> None:
    if estimate["total"] <= 0.9 * available:
        return
    ways = []
    if method == "full":
        ways.append("method='lora' (gradients and optimizer states only for the adapter)")
    if not gradient_checkpointing:
        ways.append("gradient_checkpointing=True (activations shrink to one tensor per layer)")
    if batch_size > 1:
        ways.append(f"a smaller batch_size with gradient_accumulation_steps (now batch_size={batch_size})")
    parts = ", ".join(f"{k} {v / GIB:.2f} GiB" for k, v in estimate.items() if k != "total")
    raise ConfigError(
        f"training needs about {estimate['total'] / GIB:.2f} GiB ({parts}) but {where} has "
        f"{available / GIB:.2f} GiB free; try " + "; or ".join(ways or ["a smaller max_length"])
    )
