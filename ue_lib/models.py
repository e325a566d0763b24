"""Embedding networks: backbone + linear head + L2 normalisation.

Inputs are float images in [0, 1], shape (B, C, H, W); the network normalises
them itself (mean/std buffers), so callers never need to know the statistics.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelSettings

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class SmallCNN(nn.Module):
    """Four conv blocks (3x3 conv, GroupNorm, ReLU; max-pool after the first three) and
    global average pooling. GroupNorm, not BatchNorm: with one-domain batches BatchNorm's
    running statistics would mix domains and bias a universal model at test time.
    With width 32 it has about 180k parameters and suits 32x32 inputs on a CPU."""

    def __init__(self, in_channels: int = 1, width: int = 32):
        super().__init__()
        chans = [in_channels, width, 2 * width, 3 * width, 4 * width]
        layers: list[nn.Module] = []
        for i in range(4):
            layers += [nn.Conv2d(chans[i], chans[i + 1], 3, padding=1, bias=False),
                       nn.GroupNorm(math.gcd(8, chans[i + 1]), chans[i + 1]), nn.ReLU(inplace=True)]
            if i < 3:
                layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.out_features = chans[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


class FrozenBatchNorm2d(nn.Module):
    """BatchNorm with fixed statistics and affine parameters (as in many metric-learning
    papers that fine-tune ImageNet backbones with small, class-balanced batches)."""

    def __init__(self, bn: nn.BatchNorm2d):
        super().__init__()
        scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
        self.register_buffer("scale", scale.view(1, -1, 1, 1))
        self.register_buffer("shift", (bn.bias.detach() - bn.running_mean * scale).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale + self.shift


def freeze_batchnorm(module: nn.Module) -> nn.Module:
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            setattr(module, name, FrozenBatchNorm2d(child))
        else:
            freeze_batchnorm(child)
    return module


def _torchvision_backbone(cfg: ModelSettings) -> tuple[nn.Module, int]:
    import torchvision.models as tvm

    builder, weights_enum = {
        "resnet18": (tvm.resnet18, tvm.ResNet18_Weights),
        "resnet50": (tvm.resnet50, tvm.ResNet50_Weights),
        "googlenet": (tvm.googlenet, tvm.GoogLeNet_Weights),
    }[cfg.backbone]
    extra = {"aux_logits": False, "init_weights": True} if cfg.backbone == "googlenet" else {}
    if cfg.weights == "imagenet":
        try:
            if cfg.backbone == "googlenet":
                extra = {"aux_logits": False}
            net = builder(weights=weights_enum.DEFAULT, **extra)
        except Exception as exc:  # offline, or a broken cache
            raise RuntimeError(
                f"could not get ImageNet weights for {cfg.backbone} ({exc}). Without internet, "
                f"download {weights_enum.DEFAULT.url} elsewhere and pass its path as "
                f"`-p weights /path/to/file.pth`") from exc
    else:
        net = builder(weights=None, **extra)
        if cfg.weights:
            path = Path(cfg.weights).expanduser()
            if not path.is_file():
                raise FileNotFoundError(f"pretrained weights file not found: {path}")
            state = torch.load(path, map_location="cpu", weights_only=True)
            missing, unexpected = net.load_state_dict(state, strict=False)
            if [m for m in missing if not m.startswith("fc.")]:
                raise ValueError(f"{path} does not fit {cfg.backbone}: missing {missing[:5]}…")
            if unexpected and not all(u.startswith(("aux", "fc.")) for u in unexpected):
                warnings.warn(f"{path}: unexpected keys ignored: {unexpected[:5]}", stacklevel=2)
    out = net.fc.in_features
    net.fc = nn.Identity()
    if cfg.frozen_bn:
        freeze_batchnorm(net)
    return net, out


class EmbeddingNet(nn.Module):
    """backbone -> linear head -> L2-normalised embedding."""

    def __init__(self, backbone: nn.Module, feature_dim: int, embedding_dim: int,
                 in_channels: int, backbone_channels: int, mean, std):
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(feature_dim, embedding_dim)
        self.repeat = backbone_channels // in_channels  # grey images into an RGB backbone
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))
        self.embedding_dim = embedding_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.repeat > 1:
            x = x.repeat(1, self.repeat, 1, 1)
        x = (x - self.mean) / self.std
        return F.normalize(self.head(self.backbone(x)), dim=1)


def build_model(cfg: ModelSettings, seed: int = 0) -> EmbeddingNet:
    """Build the network of `cfg` (`ModelSettings.part_of(profile)`); random initialisation is
    seeded by `seed`."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if cfg.backbone == "small_cnn":
            if cfg.weights:
                raise ValueError("small_cnn has no pretrained weights; set weights=None")
            backbone = SmallCNN(cfg.channels, cfg.width)
            return EmbeddingNet(backbone, backbone.out_features, cfg.embedding_dim,
                                cfg.channels, cfg.channels,
                                (0.5,) * cfg.channels, (0.5,) * cfg.channels)
        backbone, feat = _torchvision_backbone(cfg)
        return EmbeddingNet(backbone, feat, cfg.embedding_dim, cfg.channels, 3,
                            IMAGENET_MEAN, IMAGENET_STD)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
