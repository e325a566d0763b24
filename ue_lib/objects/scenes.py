"""Cluttered scenes with boxes, built from the project's domains for the CPU.

The object-embedding paper (Chen, Davis and Lim, *An Analysis of Object Embeddings for Image
Retrieval*, 2019; CVPR 2021 as *Efficient Object Embedding for Spliced Image Retrieval*) used
real photographs with many objects (COCO, Open Images). Those need a GPU. This module is **our
construction for the CPU**: small square scenes made by pasting items of the project's domains
(clip art, fashion, glyphs, omniglot, ...) onto cluttered canvases, with the pasted boxes
recorded. Every choice below is a parameter of :func:`make_scenes`.

A scene, for one split (train, val or test) of the given domains:

1. **Canvas.** An RGB uint8 square of side ``canvas`` (112 px by default, the middle of the
   issue's 96–128 px). The side is fixed for a whole scene set, so scenes batch as one array
   ``(N, 3, S, S)`` like a domain's images; make another set for another side.
2. **Background texture.** A linear gradient between two random colours, in a random
   direction, mixed (weight ``texture_strength``) with smooth colour noise: a random
   ``texture_cells`` x ``texture_cells`` colour grid upsampled bicubically to the canvas.
3. **Fragments** (``fragments`` per scene, a range): random crops of *other* items of the same
   split, i.e. items that are not objects of the scene. A fragment is cut from its item resized
   as an object would be (a side in ``scale``), where at least ``fragment_foreground`` of its
   pixels are foreground (up to ``placement_tries`` positions are tried; glyphs and omniglot
   are mostly empty margin), pasted like objects (``paste``), and its sides lie in
   ``fragment_side``, whose
   maximum may not exceed half the smallest object side (``scale[0] // 2``, the default): a
   fragment is never a complete object. Fragments are clutter: they are **never recorded as
   objects**; the scene set keeps them in a separate ``fragment_*`` table, for inspection only.
4. **Strokes** (``strokes`` per scene, a range): random polylines and arcs (PIL ``ImageDraw``)
   in random colours, ``stroke_width`` px wide.
5. **Objects** (``objects`` per scene, a range, 1–3 by default), pasted last, over the clutter.
   Each object is an item of the same split: a domain chosen uniformly among the domains
   (so a small domain is as frequent as a large one), then an item uniformly among that
   domain's split; no item twice in a scene. The item's image (grey images repeated to RGB) is
   resized with PIL bilinear so that its longer side is a random integer in ``scale`` (the
   domains' images are square, so objects are squares) and pasted at a random position fully
   inside the canvas. With ``paste="foreground"`` (the default) only its foreground is pasted:
   the pixels that differ from the item's own background colour (the median of its border
   pixels) by more than ``foreground_threshold`` in some channel, the mask grown by one pixel
   (:func:`foreground_mask`); the clutter shows around it, so a box cannot be found from a
   square of flat background. ``paste="opaque"`` pastes the whole square. Its box is the pasted
   rectangle either way (the item's frame, as the domains' items are framed).

**Overlap rule.** A placement (side and position drawn afresh) is rejected when its IoU with
any earlier object of the scene exceeds ``max_iou`` (0.1); each object gets
``placement_tries`` tries (20). An object that cannot be placed is dropped, and when fewer than
``objects[0]`` objects were placed the whole layout is drawn again (up to
``placement_tries`` times, then a ValueError says the geometry is impossible). So the number
of objects of a scene always lies in ``objects``. Later objects are pasted over earlier ones
(each object covers at most a small part of another, by the rule); ``visible`` records the
fraction of each box not covered by later objects' boxes. A pixel inside a box that is not
covered by a later object is exactly the pixel of the resized item (with ``"foreground"``
pasting: every such pixel of the item's foreground mask).

**Splits.** Train scenes are made from train items only, val from val and test from test,
clutter included, so a domain's split rule carries over: with a class-disjoint domain, objects
of test classes appear only in test scenes. (Fashion's split is held-out images of the same
classes, and stays that.)

**Boxes** are float32 ``x1, y1, x2, y2`` in canvas pixels, PIL crop convention (0-based,
right/bottom exclusive), as ``Split.boxes``: ``scene_image[:, y1:y2, x1:x2]`` is the object.

**Seeds.** Each split draws from its own ``numpy.random.Generator`` seeded with
``(seed, split index)``, so a split's scenes do not depend on how many scenes the other splits
have, and the same inputs give the same bytes.

**Cache.** :func:`load_scenes` stores a scene set as one compressed ``.npz`` in
``user_cache_dir("scenes")`` (``$UE_CACHE/ue_lib/scenes/``, never the data root), written
atomically, named by a fingerprint of the parameters, the seed, the domains' names and a
content digest of their source splits (image bytes, labels); a second call with the same
inputs reads it, any change makes a new one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from ..data.core import Domain, user_cache_dir
from ..data.files import is_file_backed
from ..io import Stale, atomic_write, read_or_build

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
# bump when the construction changes, so old cache files are not reused
VERSION = 2

PASTE_MODES = ("foreground", "opaque")
_OBJECT_FIELDS = ("scene", "domain", "label", "item", "box", "visible")
_FRAGMENT_FIELDS = ("fragment_scene", "fragment_domain", "fragment_item", "fragment_box")


@dataclass
class SceneSet:
    """The scenes of one split, and a flat table of their objects (one row per object).

    * ``images``: uint8 (N, 3, S, S), the scenes.
    * object table, rows sorted by scene then by paste order:
      ``scene`` int64 (n,), the scene holding the object; ``domain`` int64, an index into
      ``domain_names``; ``label`` int64, the object's class in its domain (an index into that
      domain's ``class_names``); ``item`` int64, the index of the source item in that domain's
      split (``domains[domain_names[d]].splits[split].images[item]``); ``box`` float32 (n, 4),
      ``x1, y1, x2, y2`` (PIL convention, right/bottom exclusive); ``visible`` float32, the
      fraction of the box not covered by later objects.
    * fragment table (clutter, never objects): ``fragment_scene``, ``fragment_domain``,
      ``fragment_item``, ``fragment_box``, same conventions.
    * ``domain_names``, ``num_classes`` (classes per domain, for :attr:`global_labels`),
      ``split`` and ``params`` (every parameter of :func:`make_scenes`).

    Object retrieval uses the object table (``global_labels`` are class ids unique across
    domains); scene retrieval uses :meth:`objects_of` / :meth:`scene_keys`, which say which
    source items each scene holds.
    """

    split: str
    images: np.ndarray
    scene: np.ndarray
    domain: np.ndarray
    label: np.ndarray
    item: np.ndarray
    box: np.ndarray
    visible: np.ndarray
    fragment_scene: np.ndarray
    fragment_domain: np.ndarray
    fragment_item: np.ndarray
    fragment_box: np.ndarray
    domain_names: list[str]
    num_classes: list[int]
    params: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.images.dtype != np.uint8 or self.images.ndim != 4 or self.images.shape[1] != 3:
            raise ValueError(f"images must be uint8 (N, 3, S, S), got {self.images.dtype} "
                             f"{self.images.shape}")
        for name in ("scene", "domain", "label", "item", "fragment_scene", "fragment_domain",
                     "fragment_item"):
            setattr(self, name, np.asarray(getattr(self, name), dtype=np.int64).reshape(-1))
        self.box = np.asarray(self.box, dtype=np.float32).reshape(-1, 4)
        self.fragment_box = np.asarray(self.fragment_box, dtype=np.float32).reshape(-1, 4)
        self.visible = np.asarray(self.visible, dtype=np.float32).reshape(-1)
        n = len(self.scene)
        for name in ("domain", "label", "item", "box", "visible"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"object table: {len(getattr(self, name))} {name} rows but "
                                 f"{n} scene rows")
        if n and (np.any(np.diff(self.scene) < 0) or self.scene[-1] >= len(self.images)):
            raise ValueError("object table: scene indices must be sorted and < len(images)")
        self.domain_names = [str(d) for d in self.domain_names]
        self.num_classes = [int(c) for c in self.num_classes]
        self._starts = np.searchsorted(self.scene, np.arange(len(self.images) + 1))

    def __len__(self) -> int:
        return len(self.images)

    @property
    def num_objects(self) -> int:
        return len(self.scene)

    @property
    def side(self) -> int:
        return int(self.images.shape[-1])

    def objects_of(self, scene_index: int) -> np.ndarray:
        """Rows of the object table (int64 indices) of one scene, in paste order."""
        if not 0 <= scene_index < len(self):
            raise IndexError(f"scene {scene_index} out of range: {len(self)} scenes")
        return np.arange(self._starts[scene_index], self._starts[scene_index + 1])

    @property
    def objects_per_scene(self) -> np.ndarray:
        """int64 (N,): how many objects each scene holds."""
        return np.diff(self._starts)

    @property
    def global_labels(self) -> np.ndarray:
        """int64 (n,): each object's class as one id across domains (domain 0's classes first,
        then domain 1's, ...), for object retrieval over several domains."""
        offsets = np.concatenate([[0], np.cumsum(self.num_classes)[:-1]]).astype(np.int64)
        return offsets[self.domain] + self.label

    def scene_keys(self, scene_index: int) -> set[tuple[int, int]]:
        """The source items a scene holds, as ``(domain, item)`` pairs (for scene retrieval:
        two scenes share an object when their keys intersect)."""
        rows = self.objects_of(scene_index)
        return set(zip(self.domain[rows].tolist(), self.item[rows].tolist()))

    def crop(self, row: int) -> np.ndarray:
        """uint8 (3, h, w): the canvas inside one object's box."""
        x1, y1, x2, y2 = self.box[row].astype(int)
        return self.images[self.scene[row], :, y1:y2, x1:x2]

    def summary(self) -> dict:
        """One row describing the scene set (for tables)."""
        per = self.objects_per_scene
        row = {"split": self.split, "scenes": len(self), "side": self.side,
               "objects": self.num_objects,
               "objects_per_scene": float(per.mean()) if len(per) else 0.0,
               "fragments": len(self.fragment_scene),
               "mean_visible": float(self.visible.mean()) if self.num_objects else 0.0}
        for d, name in enumerate(self.domain_names):
            row[f"{name}_objects"] = int(np.sum(self.domain == d))
        return row

    # ---- npz round trip
    def to_arrays(self, prefix: str) -> dict[str, np.ndarray]:
        arrays = {f"{prefix}.{k}": getattr(self, k)
                  for k in ("images",) + _OBJECT_FIELDS + _FRAGMENT_FIELDS}
        arrays[f"{prefix}.domain_names"] = np.asarray(self.domain_names, dtype=str)
        arrays[f"{prefix}.num_classes"] = np.asarray(self.num_classes, dtype=np.int64)
        arrays[f"{prefix}.params"] = np.asarray(json.dumps(self.params, sort_keys=True))
        return arrays

    @classmethod
    def from_arrays(cls, arrays, prefix: str, split: str) -> SceneSet:
        kw = {k: arrays[f"{prefix}.{k}"] for k in ("images",) + _OBJECT_FIELDS + _FRAGMENT_FIELDS}
        return cls(split=split, **kw,
                   domain_names=arrays[f"{prefix}.domain_names"].tolist(),
                   num_classes=arrays[f"{prefix}.num_classes"].tolist(),
                   params=json.loads(str(arrays[f"{prefix}.params"])))


# ----------------------------------------------------------------------------- parameters

def _range(name: str, value, low: int, fix: str) -> tuple[int, int]:
    """A (min, max) pair of integers, min >= low, min <= max (an int means (v, v))."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        value = (int(value), int(value))
    try:
        a, b = value
        ok = all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in (a, b))
    except (TypeError, ValueError):
        ok = False
    if not ok or a < low or a > b:
        raise ValueError(f"{name} must be a pair of integers (min, max) with {low} <= min <= max, "
                         f"got {value!r}; {fix}")
    return int(a), int(b)


def scene_params(*, canvas: int = 112, objects=(1, 3), scale=(24, 56), seed: int = 0,
                 max_iou: float = 0.1, placement_tries: int = 20, texture_cells: int = 4,
                 texture_strength: float = 0.5, strokes=(2, 6), stroke_width=(1, 3),
                 fragments=(1, 3), fragment_side=None, paste: str = "foreground",
                 foreground_threshold: int = 24, fragment_foreground: float = 0.25) -> dict:
    """Check the parameters of :func:`make_scenes` and return them as a plain dict (the
    ranges as lists), the form kept in ``SceneSet.params`` and in the cache's fingerprint."""
    if not isinstance(canvas, (int, np.integer)) or isinstance(canvas, bool) or canvas < 16:
        raise ValueError(f"canvas must be an integer side >= 16 px (one side for every scene of "
                         f"a set, so they batch), got {canvas!r}")
    canvas = int(canvas)
    objects = _range("objects", objects, 1, "e.g. objects=(1, 3)")
    scale = _range("scale", scale, 4, "e.g. scale=(24, 56): object sides in px")
    if scale[1] > canvas:
        raise ValueError(f"scale {scale} allows objects larger than the canvas ({canvas} px): "
                         f"lower scale's maximum to at most {canvas} or raise canvas")
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if not isinstance(max_iou, (int, float)) or not 0 <= max_iou < 1:
        raise ValueError(f"max_iou must be a number in [0, 1) (the largest IoU allowed between "
                         f"two objects of a scene), got {max_iou!r}")
    if not isinstance(placement_tries, (int, np.integer)) or placement_tries < 1:
        raise ValueError(f"placement_tries must be an integer >= 1, got {placement_tries!r}")
    if not isinstance(texture_cells, (int, np.integer)) or texture_cells < 1:
        raise ValueError(f"texture_cells must be an integer >= 1, got {texture_cells!r}")
    if not isinstance(texture_strength, (int, float)) or not 0 <= texture_strength <= 1:
        raise ValueError(f"texture_strength must be a number in [0, 1], got {texture_strength!r}")
    strokes = _range("strokes", strokes, 0, "e.g. strokes=(2, 6), or 0 for none")
    stroke_width = _range("stroke_width", stroke_width, 1, "e.g. stroke_width=(1, 3)")
    fragments = _range("fragments", fragments, 0, "e.g. fragments=(1, 3), or 0 for none")
    cap = scale[0] // 2
    if fragment_side is None:
        fragment_side = (max(2, cap // 2), max(2, cap))
    fragment_side = _range("fragment_side", fragment_side, 2, f"e.g. fragment_side=(6, {cap})")
    if fragments[1] and fragment_side[1] > cap:
        raise ValueError(f"fragment_side {fragment_side} allows fragments larger than half the "
                         f"smallest object side (scale[0] // 2 = {cap}), which could pass for "
                         f"whole objects: lower fragment_side's maximum to at most {cap}")
    if paste not in PASTE_MODES:
        raise ValueError(f"paste must be one of {', '.join(PASTE_MODES)}, got {paste!r}")
    if not isinstance(foreground_threshold, (int, np.integer)) or not 0 <= foreground_threshold < 255:
        raise ValueError(f"foreground_threshold must be an integer in [0, 255) (grey levels), got "
                         f"{foreground_threshold!r}")
    if not isinstance(fragment_foreground, (int, float)) or not 0 <= fragment_foreground <= 1:
        raise ValueError(f"fragment_foreground must be a fraction in [0, 1], got "
                         f"{fragment_foreground!r}")
    return dict(version=VERSION, canvas=canvas, objects=list(objects), scale=list(scale),
                seed=int(seed), max_iou=float(max_iou), placement_tries=int(placement_tries),
                texture_cells=int(texture_cells), texture_strength=float(texture_strength),
                strokes=list(strokes), stroke_width=list(stroke_width),
                fragments=list(fragments), fragment_side=list(fragment_side), paste=paste,
                foreground_threshold=int(foreground_threshold),
                fragment_foreground=float(fragment_foreground))


def _counts(scenes_per_split) -> dict[str, int]:
    """{split: number of scenes}: an int means every split; a dict names the splits wanted."""
    if isinstance(scenes_per_split, (int, np.integer)) and not isinstance(scenes_per_split, bool):
        scenes_per_split = dict.fromkeys(SPLITS, int(scenes_per_split))
    if not isinstance(scenes_per_split, dict) or not scenes_per_split:
        raise ValueError(f"scenes_per_split must be an integer (scenes in every split) or a dict "
                         f"like {{'train': 500, 'test': 200}}, got {scenes_per_split!r}")
    out = {}
    for split, n in scenes_per_split.items():
        if split not in SPLITS:
            raise ValueError(f"scenes_per_split: unknown split {split!r}; the splits are "
                             f"{', '.join(SPLITS)}")
        if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
            raise ValueError(f"scenes_per_split[{split!r}] must be an integer >= 1, got {n!r} "
                             f"(leave the split out to make no scenes for it)")
        out[split] = int(n)
    return {s: out[s] for s in SPLITS if s in out}


def _check_domains(domains: dict[str, Domain], splits) -> None:
    if not isinstance(domains, dict) or not domains:
        raise ValueError("no domains given: pass a dict of domains, e.g. "
                         "load_domains('fashion,omniglot,glyphs', image_size=64, channels=3)")
    for name, dom in domains.items():
        if not isinstance(dom, Domain):
            raise ValueError(f"domains[{name!r}] is a {type(dom).__name__}, not a Domain: pass "
                             f"the dict load_domains returns")
        for split in splits:
            images = dom.splits[split].images
            if len(images) == 0:
                raise ValueError(f"domain {name!r} has no items in its {split!r} split, so it "
                                 f"cannot give objects to {split} scenes: drop it from `domains`, "
                                 f"or leave {split!r} out of scenes_per_split")
            if images.shape[1] not in (1, 3):
                raise ValueError(f"domain {name!r}: images must have 1 or 3 channels, got "
                                 f"{images.shape[1]}")


# ----------------------------------------------------------------------------- drawing

def object_patch(image: np.ndarray, side: int) -> np.ndarray:
    """uint8 (h, w, 3): a (C, H, W) item resized with PIL bilinear so that its longer side is
    `side` (grey repeated to RGB). What a scene pastes as an object."""
    hwc = np.asarray(image, dtype=np.uint8).transpose(1, 2, 0)
    img = Image.fromarray(hwc[..., 0] if hwc.shape[2] == 1 else hwc).convert("RGB")
    size = _patch_size(hwc.shape[:2], side)
    if img.size != size:
        img = img.resize(size, Image.Resampling.BILINEAR)
    return np.asarray(img, dtype=np.uint8)


def foreground_mask(patch: np.ndarray, threshold: int) -> np.ndarray:
    """bool (h, w): the pixels of a uint8 (h, w, 3) patch that differ from its background
    colour (the per-channel median of its border pixels) by more than `threshold` in some
    channel, grown by one pixel (a 3x3 maximum filter) so that anti-aliased edges come along."""
    border = np.concatenate([patch[0], patch[-1], patch[:, 0], patch[:, -1]]).astype(np.int16)
    background = np.median(border, axis=0)
    mask = (np.abs(patch.astype(np.int16) - background).max(axis=2) > threshold)
    grown = Image.fromarray(mask.astype(np.uint8) * 255).filter(ImageFilter.MaxFilter(3))
    return np.asarray(grown) > 0


def paste_patch(canvas: np.ndarray, patch: np.ndarray, x: int, y: int, p: dict,
           mask: np.ndarray | None = None) -> None:
    """Paste `patch` (uint8 (h, w, 3)) into `canvas` at (x, y) as the scene parameters `p` say:
    whole (``paste="opaque"``) or its foreground (`mask`, `foreground_mask` when not given)."""
    h, w = patch.shape[:2]
    if p["paste"] == "opaque":
        canvas[y:y + h, x:x + w] = patch
        return
    mask = foreground_mask(patch, p["foreground_threshold"]) if mask is None else mask
    canvas[y:y + h, x:x + w][mask] = patch[mask]


def iou(a, b) -> float:
    """Intersection over union of two boxes x1, y1, x2, y2 (right/bottom exclusive)."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def _background(rng: np.random.Generator, side: int, cells: int, strength: float) -> np.ndarray:
    c0, c1 = rng.integers(0, 256, size=(2, 3)).astype(np.float32)
    angle = rng.uniform(0, 2 * math.pi)
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32)
    t = xx * math.cos(angle) + yy * math.sin(angle)
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    grad = c0 * (1 - t[..., None]) + c1 * t[..., None]
    grid = rng.integers(0, 256, size=(cells, cells, 3), dtype=np.uint8)
    noise = np.asarray(Image.fromarray(grid).resize((side, side), Image.Resampling.BICUBIC),
                       dtype=np.float32)
    return np.clip((1 - strength) * grad + strength * noise + 0.5, 0, 255).astype(np.uint8)


def _strokes(rng: np.random.Generator, draw: ImageDraw.ImageDraw, side: int, n: int,
             width: tuple[int, int]) -> None:
    for _ in range(n):
        colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
        w = int(rng.integers(width[0], width[1] + 1))
        if rng.random() < 0.5:
            points = [tuple(int(v) for v in p)
                      for p in rng.integers(0, side, size=(int(rng.integers(2, 5)), 2))]
            draw.line(points, fill=colour, width=w)
        else:
            x, y = sorted(rng.integers(0, side, size=2)), sorted(rng.integers(0, side, size=2))
            box = [int(x[0]), int(y[0]), int(x[1]) + 4, int(y[1]) + 4]
            start, extent = rng.uniform(0, 360), rng.uniform(45, 300)
            draw.arc(box, start=float(start), end=float(start + extent), fill=colour, width=w)


class _Pool:
    """The items of one split of the domains: draw (domain, item) pairs, read images."""

    def __init__(self, domains: dict[str, Domain], split: str):
        self.splits = [d.splits[split] for d in domains.values()]
        self.sizes = [len(s) for s in self.splits]

    def draw(self, rng: np.random.Generator, exclude: set, tries: int = 20):
        for _ in range(tries):
            d = int(rng.integers(len(self.sizes)))
            key = (d, int(rng.integers(self.sizes[d])))
            if key not in exclude:
                return key
        return None

    def image(self, key) -> np.ndarray:
        return np.asarray(self.splits[key[0]].images[key[1]])

    def shape(self, key) -> tuple[int, ...]:
        return tuple(self.splits[key[0]].images.shape[1:])

    def label(self, key) -> int:
        return int(self.splits[key[0]].labels[key[1]])


def _patch_size(shape, side: int) -> tuple[int, int]:
    """(w, h) of an item of shape (..., H, W) resized by `object_patch` to `side`."""
    h, w = shape[-2:]
    if h == w:
        return side, side
    return max(1, round(side * w / max(h, w))), max(1, round(side * h / max(h, w)))


def _layout(rng: np.random.Generator, pool: _Pool, p: dict) -> tuple[list, list[list[int]]]:
    """The objects of one scene: distinct items of the split and their boxes, placed under the
    overlap rule (a placement whose IoU with an earlier object exceeds max_iou is drawn again;
    an object not placed in `placement_tries` tries is dropped; a layout with fewer than
    objects[0] objects is drawn again)."""
    side, (lo, hi), tries = p["canvas"], p["scale"], p["placement_tries"]
    for _ in range(tries):
        wanted = int(rng.integers(p["objects"][0], p["objects"][1] + 1))
        keys, boxes, used = [], [], set()
        for _ in range(wanted):
            key = pool.draw(rng, used)  # a distinct item: a domain uniformly, then an item
            if key is None:  # the split has fewer items than the scene wants objects
                break
            used.add(key)
            for _ in range(tries):
                w, h = _patch_size(pool.shape(key), int(rng.integers(lo, hi + 1)))
                x, y = int(rng.integers(0, side - w + 1)), int(rng.integers(0, side - h + 1))
                box = [x, y, x + w, y + h]
                if all(iou(box, b) <= p["max_iou"] for b in boxes):
                    keys.append(key)
                    boxes.append(box)
                    break
        if len(boxes) >= p["objects"][0]:
            return keys, boxes
    raise ValueError(f"cannot place {p['objects'][0]} distinct objects of side {lo}-{hi} px on "
                     f"a {side} px canvas with IoU <= {p['max_iou']} in {tries} tries (or the "
                     f"split has too few items): lower objects' minimum or scale, or raise "
                     f"canvas or max_iou")


def _make_split(pool: _Pool, n_scenes: int, p: dict, rng: np.random.Generator) -> dict:
    side = p["canvas"]
    images = np.empty((n_scenes, 3, side, side), dtype=np.uint8)
    obj = {k: [] for k in _OBJECT_FIELDS}
    frag = {k: [] for k in _FRAGMENT_FIELDS}
    for s in range(n_scenes):
        canvas = _background(rng, side, p["texture_cells"], p["texture_strength"])
        keys, boxes = _layout(rng, pool, p)
        used = set(keys)
        # fragments of other items, under everything else
        for _ in range(int(rng.integers(p["fragments"][0], p["fragments"][1] + 1))):
            key = pool.draw(rng, used)
            if key is None:
                break
            patch = object_patch(pool.image(key), int(rng.integers(p["scale"][0],
                                                                   p["scale"][1] + 1)))
            fw = min(int(rng.integers(p["fragment_side"][0], p["fragment_side"][1] + 1)),
                     patch.shape[1])
            fh = min(int(rng.integers(p["fragment_side"][0], p["fragment_side"][1] + 1)),
                     patch.shape[0])
            fg = foreground_mask(patch, p["foreground_threshold"])
            for _ in range(p["placement_tries"]):  # a piece with something on it
                cx = int(rng.integers(0, patch.shape[1] - fw + 1))
                cy = int(rng.integers(0, patch.shape[0] - fh + 1))
                if fg[cy:cy + fh, cx:cx + fw].mean() >= p["fragment_foreground"]:
                    break
            x, y = int(rng.integers(0, side - fw + 1)), int(rng.integers(0, side - fh + 1))
            paste_patch(canvas, patch[cy:cy + fh, cx:cx + fw], x, y, p, fg[cy:cy + fh, cx:cx + fw])
            frag["fragment_scene"].append(s)
            frag["fragment_domain"].append(key[0])
            frag["fragment_item"].append(key[1])
            frag["fragment_box"].append([x, y, x + fw, y + fh])
        img = Image.fromarray(canvas)
        _strokes(rng, ImageDraw.Draw(img), side, int(rng.integers(p["strokes"][0],
                                                                  p["strokes"][1] + 1)),
                 tuple(p["stroke_width"]))
        canvas = np.array(img)
        # objects, in order, over the clutter; `top` says which object owns each pixel
        top = np.full((side, side), -1, dtype=np.int32)
        placed = []
        for k, (key, (x1, y1, x2, y2)) in enumerate(zip(keys, boxes)):
            paste_patch(canvas, object_patch(pool.image(key), max(x2 - x1, y2 - y1)), x1, y1, p)
            top[y1:y2, x1:x2] = k
            placed.append((key, [x1, y1, x2, y2]))
        for k, (key, box) in enumerate(placed):
            x1, y1, x2, y2 = box
            obj["scene"].append(s)
            obj["domain"].append(key[0])
            obj["label"].append(pool.label(key))
            obj["item"].append(key[1])
            obj["box"].append(box)
            obj["visible"].append(float(np.mean(top[y1:y2, x1:x2] == k)))
        images[s] = canvas.transpose(2, 0, 1)
    return dict(images=images, **obj, **frag)


# ----------------------------------------------------------------------------- API

def make_scenes(domains: dict[str, Domain], *, scenes_per_split: dict[str, int] | int,
                canvas: int = 112, objects: tuple[int, int] = (1, 3),
                scale: tuple[int, int] = (24, 56), seed: int = 0, max_iou: float = 0.1,
                placement_tries: int = 20, texture_cells: int = 4,
                texture_strength: float = 0.5, strokes: tuple[int, int] = (2, 6),
                stroke_width: tuple[int, int] = (1, 3), fragments: tuple[int, int] = (1, 3),
                fragment_side: tuple[int, int] | None = None, paste: str = "foreground",
                foreground_threshold: int = 24,
                fragment_foreground: float = 0.25) -> dict[str, SceneSet]:
    """Make cluttered scenes with boxes from the splits of `domains` (see the module doc).

    Args:
        domains: name -> Domain (as ``load_domains`` returns); objects and fragments of a
            split's scenes come from that split of these domains only.
        scenes_per_split: scenes per split: an int for each of train, val and test, or a dict
            naming the splits wanted (``{"train": 500, "test": 200}``).
        canvas: the side of every scene, px.
        objects: (min, max) objects per scene.
        scale: (min, max) object side (its longer side), px; max <= canvas.
        seed: the seed; each split draws from ``default_rng([seed, split index])``.
        max_iou: the largest IoU allowed between two objects of a scene.
        placement_tries: tries per object placement, and per scene layout.
        texture_cells: the background noise grid (cells per side; more is finer).
        texture_strength: the weight of the noise against the gradient (0: a pure gradient).
        strokes: (min, max) random lines/arcs per scene; stroke_width: their width range, px.
        fragments: (min, max) crops of other items per scene.
        fragment_side: (min, max) side of a fragment, px; max <= scale[0] // 2; default
            (scale[0] // 4, scale[0] // 2).
        paste: ``"foreground"`` (the item's foreground mask, :func:`foreground_mask`) or
            ``"opaque"`` (the whole square, its own background included).
        foreground_threshold: grey levels from the item's border colour that count as
            foreground.
        fragment_foreground: the least foreground fraction of a fragment (tried
            ``placement_tries`` times, else the last piece drawn).

    Returns: {split: SceneSet} for the splits asked, in the order train, val, test.
    Raises ValueError for a bad parameter, naming it and the fix.
    """
    p = scene_params(canvas=canvas, objects=objects, scale=scale, seed=seed, max_iou=max_iou,
                     placement_tries=placement_tries, texture_cells=texture_cells,
                     texture_strength=texture_strength, strokes=strokes,
                     stroke_width=stroke_width, fragments=fragments, fragment_side=fragment_side,
                     paste=paste, foreground_threshold=foreground_threshold,
                     fragment_foreground=fragment_foreground)
    counts = _counts(scenes_per_split)
    _check_domains(domains, counts)
    names = list(domains)
    num_classes = [len(d.class_names) for d in domains.values()]
    out = {}
    for split, n in counts.items():
        rng = np.random.default_rng([p["seed"], SPLITS.index(split)])
        arrays = _make_split(_Pool(domains, split), n, p, rng)
        # the params as a cached set reads them back (its keys sorted), so that what is keyed by
        # their repr (the detector's file) is the same for a new and a cached set
        params = json.loads(json.dumps(p, sort_keys=True))
        out[split] = SceneSet(split=split, **arrays, domain_names=names,
                              num_classes=num_classes, params=params)
    return out


def source_digest(domains: dict[str, Domain], splits) -> str:
    """sha256 of what scenes are made from: each domain's name, class count and, per split,
    its images (the bytes; a file-backed split's file fingerprint) and labels."""
    digest = hashlib.sha256()
    for name, dom in domains.items():
        digest.update(f"{name}\0{len(dom.class_names)}\0".encode())
        for split in splits:
            sp = dom.splits[split]
            digest.update(f"{split}\0{tuple(sp.images.shape)}\0".encode())
            if is_file_backed(sp.images):
                digest.update(sp.images.fingerprint().encode())
            else:
                digest.update(np.ascontiguousarray(sp.images).tobytes())
            digest.update(np.ascontiguousarray(sp.labels, dtype=np.int64).tobytes())
    return digest.hexdigest()


def cache_file(domains: dict[str, Domain], scenes_per_split, **params) -> Path:
    """Where :func:`load_scenes` keeps a scene set: ``user_cache_dir("scenes")`` /
    ``scenes-<side>px-<fingerprint>.npz``, the fingerprint a hash of the parameters, the scene
    counts and the source digest."""
    p = scene_params(**params)
    counts = _counts(scenes_per_split)
    _check_domains(domains, counts)
    key = json.dumps({"params": p, "counts": counts,
                      "source": source_digest(domains, list(counts))}, sort_keys=True)
    return user_cache_dir("scenes") / \
        f"scenes-{p['canvas']}px-{hashlib.sha256(key.encode()).hexdigest()[:24]}.npz"


def load_scenes(domains: dict[str, Domain], *, scenes_per_split: dict[str, int] | int,
                cache: bool = True, **params) -> dict[str, SceneSet]:
    """:func:`make_scenes`, cached: read the scene set from ``user_cache_dir("scenes")`` when
    one was made from the same inputs, else make it and write it there atomically (a temporary
    file renamed over the target). A cache file that cannot be read, or holds other splits or
    parameters, is moved aside and made again (`ue_lib.io.read_or_build`); a cache folder that
    cannot be written is logged, not fatal. `params` are make_scenes' keyword arguments."""
    if not cache:
        return make_scenes(domains, scenes_per_split=scenes_per_split, **params)
    path = cache_file(domains, scenes_per_split, **params)
    counts = _counts(scenes_per_split)
    stored = json.loads(json.dumps(scene_params(**params), sort_keys=True))

    def read(path: Path) -> dict[str, SceneSet]:
        with np.load(path, allow_pickle=False) as npz:
            splits = [str(s) for s in npz["splits"].tolist()]
            scenes = {s: SceneSet.from_arrays(npz, s, s) for s in splits}
        found = {s: len(ss.images) for s, ss in scenes.items()}
        if found != counts or any(ss.params != stored for ss in scenes.values()):
            raise Stale(f"it holds other scenes than its name says ({found} scenes per split, "
                        f"not {counts}, or other parameters)")
        return scenes

    def make() -> dict[str, SceneSet]:
        scenes = make_scenes(domains, scenes_per_split=scenes_per_split, **params)
        arrays = {"splits": np.asarray(list(scenes), dtype=str)}
        for split, ss in scenes.items():
            arrays.update(ss.to_arrays(split))
        try:
            atomic_write(path, lambda tmp: np.savez_compressed(tmp, **arrays))
        except OSError as exc:
            log.warning("scenes: cannot write the cache %s (%s); set UE_CACHE to a writable "
                        "folder to avoid making the scenes again", path, exc)
        return scenes

    return read_or_build(path, read, make)
