"""Shared pieces of every domain loader: the `Domain`/`Split` containers, the
data-root rule, checksummed downloads, image conversion and the split rules.

Images are stored as uint8 arrays of shape (N, C, H, W); labels are int64
indices into `Domain.class_names`.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

ENV_VAR = "UE_DATA"


class DataError(Exception):
    """Base class of the data errors a user can cause (missing or bad files)."""


class DataNotFoundError(DataError, FileNotFoundError):
    """A domain's files are not on disk (and could not be downloaded)."""


class DataCorruptError(DataError, ValueError):
    """A file exists but cannot be read, or has the wrong checksum or format."""


@dataclass
class Split:
    """One split of a domain: uint8 images (N, C, H, W) and int64 labels (N,).

    ``images`` is a numpy array, or for large photo sets an :class:`~ue_lib.data.files.ImageFiles`
    that indexes like one but decodes files on access.

    Optional per-item extras (None when the source has none):

    * ``boxes``: float32 (N, 4) object bounding boxes ``x1, y1, x2, y2`` in the ORIGINAL
      image's pixel coordinates, PIL crop convention (0-based, right/bottom exclusive), so
      ``Image.open(path).crop(tuple(box))`` cuts out the object.
    * ``paths``: (N,) the original image files, for file-backed (lazy) datasets and cropping.
    * ``is_query``: bool (N,) mask of a query/gallery protocol (query = ``is_query``, gallery =
      ``~is_query``); None means leave-one-out retrieval inside the split.
    * ``features``: (N, C, h, w) float32 outputs of a frozen pretrained trunk, attached by
      ``ue_lib.features.attach_features``; models that take features embed these.
    * ``attributes``: float32 (N, A) per-item attributes, values in [0, 1] (1 = present, 0 =
      absent, or in between for a certainty); column ``a`` is ``Domain.attribute_names[a]``.
      Ground truth for training an attribute head and for graded metrics: never a model input.
    * ``groups``: int64 (N,) coarse-group ids, indices into ``Domain.group_names`` (e.g. the
      Fashion-MNIST group "footwear" of a "Sneaker"), for coarse metrics (coarse Recall@K, graded nDCG@K).

    Code that subsets or concatenates splits must carry every per-item field (index them with
    the same rows as ``labels``); ``dataclasses.replace`` keeps them.
    """

    images: np.ndarray
    labels: np.ndarray
    boxes: np.ndarray | None = None
    paths: np.ndarray | None = None
    is_query: np.ndarray | None = None
    features: np.ndarray | None = None
    attributes: np.ndarray | None = None
    groups: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.images.dtype != np.uint8 or self.images.ndim != 4:
            raise ValueError(f"images must be uint8 (N, C, H, W), got {self.images.dtype} "
                             f"{self.images.shape}")
        self.labels = np.asarray(self.labels, dtype=np.int64)
        n = len(self.labels)
        if len(self.images) != n:
            raise ValueError(f"{len(self.images)} images but {n} labels")
        if self.boxes is not None:
            self.boxes = np.asarray(self.boxes, dtype=np.float32)
            if self.boxes.shape != (n, 4):
                raise ValueError(f"boxes must have shape ({n}, 4), got {self.boxes.shape}")
        if self.paths is not None:
            self.paths = np.asarray(self.paths, dtype=object)
            if self.paths.shape != (n,):
                raise ValueError(f"paths must have shape ({n},), got {self.paths.shape}")
        if self.is_query is not None:
            self.is_query = np.asarray(self.is_query)
            if self.is_query.dtype != bool or self.is_query.shape != (n,):
                raise ValueError(f"is_query must be a bool array of shape ({n},), got "
                                 f"{self.is_query.dtype} {self.is_query.shape}")
        if self.attributes is not None:
            self.attributes = np.asarray(self.attributes, dtype=np.float32)
            if self.attributes.ndim != 2 or len(self.attributes) != n:
                raise ValueError(f"attributes must have shape ({n}, A), got "
                                 f"{self.attributes.shape}")
            if not np.all((self.attributes >= 0) & (self.attributes <= 1)):  # also rejects NaN
                raise ValueError("attributes must be numbers in [0, 1]")
        if self.groups is not None:
            groups = np.asarray(self.groups)
            if groups.shape != (n,) or (n and (groups.dtype.kind not in "iu" or groups.min() < 0)):
                raise ValueError(f"groups must be non-negative integers of shape ({n},), got "
                                 f"{groups.dtype} {groups.shape}")
            self.groups = groups.astype(np.int64)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def classes(self) -> np.ndarray:
        return np.unique(self.labels)

    @property
    def num_classes(self) -> int:
        return len(self.classes)


@dataclass
class Domain:
    """A retrieval domain: train / val / test splits plus what it is and where it came from.

    `split_rule` says how the splits were made: class-disjoint (test classes never
    seen in training, val classes carved from the training classes) or, for a
    domain with too few classes for that, held-out images of the same classes.

    `attribute_names` names the columns of every split's ``Split.attributes`` and
    `group_names` the coarse groups that ``Split.groups`` index; both are empty for a domain
    without attributes or groups (whose splits then have ``attributes`` / ``groups`` None).
    Each loader's docstring says what its attributes and groups are.
    """

    name: str
    train: Split
    val: Split
    test: Split
    class_names: list[str]
    split_rule: str
    provenance: str
    license: str
    notes: dict = field(default_factory=dict)
    attribute_names: list[str] = field(default_factory=list)
    group_names: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.attribute_names, self.group_names = list(self.attribute_names), list(self.group_names)
        for name, split in self.splits.items():
            if split.attributes is not None and split.attributes.shape[1] != len(self.attribute_names):
                raise ValueError(f"{self.name} {name}: {split.attributes.shape[1]} attribute "
                                 f"columns but {len(self.attribute_names)} attribute_names")
            if split.groups is not None and len(split.groups) and \
                    split.groups.max() >= len(self.group_names):
                raise ValueError(f"{self.name} {name}: group id {split.groups.max()} but only "
                                 f"{len(self.group_names)} group_names")

    @property
    def has_attributes(self) -> bool:
        """Whether the domain declares attributes (its splits then carry ``attributes``)."""
        return bool(self.attribute_names)

    @property
    def has_groups(self) -> bool:
        """Whether the domain declares coarse groups (its splits then carry ``groups``)."""
        return bool(self.group_names)

    @property
    def splits(self) -> dict[str, Split]:
        return {"train": self.train, "val": self.val, "test": self.test}

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train.images.shape[1:])

    def summary(self) -> dict:
        """One row describing the domain (for tables in notebooks and the CLI)."""
        row = {"domain": self.name, "split_rule": self.split_rule}
        for name, split in self.splits.items():
            row[f"{name}_images"] = len(split)
            row[f"{name}_classes"] = split.num_classes
        return row


# ----------------------------------------------------------------------------- data root

CHECKOUT = Path(__file__).resolve().parents[2]  # the folder holding the ue_lib package


def repository_root() -> Path | None:
    """The project's repository this ue_lib runs from: `CHECKOUT` when it holds the project
    (pyproject.toml and notebooks/: a clone, installed editable), else None (an installed
    copy). `ue run` finds the notebooks there, and a notebook run directly in Jupyter its run
    folder and data root (`ue_lib.runfolder.RunFolder.for_notebook`), whatever its working
    directory."""
    found = (CHECKOUT / "pyproject.toml").is_file() and (CHECKOUT / "notebooks").is_dir()
    return CHECKOUT if found else None


def resolve_data_root(root: str | os.PathLike | None = None) -> Path:
    """Data root: explicit argument, else the `UE_DATA` environment variable, else ./data."""
    if root is not None and str(root) != "":
        return Path(root).expanduser()
    env = os.environ.get(ENV_VAR, "")
    if env:
        return Path(env).expanduser()
    return Path("data")


# ----------------------------------------------------------------------------- files

@dataclass(frozen=True)
class RemoteFile:
    """A file a loader needs: its name, the places to download it from and its sha256."""

    name: str
    urls: tuple[str, ...]
    sha256: str


def sha256sum(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _missing_message(domain: str, folder: Path, files: list[RemoteFile], how: str,
                     reason: str) -> str:
    return missing_message(domain, folder, [f.name for f in files], how, reason)


def missing_message(domain: str, folder: Path, names: list[str], how: str, reason: str) -> str:
    """Text of a DataNotFoundError: the domain, the folder searched, the files expected in it
    and how to get them."""
    names = "\n".join(f"    {(folder / name).resolve()}" for name in names)
    return (f"Data for domain '{domain}' not found: {reason}\n"
            f"  searched: {folder.resolve()}\n"
            f"  expected files:\n{names}\n"
            f"  how to get them: {how}\n"
            f"  (the data root is the `root` argument, else ${ENV_VAR}, else ./data)")


def ensure_files(domain: str, folder: Path, files: list[RemoteFile], how: str,
                 download: bool = True) -> dict[str, Path]:
    """Return the local path of each file, downloading missing ones when allowed.

    Every file is checked against its sha256, so a truncated or corrupt download
    is reported by name instead of failing later inside a decoder.
    """
    missing = [f for f in files if not (folder / f.name).is_file()]
    if missing and download:
        _download(domain, folder, missing, how)
    missing = [f for f in files if not (folder / f.name).is_file()]
    if missing:
        raise DataNotFoundError(_missing_message(
            domain, folder, files, how,
            f"missing {', '.join(f.name for f in missing)} (download disabled)"))
    for f in files:
        path = folder / f.name
        if sha256sum(path) != f.sha256:
            raise DataCorruptError(
                f"Data for domain '{domain}': {path} has the wrong checksum (expected sha256 "
                f"{f.sha256}); the file is corrupt or incomplete. Delete it and run again to "
                f"re-download it, or {how}")
    return {f.name: folder / f.name for f in files}


def _download(domain: str, folder: Path, files: list[RemoteFile], how: str) -> None:
    from torchvision.datasets.utils import download_url  # heavy import, only when needed

    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataNotFoundError(_missing_message(
            domain, folder, files, how, f"the folder cannot be created ({exc})")) from exc
    for f in files:
        errors = []
        for url in f.urls:
            try:
                download_url(url, str(folder), filename=f.name)
            except Exception as exc:  # network errors come in many types
                errors.append(f"{url}: {exc}")
                (folder / f.name).unlink(missing_ok=True)
                continue
            if sha256sum(folder / f.name) == f.sha256:
                break
            errors.append(f"{url}: checksum mismatch")
            (folder / f.name).unlink(missing_ok=True)
        else:
            raise DataNotFoundError(_missing_message(
                domain, folder, files, how,
                f"{f.name} is missing and the download failed ({'; '.join(errors)})"))


# ----------------------------------------------------------------------------- images

def pil_to_array(img: Image.Image, image_size: int, channels: int) -> np.ndarray:
    """Resize a PIL image to image_size x image_size and return uint8 (C, H, W)."""
    img = img.convert("L" if channels == 1 else "RGB")
    if img.size != (image_size, image_size):
        img = img.resize((image_size, image_size), Image.Resampling.BILINEAR)
    arr = np.asarray(img, dtype=np.uint8)
    return arr[None] if channels == 1 else arr.transpose(2, 0, 1).copy()


def check_image_args(image_size: int, channels: int) -> None:
    if not isinstance(image_size, (int, np.integer)) or image_size < 8:
        raise ValueError(f"image_size must be an integer >= 8, got {image_size!r}")
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels!r}")


# ----------------------------------------------------------------------------- splits

def subsample_per_class(labels: np.ndarray, max_per_class: int | None,
                        rng: np.random.Generator) -> np.ndarray:
    """Indices keeping at most `max_per_class` items of each class (seeded choice, sorted)."""
    if max_per_class is None:
        return np.arange(len(labels))
    keep = [rng.permutation(np.flatnonzero(labels == c))[:max_per_class]
            for c in np.unique(labels)]
    return np.sort(np.concatenate(keep))


def subsample_classes(labels: np.ndarray, max_classes: int | None,
                      rng: np.random.Generator) -> np.ndarray:
    """Indices of the items of at most `max_classes` classes (seeded choice)."""
    classes = np.unique(labels)
    if max_classes is None or max_classes >= len(classes):
        return np.arange(len(labels))
    chosen = rng.choice(classes, size=max_classes, replace=False)
    return np.flatnonzero(np.isin(labels, chosen))


def class_disjoint_split(labels: np.ndarray, test_fraction: float, val_fraction: float,
                         rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split item indices so that train, val and test have pairwise disjoint classes.

    `test_fraction` of the classes go to test; `val_fraction` of the remaining
    (training) classes are carved out for validation. Each split keeps at least
    two classes, so it needs at least six classes.
    """
    _check_fraction("test_fraction", test_fraction)
    _check_fraction("val_fraction", val_fraction)
    classes = rng.permutation(np.unique(labels))
    n = len(classes)
    if n < 6:
        raise ValueError(f"a class-disjoint train/val/test split needs at least 6 classes, "
                         f"found {n}")
    n_test = min(max(2, round(n * test_fraction)), n - 4)
    n_val = _n_val_classes(n - n_test, val_fraction)
    test_c, val_c, train_c = classes[:n_test], classes[n_test:n_test + n_val], classes[n_test + n_val:]
    return tuple(np.flatnonzero(np.isin(labels, c)) for c in (train_c, val_c, test_c))


def held_out_split(labels: np.ndarray, fraction: float,
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Stratified split of item indices: `fraction` of each class is held out."""
    _check_fraction("fraction", fraction)
    keep, held = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_held = max(1, round(len(idx) * fraction))
        held.append(idx[:n_held])
        keep.append(idx[n_held:])
    return np.sort(np.concatenate(keep)), np.sort(np.concatenate(held))


def _n_val_classes(n_train_classes: int, val_fraction: float) -> int:
    """Validation classes carved from `n_train_classes`: the fraction, at least two, leaving two."""
    return min(max(2, round(n_train_classes * val_fraction)), n_train_classes - 2)


def _check_fraction(name: str, value: float) -> None:
    if not isinstance(value, (int, float)) or not 0 < value < 1:
        raise ValueError(f"{name} must be a number strictly between 0 and 1, got {value!r}")


def carve_val_classes(labels: np.ndarray, val_fraction: float,
                      rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Split training item indices into (train, val) with disjoint classes: `val_fraction` of
    the classes (at least two, leaving at least two) go to val, as in class_disjoint_split."""
    _check_fraction("val_fraction", val_fraction)
    classes = rng.permutation(np.unique(labels))
    n = len(classes)
    if n < 4:
        raise ValueError(f"carving a class-disjoint validation split needs at least 4 training "
                         f"classes, found {n}")
    val = np.isin(labels, classes[:_n_val_classes(n, val_fraction)])
    return np.flatnonzero(~val), np.flatnonzero(val)


def make_split(images: np.ndarray, labels: np.ndarray, idx: np.ndarray, *,
               boxes: np.ndarray | None = None, paths: np.ndarray | None = None,
               is_query: np.ndarray | None = None, attributes: np.ndarray | None = None,
               groups: np.ndarray | None = None) -> Split:
    """The items `idx` of parallel arrays (the optional ones may be None) as a Split."""
    def pick(a):
        return None if a is None else np.asarray(a)[idx]

    return Split(np.ascontiguousarray(images[idx]), labels[idx], pick(boxes),
                 None if paths is None else np.asarray(paths, dtype=object)[idx], pick(is_query),
                 attributes=pick(attributes), groups=pick(groups))


def domain_from_items(name: str, images: np.ndarray, labels: np.ndarray,
                      class_names: list[str], *, seed: int, test_fraction: float,
                      val_fraction: float, max_per_class: int | None,
                      max_classes: int | None, provenance: str, license: str,
                      notes: dict | None = None, paths=None, attributes=None, groups=None,
                      attribute_names: list[str] | None = None,
                      group_names: list[str] | None = None) -> Domain:
    """Build a class-disjoint Domain from all of a source's items (the usual case). `paths`
    (optional, one per item) is kept in `Split.paths`, so per-item facts (a file's author, a
    face's image number) can be looked up after the split. `attributes` ((N, A) in [0, 1]) and
    `groups` ((N,) ids) are optional per-item arrays carried into `Split.attributes` /
    `Split.groups` row by row like `paths`; `attribute_names` / `group_names` name them in the
    Domain. None of them changes which items go where."""
    rng = np.random.default_rng(seed)
    idx = subsample_classes(labels, max_classes, rng)
    idx = idx[subsample_per_class(labels[idx], max_per_class, rng)]
    images, labels = images[idx], labels[idx]
    paths = None if paths is None else np.asarray(paths, dtype=object)[idx]
    attributes = None if attributes is None else np.asarray(attributes, dtype=np.float32)[idx]
    groups = None if groups is None else np.asarray(groups)[idx]
    train, val, test = class_disjoint_split(labels, test_fraction, val_fraction, rng)
    extras = dict(paths=paths, attributes=attributes, groups=groups)
    return Domain(
        name=name,
        train=make_split(images, labels, train, **extras),
        val=make_split(images, labels, val, **extras),
        test=make_split(images, labels, test, **extras),
        class_names=class_names,
        split_rule="class-disjoint: test and val classes are never seen in training",
        provenance=provenance,
        license=license,
        notes=notes or {},
        attribute_names=list(attribute_names or []),
        group_names=list(group_names or []),
    )


# ----------------------------------------------------------------------------- user cache

CACHE_ENV_VAR = "UE_CACHE"


def user_cache_dir(*parts: str) -> Path:
    """Folder for files the project derives from the data (e.g. rendered images), never the
    data root (which may be read-only): ``$UE_CACHE/ue_lib/<parts>``, else the platform's user
    cache folder (``platformdirs.user_cache_dir("ue_lib")``, ~/.cache/ue_lib on Linux), else
    ``~/.cache/ue_lib``. Not created here."""
    env = os.environ.get(CACHE_ENV_VAR, "")
    if env:
        base = Path(env).expanduser() / "ue_lib"
    else:
        try:
            from platformdirs import user_cache_dir as _platform_cache_dir
        except ImportError:
            base = Path("~/.cache/ue_lib").expanduser()
        else:
            base = Path(_platform_cache_dir("ue_lib", appauthor=False))
    return base.joinpath(*parts)
