"""The scene network: the run's frozen trunk split like Faster R-CNN's C4 design (its first stages
once per scene, `roi_align` on that map for each box, the rest of the trunk on each cut), box
pooling, and crops of objects for the teacher."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from torchvision.ops import roi_align

from ..models import LITE0_MEAN, LITE0_STD
from .scenes import SceneSet, object_patch
from .settings import POOLINGS


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


def scene_boxes(scenes: SceneSet) -> list[torch.Tensor]:
    """Each scene's object boxes as a float32 tensor (n_i, 4) (the oracle boxes)."""
    return [torch.from_numpy(scenes.box[scenes.objects_of(i)]) for i in range(len(scenes))]


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


def roi_example(image_side: int = 128, stride: int = 16, box=(22, 38, 98, 94), output_size: int = 4,
                seed: int = 0) -> dict:
    """One box through `box_features`, for notebook 08's RoIAlign figure: a smooth seeded
    one-channel feature map of an `image_side` scene at `stride` (the map the first stages
    make), a `box` in image pixels, and its `output_size` × `output_size` pooled cells. Returns
    {map (h, w), box, stride, pooled (output_size, output_size)}."""
    side = image_side // stride
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randn(1, 1, max(2, side // 2), max(2, side // 2), generator=g)
    fmap = torch.nn.functional.interpolate(coarse, size=(side, side), mode="bilinear",
                                           align_corners=False)
    pooled = box_features(fmap, [torch.tensor([box], dtype=torch.float32)], image_side, output_size)
    return {"map": fmap[0, 0].numpy(), "box": tuple(box), "stride": stride,
            "pooled": pooled[0, 0].numpy()}
