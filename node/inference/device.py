"""Where a model computes: the node's ``device`` setting made into a torch device.

"auto" takes the GPU when torch sees one, so a GPU pod needs no setting; an explicit "cuda"
on a host where torch sees none is an error at start-up rather than a node that quietly
runs its network on the CPU (70x slower than on the GPU in bench/inference_device.py).

On a GPU, convolutions compute in full float32 (IEEE), not torch's default TF32 for cuDNN:
a programme runs CPU and GPU workers side by side, and an exam must get the same score
whichever scored it; TF32's ~1e-3 relative error in the features can move a score across
the operating point. bench/inference_device.py measures both.
"""

from __future__ import annotations

import torch

from node.config import validate_device
from node.errors import ConfigError


def serving_device(name: str | None = None) -> torch.device:
    """The torch device for ``name`` ("auto" or None, "cpu", "cuda", "cuda:N")."""
    name = validate_device(name or "auto")
    device = torch.device(
        name if name != "auto" else "cuda" if torch.cuda.is_available() else "cpu"
    )
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {name}: torch sees no CUDA GPU on this host")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(
                f"device {name}: this host has {torch.cuda.device_count()} CUDA GPU(s)"
            )
        torch.backends.cudnn.conv.fp32_precision = "ieee"  # type: ignore[attr-defined]
    return device
