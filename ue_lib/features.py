"""Cached trunk features: a frozen pretrained trunk runs over each image once per run.

On a CPU an ImageNet trunk embeds 150–400 images/s at 64 px and trains at about 50: too slow to
train a dozen models for several seeds. But a *frozen* trunk computes the same features every
time, so the profile's frozen part runs once over every image and the trainable rest (the last
stage(s), if any, and the head) trains on its cached outputs, thousands of times faster.

`FeatureStore` keys each image by a hash of its pixels, so the splits of every seed (which hold
different subsets of a domain) share one table per (domain, trunk, layer, image size); tables
live in `<folder>/<domain>-<key>.npz`, written atomically and extended when new images appear;
a damaged table is moved aside and computed again (`ue_lib.io.read_derived`).
`attach_features` gives every split of the domains a `features` array (float32, (N, C, h, w)):
models whose input is features (a model with `takes_features = True`) read it instead of the
pixels, through `ue_lib.evaluate.model_inputs` — the one place that chooses.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import timing
from .data import Domain
from .evaluate import embed
from .io import atomic_write, read_derived, rebuilding, slug

FEATURE_DTYPE = np.float32  # exact: the cached path trains like the uncached one


def image_hashes(images: np.ndarray) -> np.ndarray:
    """One 16-byte digest per image (as a (N,) array of bytes objects)."""
    return np.array([hashlib.blake2b(np.ascontiguousarray(im).tobytes(), digest_size=16).digest()
                     for im in images], dtype=object)


class FeatureStore:
    """Tables of trunk outputs per domain, on disk under `folder` (see the module doc)."""

    def __init__(self, folder: str | Path, batch_size: int = 256):
        self.folder, self.batch_size = Path(folder), batch_size
        self._tables: dict[str, dict[bytes, np.ndarray]] = {}
        self._healed: set[str] = set()  # tables whose file was damaged, until written again

    def path(self, domain: str, key: str) -> Path:
        return self.folder / f"{slug(domain)}-{key}.npz"

    def _table(self, domain: str, key: str) -> dict[bytes, np.ndarray]:
        name = f"{domain}|{key}"
        if name not in self._tables:
            path = self.path(domain, key)
            existed = path.is_file()
            table = read_derived(path, _read_table)
            if table is None and existed:
                self._healed.add(name)
            self._tables[name] = table or {}
        return self._tables[name]

    def features(self, trunk: nn.Module, key: str, domain: str, images: np.ndarray) -> np.ndarray:
        """`trunk`'s outputs for `images` (uint8 (N, C, H, W)); `key` identifies the trunk, its
        layer and the image size (`ue_lib.models.trunk_key`). Computes only unseen images."""
        table, hashes = self._table(domain, key), image_hashes(images)
        new = [h for h in dict.fromkeys(hashes) if h not in table]
        if new:
            first: dict[bytes, int] = {}
            for i, h in enumerate(hashes):
                first.setdefault(h, i)
            name = f"{domain}|{key}"
            with rebuilding(self.path(domain, key), active=name in self._healed), \
                    timing.counted_as("data"):
                out = embed(trunk, images[np.array([first[h] for h in new])], self.batch_size,
                            flatten=False)
                table.update(zip(new, out.astype(FEATURE_DTYPE)))
                self._save(domain, key, table)
            self._healed.discard(name)
        return np.stack([table[h] for h in hashes])

    def _save(self, domain: str, key: str, table: dict[bytes, np.ndarray]) -> None:
        hashes = np.frombuffer(b"".join(table), dtype=np.uint8).reshape(len(table), 16)
        features = np.stack(list(table.values()))
        atomic_write(self.path(domain, key),
                     lambda tmp: np.savez(tmp, hashes=hashes, features=features))


def _read_table(path: Path) -> dict[bytes, np.ndarray]:
    """A table file as {image hash: features}; ValueError when its arrays do not pair up."""
    with np.load(path, allow_pickle=False) as z:
        hashes, features = z["hashes"], z["features"]
    if hashes.ndim != 2 or hashes.shape[1] != 16 or len(hashes) != len(features):
        raise ValueError(f"it holds hashes of shape {hashes.shape} for {len(features)} features")
    return dict(zip((h.tobytes() for h in hashes), features))


def attach_features(domains: dict[str, Domain], store: FeatureStore, trunk: nn.Module,
                    key: str) -> dict[str, Domain]:
    """Give every split of `domains` its `features` (in place; returns `domains`)."""
    trunk.eval()
    with torch.no_grad():
        for name, d in domains.items():
            for split in d.splits.values():
                split.features = store.features(trunk, key, name, split.images)
    return domains
