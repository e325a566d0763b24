"""Embedding and inference: a model's embeddings of images or cached trunk features, and its
per-domain and merged retrieval metrics (the metrics themselves are in :mod:`.retrieval`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from .. import timing
from ..data.files import is_file_backed
from ..device import autocast, to_input
from .retrieval import merged_retrieval_metrics, split_metrics

_SPLITS = ("train", "val", "test")


def embed(
    model: torch.nn.Module,
    images: Any,
    batch_size: int = 512,
    device: torch.device | str | None = None,
    amp: str = "auto",
    flatten: bool = True,
) -> np.ndarray:
    """Embed uint8 images (N, C, H, W) -- or float inputs such as cached trunk features -- with
    ``model`` in eval mode, without gradients.

    ``images`` is an array or tensor, or file-backed :class:`~ue_lib.data.files.ImageFiles`
    (decoded with the evaluation transform by its ``num_workers`` DataLoader workers, in pinned
    memory when the device is a GPU). Each batch is moved to ``device`` (default: the model's
    parameter device, else CPU) and scaled to float32 in [0, 1] before the forward pass, under
    autocast when ``amp`` asks for it (``ue_lib.device``: bfloat16 on CUDA by default). Returns
    a float32 (N, D) array (outputs are flattened per item unless ``flatten=False``). The
    model's previous train/eval mode is restored.
    """
    if device is None:
        first = next(model.parameters(), None)
        device = first.device if first is not None else torch.device("cpu")
    device = torch.device(device)
    if is_file_backed(images):  # decode in DataLoader workers
        batches = DataLoader(images.dataset(train=False), batch_size=batch_size,
                             num_workers=images.num_workers, pin_memory=device.type == "cuda")
    else:
        images = images if isinstance(images, torch.Tensor) else torch.from_numpy(np.asarray(images))
        if images.dtype != torch.uint8 and not images.is_floating_point():
            raise TypeError(f"images must be uint8 (or float features), got {images.dtype}")
        batches = (images[start : start + batch_size] for start in range(0, len(images), batch_size))
    was_training = model.training
    model.eval()
    outputs = []
    try:
        with torch.no_grad(), autocast(amp, device):
            for i, batch in enumerate(batches):
                if i == 0 and timing.enabled():  # FLOPs of the whole pass, from its first batch
                    out, flops = timing.count_flops(model, to_input(batch, device))
                    timing.add_flops("evaluation", flops * len(images) / max(1, len(batch)))
                else:
                    out = model(to_input(batch, device))
                out = out.reshape(len(batch), -1) if flatten else out
                outputs.append(out.float().cpu().numpy())
    finally:
        model.train(was_training)
    if not outputs:
        return np.zeros((0, 0), dtype=np.float32)
    return np.concatenate(outputs).astype(np.float32, copy=False)


def model_inputs(model: torch.nn.Module, split: Any) -> Any:
    """What ``model`` embeds of ``split``: its cached trunk features (``split.features``, see
    ``ue_lib.features``) if the model takes features (``model.takes_features``), else its images."""
    if not getattr(model, "takes_features", False):
        return split.images
    if getattr(split, "features", None) is None:
        raise ValueError("this model embeds cached trunk features, but the split has none: load "
                         "the domains through RunFolder.domains() (which attaches them) or call "
                         "ue_lib.features.attach_features first")
    return split.features


def _split(domain: Any, split: str) -> Any:
    if split not in _SPLITS:
        raise ValueError(f"split must be one of {_SPLITS}, got {split!r}")
    return getattr(domain, split)


def evaluate_domains(
    model: torch.nn.Module,
    domains: Mapping[str, Any],
    split: str = "test",
    ks: Sequence[int] = (1, 2, 4, 8),
    batch_size: int = 512,
    amp: str = "auto",
) -> dict[str, dict[str, float]]:
    """Per-domain metrics of ``model`` on ``getattr(domain, split)`` (:func:`split_metrics`:
    query/gallery for a set with an ``is_query`` mask, else leave-one-out). The one place where
    a model is embedded and scored per domain (training curves, final numbers, notebooks).

    ``domains`` maps a name to an object with ``.train``, ``.val`` and ``.test`` sets, each having
    ``.images`` (uint8 N×C×H×W), ``.labels`` (int array) and optionally ``.is_query``.
    """
    return {name: split_metrics(embed(model, model_inputs(model, _split(d, split)), batch_size,
                                      amp=amp), _split(d, split), ks)
            for name, d in domains.items()}


def evaluate_merged(
    model: torch.nn.Module,
    domains: Mapping[str, Any],
    split: str = "test",
    ks: Sequence[int] = (1, 2, 4, 8),
    batch_size: int = 512,
    amp: str = "auto",
) -> dict[str, dict[str, float]]:
    """:func:`merged_retrieval_metrics` of ``model`` over all ``domains`` (see
    :func:`evaluate_domains` for the expected objects). The merged evaluation is leave-one-out
    over all items: a set's ``is_query`` mask is not used here."""
    embeddings = {n: embed(model, model_inputs(model, _split(d, split)), batch_size, amp=amp)
                  for n, d in domains.items()}
    return merged_retrieval_metrics(embeddings, {n: _split(d, split).labels
                                                 for n, d in domains.items()}, ks)
