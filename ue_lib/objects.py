"""Object embeddings for retrieval (notebook 08): a detector as hard attention, and a guided
student-teacher.

The paper: Bor-Chun Chen, Larry S. Davis and Ser-Nam Lim, *An Analysis of Object Embeddings for
Image Retrieval* (arXiv 1905.11903, 2019); later *Efficient Object Embedding for Spliced Image
Retrieval* (CVPR 2021, with Zuxuan Wu). Its findings, from the abstracts:

1. embeddings of detection models retrieve worse than those of classification models;
2. a detector still helps as *hard attention*: pooling the feature map inside the detected box
   gives an object embedding;
3. a *guided student* (an embedding head on the detector's RoI features, trained to reproduce
   a classification network's embedding of each cropped object) costs one pass per image
   instead of one per object;
4. an image is the set of its object embeddings; two images are as similar as their most
   similar pair of objects, which finds the sources of a spliced image.

The full text could not be obtained; **our reconstruction** for the CPU, every choice a
setting of the profile (``objects_*``):

* Scenes: `ue_lib.data.scenes` (items of the domains pasted onto cluttered canvases).
* The scene network is the run's frozen ImageNet trunk (EfficientNet-Lite0), split like Faster
  R-CNN's C4 design: the first ``objects_roi_stage`` stages run once per scene (stride 16:
  a 7x7 map for a 112-px scene); `torchvision.ops.roi_align` cuts each box out of that map at
  ``objects_roi_size`` (4x4: the size of a 64-px item's map there) and the remaining stages
  run on the cut, then pool (``objects_pooling``: avg, max or GeM). A box covering a whole
  64-px item gives exactly that item's cached trunk features (tested), so an object's RoI
  feature and an image's feature live in one space.
* The heads: the run's universal model (the kl student of notebooks 03-04) embeds pooled
  features; the teacher is the object's domain specialist (notebook 02) on the crop, resized to
  the run's image size (one trunk pass per object; it is *given the object's domain*); the guided
  student is a head like theirs on the RoI features, trained with `GuidedStudent` on the
  teacher's embeddings of the training scenes' objects (guides: ``embedding_mse``, the paper's
  MSE of normalised embeddings, and ``kl``, the main paper's distribution distillation).
* The detector (`ObjectDetector`): torchvision's Faster R-CNN parts (RPN, RoIAlign box head)
  on the frozen trunk's stride-16 map plus a trained neck, class-agnostic (object or not),
  trained on the training scenes' boxes. Its own features (finding 1) are its neck's map pooled
  in the box.

The conditions (``method`` in results.csv): ``global`` (i), ``roi_oracle`` (ii),
``roi_detected`` (iii), ``teacher_crop`` (iv), ``student_<guide>`` (v), ``detector_features``
(vi), and the reference ``trunk_features`` (the classification trunk's features pooled in the
box, no trained head: what finding 1 compares the detector's features with).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.models.detection.rpn import AnchorGenerator, RegionProposalNetwork, RPNHead
from torchvision.ops import MultiScaleRoIAlign, box_iou, roi_align

from .config import Validated, positive
from .data.scenes import SceneSet, cache_file, iou, object_patch, paste_patch
from .evaluate import TIE_EPS
from .io import RESULT_COLUMNS
from .models import LITE0_MEAN, LITE0_STD
from .objectives import Distillation, Setup

POOLINGS = ("avg", "max", "gem")


# ----------------------------------------------------------------------------- pooling in boxes

def pool_map(h: torch.Tensor, pooling: str = "avg", gem_p: float = 3.0) -> torch.Tensor:
    """(B, C, h, w) -> (B, C): average, max or GeM (generalised mean, power `gem_p`, of the
    clamped activations) over the spatial positions."""
    if pooling == "avg":
        return h.mean(dim=(2, 3))
    if pooling == "max":
        return h.amax(dim=(2, 3))
    if pooling == "gem":
        return h.clamp(min=1e-6).pow(gem_p).mean(dim=(2, 3)).pow(1.0 / gem_p)
    raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}")


def box_features(maps: torch.Tensor, boxes: Sequence[torch.Tensor], image_side: int,
                 output_size: int) -> torch.Tensor:
    """`roi_align` of each image's boxes (x1, y1, x2, y2 in image pixels, right/bottom exclusive)
    on its (C, h, w) map: (sum of boxes, C, output_size, output_size). aligned=True and the
    adaptive sampling of torchvision (one sample per map cell for a box the size of the map),
    so a box covering the whole image returns the map itself when output_size is its size."""
    scale = maps.shape[-1] / image_side
    return roi_align(maps, [b.to(maps.dtype) for b in boxes], output_size=output_size,
                     spatial_scale=scale, sampling_ratio=-1, aligned=True)


class SceneTrunk(nn.Module):
    """The frozen trunk split for object embeddings (see the module doc): `maps` runs its first
    `roi_stage` stages on uint8 images; `objects` pools boxes of those maps through the rest;
    `whole` is the trunk on whole images (global features)."""

    def __init__(self, lite0, roi_stage: int, roi_size: int, pooling: str = "avg",
                 gem_p: float = 3.0, mean=LITE0_MEAN, std=LITE0_STD):
        super().__init__()
        stages = lite0.stages
        if not 1 <= roi_stage < len(stages):
            raise ValueError(f"objects_roi_stage must be in 1..{len(stages) - 1} (the stages run "
                             f"on the whole scene), got {roi_stage}")
        pool_map(torch.zeros(1, 1, 1, 1), pooling, gem_p)  # checks the name
        self.first, self.rest = nn.Sequential(*stages[:roi_stage]), nn.Sequential(*stages[roi_stage:])
        self.roi_size, self.pooling, self.gem_p = roi_size, pooling, gem_p
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))
        self.eval().requires_grad_(False)

    def _input(self, images: torch.Tensor) -> torch.Tensor:
        x = images.float() / 255.0
        if x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        return (x - self.mean) / self.std

    @torch.no_grad()
    def maps(self, images: np.ndarray, batch_size: int = 64) -> torch.Tensor:
        """float32 (N, C, h, w): the first stages' maps of uint8 (N, C, S, S) images."""
        out = [self.first(self._input(torch.from_numpy(np.ascontiguousarray(images[s:s + batch_size]))))
               for s in range(0, len(images), batch_size)]
        return torch.cat(out) if out else torch.zeros(0)

    @torch.no_grad()
    def objects(self, maps: torch.Tensor, boxes: Sequence[torch.Tensor], image_side: int,
                batch_size: int = 256) -> torch.Tensor:
        """(sum of boxes, C_out) pooled features of each image's boxes."""
        cuts = box_features(maps, boxes, image_side, self.roi_size)
        out = [pool_map(self.rest(cuts[s:s + batch_size]), self.pooling, self.gem_p)
               for s in range(0, len(cuts), batch_size)]
        return torch.cat(out) if out else torch.zeros(0, 0)

    @torch.no_grad()
    def whole(self, maps: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
        """(N, C_out): the rest of the trunk on whole images' `maps`, pooled (their global
        features: the trunk on the whole image)."""
        return torch.cat([pool_map(self.rest(maps[s:s + batch_size]), self.pooling, self.gem_p)
                          for s in range(0, len(maps), batch_size)])


# ----------------------------------------------------------------------------- the detector

@dataclass(frozen=True)
class DetectorSettings(Validated):
    """The detector of notebook 08 (our construction for the CPU; `Profile.objects_detector`
    holds changes to these defaults)."""

    neck: int = 128  # channels of the trained neck (two 3x3 convolutions) on the frozen map
    anchors: tuple = (16, 32, 64)  # anchor sides, px (one feature map; square anchors)
    aspect_ratios: tuple = (1.0,)
    roi_output: int = 3  # the box head's RoIAlign side on the stride-16 map (7x7 for 112 px)
    representation: int = 128  # the box head's two fully connected layers
    rois_per_image: int = 32  # proposals sampled per training image for the box head
    epochs: int = 6
    batch: int = 16  # scenes per step
    lr: float = 1e-3
    score_threshold: float = 0.5  # detections kept above this score ...
    max_detections: int = 6  # ... at most this many per scene, after NMS at nms_threshold
    nms_threshold: float = 0.3

    def check(self) -> None:
        positive("DetectorSettings", neck=self.neck, epochs=self.epochs, batch=self.batch,
                 lr=self.lr, max_detections=self.max_detections, roi_output=self.roi_output,
                 representation=self.representation, rois_per_image=self.rois_per_image)
        if not self.anchors or min(self.anchors) <= 0:
            raise ValueError(f"DetectorSettings.anchors must be positive sides, got {self.anchors}")
        if not 0 <= self.score_threshold < 1 or not 0 < self.nms_threshold <= 1:
            raise ValueError("DetectorSettings: score_threshold must be in [0, 1) and "
                             "nms_threshold in (0, 1]")


def detector_settings(overrides: dict) -> DetectorSettings:
    """The defaults of `DetectorSettings` with `overrides` (unknown names raise, naming the valid
    ones)."""
    names = [f.name for f in dataclasses.fields(DetectorSettings)]
    unknown = [k for k in overrides if k not in names]
    if unknown:
        raise ValueError(f"Profile.objects_detector: unknown setting(s) {unknown}; valid: "
                         f"{', '.join(names)}")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
    return DetectorSettings.from_dict({**dataclasses.asdict(DetectorSettings()), **values})


class ObjectDetector(nn.Module):
    """A class-agnostic Faster R-CNN from torchvision's parts (`RegionProposalNetwork`,
    `RoIHeads` with `MultiScaleRoIAlign`, `TwoMLPHead`, `FastRCNNPredictor`) on precomputed maps
    of the frozen trunk (`SceneTrunk.maps`) through a trained neck. It sees images' maps only,
    never their boxes at test time: ``forward(maps, side)`` returns one dict of ``boxes`` and
    ``scores`` per image; with ``targets`` (training) it returns torchvision's four losses."""

    def __init__(self, in_channels: int, settings: DetectorSettings):
        super().__init__()
        s, c = settings, settings.neck
        self.settings = s
        self.neck = nn.Sequential(nn.Conv2d(in_channels, c, 3, padding=1), nn.ReLU(inplace=True),
                                  nn.Conv2d(c, c, 3, padding=1), nn.ReLU(inplace=True))
        anchors = AnchorGenerator(sizes=(tuple(s.anchors),), aspect_ratios=(tuple(s.aspect_ratios),))
        self.rpn = RegionProposalNetwork(
            anchors, RPNHead(c, anchors.num_anchors_per_location()[0]), fg_iou_thresh=0.7,
            bg_iou_thresh=0.3, batch_size_per_image=64, positive_fraction=0.5,
            pre_nms_top_n=dict(training=300, testing=150), post_nms_top_n=dict(training=100, testing=50),
            nms_thresh=0.7)
        self.roi_heads = RoIHeads(
            # one sample per bin: bins are about a map cell here, and torchvision's CPU roi_align
            # backward costs in proportion to the samples (measured: half the time of 2)
            MultiScaleRoIAlign(["0"], output_size=s.roi_output, sampling_ratio=1),
            TwoMLPHead(c * s.roi_output ** 2, s.representation),
            FastRCNNPredictor(s.representation, 2), fg_iou_thresh=0.5, bg_iou_thresh=0.5,
            batch_size_per_image=s.rois_per_image, positive_fraction=0.25, bbox_reg_weights=None,
            score_thresh=s.score_threshold, nms_thresh=s.nms_threshold,
            detections_per_img=s.max_detections)

    def forward(self, maps: torch.Tensor, side: int, targets: list[dict] | None = None):
        features = OrderedDict([("0", self.neck(maps))])
        sizes = [(side, side)] * len(maps)
        images = ImageList(maps.new_zeros((len(maps), 0, side, side)), sizes)
        proposals, rpn_losses = self.rpn(images, features, targets)
        detections, roi_losses = self.roi_heads(features, proposals, sizes, targets)
        return {**rpn_losses, **roi_losses} if self.training else detections

    @torch.no_grad()
    def detect(self, maps: torch.Tensor, side: int, batch_size: int = 64) -> list[dict]:
        """Per image: ``boxes`` float32 (n, 4) and ``scores`` (n,) as numpy arrays."""
        self.eval()
        out = []
        for s in range(0, len(maps), batch_size):
            out += [{k: v.numpy().astype(np.float32) for k, v in d.items() if k != "labels"}
                    for d in self(maps[s:s + batch_size], side)]
        return out

    @torch.no_grad()
    def features(self, maps: torch.Tensor, boxes: Sequence[torch.Tensor], side: int,
                 output_size: int, pooling: str = "avg", gem_p: float = 3.0) -> torch.Tensor:
        """The detector's own features (finding 1): its neck's map pooled in each box."""
        self.eval()
        return pool_map(box_features(self.neck(maps), boxes, side, output_size), pooling, gem_p)


def scene_boxes(scenes: SceneSet) -> list[torch.Tensor]:
    """Each scene's object boxes as a float32 tensor (n_i, 4) (the oracle boxes)."""
    return [torch.from_numpy(scenes.box[scenes.objects_of(i)]) for i in range(len(scenes))]


def train_detector(maps: torch.Tensor, boxes: Sequence[torch.Tensor], side: int,
                   settings: DetectorSettings, seed: int) -> tuple[ObjectDetector, list[float]]:
    """Train an `ObjectDetector` on training scenes' maps and boxes (seeded: the same inputs
    and seed give the same weights). Returns the detector (eval mode) and the mean loss of
    each epoch. A non-finite loss stops with the epoch and the fix."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        det = ObjectDetector(maps.shape[1], settings)
        opt = torch.optim.Adam(det.parameters(), lr=settings.lr)
        gen = torch.Generator().manual_seed(seed)
        losses = []
        det.train()
        for epoch in range(settings.epochs):
            order = torch.randperm(len(maps), generator=gen)
            total = []
            for s in range(0, len(order), settings.batch):
                idx = order[s:s + settings.batch]
                targets = [{"boxes": boxes[i], "labels": torch.ones(len(boxes[i]), dtype=torch.int64)}
                           for i in idx.tolist()]
                loss = sum(det(maps[idx], side, targets).values())
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"detector: non-finite loss at epoch {epoch + 1}; "
                                             f"lower objects_detector's lr (now {settings.lr})")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total.append(loss.item())
            losses.append(float(np.mean(total)))
    return det.eval(), losses


def match_detections(detections: list[dict], scenes: SceneSet) -> tuple[np.ndarray, np.ndarray]:
    """For each object (row of the object table): the detected box of its scene with the highest
    IoU with it, and that IoU (0 and the whole canvas when its scene has no detection). The
    ground truth only says *which* detection stands for a query object; the box is the
    detector's."""
    out = np.zeros((scenes.num_objects, 4), dtype=np.float32)
    best = np.zeros(scenes.num_objects, dtype=np.float32)
    for i, det in enumerate(detections):
        rows = scenes.objects_of(i)
        if not len(det["boxes"]):
            out[rows] = [0, 0, scenes.side, scenes.side]
            continue
        ious = box_iou(torch.from_numpy(scenes.box[rows]), torch.from_numpy(det["boxes"])).numpy()
        pick = ious.argmax(axis=1)
        out[rows], best[rows] = det["boxes"][pick], ious[np.arange(len(rows)), pick]
    return out, best


def detection_quality(detections: list[dict], scenes: SceneSet, threshold: float = 0.5) -> dict:
    """Recall (objects with a detection of IoU >= threshold), precision (detections with IoU >=
    threshold with some object of their scene), mean best IoU per object and detections per
    scene."""
    _, best = match_detections(detections, scenes)
    hits = total = 0
    for i, det in enumerate(detections):
        if len(det["boxes"]):
            ious = box_iou(torch.from_numpy(det["boxes"]),
                           torch.from_numpy(scenes.box[scenes.objects_of(i)])).numpy()
            hits += int((ious.max(axis=1) >= threshold).sum())
            total += len(det["boxes"])
    return {"recall@iou0.5": float(np.mean(best >= threshold)),
            "precision@iou0.5": float(hits / total) if total else 0.0,
            "mean_iou": float(best.mean()), "detections_per_scene": total / max(1, len(scenes))}


# ----------------------------------------------------------------------------- crops

def crops(scenes: SceneSet, boxes: np.ndarray | None = None, size: int = 64) -> np.ndarray:
    """uint8 (n, 3, size, size): each object's box cut from its scene and resized (PIL
    bilinear), the teacher's input. `boxes` (n, 4) replaces the object table's boxes."""
    boxes = scenes.box if boxes is None else boxes
    out = np.empty((len(boxes), 3, size, size), dtype=np.uint8)
    for row, box in enumerate(boxes):
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        x2, y2 = max(x2, x1 + 1), max(y2, y1 + 1)
        patch = scenes.images[scenes.scene[row], :, y1:y2, x1:x2]
        out[row] = object_patch(patch, size).transpose(2, 0, 1) if patch.shape[1:] != (size, size) \
            else patch
    return out


# ----------------------------------------------------------------------------- the guided student

class GuidedStudent(Distillation):
    """The guided student of finding 3: an embedding head on RoI features (its training
    "domains" hold one domain's objects: `Split.features` are their pooled RoI features) trained
    to reproduce the teacher's embeddings of the same objects (`targets`: domain -> float32
    (N_train, D), row i the teacher's embedding of training object i), with the distillation
    loss `method`: ``embedding_mse`` (the paper's MSE on normalised embeddings; our
    reconstruction) or any other of `ue_lib.losses` (``kl``: the main paper's). The teacher is
    given as its embeddings, so it runs once per object, outside the loop."""

    kind = "guided"
    follows_lag = False  # its teachers are tables: there is no teacher score to lag behind

    def __init__(self, profile, method: str, targets: dict[str, np.ndarray], roi: dict):
        super().__init__(profile, method, teachers={})
        self.targets_np = {n: np.asarray(t, np.float32) for n, t in targets.items()}
        self.roi = dict(roi)

    @property
    def folder(self) -> str:
        return f"guided-{self.method}"

    @property
    def needs_inputs(self) -> bool:
        return False  # its teacher is a table of embeddings

    def config(self) -> dict:
        if self._digests is None:
            self._digests = {n: hashlib.sha256(t.tobytes()).hexdigest()[:16]
                             for n, t in self.targets_np.items()}
        return {**super().config(), "roi": self.roi}

    def check(self, domains) -> None:
        for name, d in domains.items():
            if name not in self.targets_np:
                raise ValueError(f"guided student: no teacher embeddings for domain {name!r}")
            if len(self.targets_np[name]) != len(d.train):
                raise ValueError(f"guided student: {len(self.targets_np[name])} teacher "
                                 f"embeddings for {len(d.train)} training objects of {name!r}")

    def teacher_table(self, name: str, domain, setup: Setup) -> tuple[int, torch.Tensor]:
        table = torch.from_numpy(self.targets_np[name])
        return table.shape[1], table


# ----------------------------------------------------------------------------- retrieval

def max_pair_similarity(query: np.ndarray, query_owner: np.ndarray, n_query: int,
                        gallery: np.ndarray, gallery_owner: np.ndarray, n_gallery: int,
                        query_group: np.ndarray | None = None,
                        gallery_group: np.ndarray | None = None) -> np.ndarray:
    """Image-to-image similarity as the maximum cosine over pairs of their objects (finding 4).

    `query` (a, D) object embeddings owned by query images `query_owner` (a,) in 0..n_query-1;
    likewise the gallery. With groups (e.g. the objects' domains when each domain's embeddings
    live in their own space), only pairs of the same group count. Returns float64
    (n_query, n_gallery); -inf where two images have no pair."""
    q = query / np.maximum(np.linalg.norm(query, axis=1, keepdims=True), 1e-12)
    g = gallery / np.maximum(np.linalg.norm(gallery, axis=1, keepdims=True), 1e-12)
    sims = (q.astype(np.float64) @ g.astype(np.float64).T)
    if query_group is not None:
        sims[np.asarray(query_group)[:, None] != np.asarray(gallery_group)[None, :]] = -np.inf
    out = np.full((n_query, n_gallery), -np.inf)
    np.maximum.at(out, (np.asarray(query_owner)[:, None], np.asarray(gallery_owner)[None, :]), sims)
    return out


def source_recall(similarity: np.ndarray, sources: np.ndarray, ks: Sequence[int]) -> dict:
    """Spliced-image retrieval: `similarity` (Q, G), `sources` int (Q, S) the gallery images each
    query was made from (column 0 the host, 1 the donor). Each source is ranked among the
    gallery *without the query's other sources* (otherwise the host, which shares almost every
    pixel, would always hold rank 1 above the donor); ties by gallery index. ``recall@K``: the
    fraction of a query's sources in their top K (mean over queries); ``host_recall@K`` and
    ``donor_recall@K`` per source."""
    sims = np.asarray(similarity, dtype=np.float64)
    sources = np.asarray(sources, dtype=np.int64)
    rows = np.arange(len(sims))[:, None]
    own = sims[rows, sources]  # (Q, S)
    gallery = np.arange(sims.shape[1])
    ranks = np.empty(sources.shape, dtype=np.int64)
    for c in range(sources.shape[1]):
        other = np.zeros(sims.shape, dtype=bool)
        other[rows, sources] = True
        other[rows[:, 0], sources[:, c]] = False
        above = (sims > own[:, c, None] + TIE_EPS) | \
            ((np.abs(sims - own[:, c, None]) <= TIE_EPS) & (gallery[None, :] < sources[:, c, None]))
        ranks[:, c] = (above & ~other).sum(axis=1)
    out = {}
    for k in ks:
        hit = ranks < k
        out[f"recall@{k}"] = float(hit.mean())
        out[f"host_recall@{k}"] = float(hit[:, 0].mean())
        out[f"donor_recall@{k}"] = float(hit[:, 1].mean())
    return out


@contextlib.contextmanager
def timer(out: dict, key: str):
    """Adds the block's wall time (seconds) to ``out[key]``."""
    start = time.perf_counter()
    try:
        yield
    finally:
        out[key] = out.get(key, 0.0) + time.perf_counter() - start


# ----------------------------------------------------------------------------- spliced queries

@dataclass
class Spliced:
    """Spliced query images: ``images`` uint8 (Q, 3, S, S), each a host test scene with one
    object of a donor scene pasted in; ``sources`` int64 (Q, 2) (host, donor) scene indices;
    ``boxes`` list of float32 (n_i, 4), the objects of each (host's, then the donor's);
    ``domain`` list of int64 (n_i,) their domains."""

    images: np.ndarray
    sources: np.ndarray
    boxes: list[np.ndarray]
    domain: list[np.ndarray]


def splice(scenes: SceneSet, domains: dict, n: int, seed: int) -> Spliced:
    """`n` spliced queries from a scene set: a host scene, and an object of another (donor)
    scene cut from its source item, resized to a side in the scene set's scale and pasted (as
    the scenes paste) where it overlaps none of the host's objects by more than its max_iou.
    Seeded; hosts without room are drawn again."""
    p = scenes.params
    rng = np.random.default_rng([seed, 8])
    doms = [domains[name] for name in scenes.domain_names]
    images, sources, boxes, groups = [], [], [], []
    tries = 0
    while len(images) < n:
        tries += 1
        if tries > 50 * n:
            raise ValueError("cannot place donor objects in the host scenes: lower scale or "
                             "objects of the scene parameters")
        host, donor = (int(v) for v in rng.choice(len(scenes), 2, replace=False))
        row = int(rng.choice(scenes.objects_of(donor)))
        host_rows = scenes.objects_of(host)
        side = int(rng.integers(p["scale"][0], p["scale"][1] + 1))
        x, y = (int(v) for v in rng.integers(0, scenes.side - side + 1, size=2))
        box = [x, y, x + side, y + side]
        if any(iou(box, b) > p["max_iou"] for b in scenes.box[host_rows]):
            continue
        patch = object_patch(doms[scenes.domain[row]].splits[scenes.split].images[scenes.item[row]],
                             side)
        canvas = scenes.images[host].transpose(1, 2, 0).copy()
        paste_patch(canvas, patch, x, y, p)  # as the scenes paste their objects
        images.append(canvas.transpose(2, 0, 1))
        sources.append([host, donor])
        boxes.append(np.concatenate([scenes.box[host_rows], [box]]).astype(np.float32))
        groups.append(np.concatenate([scenes.domain[host_rows], [scenes.domain[row]]]))
    return Spliced(np.stack(images), np.asarray(sources, dtype=np.int64), boxes, groups)


# ----------------------------------------------------------------------------- one seed of notebook 08

DETECTOR_VERSION = 3  # bump when ObjectDetector or train_detector change: kept detectors retrain


@dataclass
class ObjectSeed:
    """What one seed of notebook 08 measured: result ``rows`` (dicts of results.csv) and small
    examples for the figures (the seed's first test scenes with their oracle and detected boxes;
    a few object queries with their top gallery items)."""

    seed: int
    rows: list[dict]
    examples: dict


def _embed_features(model: nn.Module, features: torch.Tensor | np.ndarray) -> np.ndarray:
    """A head that takes pooled trunk features (B, C, 1, 1) on (N, C) features."""
    from .evaluate import embed

    x = torch.as_tensor(np.asarray(features, np.float32))
    return embed(model, x[:, :, None, None] if x.ndim == 2 else x, 512)


def _object_domain(name: str, source, scenes: dict[str, SceneSet], d: int, crops_: dict,
                   features: dict):
    """One domain's objects as a Domain: `images` their crops, `features` their RoI features
    (the guided student's inputs), labels their classes."""
    from .data import Domain, Split

    splits = {}
    for split, ss in scenes.items():
        rows = ss.domain == d
        splits[split] = Split(crops_[split][rows], ss.label[rows],
                              features=np.asarray(features[split][rows], np.float32)[:, :, None, None])
    return Domain(name, **splits, class_names=source.class_names, split_rule=source.split_rule,
                  provenance=f"objects of {name} in the scenes of ue_lib.data.scenes",
                  license=source.license)


def _object_gallery(test: SceneSet, d: int, clean_items: np.ndarray):
    """Domain `d`'s object-retrieval layout: its test objects (rows of the object table) query a
    gallery of clean items and the test scenes' objects of that domain; excluded per query:
    the objects of its own scene and its own source item (a clean copy, or the same item in
    another scene). Returns (query rows, exclude (Q, G))."""
    rows = np.flatnonzero(test.domain == d)
    g_items = np.concatenate([clean_items, test.item[rows]])
    g_scene = np.concatenate([np.full(len(clean_items), -1), test.scene[rows]])
    exclude = (g_items[None, :] == test.item[rows, None]) | (g_scene[None, :] == test.scene[rows, None])
    return rows, exclude


def _object_retrieval(q_emb: np.ndarray, clean_emb: np.ndarray, test: SceneSet, d: int,
                      clean_items: np.ndarray, clean_labels: np.ndarray, ks) -> dict:
    """Object retrieval in domain `d` (`_object_gallery`), scored by the project's evaluator."""
    from .evaluate import query_gallery_metrics

    rows, exclude = _object_gallery(test, d, clean_items)
    gallery = np.concatenate([clean_emb, q_emb[rows]])
    g_labels = np.concatenate([clean_labels, test.label[rows]])
    return query_gallery_metrics(q_emb[rows], test.label[rows], gallery, g_labels, ks, exclude)


def top_matches(query: np.ndarray, gallery: np.ndarray, exclude: np.ndarray, k: int) -> np.ndarray:
    """int (Q, k): each query's k most cosine-similar gallery items (faiss), its excluded ones
    left out (for the retrieval gallery figure)."""
    import faiss

    from .evaluate import l2_normalise

    index = faiss.IndexFlatIP(gallery.shape[1])
    index.add(l2_normalise(np.asarray(gallery, np.float32)))
    wide = min(len(gallery), k + int(exclude.sum(axis=1).max()))
    _, found = index.search(l2_normalise(np.asarray(query, np.float32)), wide)
    return np.stack([[j for j in row if not exclude[i, j]][:k] for i, row in enumerate(found)])


def object_scenes(folder, seed: int) -> dict[str, SceneSet]:
    """Notebook 08's scenes at `seed`: made from the seed's splits of `objects_domains` with
    `objects_scene_params`, cached (`ue_lib.data.scenes.load_scenes`)."""
    from .data.scenes import load_scenes

    p = folder.profile
    domains = folder.domains(seed)
    return load_scenes({n: domains[n] for n in p.object_domains()},
                       scenes_per_split=p.scene_counts(), seed=seed, **p.objects_scene_params)


def object_experiment(folder) -> list[ObjectSeed]:
    """Notebook 08 over `objects_seeds`: the models the seeds share are made here first (each
    seed's specialists and the tuned kl student of notebooks 02-04), then every seed runs
    `object_seed`, in `workers` processes."""
    supported, why_not = scenes_supported(folder.profile)
    if not supported:
        raise ValueError(why_not)
    seeds = folder.profile.seed_list("objects_seeds", folder.seed)
    for seed in seeds:
        folder.student("kl", seed)
        for name in folder.profile.object_domains():
            folder.specialist(name, seed)
    return folder.map(object_seed, [(seed,) for seed in seeds], "seeds")


def object_seed(folder, seed: int) -> ObjectSeed:
    """Notebook 08 at one seed (see the module doc): scenes, features, the detector, the guided
    students, then every condition scored on object retrieval and spliced retrieval, and the
    cost per image of teacher and student. Models come from the run folder (the specialists and
    the kl student of notebooks 02-04 are loaded, trained when missing). Runs on the profile's
    `threads` (so the numbers are the same in a worker process and here, and two workers do not
    compete for the cores)."""
    from .train import cpu_threads

    with cpu_threads(folder.profile.threads):
        return _object_seed(folder, seed)


def _object_seed(folder, seed: int) -> ObjectSeed:
    from .config import ModelSettings
    from .evaluate import embed
    from .features import FeatureStore
    from .io import torch_save
    from .models import build_trunk, lite0_backbone, trunk_key

    p = folder.profile
    names = p.object_domains()
    domains = folder.domains(seed)
    source = {n: domains[n] for n in names}
    ks = p.k_list("objects_ks")
    scenes = object_scenes(folder, seed)
    side = scenes["test"].side
    settings = ModelSettings.part_of(p)
    trunk = SceneTrunk(lite0_backbone(settings), p.objects_roi_stage, p.objects_roi_size,
                       p.objects_pooling, p.objects_gem_p)
    seconds: dict[str, float] = {}
    maps, roi, crop = {}, {}, {}
    for split, ss in scenes.items():
        with timer(seconds, f"maps-{split}"):
            maps[split] = trunk.maps(ss.images)
        with timer(seconds, f"student-{split}"):  # the student's own pass, timed on test
            roi[split] = trunk.objects(maps[split], scene_boxes(ss), side)
        with timer(seconds, f"teacher-{split}"):
            crop[split] = crops(ss, size=p.image_size)
    # the teacher: each object's domain specialist on its crop; the training and validation
    # crops' trunk features are cached by pixels, the test crops' computed (and timed) here
    store = FeatureStore(folder.features_root, p.eval_batch_size)
    full = build_trunk(settings)
    key = trunk_key(settings, p.image_size)
    specialists = {n: folder.specialist(n, seed).model for n in names}

    def teacher_embed(split_crops: np.ndarray, domain: np.ndarray, cached: bool) -> np.ndarray:
        feats = store.features(full, key, "scene-objects", split_crops) if cached else \
            embed(full, split_crops, p.eval_batch_size, flatten=False)
        out = np.zeros((len(split_crops), p.embedding_dim), np.float32)
        for d, n in enumerate(names):
            if np.any(domain == d):
                out[domain == d] = embed(specialists[n], torch.from_numpy(feats[domain == d]), 512)
        return out

    teacher = {}
    for split, ss in scenes.items():
        with timer(seconds, f"teacher-{split}"):
            teacher[split] = teacher_embed(crop[split], ss.domain, cached=split != "test")
    roi_config = {"stage": p.objects_roi_stage, "size": p.objects_roi_size,
                  "pooling": p.objects_pooling, "gem_p": p.objects_gem_p,
                  "scenes": scenes["train"].params, "counts": p.scene_counts()}
    object_domains = {n: _object_domain(n, source[n], scenes, d, crop, roi) for d, n in enumerate(names)}
    students = {}
    for guide in p.methods("objects_guides"):
        targets = {n: teacher["train"][scenes["train"].domain == d] for d, n in enumerate(names)}
        students[guide] = folder.train(GuidedStudent(p, guide, targets, roi_config), object_domains,
                                       seed, f"seed{seed}").model
    # the detector, trained on the training scenes' maps and boxes (kept in the run folder)
    det_settings = detector_settings(p.objects_detector)
    scenes_file = cache_file(source, p.scene_counts(), seed=seed, **p.objects_scene_params).name
    digest = hashlib.sha256(repr((DETECTOR_VERSION, roi_config, dataclasses.asdict(det_settings),
                                  trunk_key(settings, side), scenes_file, seed)).encode()
                            ).hexdigest()[:10]
    det_path = folder.models_root / "detector" / f"seed{seed}-{digest}.pt"
    detector = ObjectDetector(maps["train"].shape[1], det_settings)
    if det_path.is_file():
        saved = torch.load(det_path, map_location="cpu", weights_only=True)
        detector.load_state_dict(saved["weights"])
    else:
        start = time.perf_counter()
        detector, losses = train_detector(maps["train"], scene_boxes(scenes["train"]), side,
                                          det_settings, seed)
        saved = {"weights": detector.state_dict(), "losses": losses,
                 "seconds": time.perf_counter() - start}  # as it took when it was trained
        torch_save(saved, det_path)
    detector.eval()
    test = scenes["test"]
    with timer(seconds, "detector-test"):
        detections = detector.detect(maps["test"], side)
    matched, _ = match_detections(detections, test)
    rows = [dict(model="detector", method="detector", domain="all", metric=m, value=v)
            for m, v in detection_quality(detections, test).items()]
    rows.append(dict(model="cost", method="detector_training", domain="all",
                     metric="train_seconds", value=float(saved["seconds"])))

    # ---- every condition's embeddings of the test objects, the clean items, the scenes
    universal = folder.student("kl", seed).model
    student_emb = {}
    for guide, model in students.items():
        with timer(seconds, f"student-head-{guide}"):
            student_emb[guide] = _embed_features(model, roi["test"])
    scene_emb = _embed_features(universal, trunk.whole(maps["test"]))  # (i), one per scene
    detected_roi = trunk.objects(maps["test"], _per_scene(matched, test), side)
    rng = np.random.default_rng([seed, 80])
    clean = {}
    for d, n in enumerate(names):
        items = np.sort(rng.choice(len(source[n].test), min(p.objects_gallery, len(source[n].test)),
                                   replace=False))
        clean[d] = items
    det_feat = detector.features(maps["test"], scene_boxes(test), side, p.objects_roi_size,
                                 p.objects_pooling, p.objects_gem_p).numpy()
    conditions = {
        "global": lambda: scene_emb[test.scene],
        "roi_oracle": lambda: _embed_features(universal, roi["test"]),
        "roi_detected": lambda: _embed_features(universal, detected_roi),
        "teacher_crop": lambda: teacher["test"],
        **{f"student_{g}": (lambda g=g: student_emb[g]) for g in students},
        "detector_features": lambda: det_feat,
        "trunk_features": lambda: roi["test"].numpy(),
    }

    def clean_embedding(method: str, d: int) -> np.ndarray:
        n = names[d]
        feats = torch.from_numpy(np.asarray(source[n].test.features[clean[d]], np.float32))
        if method in ("global", "roi_oracle", "roi_detected"):
            return embed(universal, feats, 512)
        if method == "teacher_crop":
            return embed(specialists[n], feats, 512)
        if method.startswith("student_"):
            return embed(students[method[len("student_"):]], feats, 512)
        if method == "trunk_features":
            return feats.reshape(len(feats), -1).numpy()
        item_side = source[n].image_shape[-1]  # a clean item is a scene of its own, boxed whole
        item_maps = trunk.maps(source[n].test.images[clean[d]])
        whole_box = [torch.tensor([[0, 0, item_side, item_side]], dtype=torch.float32)] * len(item_maps)
        return detector.features(item_maps, whole_box, item_side, p.objects_roi_size,
                                 p.objects_pooling, p.objects_gem_p).numpy()

    object_emb = {m: f() for m, f in conditions.items()}
    clean_emb = {(m, d): clean_embedding(m, d) for m in conditions for d in range(len(names))
                 if np.any(test.domain == d)}
    for method, q_emb in object_emb.items():
        for d, n in enumerate(names):
            if not np.any(test.domain == d):
                continue
            metrics = _object_retrieval(q_emb, clean_emb[method, d], test, d, clean[d],
                                        source[n].test.labels[clean[d]], ks)
            rows += [dict(model="objects", method=method, domain=n, metric=m, value=v)
                     for m, v in metrics.items() if m.startswith("recall@") or m == "map@r"]

    # ---- spliced retrieval: spliced queries against the test scenes, max over object pairs
    spliced = splice(test, source, p.objects_spliced, seed)
    s_maps = trunk.maps(spliced.images)
    s_boxes = [torch.from_numpy(b) for b in spliced.boxes]
    s_owner = np.repeat(np.arange(len(spliced.images)), [len(b) for b in spliced.boxes])
    s_group = np.concatenate(spliced.domain)
    s_roi = trunk.objects(s_maps, s_boxes, side)
    s_det = detector.detect(s_maps, side)
    s_det_boxes = [torch.from_numpy(d["boxes"]) if len(d["boxes"]) else
                   torch.tensor([[0, 0, side, side]], dtype=torch.float32) for d in s_det]
    s_det_owner = np.repeat(np.arange(len(s_det_boxes)), [len(b) for b in s_det_boxes])
    g_det_boxes = [torch.from_numpy(d["boxes"]) if len(d["boxes"]) else
                   torch.tensor([[0, 0, side, side]], dtype=torch.float32) for d in detections]
    g_det_owner = np.repeat(np.arange(len(test)), [len(b) for b in g_det_boxes])
    s_crops = np.concatenate([crops(_as_scenes(spliced, i, side), b, p.image_size)
                              for i, b in enumerate(spliced.boxes)])
    s_teacher = teacher_embed(s_crops, s_group, cached=True)
    one = np.arange(len(test))
    spliced_sets = {  # (query objects, their owners, gallery objects, owners, groups or None)
        "global": (_embed_features(universal, trunk.whole(s_maps)), np.arange(len(s_maps)),
                   scene_emb, one, None),
        "roi_oracle": (_embed_features(universal, s_roi), s_owner, object_emb["roi_oracle"],
                       test.scene, None),
        "roi_detected": (_embed_features(universal, trunk.objects(s_maps, s_det_boxes, side)),
                         s_det_owner, _embed_features(universal, trunk.objects(
                             maps["test"], g_det_boxes, side)), g_det_owner, None),
        "teacher_crop": (s_teacher, s_owner, teacher["test"], test.scene, (s_group, test.domain)),
        **{f"student_{g}": (_embed_features(m, s_roi), s_owner, student_emb[g], test.scene, None)
           for g, m in students.items()},
        "detector_features": (detector.features(s_maps, s_boxes, side, p.objects_roi_size,
                                                p.objects_pooling, p.objects_gem_p).numpy(),
                              s_owner, det_feat, test.scene, None),
        "trunk_features": (s_roi.numpy(), s_owner, roi["test"].numpy(), test.scene, None),
    }
    for method, (qe, qo, ge, go, groups) in spliced_sets.items():
        sims = max_pair_similarity(qe, qo, len(spliced.images), ge, go, len(test),
                                   *(groups or (None, None)))
        rows += [dict(model="spliced", method=method, domain="all", metric=m, value=v)
                 for m, v in source_recall(sims, spliced.sources, ks).items()]

    # ---- cost per test scene (ms): the shared scene pass, the detector's heads, then the
    # teacher (crops + trunk + head per object) or the student (roi_align + rest + head)
    n_scenes = len(test)
    cost = {"scene_maps": seconds["maps-test"], "detector": seconds["detector-test"],
            "teacher_crop": seconds["teacher-test"],
            **{f"student_{g}": seconds["student-test"] + seconds[f"student-head-{g}"]
               for g in students}}
    rows += [dict(model="cost", method=m, domain="all", metric="ms_per_image",
                  value=1000 * v / n_scenes) for m, v in cost.items()]
    for r in rows:
        r.update(notebook=folder.notebook, split="test", seed=seed, epoch=0)
    first = list(range(min(6, n_scenes)))
    examples = {"images": test.images[first], "boxes": [test.box[test.objects_of(i)] for i in first],
                "detections": [detections[i]["boxes"] for i in first],
                "gallery": _gallery_example(object_emb, clean_emb, test, names, source, clean,
                                            crop["test"])}
    return ObjectSeed(seed, rows, examples)


GALLERY_CONDITIONS = ("global", "roi_detected", "teacher_crop", "student_kl")


def _gallery_example(object_emb: dict, clean_emb: dict, test: SceneSet, names: list[str],
                     source: dict, clean: dict, object_crops: np.ndarray, k: int = 5) -> dict:
    """For one query object per domain: its crop, and per condition of `GALLERY_CONDITIONS` its
    top `k` gallery images (clean items or other scenes' objects) and whether each is of the
    query's class."""
    out = {"queries": [], "domains": [], "conditions": {}}
    picks = []
    for d, n in enumerate(names):
        rows, exclude = _object_gallery(test, d, clean[d])
        if len(rows):
            picks.append((d, n, rows, exclude))
            out["queries"].append(object_crops[rows[0]])
            out["domains"].append(n)
    for method in [m for m in GALLERY_CONDITIONS if m in object_emb]:
        images, correct = [], []
        for d, n, rows, exclude in picks:
            gallery = np.concatenate([clean_emb[method, d], object_emb[method][rows]])
            top = top_matches(object_emb[method][rows[:1]], gallery, exclude[:1], k)[0]
            items = source[n].test.images[clean[d]]
            labels = np.concatenate([source[n].test.labels[clean[d]], test.label[rows]])
            images.append([object_patch(items[j], object_crops.shape[-1]).transpose(2, 0, 1)
                           if j < len(items) else object_crops[rows[j - len(items)]] for j in top])
            correct.append((labels[top] == test.label[rows[0]]).tolist())
        out["conditions"][method] = {"images": images, "correct": correct}
    return out


def _per_scene(boxes: np.ndarray, scenes: SceneSet) -> list[torch.Tensor]:
    """Per-object boxes (n, 4) regrouped per scene, as `roi_align` takes them."""
    return [torch.from_numpy(np.ascontiguousarray(boxes[scenes.objects_of(i)]))
            for i in range(len(scenes))]


def _as_scenes(spliced: Spliced, i: int, side: int) -> SceneSet:
    """Spliced query `i` as a one-scene SceneSet (for `crops`)."""
    n = len(spliced.boxes[i])
    return SceneSet(split="test", images=spliced.images[i:i + 1], scene=np.zeros(n),
                    domain=spliced.domain[i], label=np.zeros(n), item=np.zeros(n),
                    box=spliced.boxes[i], visible=np.ones(n), fragment_scene=[], fragment_domain=[],
                    fragment_item=[], fragment_box=np.zeros((0, 4)), domain_names=[], num_classes=[])


# ----------------------------------------------------------------------------- at paper scale

def scenes_supported(profile) -> tuple[bool, str]:
    """Whether notebook 08's scene experiment runs under `profile`: it needs the frozen, cached
    EfficientNet-Lite0 trunk of `mini` and `smoke` (its heads embed the trunk's pooled
    features, which `SceneTrunk` pools in boxes). Returns (supported, why not)."""
    from .runfolder import caches_features

    if profile.backbone == "efficientnet_lite0" and caches_features(profile):
        return True, ""
    return False, (f"the scene experiment needs a frozen, cached EfficientNet-Lite0 trunk "
                   f"(profiles mini and smoke); this profile trains {profile.backbone} "
                   f"{'whole' if profile.trainable_stages < 0 else 'in part'}: see the box views "
                   f"below instead")


def box_domains(folder, seed: int | None = None) -> list[str]:
    """The profile's domains whose test split keeps its objects' boxes and image files (CUB,
    Cars): where whole image, box-pooled and crop are compared (`box_views`)."""
    return [n for n, d in folder.domains(seed).items()
            if d.test.boxes is not None and d.test.paths is not None]


def feature_map(model: nn.Module):
    """A function of uint8 image batches returning `model`'s last feature map before its global
    pooling, for an `EmbeddingNet` on a torchvision ResNet (`create_feature_extractor`, node
    ``layer4``), on EfficientNet-Lite0 (all its stages) or on the small CNN."""
    from torchvision.models import ResNet
    from torchvision.models.feature_extraction import create_feature_extractor

    from .models import EfficientNetLite0, EmbeddingNet, SmallCNN

    backbone = getattr(model, "backbone", None)
    if not isinstance(model, EmbeddingNet) or model.takes_features:
        raise ValueError(f"box pooling needs a network on images with its backbone "
                         f"(EmbeddingNet), got {type(model).__name__}")
    if isinstance(backbone, ResNet):
        body = create_feature_extractor(backbone, {"layer4": "map"})
        return lambda x: body(model.prepare(x))["map"]
    if isinstance(backbone, EfficientNetLite0):
        return lambda x: backbone.forward_until(model.prepare(x), backbone.num_stages)
    if isinstance(backbone, SmallCNN):  # its layers before the global pooling and flattening
        return lambda x: backbone.features[:-2](model.prepare(x))
    raise ValueError(f"box pooling supports ResNet, EfficientNet-Lite0 and small-CNN backbones, got "
                     f"{type(backbone).__name__}")


@torch.no_grad()
def box_pooled(model: nn.Module, images, view_boxes: np.ndarray, size: int, output_size: int = 7,
               pooling: str = "avg", gem_p: float = 3.0, batch_size: int = 64) -> np.ndarray:
    """Embeddings of each image's box (in its evaluation view's pixels): `roi_align` on the
    model's last feature map, pooled, then the model's head (``model.embed``). A box covering
    the whole view with avg pooling gives the model's own embedding of the image."""
    from torch.utils.data import DataLoader

    from .data.files import is_file_backed
    from .device import to_input

    maps_of = feature_map(model)
    device = next(model.parameters()).device
    model.eval()
    if is_file_backed(images):
        batches = DataLoader(images.dataset(train=False), batch_size=batch_size,
                             num_workers=images.num_workers)
    else:
        tensor = torch.from_numpy(np.asarray(images))
        batches = (tensor[s:s + batch_size] for s in range(0, len(tensor), batch_size))
    out, start = [], 0
    for batch in batches:
        maps = maps_of(to_input(batch, device)).float()
        boxes = [torch.from_numpy(view_boxes[start + i:start + i + 1]).to(device)
                 for i in range(len(batch))]
        start += len(batch)
        pooled = pool_map(box_features(maps, boxes, size, output_size), pooling, gem_p)
        out.append(model.embed(pooled).float().cpu().numpy())
    return np.concatenate(out)


def coco_detector(weights: str, min_size: int):
    """torchvision's `fasterrcnn_resnet50_fpn_v2` with COCO weights: ``"coco"`` downloads them
    (online only); a path loads a local state_dict (offline: download the file elsewhere)."""
    from torchvision.models.detection import FasterRCNN_ResNet50_FPN_V2_Weights, fasterrcnn_resnet50_fpn_v2

    kwargs = dict(min_size=min_size, max_size=max(min_size, round(min_size * 1333 / 800)))
    if weights == "coco":
        try:
            return fasterrcnn_resnet50_fpn_v2(
                weights=FasterRCNN_ResNet50_FPN_V2_Weights.DEFAULT, **kwargs).eval()
        except Exception as exc:  # offline, or a broken cache
            raise RuntimeError(
                f"could not get the COCO weights of fasterrcnn_resnet50_fpn_v2 ({exc}). Without "
                f"internet, download {FasterRCNN_ResNet50_FPN_V2_Weights.DEFAULT.url} elsewhere "
                f"and pass its path: -p objects_coco_weights /path/to/file.pth") from exc
    from pathlib import Path

    path = Path(weights).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"objects_coco_weights: no file {path}; pass a state_dict of "
                                f"fasterrcnn_resnet50_fpn_v2 or \"coco\" to download it")
    det = fasterrcnn_resnet50_fpn_v2(weights=None, weights_backbone=None, **kwargs)
    det.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return det.eval()


@torch.no_grad()
def top_boxes(detector: nn.Module, files, batch_size: int = 8) -> np.ndarray:
    """float32 (N, 4): each file's highest-scoring detection (any class), in the original
    image's pixels; the whole image when nothing is detected."""
    from torchvision.transforms.v2.functional import pil_to_tensor

    device = next(detector.parameters()).device
    out = []
    for s in range(0, len(files), batch_size):
        images = [files.open(i) for i in range(s, min(s + batch_size, len(files)))]
        tensors = [pil_to_tensor(im).to(device).float() / 255.0 for im in images]
        for im, det in zip(images, detector(tensors)):
            boxes = det["boxes"].cpu().numpy()
            out.append(boxes[int(det["scores"].argmax())] if len(boxes) else
                       np.array([0, 0, im.width, im.height], np.float32))
    return np.asarray(out, np.float32).reshape(-1, 4)


def box_views(folder, seed: int | None = None) -> pd.DataFrame:
    """At paper scale (notebook 08): on each domain with boxes (`box_domains`), the test split
    embedded four ways by the domain's specialist (the teacher: ResNet-50 from ImageNet in the
    paper profile) and by the universal kl student: the ``whole`` image, ``box_pooled`` (its
    box pooled on the last feature map), the ``crop`` of its box, and the crop of the box a COCO
    detector finds (``detected_crop``, `coco_detector`). Result rows (model ``box_views``,
    method ``<model>:<view>``), scored by the split's protocol. Empty when no domain has boxes."""
    from PIL import Image

    from .data.files import BoxCrops, ImageFiles
    from .data.transforms import view_box
    from .evaluate import embed, split_metrics

    p, seed = folder.profile, folder.seed if seed is None else seed
    names = box_domains(folder, seed)
    rows: list[dict] = []
    if not names:
        return pd.DataFrame(rows, columns=RESULT_COLUMNS)
    detector = coco_detector(p.objects_coco_weights, p.objects_coco_size)
    models = {"kl": folder.student("kl", seed).model}
    for name in names:
        split = folder.domains(seed)[name].test
        models["specialist"] = folder.specialist(name, seed).model
        files = ImageFiles(split.paths, p.image_size, p.channels, p.num_workers, name)
        sizes = [Image.open(path).size for path in split.paths]
        views = np.stack([view_box(b, w, h, p.image_size) for b, (w, h) in zip(split.boxes, sizes)])
        detected = top_boxes(detector.to(next(models["kl"].parameters()).device), files)
        inputs = {"crop": BoxCrops(split.paths, split.boxes, p.image_size, p.channels,
                                   p.num_workers, name),
                  "detected_crop": BoxCrops(split.paths, detected, p.image_size, p.channels,
                                            p.num_workers, name)}
        for who, model in models.items():
            emb = {"whole": embed(model, files, p.eval_batch_size, amp=p.amp),
                   "box_pooled": box_pooled(model, files, views, p.image_size,
                                            pooling=p.objects_pooling, gem_p=p.objects_gem_p),
                   **{v: embed(model, x, p.eval_batch_size, amp=p.amp) for v, x in inputs.items()}}
            for view, e in emb.items():
                rows += [dict(notebook=folder.notebook, model="box_views", method=f"{who}:{view}",
                              domain=name, split="test", metric=m, value=v, seed=seed, epoch=0)
                         for m, v in split_metrics(e, split).items()]
    return pd.DataFrame(rows, columns=RESULT_COLUMNS)


__all__ = ["POOLINGS", "pool_map", "box_features", "SceneTrunk", "DetectorSettings",
           "detector_settings", "ObjectDetector", "scene_boxes", "train_detector",
           "match_detections", "detection_quality", "crops", "GuidedStudent",
           "max_pair_similarity", "source_recall", "top_matches", "timer", "Spliced", "splice",
           "ObjectSeed", "object_scenes", "object_experiment", "object_seed", "scenes_supported",
           "box_domains", "feature_map", "box_pooled", "coco_detector", "top_boxes", "box_views"]
