"""Clip art: colour drawings of the Open Clip Art Library (0.18), one class per topic folder.

Source: Debian's ``openclipart-svg`` package (public domain), about 7,500 SVGs filed as
``usr/share/openclipart/svg/<topic>/<subtopic>/<name>.svg``. The loader reads, in this order,

1. the ``.deb`` itself in ``<data root>/openclipart/`` (a ``.deb`` is an ``ar`` archive holding
   ``data.tar.xz``; both are read with the standard library, nothing is unpacked to disk),
2. an unpacked tree there: ``<data root>/openclipart/svg/`` or, as ``dpkg-deb -x`` leaves it,
   ``<data root>/openclipart/usr/share/openclipart/svg/``,
3. the installed package: ``/usr/share/openclipart/svg`` (``apt-get install openclipart-svg``).

The package is never downloaded (``download`` is accepted for a uniform interface).

Classes are the curated folders of :data:`CATEGORIES` (visual kinds of things a person would
search by); every other folder is in :data:`EXCLUDED` with the reason, and a few series of
variants of one drawing in :data:`EXCLUDED_FILES`. The package files the
same drawing in several folders (Debian turned exact copies into symlinks, which are skipped;
copies that differ only in their metadata remain), so a drawing found in two classes is kept
in the more specific one when one class lies inside the other and dropped otherwise, and
near-identical renders are kept once (:func:`select_items`).

Each SVG is rendered with resvg (the ``resvg-py`` wheel, fonts: matplotlib's DejaVu files, so the
result does not depend on the fonts installed), composited on white, cropped to the drawing and
centred on a white ``RENDER_SIZE`` square (a drawing on a mostly empty page is rendered a second
time at the resolution its own size needs). SVGs that fail or render blank are skipped and
counted in ``Domain.notes``. The renders are cached as one ``.npz`` per source and render
settings in :func:`~ue_lib.data.core.user_cache_dir` (``$UE_CACHE/ue_lib/clipart/``), never in
the data root, which may be read-only; the loader then resizes them to ``image_size``.

Attributes and groups come from the library's own topic hierarchy, the folder path of a class
(:func:`topic_hierarchy`): the coarse group (``Domain.group_names``) is the top-level topic
(``animals/mammals/bears`` -> ``animals``), and the attributes (``Domain.attribute_names``) are
one-hot over every topic node of the classes' paths, each item having every node on its own
path set (``animals/mammals/bears`` -> ``animals``, ``animals/mammals``,
``animals/mammals/bears``). So two drawings of one class share all their path's nodes, two
mammals share two, a mammal and a bird share ``animals``. Using the folder tree is our choice;
the nodes are those of the classes present.
"""

from __future__ import annotations

import hashlib
import html
import io
import json
import logging
import re
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

import numpy as np
from PIL import Image

from ..io import atomic_write, read_or_build
from .core import (
    DataCorruptError,
    DataNotFoundError,
    Domain,
    check_image_args,
    domain_from_items,
    missing_message,
    pil_to_array,
    resolve_data_root,
    sha256sum,
    user_cache_dir,
)

log = logging.getLogger(__name__)

SUBDIR = "openclipart"
DEB_GLOB = "openclipart-svg_*.deb"
DEB_NAME = "openclipart-svg_0.18+dfsg-19_all.deb"  # the version the list below was curated on
SVG_PREFIX = "usr/share/openclipart/svg/"
INSTALLED_TREE = Path("/usr/share/openclipart/svg")
LICENSE_FILE = "usr/share/doc/openclipart-svg/copyright"

# Classes. Rule: a folder is a class when its drawings share one visual kind of thing a person
# would search clip art by (an animal, a food, a building, a tool, a vehicle...) and it keeps at
# least 8 drawings after the de-duplication of `select_items`. A class is the drawings directly
# in its folder (a subfolder is a class of its own, or merged, or excluded). Curated on
# openclipart-svg 0.18+dfsg-19: 43 classes, 1,438 drawings, 8 to 164 per class (median 24).
CATEGORIES: tuple[str, ...] = (
    "animals/birds", "animals/bugs", "animals/dinosaurs", "animals/fish", "animals/mammals",
    "animals/mammals/bears", "animals/mammals/big_cats", "animals/mammals/horses",
    "animals/mammals/housecats",
    "buildings", "buildings/furniture", "buildings/homes",
    "computer/hardware", "containers", "education/books", "electronics", "electronics/bulb",
    "food/beverages", "food/beverages/alcohol", "food/breads_and_carbs", "food/desserts",
    "food/fruit", "food/meats_and_eggs", "food/vegetables",
    "geography/astronomy", "office", "office/telephone",
    "people", "people/bodypart", "people/clothing", "people/clothing/hats",
    "plants", "plants/flowers", "plants/trees",
    "recreation/games/chess", "recreation/music", "recreation/sports", "recreation/toys",
    "science", "signs_and_symbols/clocks", "tools", "tools/weapons", "transportation/vehicles",
)

# Small folders (fewer than 8 drawings) of the same kind as a class: merged into it.
MERGED: dict[str, str] = {
    "animals/birds/penguin": "animals/birds",
    "animals/mammals/dogs": "animals/mammals",
    "electronics/battery": "electronics",
    "plants/trees/evergreen": "plants/trees",
    "science/astronomy": "geography/astronomy",
    "science/medicine": "science",
    "tools/toys": "recreation/toys",
    "transportation/vehicles/hummers": "transportation/vehicles",
    "recreation/music/CD_Player": "recreation/music",
}

# Every other folder, with the reason (fnmatch patterns; `*` also matches subfolders).
EXCLUDED: dict[str, str] = {
    "animals": "loose files are a mix (lizards, frogs, padlocks, a Welsh flag, a tattoo, mascots)",
    "animals/amphibian": "1 drawing",
    "animals/fantasy": "3 drawings (a mermaid, a troll, Tux)",
    "buttons": "user-interface buttons",
    "computer": "loose files are mostly user-interface icons (an icon set, windows, floppies)",
    "computer/buttons": "user-interface buttons and arrows",
    "computer/connectors": "6 drawings of connector pin-outs",
    "computer/diagrams": "network-diagram icons",
    "computer/folders": "file-manager folder icons",
    "computer/games": "5 video-game screenshots",
    "computer/icons*": "desktop icon themes",
    "computer/network": "2 drawings",
    "decorations": "ornaments, flourishes, corner pieces, knots: design elements, not things",
    "education": "a setting, not a kind: its loose files are mostly copies of office supplies",
    "food": "loose files are a mix (menus, a chef, a cookbook, kitchen machines, dishes)",
    "food/dairy": "4 drawings",
    "geography": "outline maps of named places (many variants of one outline), not a kind of thing",
    "logos": "logos",
    "people/clothing/jewelry": "2 drawings",
    "people/clothing/pantyhose": "one author's variants of one drawing",
    "people/smilies": "an emoticon icon set",
    "people/stickmen": "pictogram series of stick figures",
    "recreation": "loose files are a mix (a dartboard, knitting, scuba tanks, a TV)",
    "recreation/art": "1 drawing",
    "recreation/games": "a mix: billiard balls, dice, video-game screenshots",
    "recreation/games/cards*": "card decks",
    "recreation/games/dice": "1 drawing",
    "recreation/holiday*": "occasions, not kinds: trees, gifts, hearts, cakes and fireworks mixed",
    "recreation/party": "an occasion: balloons and copies of food/desserts",
    "recreation/religion*": "symbols and scenes",
    "shapes*": "shapes, arrows, callouts, flowchart symbols, jigsaw pieces, stars",
    "signs_and_symbols": "loose files are signs and symbols (safety signs, flags, pictograms)",
    "signs_and_symbols/awards": "4 drawings",
    "signs_and_symbols/disability": "1 drawing",
    "signs_and_symbols/flags*": "flags",
    "signs_and_symbols/hazard": "3 drawings",
    "signs_and_symbols/led": "an LED icon set (a few shapes in many colours)",
    "signs_and_symbols/map_symbols": "AIGA pictograms",
    "signs_and_symbols/money": "9 mixed drawings: coins, jewels, chains, a wallet",
    "signs_and_symbols/weather": "weather symbols (mostly one author's lightning variants)",
    "special*": "templates, gradients and fill patterns",
    "transportation": "loose files mix vehicles with about 20 UK road signs",
    "transportation/boating": "sailing diagrams and knots",
    "transportation/roadsigns": "road signs: symbols, like the flags",
    "unsorted*": "not sorted by the library (unsorted/duplicates holds copies)",
}

# Single files left out of a class (fnmatch patterns on the path under svg/), with the reason.
EXCLUDED_FILES: dict[str, str] = {
    "tools/weapons/bullet_hole_linda_kim_*.svg": "13 variants of one bullet hole: not a weapon",
    "signs_and_symbols/clocks/clock0[2-9].svg": "one clock face at 12 times: clock01 is kept",
    "signs_and_symbols/clocks/clock1[0-2].svg": "one clock face at 12 times: clock01 is kept",
}

RENDERED_FOLDERS: frozenset[str] = frozenset(CATEGORIES) | frozenset(MERGED)
RENDER_SIZE = 96  # long side of a rendered drawing, centred on a white square
RENDER_VERSION = 1  # bump when the rendering below changes: the cache key includes it
_MAX_RENDER = 3072  # long side cap of the second, zoomed render of a small drawing
_INK = 16  # a pixel is drawn when a channel differs from white by more than this
# Copies: RMS difference (0-255) of 16x16 thumbnails below which two renders are one drawing
# (measured on the package: copies <= 0.4, near-identical variants 2.2-2.8, the closest distinct
# drawings 3.5); files of the same name are versions of one drawing up to 14 (a redrawn Jupiter)
NEAR_DUPLICATE = 3.0
SAME_NAME_DUPLICATE = 16.0

PROVENANCE = ("Open Clip Art Library 0.18 (openclipart.org), as packaged by Debian "
              "(openclipart-svg); curated topic folders, rendered locally with resvg")
LICENSE = ("public domain: Creative Commons Public Domain Dedication (the package's "
           f"{LICENSE_FILE})")
HOW = (f"put Debian's openclipart-svg package ({DEB_NAME}; `apt-get download openclipart-svg`, or "
       "pool/main/o/openclipart/ on any Debian mirror) in that folder; or unpack it there "
       "(`dpkg-deb -x <the .deb> <that folder>`, or its usr/share/openclipart/svg tree copied to "
       f"<that folder>/svg); or install it: `apt-get install openclipart-svg` puts the drawings "
       f"in {INSTALLED_TREE}, which is read when the data root has neither. The package is "
       "never downloaded automatically")


def category_of(folder: str) -> str | None:
    """The class a folder's drawings belong to (None for folders that are not curated)."""
    folder = MERGED.get(folder, folder)
    return folder if folder in CATEGORIES else None


def topic_path(category: str) -> list[str]:
    """The topic nodes on a class's folder path, top first: 'animals/mammals/bears' ->
    ['animals', 'animals/mammals', 'animals/mammals/bears']."""
    parts = category.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]


def topic_hierarchy(class_names: list[str]) -> tuple[list[str], list[str], np.ndarray, np.ndarray]:
    """(attribute_names, group_names, class_attributes, class_groups) of the clip-art classes:
    the topic nodes of their paths (in order of first appearance, parents first) and the
    top-level topics; float32 (classes, nodes) with a class's path nodes set, and int64
    (classes,) top-level topic ids."""
    nodes = list(dict.fromkeys(n for c in class_names for n in topic_path(c)))
    tops = list(dict.fromkeys(c.split("/")[0] for c in class_names))
    attributes = np.zeros((len(class_names), len(nodes)), np.float32)
    for i, c in enumerate(class_names):
        attributes[i, [nodes.index(n) for n in topic_path(c)]] = 1
    groups = np.asarray([tops.index(c.split("/")[0]) for c in class_names], dtype=np.int64)
    return nodes, tops, attributes, groups


# ----------------------------------------------------------------------------- sources

@dataclass(frozen=True)
class Source:
    """Where the SVGs are read from: a .deb, or a tree of topic folders."""

    kind: str  # "deb" or "tree"
    path: Path

    def fingerprint(self) -> str:
        """Identifies the content: the .deb's sha256, or the tree's curated files' sizes and
        modification times."""
        if self.kind == "deb":
            return sha256sum(self.path)
        digest = hashlib.sha256()
        for rel, path in _tree_files(self.path):
            stat = path.stat()
            digest.update(f"{rel}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        return digest.hexdigest()

    def svgs(self) -> Iterator[tuple[str, bytes]]:
        """(path relative to the svg folder, file content) of every SVG of the curated folders."""
        if self.kind == "deb":
            yield from read_deb_svgs(self.path)
        else:
            for rel, path in _tree_files(self.path):
                yield rel, path.read_bytes()


def _tree_files(tree: Path) -> list[tuple[str, Path]]:
    files = []
    for folder in sorted(RENDERED_FOLDERS):
        # symlinks are the package's exact copies of a drawing filed elsewhere: skip them
        files += [(f"{folder}/{p.name}", p) for p in sorted((tree / folder).glob("*.svg"))
                  if p.is_file() and not p.is_symlink()]
    return files


def find_source(root=None) -> Source:
    """The .deb in the data root, else an unpacked tree there, else the installed package."""
    folder = resolve_data_root(root) / SUBDIR
    debs = sorted(folder.glob(DEB_GLOB)) if folder.is_dir() else []
    if debs:
        return Source("deb", debs[-1])
    for tree in (folder / "svg", folder / SVG_PREFIX, INSTALLED_TREE):
        if tree.is_dir():
            return Source("tree", tree)
    raise DataNotFoundError(missing_message(
        "clipart", folder, [DEB_NAME, "svg/<topic>/<subtopic>/<name>.svg"], HOW,
        f"no {DEB_GLOB} and no unpacked svg/ tree in the data root, and the package is not "
        f"installed ({INSTALLED_TREE} does not exist)"))


def _ar_members(path: Path) -> Iterator[tuple[str, bytes]]:
    """Members of an `ar` archive (a .deb): 8-byte magic, then per member a 60-byte header
    (name 16, mtime 12, owner 6, group 6, mode 8, size 10, magic 2) and the data, padded to
    an even length."""
    with open(path, "rb") as fh:
        if fh.read(8) != b"!<arch>\n":
            raise DataCorruptError(f"Data for domain 'clipart': {path} is not a .deb (no ar "
                                   f"header); delete it, or {HOW}")
        while header := fh.read(60):
            if len(header) < 60 or header[58:60] != b"`\n":
                raise DataCorruptError(f"Data for domain 'clipart': {path} is truncated or "
                                       f"corrupt (bad ar member header); {HOW}")
            name = header[:16].decode("ascii", "replace").strip().rstrip("/")
            size = int(header[48:58].decode("ascii").strip())
            data = fh.read(size)
            if len(data) < size:
                raise DataCorruptError(f"Data for domain 'clipart': {path} is truncated "
                                       f"(member {name}); {HOW}")
            yield name, data
            if size % 2:
                fh.read(1)


def read_deb_svgs(path: Path, folders=RENDERED_FOLDERS) -> Iterator[tuple[str, bytes]]:
    """(relative path, content) of the regular SVG files of `folders` (None: all) in a .deb."""
    data = next((d for name, d in _ar_members(path) if name.startswith("data.tar")), None)
    if data is None:
        raise DataCorruptError(f"Data for domain 'clipart': {path} holds no data.tar.*; {HOW}")
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
            for member in tar:
                name = member.name.removeprefix("./")
                if not (member.isfile() and name.startswith(SVG_PREFIX) and name.endswith(".svg")):
                    continue
                rel = name[len(SVG_PREFIX):]
                if folders is None or rel.rpartition("/")[0] in folders:
                    yield rel, tar.extractfile(member).read()
    except (tarfile.TarError, EOFError, OSError) as exc:  # xz/gzip errors are OSError/EOFError
        raise DataCorruptError(f"Data for domain 'clipart': the data.tar of {path} cannot be "
                               f"read ({exc}); a zstd-compressed .deb needs unpacking first "
                               f"(`dpkg-deb -x`); {HOW}") from exc


# ----------------------------------------------------------------------------- rendering

def _font_options() -> dict:
    """matplotlib's DejaVu fonts for every generic family, system fonts skipped: the same
    text rendering on every machine (text in an unknown font falls back to DejaVu)."""
    import matplotlib

    folder = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    files = sorted(str(p) for p in folder.glob("DejaVu*.ttf") if "Display" not in p.name)
    return dict(skip_system_fonts=True, font_files=files, font_family="DejaVu Sans",
                serif_family="DejaVu Serif", sans_serif_family="DejaVu Sans",
                cursive_family="DejaVu Sans", fantasy_family="DejaVu Sans",
                monospace_family="DejaVu Sans Mono")


def renderer_name() -> str:
    from importlib.metadata import version

    try:
        return f"resvg-py {version('resvg-py')}"
    except Exception as exc:
        raise ImportError("rendering the clipart SVGs needs the resvg-py package: "
                          "pip install resvg-py") from exc


def _svg_text(data: bytes) -> str:
    """Decode an SVG's bytes with the encoding its XML declaration names (UTF-8 by default)."""
    match = re.match(rb"\s*<\?xml[^>]*encoding=[\"']([A-Za-z0-9._-]+)", data)
    encoding = match.group(1).decode() if match else "utf-8"
    try:
        return data.decode(encoding)
    except (LookupError, UnicodeDecodeError):
        return data.decode("utf-8", errors="replace")


def _on_white(png: bytes) -> np.ndarray:
    img = Image.open(io.BytesIO(png)).convert("RGBA")
    canvas = Image.new("RGBA", img.size, (255, 255, 255, 255))
    canvas.alpha_composite(img)
    return np.asarray(canvas.convert("RGB"))


def _ink_box(rgb: np.ndarray) -> tuple[int, int, int, int] | None:
    ink = (255 - rgb.min(axis=2)) > _INK
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    if not len(rows):
        return None
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def render_svg(data: bytes, size: int = RENDER_SIZE, fonts: dict | None = None) -> np.ndarray | None:
    """Render an SVG onto white: uint8 RGB (size, size, 3), the drawing cropped to its ink and
    centred with its long side = size; None when it renders blank. Raises on a broken SVG."""
    import resvg_py

    text, fonts = _svg_text(data), fonts if fonts is not None else _font_options()
    rgb = _on_white(resvg_py.svg_to_bytes(svg_string=text, width=size, height=size, dpi=96,
                                          **fonts))
    box = _ink_box(rgb)
    if box is None:
        return None
    long_side = max(box[2] - box[0], box[3] - box[1])
    if long_side < size * 0.9:  # a small drawing on a large page: render it larger
        zoomed = min(_MAX_RENDER, int(np.ceil(max(rgb.shape[:2]) * size / long_side)))
        if zoomed > max(rgb.shape[:2]):
            rgb = _on_white(resvg_py.svg_to_bytes(svg_string=text, width=zoomed, height=zoomed,
                                                  dpi=96, **fonts))
            box = _ink_box(rgb) or box
    crop = Image.fromarray(rgb).crop(box)
    scale = size / max(crop.size)
    crop = crop.resize((max(1, round(crop.width * scale)), max(1, round(crop.height * scale))),
                       Image.Resampling.LANCZOS)
    out = Image.new("RGB", (size, size), (255, 255, 255))
    out.paste(crop, ((size - crop.width) // 2, (size - crop.height) // 2))
    return np.asarray(out)


_AUTHOR = re.compile(rb"<dc:creator>\s*<cc:Agent>\s*<dc:title>([^<]*)</dc:title>", re.S)


def svg_author(data: bytes) -> str:
    """The author named in an SVG's metadata (dc:creator), '' when none. (This package has no
    .txt files beside the drawings.)"""
    match = _AUTHOR.search(data)
    return html.unescape(match.group(1).decode("utf-8", "replace")).strip() if match else ""


def render_all(source: Source, size: int = RENDER_SIZE) -> dict[str, np.ndarray]:
    """Render every SVG of the curated folders, in path order: the arrays of the cache file."""
    fonts, start = _font_options(), time.perf_counter()
    images, paths, authors, failed, reasons, blank = [], [], [], [], [], []
    for rel, data in source.svgs():
        try:
            rgb = render_svg(data, size, fonts)
        except Exception as exc:  # resvg raises ValueError; anything else is a broken file too
            failed.append(rel)
            reasons.append(f"{type(exc).__name__}: {exc}"[:200])
            continue
        if rgb is None:
            blank.append(rel)
            continue
        images.append(rgb)
        paths.append(rel)
        authors.append(svg_author(data))
    seconds = time.perf_counter() - start
    log.info("clipart: rendered %d SVGs in %.1f s (%d failed, %d blank)", len(paths), seconds,
             len(failed), len(blank))
    order = np.argsort(np.asarray(paths, dtype=str), kind="stable")  # the same for every source
    failed, reasons = map(list, zip(*sorted(zip(failed, reasons)))) if failed else ([], [])
    images = np.stack(images)[order] if images else np.zeros((0, size, size, 3), np.uint8)
    return dict(images=images, thumbnails=thumbnails(images), paths=np.asarray(paths, dtype=str)[order],
                authors=np.asarray(authors, dtype=str)[order],
                failed=np.asarray(failed, dtype=str), failed_reasons=np.asarray(reasons, dtype=str),
                blank=np.asarray(sorted(blank), dtype=str), seconds=np.float64(seconds))


_CACHED = ("images", "thumbnails", "paths", "authors", "failed", "failed_reasons", "blank", "seconds")


def cache_file(source: Source, size: int = RENDER_SIZE) -> Path:
    """The cache file of a source's renders: named by a hash of the source's content, the
    curated folders, the renderer and the render settings."""
    key = json.dumps({"source": source.fingerprint(), "folders": sorted(RENDERED_FOLDERS),
                      "renderer": renderer_name(), "version": RENDER_VERSION, "size": size},
                     sort_keys=True)
    return user_cache_dir("clipart") / f"clipart-{size}px-{hashlib.sha256(key.encode()).hexdigest()[:24]}.npz"


def _read_renders(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as npz:
        return {k: npz[k] for k in _CACHED}


def cached_renders(source: Source, size: int = RENDER_SIZE) -> tuple[dict[str, np.ndarray], Path]:
    """The renders of a source: read from the cache, or rendered and written there (a damaged
    cache file is moved aside first, `ue_lib.io.read_or_build`)."""
    path = cache_file(source, size)

    def render() -> dict[str, np.ndarray]:
        renders = render_all(source, size)
        try:
            atomic_write(path, lambda tmp: np.savez_compressed(tmp, **renders))
        except OSError as exc:
            log.warning("clipart: cannot write the render cache %s (%s); set UE_CACHE to a "
                        "writable folder to avoid rendering again", path, exc)
        return renders

    return read_or_build(path, _read_renders, render), path


# ----------------------------------------------------------------------------- selection

def _is_within(inner: str, outer: str) -> bool:
    return inner == outer or inner.startswith(outer + "/")


def _resolve(classes: set[str]) -> str | None:
    """The class a drawing filed in several classes keeps: the deepest, when all the others
    contain it; None (drop it) when they are unrelated (a dolphin in fish and in mammals)."""
    deepest = max(classes, key=lambda c: c.count("/"))
    return deepest if all(_is_within(deepest, c) for c in classes) else None


def thumbnails(images: np.ndarray, side: int = 16) -> np.ndarray:
    """float32 (N, side*side*3) thumbnails of (N, H, W, 3) renders, values 0-255."""
    if not len(images):
        return np.zeros((0, side * side * 3), np.float32)
    return np.stack([np.asarray(Image.fromarray(im).resize((side, side), Image.Resampling.BOX),
                                dtype=np.float32).ravel() for im in images])


def copy_pairs(paths: np.ndarray, small: np.ndarray) -> list[tuple[int, int]]:
    """Pairs (i < j) of renders that are copies of one drawing: their 16x16 thumbnails differ by
    less than `NEAR_DUPLICATE` (root mean square, 0-255 scale), or by less than
    `SAME_NAME_DUPLICATE` when the files have the same name (another version of the drawing).
    `small`: the renders' `thumbnails`."""
    sq = (small ** 2).sum(axis=1)
    d2 = sq[:, None] + sq[None, :] - 2 * small @ small.T  # squared distances (sums, not means)
    pairs = {(i, j) for i, j in zip(*np.nonzero(d2 < NEAR_DUPLICATE ** 2 * small.shape[1]))
             if i < j}
    by_name: dict[str, list[int]] = {}
    for i, path in enumerate(paths):
        by_name.setdefault(str(path).rpartition("/")[2], []).append(i)
    for group in by_name.values():
        pairs |= {(i, j) for k, i in enumerate(group) for j in group[k + 1:]
                  if np.sqrt(np.mean((small[i] - small[j]) ** 2)) < SAME_NAME_DUPLICATE}
    return sorted((int(i), int(j)) for i, j in pairs)


def select_items(paths: np.ndarray, small: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict]:
    """Which renders to keep and their classes: (kept indices, class per kept item, report).

    The files of `EXCLUDED_FILES` are left out. Copies of one drawing (`copy_pairs`: the
    package files many drawings in several folders, with different metadata, and some under two
    names) are kept once: in the most specific class when one class lies inside the others, and
    not at all when the classes are unrelated (a dolphin filed both in fish and in mammals is no
    clean example of either).
    """
    folders = [category_of(str(p).rpartition("/")[0]) for p in paths]
    report = {"dropped_files": [], "dropped_ambiguous": [], "dropped_copies": []}
    for i, path in enumerate(paths):
        if any(fnmatchcase(str(path), pattern) for pattern in EXCLUDED_FILES):
            folders[i] = None
            report["dropped_files"].append(str(path))
    parent = list(range(len(paths)))  # union-find over copies

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in copy_pairs(paths, small):
        parent[find(j)] = find(i)
    groups: dict[int, list[int]] = {}
    for i in range(len(paths)):
        if folders[i] is not None:
            groups.setdefault(find(i), []).append(i)
    keep, classes = [], []
    for members in groups.values():
        members.sort(key=lambda i: paths[i])
        cls = _resolve({folders[i] for i in members})
        if cls is None:
            report["dropped_ambiguous"] += [str(paths[i]) for i in members]
            continue
        chosen = next(i for i in members if folders[i] == cls)
        keep.append(chosen)
        classes.append(cls)
        report["dropped_copies"] += [f"{paths[i]} (copy of {paths[chosen]})"
                                     for i in members if i != chosen]
    order = np.argsort(np.asarray(keep))
    return np.asarray(keep, dtype=np.int64)[order], np.asarray(classes, dtype=object)[order], report


# ----------------------------------------------------------------------------- loader

def load_clipart(root=None, *, image_size: int = 32, channels: int = 1, seed: int = 0,
                 test_fraction: float = 0.5, val_fraction: float = 0.2,
                 max_per_class: int | None = None, max_classes: int | None = None,
                 download: bool = True) -> Domain:
    """Curated Open Clip Art classes, class-disjoint. `download` is accepted for a uniform
    interface: the package is never downloaded. The first call renders the SVGs (about half a
    minute) into the user cache; later calls read the cache."""
    del download
    check_image_args(image_size, channels)
    source = find_source(root)
    renders, cache_path = cached_renders(source)
    paths = renders["paths"]
    keep, classes, report = select_items(paths, renders["thumbnails"])
    class_names = [c for c in CATEGORIES if c in set(classes)]
    index = {c: i for i, c in enumerate(class_names)}
    labels = np.asarray([index[c] for c in classes], dtype=np.int64)
    if image_size == RENDER_SIZE and channels == 3:
        images = renders["images"][keep].transpose(0, 3, 1, 2).copy()
    else:
        images = np.empty((len(keep), channels, image_size, image_size), np.uint8)
        for n, i in enumerate(keep):
            images[n] = pil_to_array(Image.fromarray(renders["images"][i]), image_size, channels)
    authors = dict(zip(paths.tolist(), renders["authors"].tolist()))
    notes = {
        "source": f"{source.kind}: {source.path}",
        "cache_file": str(cache_path),
        "renderer": renderer_name(),
        "render_size": RENDER_SIZE,
        "render_seconds": float(renders["seconds"]),
        "render_failed": dict(zip(renders["failed"].tolist(), renders["failed_reasons"].tolist())),
        "render_blank": renders["blank"].tolist(),
        **report,
        "authors": {p: authors[p] for p in paths[keep].tolist()},
        "license_file": LICENSE_FILE,
    }
    nodes, tops, class_attributes, class_groups = topic_hierarchy(class_names)
    return domain_from_items(
        "clipart", images, labels, class_names, paths=paths[keep].astype(object), seed=seed,
        test_fraction=test_fraction, val_fraction=val_fraction, max_per_class=max_per_class,
        max_classes=max_classes, provenance=f"{PROVENANCE} ({source.path.name})",
        license=LICENSE, notes=notes, attributes=class_attributes[labels],
        groups=class_groups[labels], attribute_names=nodes, group_names=tops)
