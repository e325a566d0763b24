"""Fashion-MNIST (Xiao, Rasul & Vollgraf 2017): 28x28 grey Zalando product photos.

It has only 10 classes; with a 5/5 class split a trained network retrieves the
unseen classes no better than raw pixels, so — unlike every other domain —
`fashion` is split by *images*: test is the official t10k set (held-out images
of all 10 classes) and val is carved from the official training images.

Coarse groups (``Domain.group_names``, :data:`GROUP_NAMES`, our grouping of the 10 classes):
``tops`` (T-shirt/top, Pullover, Shirt, Coat), ``footwear`` (Sandal, Sneaker, Ankle boot),
``bag``, ``trouser``, ``dress``. Attributes (``attribute_names`` = the group names): the one-hot
group; the source has nothing finer than the class.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
from PIL import Image

from .core import (
    DataCorruptError,
    Domain,
    RemoteFile,
    Split,
    check_image_args,
    ensure_files,
    held_out_split,
    pil_to_array,
    resolve_data_root,
    subsample_per_class,
)

SUBDIR = "fashion-mnist"
_MIRRORS = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
            "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/")
_SHA256 = {
    "train-images-idx3-ubyte.gz": "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
    "train-labels-idx1-ubyte.gz": "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
    "t10k-images-idx3-ubyte.gz": "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
    "t10k-labels-idx1-ubyte.gz": "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
}
FILES = [RemoteFile(name, tuple(m + name for m in _MIRRORS), digest)
         for name, digest in _SHA256.items()]
HOW = ("download the four *-ubyte.gz files from github.com/zalandoresearch/fashion-mnist "
       "(folder data/fashion/) into that folder, or on Debian install dataset-fashion-mnist")
CLASS_NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
               "Sneaker", "Bag", "Ankle boot"]
GROUP_NAMES = ["tops", "footwear", "bag", "trouser", "dress"]
GROUP_OF_CLASS = {"T-shirt/top": "tops", "Pullover": "tops", "Shirt": "tops", "Coat": "tops",
                  "Sandal": "footwear", "Sneaker": "footwear", "Ankle boot": "footwear",
                  "Bag": "bag", "Trouser": "trouser", "Dress": "dress"}
CLASS_GROUP = np.asarray([GROUP_NAMES.index(GROUP_OF_CLASS[c]) for c in CLASS_NAMES], dtype=np.int64)
PROVENANCE = "Fashion-MNIST, Xiao, Rasul & Vollgraf (2017), Zalando Research"
LICENSE = "MIT"
SPLIT_RULE = ("held-out images of all 10 classes (not class-disjoint: with only 10 classes a "
              "class split leaves too few to learn from); test = official t10k images")


def read_idx(path: Path) -> np.ndarray:
    """Read a gzipped IDX file (images: magic 2051, 16-byte header; labels: 2049, 8 bytes)."""
    try:
        with gzip.open(path, "rb") as fh:
            data = fh.read()
    except (OSError, EOFError) as exc:
        raise DataCorruptError(f"Data for domain 'fashion': {path} cannot be decompressed "
                               f"({exc}); delete it and run again to re-download") from exc
    magic = int.from_bytes(data[:4], "big")
    if magic == 2051:
        n, rows, cols = (int.from_bytes(data[i:i + 4], "big") for i in (4, 8, 12))
        shape, offset = (n, rows, cols), 16
    elif magic == 2049:
        shape, offset = (int.from_bytes(data[4:8], "big"),), 8
    else:
        raise DataCorruptError(f"Data for domain 'fashion': {path} is not an IDX file "
                               f"(magic number {magic}, expected 2051 or 2049)")
    if len(data) - offset != int(np.prod(shape)):
        raise DataCorruptError(f"Data for domain 'fashion': {path} holds {len(data) - offset} "
                               f"bytes after its header, expected {int(np.prod(shape))}")
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(shape)


def _convert(raw: np.ndarray, image_size: int, channels: int) -> np.ndarray:
    if image_size == raw.shape[-1] and channels == 1:
        return raw[:, None].copy()
    return np.stack([pil_to_array(Image.fromarray(im), image_size, channels) for im in raw])


def load_fashion(root=None, *, image_size: int = 32, channels: int = 1, seed: int = 0,
                 test_fraction: float = 0.5, val_fraction: float = 0.2,
                 max_per_class: int | None = None, max_classes: int | None = None,
                 download: bool = True) -> Domain:
    """`max_per_class` caps the images of each class over all splits: `test_fraction`
    of them come from t10k, the rest from the training file (of which `val_fraction`
    go to val). `max_classes` is accepted for a uniform interface but must leave >= 2."""
    check_image_args(image_size, channels)
    folder = resolve_data_root(root) / SUBDIR
    paths = ensure_files("fashion", folder, FILES, HOW, download)
    rng = np.random.default_rng(seed)
    train_x, train_y = (read_idx(paths[f"train-{k}-idx{d}-ubyte.gz"]) for k, d in
                        (("images", 3), ("labels", 1)))
    test_x, test_y = (read_idx(paths[f"t10k-{k}-idx{d}-ubyte.gz"]) for k, d in
                      (("images", 3), ("labels", 1)))
    classes = np.arange(10)
    if max_classes is not None:
        if max_classes < 2:
            raise ValueError(f"max_classes must be >= 2 for fashion, got {max_classes}")
        classes = np.sort(rng.choice(classes, size=min(max_classes, 10), replace=False))
    keep_tr, keep_te = np.isin(train_y, classes), np.isin(test_y, classes)
    train_x, train_y, test_x, test_y = train_x[keep_tr], train_y[keep_tr], test_x[keep_te], test_y[keep_te]
    if max_per_class is not None:
        n_test = max(1, round(max_per_class * test_fraction))
        te = subsample_per_class(test_y, n_test, rng)
        tr = subsample_per_class(train_y, max_per_class - n_test, rng)
        test_x, test_y, train_x, train_y = test_x[te], test_y[te], train_x[tr], train_y[tr]
    fit, val = held_out_split(train_y, val_fraction, rng)
    train_x = _convert(train_x, image_size, channels)
    test_x = _convert(test_x, image_size, channels)
    return Domain(
        name="fashion",
        train=_split(train_x[fit], train_y[fit]),
        val=_split(train_x[val], train_y[val]),
        test=_split(test_x, test_y),
        class_names=list(CLASS_NAMES),
        split_rule=SPLIT_RULE,
        provenance=PROVENANCE,
        license=LICENSE,
        attribute_names=list(GROUP_NAMES),
        group_names=list(GROUP_NAMES),
    )


def _split(images: np.ndarray, labels: np.ndarray) -> Split:
    """A split with each item's coarse group and one-hot group attributes."""
    labels = labels.astype(np.int64)
    groups = CLASS_GROUP[labels]
    return Split(images, labels, attributes=np.eye(len(GROUP_NAMES), dtype=np.float32)[groups],
                 groups=groups)
