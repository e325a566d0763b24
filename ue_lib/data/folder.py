"""`folder:<path>`: any ImageFolder-style tree, one sub-folder per class."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from .core import (
    DataCorruptError,
    DataNotFoundError,
    Domain,
    check_image_args,
    domain_from_items,
    pil_to_array,
)

HOW = ("make one sub-folder per class holding that class's images (.jpg, .png, …), e.g. "
       "<path>/cat/001.jpg, <path>/dog/002.jpg")


def read_image_folder(path: Path, image_size: int, channels: int, name: str
                      ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

    if not path.is_dir():
        raise DataNotFoundError(f"Data for domain '{name}' not found: {path.resolve()} is not a "
                                f"folder.\n  expected: {HOW}")
    try:
        class_names, class_to_idx = find_classes(str(path))
        samples = make_dataset(str(path), class_to_idx, extensions=IMG_EXTENSIONS)
    except FileNotFoundError as exc:  # no class folders, or a class folder without images
        raise DataNotFoundError(f"Data for domain '{name}' in {path.resolve()}: {exc}\n"
                                f"  expected: {HOW}") from exc
    images, labels = [], []
    for file, label in samples:
        try:
            with Image.open(file) as img:
                img.load()
                images.append(pil_to_array(img, image_size, channels))
        except Exception as exc:
            raise DataCorruptError(f"Data for domain '{name}': the image file {file} cannot be "
                                   f"read ({type(exc).__name__}: {exc}); replace or delete "
                                   f"it") from exc
        labels.append(label)
    return np.stack(images), np.asarray(labels, dtype=np.int64), class_names


def load_folder(path, *, image_size: int = 32, channels: int = 1, seed: int = 0,
                test_fraction: float = 0.5, val_fraction: float = 0.2,
                max_per_class: int | None = None, max_classes: int | None = None) -> Domain:
    check_image_args(image_size, channels)
    path = Path(path).expanduser()
    name = f"folder:{path}"
    images, labels, class_names = read_image_folder(path, image_size, channels, name)
    return domain_from_items(name, images, labels, class_names, seed=seed,
                             test_fraction=test_fraction, val_fraction=val_fraction,
                             max_per_class=max_per_class, max_classes=max_classes,
                             provenance=f"user images from {path.resolve()}",
                             license="as given by the owner of the images")
