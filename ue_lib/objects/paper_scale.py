"""Object embeddings at paper scale (notebook 08, profile `paper`): on the domains whose test
split keeps its objects' boxes and image files (CUB, Cars), the whole image, its box pooled on
the last feature map, the crop of its box and the crop of the box a COCO detector finds, each
embedded by the domain's specialist and by the universal kl student."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader

from ..data.files import BoxCrops, ImageFiles, is_file_backed
from ..data.transforms import view_box
from ..device import to_input
from ..evaluate import embed, split_metrics
from ..io import RESULT_COLUMNS, read_named, result_rows
from ..models import EfficientNetLite0, EmbeddingNet, SmallCNN
from ..universal import models as universal
from .trunk import box_features, pool_map


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
    path = Path(weights).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"objects_coco_weights: no file {path}; pass a state_dict of "
                                f"fasterrcnn_resnet50_fpn_v2 or \"coco\" to download it")
    det = fasterrcnn_resnet50_fpn_v2(weights=None, weights_backbone=None, **kwargs)
    det.load_state_dict(read_named(path, lambda p: torch.load(p, map_location="cpu", weights_only=True),
                                   "objects_coco_weights file"))
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
    p, seed = folder.profile, folder.seed if seed is None else seed
    names = box_domains(folder, seed)
    rows: list[dict] = []
    if not names:
        return pd.DataFrame(rows, columns=RESULT_COLUMNS)
    detector = coco_detector(p.objects_coco_weights, p.objects_coco_size)
    models = {"kl": universal.student(folder, "kl", seed).model}
    for name in names:
        split = folder.domains(seed)[name].test
        models["specialist"] = universal.specialist(folder, name, seed).model
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
                rows += result_rows(split_metrics(e, split), notebook=folder.notebook,
                                    model="box_views", method=f"{who}:{view}", domain=name,
                                    seed=seed, epoch=0)
    return pd.DataFrame(rows, columns=RESULT_COLUMNS)
