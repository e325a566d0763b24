"""The four standard deep-metric-learning benchmarks: the `paper` suite.

=========  =========================================  ===========================================
name       folder under the data root                 standard split (class-disjoint)
=========  =========================================  ===========================================
`cub`      ``CUB_200_2011/`` (the unpacked archive)   classes 1-100 train, 101-200 test
`cars`     ``cars196/`` (``cars_annos.mat`` and       classes 1-98 train, 99-196 test (the mat's
           ``car_ims/``)                              own ``test`` flag is ignored, as in DML)
`sop`      ``Stanford_Online_Products/``              ``Ebay_train.txt`` / ``Ebay_test.txt``
`inshop`   ``InShop/`` (``list_eval_partition.txt``   status ``train`` / ``query`` + ``gallery``
           and ``img/``)
=========  =========================================  ===========================================

Their licences require the user to fetch them: they are never downloaded (the loaders accept
``download`` for a uniform interface and ignore it); a missing file raises DataNotFoundError
naming the domain, the folder, the expected files and the official download page.

The train/test split is the benchmark's standard one, so ``test_fraction`` is ignored; the
validation split is carved class-disjointly (``val_fraction``, seeded) from the training classes.
``max_classes`` keeps that many classes in the official train/test proportion, and
``max_per_class`` that many images per class (for In-Shop: per class in each of query and
gallery), both seeded, for quick runs. The test split is evaluated leave-one-out, except In-Shop's
(``Domain.notes["protocol"] == "query-gallery"``): its test split holds the query and gallery
images, told apart by ``Split.is_query``. CUB's and Cars' object boxes are kept in ``Split.boxes``
(original pixel coordinates, PIL crop convention) and every split keeps its image ``paths``.

Memory: decoded eagerly (the default), every image sits in RAM as uint8 (N, C, H, W). At 224 px
RGB that is 150 kB per image: CUB (11,788 images) 1.8 GB, Cars (16,185) 2.4 GB, In-Shop (52,712)
7.9 GB and SOP (120,053) 18 GB -- fine at the small sizes of quick runs, too large at the paper's.
With ``lazy=True`` a split's ``images`` is an :class:`~ue_lib.data.files.ImageFiles` instead:
paths only, decoded (and, for training, randomly cropped and flipped) per batch by
``num_workers`` DataLoader workers; the loader only checks that every listed file exists.
:func:`read_index` reads just the index files (paths, labels, boxes, query flags) and
:func:`split_items` makes the splits, as item indices into that index, without touching an image.

Attributes and coarse groups (``Split.attributes`` / ``Split.groups``, named by
``Domain.attribute_names`` / ``Domain.group_names``; ``Domain.notes["attributes"]`` says what
was found):

* `cub`: the 312 binary attributes of ``CUB_200_2011/attributes/image_attribute_labels.txt``
  (lines ``<image_id> <attribute_id> <is_present> <certainty_id> <time>``; extra fields are
  ignored), value = ``is_present``; names from ``attributes.txt``, which the official archive puts
  beside ``CUB_200_2011/`` (also looked for inside it and in ``attributes/``), else
  ``attribute_<id>``. :func:`read_cub_attributes` can also weigh them by certainty. No file: no
  attributes. No groups (CUB has no super-categories).
* `inshop`: group = the clothing category of the image path (``img/WOMEN/Dresses/id_…/…`` ->
  ``WOMEN/Dresses``); attributes from the official ``Anno/list_attr_items.txt`` (one row per
  item: 463 labels 1 / -1 / 0 for positive / negative / unknown; we map 1 -> 1 and -1, 0 -> 0)
  named by ``Anno/list_attr_cloth.txt``, looked for in ``InShop/Anno/`` and ``InShop/``; without
  them, no attributes.
* `sop`: group = the super-category (``super_class_id`` of the index files, named by its image
  folder: ``bicycle_final/`` -> ``bicycle``); no attributes.
* `cars`: none.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from .core import (
    DataCorruptError,
    DataNotFoundError,
    Domain,
    Split,
    carve_val_classes,
    check_image_args,
    missing_message,
    pil_to_array,
    resolve_data_root,
    subsample_classes,
    subsample_per_class,
)
from .files import ImageFiles, check_files_exist

_NOT_DOWNLOADED = (" Its terms of use require you to fetch it yourself: it is never downloaded "
                   "automatically (the `download` argument is ignored).")


@dataclass(frozen=True)
class Source:
    """Where a benchmark lives and what it is: folder under the data root, required index files
    and image folders (ending in '/'), how to get them, provenance, licence and split rule."""

    folder: str
    files: tuple[str, ...]
    how: str
    provenance: str
    license: str
    split_rule: str
    protocol: str = "leave-one-out"


SOURCES = {
    "cub": Source(
        "CUB_200_2011",
        ("images.txt", "image_class_labels.txt", "classes.txt", "bounding_boxes.txt", "images/"),
        "download CUB_200_2011.tgz from https://www.vision.caltech.edu/datasets/cub_200_2011/ and "
        "unpack it in the data root (it creates CUB_200_2011/)." + _NOT_DOWNLOADED,
        "CUB-200-2011, Wah et al. 2011, Caltech (https://www.vision.caltech.edu/datasets/"
        "cub_200_2011/)",
        "research use; see the dataset page",
        "class-disjoint, standard DML split: classes 1-100 train (val classes carved from them), "
        "101-200 test"),
    "cars": Source(
        "cars196",
        ("cars_annos.mat", "car_ims/"),
        "download cars_annos.mat and car_ims.tgz from "
        "https://ai.stanford.edu/~jkrause/cars/car_dataset.html, make a folder cars196/ in the "
        "data root, put cars_annos.mat in it and unpack car_ims.tgz there (it creates car_ims/)."
        + _NOT_DOWNLOADED,
        "Cars196 (Stanford Cars), Krause et al. 2013, '3D Object Representations for "
        "Fine-Grained Categorization', Stanford (https://ai.stanford.edu/~jkrause/cars/"
        "car_dataset.html)",
        "research use; see the dataset page",
        "class-disjoint, standard DML split: classes 1-98 train (val classes carved from them), "
        "99-196 test (the annotation file's own `test` flag is ignored)"),
    "sop": Source(
        "Stanford_Online_Products",
        ("Ebay_train.txt", "Ebay_test.txt"),
        "download Stanford_Online_Products.zip from https://cvgl.stanford.edu/projects/"
        "lifted_struct/ and unzip it in the data root (it creates Stanford_Online_Products/ "
        "with the index files and the <category>_final/ image folders)." + _NOT_DOWNLOADED,
        "Stanford Online Products, Oh Song et al. 2016, 'Deep Metric Learning via Lifted "
        "Structured Feature Embedding', Stanford (https://cvgl.stanford.edu/projects/"
        "lifted_struct/)",
        "research use; see the dataset page",
        "class-disjoint, standard split: Ebay_train.txt classes train (val classes carved from "
        "them), Ebay_test.txt classes test"),
    "inshop": Source(
        "InShop",
        ("list_eval_partition.txt", "img/"),
        "request the DeepFashion In-shop Clothes Retrieval Benchmark at "
        "https://mmlab.ie.cuhk.edu.hk/projects/DeepFashion/InShopRetrieval.html, make a folder "
        "InShop/ in the data root, copy Eval/list_eval_partition.txt into it and unzip "
        "Img/img.zip there (it creates img/)." + _NOT_DOWNLOADED,
        "DeepFashion In-shop Clothes Retrieval, Liu et al. 2016, 'DeepFashion: Powering Robust "
        "Clothes Recognition and Retrieval with Rich Annotations', CUHK MMLab "
        "(https://mmlab.ie.cuhk.edu.hk/projects/DeepFashion/InShopRetrieval.html)",
        "non-commercial research use only, under the DeepFashion agreement; see the dataset page",
        "class-disjoint, standard split: items with status `train` train (val items carved from "
        "them); test = the `query` and `gallery` images, queries searched against the gallery",
        "query-gallery"),
}


@dataclass
class BenchmarkIndex:
    """A benchmark's items without their pixels: absolute image paths (object array), int64
    labels indexing ``class_names``, the official test flag, and optionally float32 (N, 4)
    boxes (x1, y1, x2, y2, PIL crop convention) and the In-Shop query flag; per-item
    attributes / groups with their names when the benchmark has them (see the module doc), and
    `notes` on what was found."""

    name: str
    folder: Path
    paths: np.ndarray
    labels: np.ndarray
    is_test: np.ndarray
    class_names: list[str]
    boxes: np.ndarray | None = None
    is_query: np.ndarray | None = None
    attributes: np.ndarray | None = None
    groups: np.ndarray | None = None
    attribute_names: list[str] = field(default_factory=list)
    group_names: list[str] = field(default_factory=list)
    notes: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------- index files

def require_files(name: str, root=None) -> Path:
    """The benchmark's folder, after checking that its index files and image folders exist."""
    source = SOURCES[name]
    folder = resolve_data_root(root) / source.folder
    missing = [f for f in source.files
               if not ((folder / f).is_dir() if f.endswith("/") else (folder / f).is_file())]
    if missing:
        raise DataNotFoundError(missing_message(name, folder, list(source.files), source.how,
                                                f"missing {', '.join(missing)}"))
    return folder


@contextmanager
def _parsing(name: str, path: Path) -> Iterator[None]:
    """Turn a parse failure inside the block into a DataCorruptError naming the file."""
    try:
        yield
    except (ValueError, IndexError, KeyError, TypeError) as exc:
        raise DataCorruptError(f"Data for domain '{name}': {path} is not in the official format "
                               f"({type(exc).__name__}: {exc})") from exc


def _table(name: str, path: Path, columns: int, skip: int = 0) -> list[list[str]]:
    """Whitespace-separated rows of an index file (after `skip` header lines), each checked to
    have `columns` fields."""
    try:
        lines = path.read_text().splitlines()[skip:]
    except (OSError, UnicodeDecodeError) as exc:
        raise DataCorruptError(f"Data for domain '{name}': {path} cannot be read ({exc})") from exc
    rows = []
    for number, line in enumerate(lines, start=skip + 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != columns:
            raise DataCorruptError(f"Data for domain '{name}': {path} line {number} has "
                                   f"{len(fields)} fields, expected {columns}: {line!r}")
        rows.append(fields)
    return rows


def _by_id(name: str, path: Path, columns: int, ids: list[str]) -> list[list[str]]:
    """The rows of `path` (keyed by their first field) for `ids`, in that order."""
    table = {row[0]: row[1:] for row in _table(name, path, columns)}
    missing = [i for i in ids if i not in table]
    if missing:
        raise DataCorruptError(f"Data for domain '{name}': {path} has no row for image id "
                               f"{missing[0]} ({len(missing)} ids missing)")
    return [table[i] for i in ids]


def _labels(class_ids: np.ndarray, names: dict[int, str]) -> tuple[np.ndarray, list[str]]:
    """Labels indexing a class list sorted by official id (named classes without images
    included, so that CUB's label is its class id - 1)."""
    ids = np.union1d(np.fromiter(names, dtype=np.int64, count=len(names)), class_ids)
    return np.searchsorted(ids, class_ids).astype(np.int64), [names.get(int(i), str(i)) for i in ids]


def _index_cub(folder: Path) -> BenchmarkIndex:
    images = _table("cub", folder / "images.txt", 2)
    ids = [row[0] for row in images]
    with _parsing("cub", folder / "image_class_labels.txt"):
        class_ids = np.array([int(c) for (c,) in _by_id("cub", folder / "image_class_labels.txt",
                                                         2, ids)], dtype=np.int64)
    with _parsing("cub", folder / "classes.txt"):
        names = {int(c): n for c, n in _table("cub", folder / "classes.txt", 2)}
    with _parsing("cub", folder / "bounding_boxes.txt"):
        xywh = np.array(_by_id("cub", folder / "bounding_boxes.txt", 5, ids), dtype=np.float32)
    boxes = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1).reshape(-1, 4)
    labels, class_names = _labels(class_ids, names)
    paths = np.array([str(folder / "images" / rel) for _, rel in images], dtype=object)
    attributes, attribute_names, note = read_cub_attributes(folder, ids)
    return BenchmarkIndex("cub", folder, paths, labels, class_ids > 100, class_names, boxes,
                          attributes=attributes, attribute_names=attribute_names,
                          notes={"attributes": note})


CUB_ATTRIBUTE_LABELS = "attributes/image_attribute_labels.txt"
CUB_ATTRIBUTE_NAMES = ("../attributes.txt", "attributes.txt", "attributes/attributes.txt")
# certainty_id (1 not visible, 2 guessing, 3 probably, 4 definitely) -> weight, for
# values="certainty" (our choice): value = 0.5 + 0.5 * weight * (+1 present / -1 absent)
CUB_CERTAINTY_WEIGHT = {1: 0.0, 2: 1 / 3, 3: 2 / 3, 4: 1.0}


def read_cub_attributes(folder: Path, image_ids: list[str], values: str = "binary"
                        ) -> tuple[np.ndarray | None, list[str], str]:
    """CUB's per-image attributes: (float32 (N, A) in the order of `image_ids`, or None when
    the file is absent; their names; a note saying what was found). ``values="binary"`` gives
    ``is_present``; ``"certainty"`` moves it towards 0.5 by the worker's certainty (see
    CUB_CERTAINTY_WEIGHT). Only the first four fields of a line are read (a few official
    lines carry extra fields); an image without a line for an attribute gets 0."""
    if values not in ("binary", "certainty"):
        raise ValueError(f"values must be 'binary' or 'certainty', got {values!r}")
    path = folder / CUB_ATTRIBUTE_LABELS
    if not path.is_file():
        return None, [], f"no attributes: {path} not found"
    import pandas as pd  # fast parsing of the 3.7 million lines

    with _parsing("cub", path):  # pandas' ParserError and a non-number are ValueErrors
        # usecols: the C parser reads the first four fields and ignores any extra ones
        rows = pd.read_csv(path, sep=r"\s+", header=None, usecols=range(4),
                           engine="c").to_numpy(dtype=np.float64)
        if np.isnan(rows).any():
            line = int(np.flatnonzero(np.isnan(rows).any(axis=1))[0]) + 1
            raise ValueError(f"row {line} has fewer than 4 fields")
        image, attribute, present, certainty = rows.astype(np.int64).T
    n_attributes = int(attribute.max()) if len(attribute) else 0
    names = [f"attribute_{a}" for a in range(1, n_attributes + 1)]
    name_note = "names: attribute_<id> (no attributes.txt found)"
    for rel in CUB_ATTRIBUTE_NAMES:
        names_path = (folder / rel).resolve()
        if names_path.is_file():
            with _parsing("cub", names_path):
                listed = {int(i): n for i, n in _table("cub", names_path, 2)}
            names = [listed.get(a, f"attribute_{a}") for a in range(1, n_attributes + 1)]
            name_note = f"names from {names_path}"
            break
    with _parsing("cub", folder / "images.txt"):
        ids = np.asarray([int(i) for i in image_ids], dtype=np.int64)
    size = int(max(ids.max(initial=0), image.max(initial=0))) + 1
    position = np.full(size, -1, dtype=np.int64)  # image id -> row of `image_ids`
    position[ids] = np.arange(len(ids))
    keep = (image >= 0) & (attribute >= 1)
    keep[keep] = position[image[keep]] >= 0
    rows_of = position[image[keep]]
    if values == "binary":
        value = (present[keep] > 0).astype(np.float32)
    else:
        table = np.zeros(max(CUB_CERTAINTY_WEIGHT) + 1)  # an unknown certainty weighs 0
        table[list(CUB_CERTAINTY_WEIGHT)] = list(CUB_CERTAINTY_WEIGHT.values())
        c = certainty[keep]
        weight = np.where((c >= 0) & (c < len(table)), table[np.clip(c, 0, len(table) - 1)], 0.0)
        value = (0.5 + 0.5 * weight * np.where(present[keep] > 0, 1, -1)).astype(np.float32)
    attributes = np.zeros((len(image_ids), n_attributes), np.float32)
    attributes[rows_of, attribute[keep] - 1] = value
    covered = len(np.unique(rows_of))
    note = (f"{n_attributes} attributes ({values}: is_present"
            f"{' weighted by certainty' if values == 'certainty' else ''}) from {path} for "
            f"{covered} of {len(image_ids)} images; {name_note}")
    return attributes, names, note


def _index_cars(folder: Path) -> BenchmarkIndex:
    from scipy.io import loadmat  # only this loader needs scipy

    path = folder / "cars_annos.mat"
    try:
        mat = loadmat(path, squeeze_me=True)
    except Exception as exc:  # scipy raises several types for a damaged file
        raise DataCorruptError(f"Data for domain 'cars': {path} cannot be read as a MATLAB file "
                               f"({type(exc).__name__}: {exc})") from exc
    with _parsing("cars", path):
        ann = np.atleast_1d(mat["annotations"])
        rel = [str(p) for p in ann["relative_im_path"]]
        corners = np.stack([ann[f].astype(np.float64) for f in
                            ("bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2")], axis=1)
        class_ids = ann["class"].astype(np.int64)
        names = {i + 1: str(n) for i, n in enumerate(np.atleast_1d(mat["class_names"]))}
    # MATLAB boxes are 1-based with inclusive corners: shift the top-left to 0-based.
    boxes = (corners - np.array([1, 1, 0, 0])).astype(np.float32)
    labels, class_names = _labels(class_ids, names)
    paths = np.array([str(folder / r) for r in rel], dtype=object)
    return BenchmarkIndex("cars", folder, paths, labels, class_ids > 98, class_names, boxes)


def _index_sop(folder: Path) -> BenchmarkIndex:
    rows, ids, is_test = [], [], []
    for file, test in (("Ebay_train.txt", False), ("Ebay_test.txt", True)):
        part = _table("sop", folder / file, 4, skip=1)  # header: image_id class_id super_class_id path
        with _parsing("sop", folder / file):
            ids += [int(r[1]) for r in part]
        rows += part
        is_test += [test] * len(part)
    class_ids = np.array(ids, dtype=np.int64)
    # SOP has no class-name file: name a class by its category folder and id, e.g. "bicycle/1".
    names = {int(r[1]): f"{r[3].split('/')[0].removesuffix('_final')}/{r[1]}" for r in rows}
    labels, class_names = _labels(class_ids, names)
    paths = np.array([str(folder / r[3]) for r in rows], dtype=object)
    # coarse group: the super-category (super_class_id), named by its image folder
    with _parsing("sop", folder / "Ebay_train.txt"):
        super_ids = np.array([int(r[2]) for r in rows], dtype=np.int64)
    super_names = {int(r[2]): r[3].split("/")[0].removesuffix("_final") for r in rows}
    order = sorted(super_names)
    groups = np.searchsorted(np.asarray(order, dtype=np.int64), super_ids).astype(np.int64)
    return BenchmarkIndex("sop", folder, paths, labels, np.array(is_test, dtype=bool), class_names,
                          groups=groups, group_names=[super_names[i] for i in order],
                          notes={"attributes": "no attributes; groups: the super-category "
                                               "(super_class_id) of Ebay_train/test.txt"})


def _index_inshop(folder: Path) -> BenchmarkIndex:
    path = folder / "list_eval_partition.txt"
    rows = _table("inshop", path, 3, skip=2)  # line 1: count; line 2: header
    with _parsing("inshop", path):
        count = int(path.read_text().split(maxsplit=1)[0])
        class_ids = np.array([int(item.removeprefix("id_")) for _, item, _ in rows], dtype=np.int64)
    status = np.array([s for _, _, s in rows])
    if count != len(rows) or not np.isin(status, ("train", "query", "gallery")).all():
        raise DataCorruptError(f"Data for domain 'inshop': {path} is not in the official format "
                               f"(line 1 says {count} images, {len(rows)} rows follow; statuses "
                               f"{sorted(set(status.tolist()))}, expected train/query/gallery)")
    names = {int(item.removeprefix("id_")): item for _, item, _ in rows}
    labels, class_names = _labels(class_ids, names)
    is_test = status != "train"
    if np.intersect1d(labels[is_test], labels[~is_test]).size:
        raise DataCorruptError(f"Data for domain 'inshop': {path} puts an item in both the train "
                               f"and the query/gallery part")
    paths = np.array([str(folder / r[0]) for r in rows], dtype=object)
    with _parsing("inshop", path):
        categories = [inshop_category(r[0]) for r in rows]
    group_names = sorted(set(categories))
    group_index = {c: g for g, c in enumerate(group_names)}
    groups = np.asarray([group_index[c] for c in categories], dtype=np.int64)
    attributes, attribute_names, note = read_inshop_attributes(folder, [r[1] for r in rows])
    return BenchmarkIndex("inshop", folder, paths, labels, is_test, class_names,
                          is_query=status == "query", attributes=attributes, groups=groups,
                          attribute_names=attribute_names, group_names=group_names,
                          notes={"attributes": note + "; groups: the clothing category of the "
                                                      "image path (e.g. WOMEN/Dresses)"})


def inshop_category(image_name: str) -> str:
    """The clothing category of an In-Shop image: 'img/WOMEN/Dresses/id_00000002/02_1_front.jpg'
    -> 'WOMEN/Dresses' (the two folders after ``img/``)."""
    parts = image_name.split("/")
    if len(parts) < 4:
        raise ValueError(f"image name {image_name!r} is not img/<gender>/<category>/<item>/<file>")
    return "/".join(parts[1:3])


INSHOP_ATTRIBUTE_FOLDERS = ("Anno", ".")


def read_inshop_attributes(folder: Path, item_ids: list[str]
                           ) -> tuple[np.ndarray | None, list[str], str]:
    """In-Shop's item attributes for images of items `item_ids` (``id_…``): (float32 (N, A) or
    None when ``list_attr_items.txt`` is absent; the names from ``list_attr_cloth.txt``, else
    ``attribute_<k>``; a note saying what was found). Labels 1 -> 1, -1 and 0 (unknown) -> 0;
    an item without a row gets 0 everywhere."""
    where = next((folder / sub for sub in INSHOP_ATTRIBUTE_FOLDERS
                  if (folder / sub / "list_attr_items.txt").is_file()), None)
    if where is None:
        return None, [], (f"no attributes: list_attr_items.txt not found in "
                          f"{folder / 'Anno'} or {folder}")
    path = where / "list_attr_items.txt"
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataCorruptError(f"Data for domain 'inshop': {path} cannot be read ({exc})") from exc
    table = {}
    with _parsing("inshop", path):
        for line in lines[2:]:  # line 1: number of items; line 2: header
            fields = line.split()
            if fields:
                table[fields[0]] = [int(v) for v in fields[1:]]
        widths = {len(v) for v in table.values()}
        if len(widths) > 1:
            raise ValueError(f"rows have {sorted(widths)} labels, not one count")
    n_attributes = widths.pop() if widths else 0
    names = [f"attribute_{k}" for k in range(1, n_attributes + 1)]
    name_note = "names: attribute_<k> (no list_attr_cloth.txt)"
    names_path = where / "list_attr_cloth.txt"
    if names_path.is_file():
        listed = [line.strip() for line in names_path.read_text().splitlines()[2:] if line.strip()]
        if len(listed) == n_attributes:
            names, name_note = listed, f"names from {names_path}"
        else:
            name_note = (f"names: attribute_<k> ({names_path} lists {len(listed)} names for "
                         f"{n_attributes} labels)")
    per_item = {item: (np.asarray(v) > 0).astype(np.float32) for item, v in table.items()}
    zeros = np.zeros(n_attributes, np.float32)
    attributes = np.stack([per_item.get(i, zeros) for i in item_ids]) if item_ids else \
        np.zeros((0, n_attributes), np.float32)
    missing = len(set(item_ids) - per_item.keys())
    note = (f"{n_attributes} attributes from {path} (1 -> 1; -1, 0 -> 0) for "
            f"{len(set(item_ids)) - missing} of {len(set(item_ids))} items; {name_note}")
    return attributes, names, note


_READERS: dict[str, Callable[[Path], BenchmarkIndex]] = {
    "cub": _index_cub, "cars": _index_cars, "sop": _index_sop, "inshop": _index_inshop}


def read_index(name: str, root=None) -> BenchmarkIndex:
    """Read a benchmark's index files (never its images) from ``<data root>/<folder>``."""
    return _READERS[name](require_files(name, root))


# ----------------------------------------------------------------------------- splits

def split_items(index: BenchmarkIndex, *, seed: int = 0, val_fraction: float = 0.2,
                max_per_class: int | None = None, max_classes: int | None = None
                ) -> dict[str, np.ndarray]:
    """Item indices of the train / val / test splits: the official train/test split, val classes
    carved from the training classes, optional seeded subsampling (see the module docstring)."""
    rng = np.random.default_rng(seed)
    pools = [np.flatnonzero(~index.is_test), np.flatnonzero(index.is_test)]
    if max_classes is not None:
        if not isinstance(max_classes, (int, np.integer)) or max_classes < 6:
            raise ValueError(f"max_classes must be an integer >= 6 (4 train/val + 2 test "
                             f"classes), got {max_classes!r}")
        n_classes = [len(np.unique(index.labels[p])) for p in pools]
        n_train = max(4, round(max_classes * n_classes[0] / max(1, sum(n_classes))))
        for i, n in enumerate((n_train, max(2, max_classes - n_train))):
            pools[i] = pools[i][subsample_classes(index.labels[pools[i]], n, rng)]
    if max_per_class is not None:
        pools[0] = pools[0][subsample_per_class(index.labels[pools[0]], max_per_class, rng)]
        roles = [np.ones(len(pools[1]), bool)] if index.is_query is None else \
            [index.is_query[pools[1]], ~index.is_query[pools[1]]]  # query and gallery alike
        pools[1] = np.sort(np.concatenate(
            [pools[1][m][subsample_per_class(index.labels[pools[1][m]], max_per_class, rng)]
             for m in roles]))
    for pool, part in zip(pools, ("train", "test")):
        if not len(pool):
            raise DataCorruptError(f"Data for domain '{index.name}': no {part} images listed in "
                                   f"{index.folder}")
    train, val = carve_val_classes(index.labels[pools[0]], val_fraction, rng)
    return {"train": pools[0][train], "val": pools[0][val], "test": pools[1]}


# ----------------------------------------------------------------------------- images

def read_images(paths: np.ndarray, name: str, image_size: int, channels: int) -> np.ndarray:
    """Decode image files into uint8 (N, C, H, W); a missing or unreadable file is named."""
    out = np.empty((len(paths), channels, image_size, image_size), dtype=np.uint8)
    for i, path in enumerate(tqdm(paths, desc=f"{name} images", leave=False,
                                  disable=len(paths) < 2000 or not sys.stderr.isatty())):
        try:
            with Image.open(path) as img:
                img.load()
                out[i] = pil_to_array(img, image_size, channels)
        except Exception as exc:
            raise DataCorruptError(f"Data for domain '{name}': the image file {path} is missing "
                                   f"or cannot be read ({type(exc).__name__}: {exc})") from exc
    return out


def load_benchmark(name: str, root=None, *, image_size: int = 32, channels: int = 1,
                   seed: int = 0, test_fraction: float = 0.5, val_fraction: float = 0.2,
                   max_per_class: int | None = None, max_classes: int | None = None,
                   download: bool = True, lazy: bool = False, num_workers: int = 0) -> Domain:
    """Load benchmark `name`: images decoded into RAM, or with `lazy` file-backed
    (:class:`~ue_lib.data.files.ImageFiles` decoded by `num_workers` workers; see the module
    doc). `test_fraction` and `download` are accepted for the uniform loader interface and
    ignored (standard split; never downloaded)."""
    del test_fraction, download
    check_image_args(image_size, channels)
    source, index = SOURCES[name], read_index(name, root)
    splits = {}
    for split, idx in split_items(index, seed=seed, val_fraction=val_fraction,
                                  max_per_class=max_per_class, max_classes=max_classes).items():
        boxes = None if index.boxes is None else index.boxes[idx]
        is_query = index.is_query[idx] if index.is_query is not None and split == "test" else None
        if lazy:
            check_files_exist(index.paths[idx], name)
            images = ImageFiles(index.paths[idx], image_size, channels, num_workers, name)
        else:
            images = read_images(index.paths[idx], name, image_size, channels)
        splits[split] = Split(images, index.labels[idx], boxes, index.paths[idx], is_query,
                              attributes=None if index.attributes is None else index.attributes[idx],
                              groups=None if index.groups is None else index.groups[idx])
    return Domain(name=name, **splits, class_names=index.class_names,
                  split_rule=source.split_rule, provenance=source.provenance,
                  license=source.license,
                  notes={"protocol": source.protocol, "folder": str(index.folder),
                         "test_fraction": "ignored: the benchmark's standard split is used",
                         "attributes": "no attributes or groups", **index.notes},
                  attribute_names=list(index.attribute_names) if index.attributes is not None else [],
                  group_names=list(index.group_names) if index.groups is not None else [])


def _loader(name: str, title: str) -> Callable[..., Domain]:
    def load(root=None, *, image_size: int = 32, channels: int = 1, seed: int = 0,
             test_fraction: float = 0.5, val_fraction: float = 0.2,
             max_per_class: int | None = None, max_classes: int | None = None,
             download: bool = True, lazy: bool = False, num_workers: int = 0) -> Domain:
        return load_benchmark(name, root, image_size=image_size, channels=channels, seed=seed,
                              test_fraction=test_fraction, val_fraction=val_fraction,
                              max_per_class=max_per_class, max_classes=max_classes,
                              download=download, lazy=lazy, num_workers=num_workers)

    load.__name__ = load.__qualname__ = f"load_{name}"
    load.__doc__ = (f"{title} from ``<data root>/{SOURCES[name].folder}/``: "
                    f"{SOURCES[name].split_rule}. See :func:`load_benchmark`.")
    return load


load_cub = _loader("cub", "CUB-200-2011 (birds)")
load_cars = _loader("cars", "Cars196 (cars)")
load_sop = _loader("sop", "Stanford Online Products (products)")
load_inshop = _loader("inshop", "DeepFashion In-Shop (clothes)")
