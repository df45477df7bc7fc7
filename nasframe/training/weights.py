"""A trained network's weights as safetensors: written atomically, read back with checks."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from nasframe.common.checkpoint import atomic_write_bytes
from nasframe.common.errors import RunDirError
from nasframe.training.plan import FORMAT, MODEL_JSON


def save_weights(model: nn.Module, path: Path) -> None:
    """The state dict as safetensors (contiguous CPU copies), written atomically."""
    from safetensors.torch import save

    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    atomic_write_bytes(path, save(tensors, metadata={"format": "nasframe", "version": str(FORMAT)}))


def load_weights(model: nn.Module, path: Path) -> None:
    """Load safetensors weights into `model`; a damaged or mismatched file is one RunDirError."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    from nasframe.common.loading import MAX_TORCH_BYTES, read_bytes

    data = read_bytes(path, "", RunDirError, MAX_TORCH_BYTES)
    try:
        tensors = load(data)
    except (SafetensorError, ValueError, OSError) as exc:
        raise RunDirError(f"{path}: unreadable weights file ({type(exc).__name__}); it is damaged") from None
    try:
        model.load_state_dict(tensors)
    except RuntimeError:
        raise RunDirError(f"{path}: the weights do not fit the architecture in {MODEL_JSON}") from None
