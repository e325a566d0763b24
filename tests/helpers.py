"""Tiny synthetic domains for fast tests (no files needed)."""

from __future__ import annotations

import numpy as np

from ue_lib.data import Domain, Split


def blob_domain(name: str = "blobs", n_classes: int = 12, per_class: int = 6, size: int = 16,
                seed: int = 0) -> Domain:
    """Each class is a bright square at its own place on a dark canvas, plus noise;
    classes 0..5 train, 6..8 val, 9.. test (class-disjoint)."""
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for c in range(n_classes):
        r, col = divmod(c, 4)
        for _ in range(per_class):
            im = rng.integers(0, 40, size=(1, size, size))
            y, x = 1 + 3 * r + rng.integers(0, 2), 1 + 3 * col + rng.integers(0, 2)
            im[:, y:y + 3, x:x + 3] = 230
            images.append(im.astype(np.uint8))
            labels.append(c)
    images, labels = np.stack(images), np.asarray(labels)
    cut = [np.isin(labels, part) for part in (range(0, 6), range(6, 9), range(9, n_classes))]
    splits = [Split(images[m], labels[m]) for m in cut]
    return Domain(name, *splits, class_names=[str(c) for c in range(n_classes)],
                  split_rule="class-disjoint", provenance="synthetic", license="none")
