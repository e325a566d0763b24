"""The detector (our construction for the CPU): a class-agnostic Faster R-CNN from torchvision's
parts on the frozen trunk's stride-16 map through a trained neck, its training, and how its
detections match the scenes' objects."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.models.detection.rpn import AnchorGenerator, RegionProposalNetwork, RPNHead
from torchvision.ops import MultiScaleRoIAlign, box_iou

from .scenes import SceneSet
from .settings import DetectorSettings
from .trunk import box_features, pool_map

DETECTOR_VERSION = 3  # bump when ObjectDetector or train_detector change: kept detectors retrain


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
