"""File-backed (lazy) images for photo datasets too large to hold decoded in RAM.

:class:`ImageFiles` stands where a split's uint8 array would (``Split.images``): it has a
``shape``, a ``dtype`` and a length, and indexing it (an int, a slice, an index array) decodes
just those files with the evaluation transform, so plots, galleries and notebooks work
unchanged. Training and embedding ask it for a torch ``Dataset`` instead (:meth:`ImageFiles.
dataset`), which ``DataLoader`` workers decode in parallel:

* train: ``RandomResizedCrop(size)`` + horizontal flip (the usual metric-learning recipe);
* evaluation: ``Resize(size * 256 / 224)`` of the shorter side + ``CenterCrop(size)``
  (resize 256, crop 224 at the paper's size).

Both are torchvision transforms v2 and end in uint8 tensors (C, size, size): batches travel to
the GPU as bytes; the model scales them to [0, 1] and applies the ImageNet normalisation itself
(``ue_lib.models.EmbeddingNet``).
"""

from __future__ import annotations

import hashlib
import os

import numpy as np
from PIL import Image

from .core import DataCorruptError, DataNotFoundError
from .transforms import eval_transform, train_transform


class ImageFiles:
    """Images of a split kept as file paths and decoded on access (see the module doc).

    Args:
        paths: one file per item.
        size: side of the square images it yields.
        channels: 3 (RGB) or 1 (grey).
        num_workers: DataLoader worker processes used when a whole split is embedded or trained
            on (0: decode in the calling process).
        name: the domain, for error messages.
    """

    dtype = np.dtype(np.uint8)
    ndim = 4

    def __init__(self, paths, size: int, channels: int = 3, num_workers: int = 0,
                 name: str = "images"):
        self.paths = np.asarray(paths, dtype=object)
        if self.paths.ndim != 1:
            raise ValueError(f"paths must be 1-D, got shape {self.paths.shape}")
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels!r}")
        if not isinstance(num_workers, int) or num_workers < 0:
            raise ValueError(f"num_workers must be an integer >= 0, got {num_workers!r}")
        self.size, self.channels, self.num_workers, self.name = size, channels, num_workers, name

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self.paths), self.channels, self.size, self.size)

    def __len__(self) -> int:
        return len(self.paths)

    def __repr__(self) -> str:
        return f"ImageFiles({self.name!r}, {len(self)} files, {self.channels}x{self.size}x{self.size})"

    def open(self, i: int) -> Image.Image:
        """Item `i` as a decoded PIL image in the right mode; an unreadable file is named."""
        path = self.paths[i]
        try:
            with Image.open(path) as img:
                return img.convert("RGB" if self.channels == 3 else "L")
        except Exception as exc:
            raise DataCorruptError(f"Data for domain '{self.name}': the image file {path} is "
                                   f"missing or cannot be read ({type(exc).__name__}: {exc})") from exc

    def transform(self, train: bool = False):
        """The transform of items: the train or the eval transform (`ue_lib.data.transforms`)."""
        return train_transform(self.size) if train else eval_transform(self.size)

    def dataset(self, train: bool = False) -> ImageDataset:
        """A torch Dataset of uint8 tensors (C, size, size) with the train or eval transform."""
        return ImageDataset(self, self.transform(train))

    def __getitem__(self, key) -> np.ndarray:
        """Like indexing a uint8 (N, C, H, W) array: items decoded with the eval transform."""
        transform = self.transform()
        if isinstance(key, (int, np.integer)):
            return transform(self.open(int(key))).numpy()
        idx = np.arange(len(self))[key]
        out = np.empty((len(idx), self.channels, self.size, self.size), dtype=np.uint8)
        for j, i in enumerate(idx):
            out[j] = transform(self.open(int(i))).numpy()
        return out

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        array = self[:]
        return array if dtype is None else array.astype(dtype)

    def fingerprint(self) -> str:
        """Identifies the content for run fingerprints without decoding: image size, channels,
        and each file's path below the files' common folder and its byte size (so the same data
        under another data root gives the same fingerprint). Computed once."""
        if getattr(self, "_fingerprint", None) is None:
            h = hashlib.sha256(f"{self.size},{self.channels}".encode())
            base = os.path.commonpath(list(self.paths)) if len(self.paths) > 1 else ""
            for p in self.paths:
                h.update(f"{os.path.relpath(p, base) if base else os.path.basename(p)}:"
                         f"{os.path.getsize(p)}\n".encode())
            self._fingerprint = h.hexdigest()[:16]
        return self._fingerprint


class BoxCrops(ImageFiles):
    """The objects of file-backed images: item i is file i cropped to ``boxes[i]`` (x1, y1, x2,
    y2 in the original image's pixels, PIL convention; clipped to the image) and resized to
    size x size, with no further crop (the whole object is kept, its aspect ratio is not).
    Indexes, embeds and fingerprints like :class:`ImageFiles` (the boxes are in the
    fingerprint)."""

    def __init__(self, paths, boxes, size: int, channels: int = 3, num_workers: int = 0,
                 name: str = "images"):
        super().__init__(paths, size, channels, num_workers, name)
        self.boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        if len(self.boxes) != len(self.paths):
            raise ValueError(f"{len(self.boxes)} boxes for {len(self.paths)} files")

    def open(self, i: int) -> Image.Image:
        img = super().open(i)
        x1, y1, x2, y2 = self.boxes[i]
        x1, y1 = max(0, int(np.floor(x1))), max(0, int(np.floor(y1)))
        x2, y2 = min(img.width, int(np.ceil(x2))), min(img.height, int(np.ceil(y2)))
        if x2 <= x1 or y2 <= y1:  # an empty box keeps the whole image
            return img
        return img.crop((x1, y1, x2, y2))

    def transform(self, train: bool = False):
        from torchvision.transforms import v2

        return v2.Compose([v2.ToImage(), v2.Resize((self.size, self.size), antialias=True)])

    def fingerprint(self) -> str:
        digest = hashlib.sha256(self.boxes.tobytes()).hexdigest()[:16]
        return f"{super().fingerprint()}-{digest}"


def is_file_backed(images) -> bool:
    """Whether a split's `images` are :class:`ImageFiles` rather than an in-memory array."""
    return isinstance(images, ImageFiles)


class ImageDataset:
    """Item i of an :class:`ImageFiles`, decoded and transformed: a uint8 tensor (C, S, S).
    A map-style dataset for ``torch.utils.data.DataLoader`` (it needs only ``__len__`` and
    ``__getitem__``; not subclassing ``Dataset`` keeps this module torch-free at import)."""

    def __init__(self, files: ImageFiles, transform):
        self.files, self.transform = files, transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        """A uint8 torch tensor (C, S, S)."""
        import torch

        return self.transform(self.files.open(int(i))).as_subclass(torch.Tensor)


def check_files_exist(paths: np.ndarray, name: str) -> None:
    """Fail early, naming the first missing file, rather than in a DataLoader worker mid-epoch."""
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise DataNotFoundError(f"Data for domain '{name}': {len(missing)} image file(s) listed "
                                f"in the index are missing, e.g. {missing[0]}")


__all__ = ["ImageFiles", "BoxCrops", "ImageDataset", "check_files_exist", "is_file_backed"]
