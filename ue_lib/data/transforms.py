"""Image transforms, in one place: torchvision transforms v2 throughout.

* file-backed photos (`ue_lib.data.files`), train: ``RandomResizedCrop(size)`` + horizontal flip
  (the usual metric-learning recipe); evaluation: ``Resize(size * 256 / 224)`` of the shorter
  side + ``CenterCrop(size)`` (resize 256, crop 224 at the paper's size);
* in-memory images (the mini domains), train: a small random affine jitter per image.
"""

from __future__ import annotations

from collections.abc import Callable

RESIZE_RATIO = 256 / 224


def train_transform(size: int):
    """Random resized crop to `size` (scale 0.08-1, aspect 3/4-4/3) and a horizontal flip."""
    from torchvision.transforms import v2

    return v2.Compose([v2.ToImage(), v2.RandomResizedCrop(size, antialias=True),
                       v2.RandomHorizontalFlip()])


def eval_transform(size: int):
    """Shorter side to ``round(size * 256 / 224)``, then the central `size` x `size` crop."""
    from torchvision.transforms import v2

    return v2.Compose([v2.ToImage(), v2.Resize(round(size * RESIZE_RATIO), antialias=True),
                       v2.CenterCrop(size)])


def view_box(box, width: int, height: int, size: int):
    """Where a box (x1, y1, x2, y2 in an original image of `width` x `height`) lands in that
    image's evaluation view (`eval_transform`: the shorter side resized to
    ``round(size * 256 / 224)``, the longer in proportion as torchvision does, then the central
    `size` x `size` crop), clipped to the view. Returns float32 (4,)."""
    import numpy as np

    short = round(size * RESIZE_RATIO)
    if width <= height:
        new_w, new_h = short, int(short * height / width)
    else:
        new_w, new_h = int(short * width / height), short
    left, top = int(round((new_w - size) / 2.0)), int(round((new_h - size) / 2.0))
    sx, sy = new_w / width, new_h / height
    x1, y1, x2, y2 = (float(v) for v in box)
    out = np.array([x1 * sx - left, y1 * sy - top, x2 * sx - left, y2 * sy - top], np.float32)
    return np.clip(out, 0, size)


def jitter() -> Callable:
    """Per-image random affine jitter (small rotation, shift, scale) of a float batch
    (B, C, H, W); draws from torch's global generator (the training loop seeds it per epoch)."""
    import torch
    from torchvision.transforms import v2

    t = v2.RandomAffine(degrees=8, translate=(0.08, 0.08), scale=(0.9, 1.1))
    return lambda x: torch.stack([t(im) for im in x])
