"""Omniglot (Lake et al. 2015): handwritten characters of many alphabets.

We use the two small background sets, whose alphabets Greek and Latin appear in
both zips (identical copies): each alphabet is kept once, which leaves 242
character classes x 20 drawers. The PNGs are 1-bit black strokes on white; they
are inverted so that strokes are the bright foreground, as in the other domains.

Coarse groups: the alphabet of a character (class names are ``<alphabet>/<characterNN>``);
``Domain.group_names`` are the alphabets in the order they are read (the 8 of the two small
sets, each once). Attributes: the one-hot alphabet (``attribute_names`` = the alphabets), the
only per-item fact the source has besides the character.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from .core import (
    DataCorruptError,
    Domain,
    RemoteFile,
    check_image_args,
    domain_from_items,
    ensure_files,
    pil_to_array,
    resolve_data_root,
)
from .decoded import cached_decode

SUBDIR = "omniglot"
_BASE = "https://raw.githubusercontent.com/brendenlake/omniglot/master/python/"
FILES = [
    RemoteFile("images_background_small1.zip", (_BASE + "images_background_small1.zip",),
               "f38eb80f801274ac2b4dff5b24289016bfaba4a7d5bb50deebf27104ad6cb8a4"),
    RemoteFile("images_background_small2.zip", (_BASE + "images_background_small2.zip",),
               "3ccaa407515a8778e5d0861875af38b17e418f301ad5bb3b5a6b65d901a41c7f"),
]
HOW = ("download images_background_small1.zip and images_background_small2.zip from "
       "github.com/brendenlake/omniglot (folder python/) into that folder")
PROVENANCE = ("Omniglot, Lake, Salakhutdinov & Tenenbaum (2015), github.com/brendenlake/omniglot;"
              " images_background_small1/2, duplicated alphabets kept once")
LICENSE = "MIT"


def read_omniglot_zips(paths: list[Path], image_size: int, channels: int
                       ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Read every character image of the zips; an alphabet already read is skipped."""
    images, labels, class_names, class_index = [], [], [], {}
    seen_alphabets: set[str] = set()
    for path in paths:
        try:
            archive = zipfile.ZipFile(path)
        except zipfile.BadZipFile as exc:
            raise DataCorruptError(f"Data for domain 'omniglot': {path} is not a readable zip "
                                   f"({exc}); delete it and run again to re-download") from exc
        with archive:
            members = sorted(n for n in archive.namelist() if n.lower().endswith(".png"))
            alphabets = {m.split("/")[1] for m in members}
            for member in members:
                _, alphabet, character, _ = member.split("/")
                if alphabet in seen_alphabets:
                    continue
                key = f"{alphabet}/{character}"
                if key not in class_index:
                    class_index[key] = len(class_names)
                    class_names.append(key)
                try:
                    img = Image.open(io.BytesIO(archive.read(member)))
                    img.load()
                except Exception as exc:
                    raise DataCorruptError(f"Data for domain 'omniglot': image {member} in "
                                           f"{path} cannot be read ({exc})") from exc
                img = ImageOps.invert(img.convert("L"))
                images.append(pil_to_array(img, image_size, channels))
                labels.append(class_index[key])
            seen_alphabets |= alphabets
    return np.stack(images), np.asarray(labels, dtype=np.int64), class_names


def load_omniglot(root=None, *, image_size: int = 32, channels: int = 1, seed: int = 0,
                  test_fraction: float = 0.5, val_fraction: float = 0.2,
                  max_per_class: int | None = None, max_classes: int | None = None,
                  download: bool = True) -> Domain:
    check_image_args(image_size, channels)
    folder = resolve_data_root(root) / SUBDIR
    paths = ensure_files("omniglot", folder, FILES, HOW, download)
    zips = list(paths.values())
    images, labels, class_names = cached_decode(  # decoded once per machine
        "omniglot", {"image_size": image_size, "channels": channels}, zips,
        lambda: read_omniglot_zips(zips, image_size, channels))
    alphabets, class_group = alphabet_groups(class_names)
    groups = class_group[labels]
    return domain_from_items("omniglot", images, labels, class_names, seed=seed,
                             test_fraction=test_fraction, val_fraction=val_fraction,
                             max_per_class=max_per_class, max_classes=max_classes,
                             provenance=PROVENANCE, license=LICENSE,
                             attributes=np.eye(len(alphabets), dtype=np.float32)[groups],
                             groups=groups, attribute_names=alphabets, group_names=alphabets)


def alphabet_groups(class_names: list[str]) -> tuple[list[str], np.ndarray]:
    """The alphabets of class names ``<alphabet>/<character>`` (in order of first appearance)
    and each class's alphabet index (int64, one per class)."""
    alphabets = list(dict.fromkeys(name.split("/")[0] for name in class_names))
    index = {a: i for i, a in enumerate(alphabets)}
    return alphabets, np.asarray([index[n.split("/")[0]] for n in class_names], dtype=np.int64)
