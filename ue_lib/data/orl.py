"""ORL / AT&T "Database of Faces" (Samaria & Harter 1994): 40 people x 10 grey face photos.

The archive ``att_faces.zip`` holds ``s<person>/<n>.pgm`` (person 1-40, n 1-10), 92x112 8-bit
grey PGMs taken at different times, lighting, expressions and with or without glasses. A class
is a person (a face-identity domain); the split is class-disjoint (unseen identities).

Copies of the zip differ in their bytes (the cached one was rebuilt from another copy of the
images), so the file is checked by its content instead of a checksum: 40 folders ``s1..s40``,
each with 10 readable 92x112 grey PGMs ``1.pgm..10.pgm`` (a top-level folder around them, as
some repackagings add, is accepted; other files such as a README are ignored).

Every split keeps its images' archive members in ``Split.paths`` (``s<person>/<n>.pgm``) and
``Domain.notes["image_index"]`` maps each split to the image number within its person (0-9),
for protocols over seen identities (e.g. some of each person's images as queries).
"""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from .core import (
    DataCorruptError,
    DataNotFoundError,
    Domain,
    check_image_args,
    domain_from_items,
    missing_message,
    pil_to_array,
    resolve_data_root,
)

SUBDIR = "orl"
ZIP_NAME = "att_faces.zip"
URLS = ("https://www.cl.cam.ac.uk/Research/DTG/attarchive/pub/data/att_faces.zip",)
PEOPLE, PER_PERSON, WIDTH, HEIGHT = 40, 10, 92, 112
HOW = (f"download {ZIP_NAME} (AT&T Laboratories Cambridge, 'The Database of Faces') from "
       f"{URLS[0]} if it is still served, or copy an {ZIP_NAME} holding s1/1.pgm .. s40/10.pgm "
       f"(40 people x 10 grey 92x112 PGMs) into that folder")
PROVENANCE = ("ORL / AT&T Database of Faces, AT&T Laboratories Cambridge (Samaria & Harter "
              "1994); att_faces.zip, 40 people x 10 images")
LICENSE = ("free for research use, acknowledging AT&T Laboratories Cambridge (the "
           "database's README)")
_MEMBER = re.compile(r"(?:^|/)s(\d+)/(\d+)\.pgm$", re.IGNORECASE)


def _listing(keys: list[tuple[int, int]]) -> str:
    return ", ".join(f"s{p}/{n}.pgm" for p, n in keys[:5]) + (", ..." if len(keys) > 5 else "")


def read_faces(path: Path) -> tuple[np.ndarray, list[str]]:
    """Check the zip's content and decode it: uint8 (400, 112, 92), ordered person by person
    and image by image, and the member names. Raises DataCorruptError saying what is wrong."""
    def bad(what: str) -> DataCorruptError:
        return DataCorruptError(f"Data for domain 'orl': {path} {what}; it must hold "
                                f"s1/1.pgm .. s{PEOPLE}/{PER_PERSON}.pgm ({PEOPLE} people x "
                                f"{PER_PERSON} grey {WIDTH}x{HEIGHT} PGMs). Delete it and "
                                f"{HOW}")

    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise bad(f"is not a readable zip ({exc})") from exc
    with archive:
        members = {}
        for name in archive.namelist():
            match = _MEMBER.search(name)
            if match:
                key = (int(match.group(1)), int(match.group(2)))
                if key in members:
                    raise bad(f"holds s{key[0]}/{key[1]}.pgm twice ({members[key]}, {name})")
                members[key] = name
        expected = {(p, n) for p in range(1, PEOPLE + 1) for n in range(1, PER_PERSON + 1)}
        missing, extra = sorted(expected - members.keys()), sorted(members.keys() - expected)
        if missing or extra:
            parts = [f"{len(keys)} {what}: {_listing(keys)}"
                     for what, keys in (("missing", missing), ("unexpected", extra)) if keys]
            raise bad(f"does not hold the expected faces ({'; '.join(parts)})")
        faces, names = [], []
        for key in sorted(expected):
            name = members[key]
            try:
                img = Image.open(io.BytesIO(archive.read(name)))
                img.load()
            except Exception as exc:
                raise bad(f"has an unreadable image {name} ({exc})") from exc
            if img.mode != "L" or img.size != (WIDTH, HEIGHT):
                raise bad(f"has {name} of mode {img.mode} and size {img.size[0]}x{img.size[1]}, "
                          f"not a grey {WIDTH}x{HEIGHT} image")
            faces.append(np.asarray(img.convert("L"), dtype=np.uint8))
            names.append(f"s{key[0]}/{key[1]}.pgm")
    return np.stack(faces), names


def _download(folder: Path, download: bool) -> None:
    """Fetch the zip from the original archive (checked by content afterwards, by the caller)."""
    target = folder / ZIP_NAME
    if not download:
        raise DataNotFoundError(missing_message("orl", folder, [ZIP_NAME], HOW,
                                                f"missing {ZIP_NAME} (download disabled)"))
    from torchvision.datasets.utils import download_url  # heavy import, only when needed

    errors = []
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        errors.append(f"the folder cannot be created ({exc})")
    else:
        for url in URLS:
            try:
                download_url(url, str(folder), filename=ZIP_NAME)
            except Exception as exc:  # network errors come in many types
                errors.append(f"{url}: {exc}")
                target.unlink(missing_ok=True)
                continue
            return
    raise DataNotFoundError(missing_message(
        "orl", folder, [ZIP_NAME], HOW,
        f"{ZIP_NAME} is missing and the download failed ({'; '.join(errors)})"))


def ensure_zip(root=None, download: bool = True) -> Path:
    """The path of att_faces.zip in the data root, downloaded from the original archive when
    missing and allowed. A downloaded file that fails the content check is deleted."""
    folder = resolve_data_root(root) / SUBDIR
    path = folder / ZIP_NAME
    if not path.is_file():
        _download(folder, download)
        try:
            read_faces(path)
        except DataCorruptError:
            path.unlink(missing_ok=True)
            raise
    return path


def load_orl(root=None, *, image_size: int = 32, channels: int = 1, seed: int = 0,
             test_fraction: float = 0.5, val_fraction: float = 0.2,
             max_per_class: int | None = None, max_classes: int | None = None,
             download: bool = True) -> Domain:
    """40 identities, class-disjoint (test and val people never seen in training).
    `channels=3` repeats the grey image (what an ImageNet trunk expects)."""
    check_image_args(image_size, channels)
    path = ensure_zip(root, download)
    faces, names = read_faces(path)
    images = np.stack([pil_to_array(Image.fromarray(face), image_size, channels) for face in faces])
    labels = np.repeat(np.arange(PEOPLE), PER_PERSON)
    class_names = [f"s{p}" for p in range(1, PEOPLE + 1)]
    domain = domain_from_items(
        "orl", images, labels, class_names, paths=names, seed=seed, test_fraction=test_fraction,
        val_fraction=val_fraction, max_per_class=max_per_class, max_classes=max_classes,
        provenance=PROVENANCE, license=LICENSE,
        notes={"source": str(path), "kind": "face identity", "people": PEOPLE,
               "images_per_person": PER_PERSON})
    domain.notes["image_index"] = {name: image_index(split.paths)
                                   for name, split in domain.splits.items()}
    return domain


def image_index(paths) -> np.ndarray:
    """Image number within its person, 0-9, of member names ``s<person>/<n>.pgm``."""
    return np.asarray([int(_MEMBER.search(str(p)).group(2)) - 1 for p in paths], dtype=np.int64)
