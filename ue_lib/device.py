"""Where and in what precision a model runs: the device rule, mixed precision, input layout.

* ``resolve_device("auto")`` is CUDA when there is a GPU, else the CPU.
* Mixed precision (``amp``): ``"auto"`` is bfloat16 autocast on CUDA and full float32 on the
  CPU; ``"bf16"`` forces bfloat16 autocast (also on the CPU, which is how the tests exercise
  that path); ``"off"`` is float32 everywhere. bfloat16 has float32's range, so no loss scaling
  is needed; losses and retrieval metrics are computed in float32 all the same.
* On CUDA, models and inputs use the channels-last memory layout (faster convolutions with
  tensor cores); on the CPU the default layout is kept.
"""

from __future__ import annotations

from contextlib import AbstractContextManager

import torch

AMP_MODES = ("auto", "bf16", "off")


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} asked for, but this machine has no usable CUDA GPU; "
                           f"use device='auto' or 'cpu'")
    return device


def amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of mode `amp` on `device` (None: no autocast)."""
    if amp not in AMP_MODES:
        raise ValueError(f"amp must be one of {', '.join(AMP_MODES)}, got {amp!r}")
    if amp == "bf16" or (amp == "auto" and device.type == "cuda"):
        return torch.bfloat16
    return None


def autocast(amp: str, device: torch.device) -> AbstractContextManager:
    """``torch.autocast`` for mode `amp` on `device` (a no-op context when it is off)."""
    dtype = amp_dtype(amp, device)
    return torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None)


def memory_format(device: torch.device) -> torch.memory_format:
    return torch.channels_last if device.type == "cuda" else torch.contiguous_format


def to_input(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 images (B, C, H, W) -> float32 in [0, 1] on `device`, in its memory layout (the
    conversion happens after the copy, so only a quarter of the bytes travel to a GPU); float
    inputs (cached trunk features, `ue_lib.features`) -> float32 unchanged."""
    x = images.to(device, non_blocking=True)
    x = x.float().div_(255) if x.dtype == torch.uint8 else x.float()
    return x.contiguous(memory_format=memory_format(device)) if x.dim() == 4 else x


__all__ = ["AMP_MODES", "resolve_device", "amp_dtype", "autocast", "memory_format", "to_input"]
