"""Models, configs and the training loop (tiny synthetic domains, CPU, seconds)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import blob_domain

from ue_lib.config import ModelConfig, OptimConfig, TrainConfig
from ue_lib.models import SmallCNN, build_model, count_parameters
from ue_lib.train import CHECKPOINT, FINAL, HISTORY, load_result, train

TINY = dict(epochs=3, p=3, k=2, eval_batch_size=64)
MODEL = ModelConfig(embedding_dim=8, width=8)


@pytest.fixture(scope="module")
def domains():
    return {"a": blob_domain("a", seed=0), "b": blob_domain("b", n_classes=14, seed=1)}


# ----------------------------------------------------------------------------- config

def test_config_validation():
    with pytest.raises(ValueError, match="TrainConfig.metric_loss: unknown value 'tripplet'"):
        TrainConfig(metric_loss="tripplet")
    with pytest.raises(TypeError, match="TrainConfig.epochs must be <class 'int'>, got '3'"):
        TrainConfig(epochs="3")
    with pytest.raises(ValueError, match="unknown setting.*epoch_count"):
        TrainConfig.from_dict({"epoch_count": 3})
    with pytest.raises(ValueError, match="ModelConfig.backbone: unknown value 'vgg'"):
        ModelConfig(backbone="vgg")
    with pytest.raises(ValueError, match="k must be >= 2"):
        TrainConfig(k=1)
    with pytest.raises(ValueError, match="must include 'val'"):
        TrainConfig(eval_splits=("test",))
    assert OptimConfig(lr=1).lr == 1.0 and isinstance(OptimConfig(lr=1).lr, float)
    assert TrainConfig().replace(epochs=5).epochs == 5


# ----------------------------------------------------------------------------- models

def test_small_cnn_embedding_net():
    model = build_model(ModelConfig(), seed=0)
    assert 100_000 < count_parameters(model) < 500_000
    out = model(torch.rand(5, 1, 32, 32))
    assert out.shape == (5, 64)
    assert torch.allclose(out.norm(dim=1), torch.ones(5), atol=1e-5)
    again = build_model(ModelConfig(), seed=0)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(),
                                                 again.state_dict().values()))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in SmallCNN().modules())
    rgb = build_model(ModelConfig(in_channels=3, embedding_dim=16))
    assert rgb(torch.rand(2, 3, 32, 32)).shape == (2, 16)
    # GroupNorm groups divide every width: 4, 8, 12, 16 channels -> 4, 8, 4, 8 groups
    narrow = SmallCNN(width=4)
    assert [m.num_groups for m in narrow.modules() if isinstance(m, torch.nn.GroupNorm)] == [4, 8, 4, 8]
    assert [m.num_groups for m in SmallCNN().modules() if isinstance(m, torch.nn.GroupNorm)] == [8] * 4


@pytest.mark.parametrize("backbone", ["resnet18", "googlenet"])
def test_torchvision_backbones_random_init_and_local_weights(backbone, tmp_path):
    cfg = ModelConfig(backbone=backbone, embedding_dim=16, in_channels=1, frozen_bn=True)
    model = build_model(cfg).eval()
    assert model(torch.rand(2, 1, 64, 64)).shape == (2, 16)
    # weights from a local file (how an offline machine gets ImageNet weights)
    weights = tmp_path / "w.pth"
    torch.save(build_model(cfg.replace(frozen_bn=False)).backbone.state_dict(), weights)
    assert build_model(cfg.replace(pretrained=str(weights), frozen_bn=False))
    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        build_model(cfg.replace(pretrained=str(tmp_path / "nowhere.pth")))


# ----------------------------------------------------------------------------- training

def test_specialist_learns_and_selects_on_val(domains):
    result = train({"a": domains["a"]}, TrainConfig(mode="specialist", **TINY), MODEL,
                   progress=False)
    h = result.history
    assert set(h.split) == {"train", "val", "test"}
    val = h[(h.split == "val") & (h.metric == "recall@1")].set_index("epoch").value
    assert result.best_epoch == int(val.idxmax())
    assert val.max() > 0.6  # blobs are easy; chance is ~1/3
    with pytest.raises(ValueError, match="exactly one domain"):
        train(domains, TrainConfig(mode="specialist", **TINY), MODEL, progress=False)


def test_naive_and_distill_modes(domains):
    naive = train(domains, TrainConfig(mode="naive", **TINY), MODEL, progress=False)
    assert set(naive.history.domain) == {"a", "b"}
    teachers = {n: train({n: d}, TrainConfig(mode="specialist", **TINY), MODEL,
                         progress=False).model for n, d in domains.items()}
    for loss in ("kl", "distance_mse", "embedding_mse"):
        cfg = TrainConfig(mode="distill", distill_loss=loss, metric_weight=0.5, **TINY)
        res = train(domains, cfg, MODEL, teachers=teachers, progress=False)
        assert np.isfinite(res.history.value).all()
        # teachers stay frozen
        assert all(not p.requires_grad for t in teachers.values() for p in t.parameters())
    with pytest.raises(ValueError, match=r"missing teacher\(s\) for \['b'\]"):
        train(domains, TrainConfig(mode="distill", **TINY), MODEL,
              teachers={"a": teachers["a"]}, progress=False)


def test_distill_with_wider_teacher_uses_a_projection(domains):
    teacher_cfg = MODEL.replace(embedding_dim=12)
    teachers = {n: train({n: d}, TrainConfig(mode="specialist", **TINY), teacher_cfg,
                         progress=False).model for n, d in domains.items()}
    cfg = TrainConfig(mode="distill", distill_loss="embedding_mse", **TINY)
    res = train(domains, cfg, MODEL, teachers=teachers, progress=False)
    assert res.model(torch.rand(2, 1, 16, 16)).shape == (2, 8)


class NaNTeacher(torch.nn.Module):
    embedding_dim = 8

    def forward(self, x):
        return torch.full((len(x), 8), float("nan"))


def test_nan_loss_stops_with_a_message(domains):
    teachers = {"a": NaNTeacher(), "b": NaNTeacher()}
    with pytest.raises(FloatingPointError, match=r"non-finite loss \(nan\) at epoch 1, batch 1 "
                                                 r"\(domain '(a|b)', loss kl\); lower the"):
        train(domains, TrainConfig(mode="distill", **TINY), MODEL, teachers=teachers,
              progress=False)
    with pytest.raises(ValueError, match="OptimConfig.lr must be a finite number > 0"):
        OptimConfig(lr=float("nan"))


def _weights(model):
    return torch.cat([p.detach().flatten() for p in model.state_dict().values()])


def test_resume_gives_exactly_the_uninterrupted_result(domains, tmp_path):
    cfg = TrainConfig(mode="naive", epochs=4, p=3, k=2, eval_every=1, eval_batch_size=64)
    full = train(domains, cfg, MODEL, out_dir=tmp_path / "full", progress=False)

    class Stop(Exception):
        pass

    def interrupt(epoch, history):
        if epoch == 2:
            raise Stop

    with pytest.raises(Stop):
        train(domains, cfg, MODEL, out_dir=tmp_path / "cut", progress=False,
              on_epoch_end=interrupt)
    assert torch.load(tmp_path / "cut" / CHECKPOINT, weights_only=False)["epoch"] == 2
    resumed = train(domains, cfg, MODEL, out_dir=tmp_path / "cut", progress=False)
    pd.testing.assert_frame_equal(full.history, resumed.history)
    assert torch.equal(_weights(full.model), _weights(resumed.model))
    assert full.best_epoch == resumed.best_epoch
    assert (tmp_path / "cut" / FINAL).is_file() and (tmp_path / "cut" / HISTORY).is_file()
    assert not (tmp_path / "cut" / CHECKPOINT).exists()
    # a finished run is loaded, not retrained; other settings in the same folder are refused
    again = train(domains, cfg, MODEL, out_dir=tmp_path / "cut", progress=False)
    assert again.seconds == 0.0 and torch.equal(_weights(again.model), _weights(full.model))
    assert torch.equal(_weights(load_result(tmp_path / "cut").model), _weights(full.model))
    with pytest.raises(ValueError, match="other settings"):
        train(domains, cfg.replace(epochs=5), MODEL, out_dir=tmp_path / "cut", progress=False)


def test_same_seed_same_numbers_different_seed_different(domains):
    cfg = TrainConfig(mode="naive", **TINY)
    a = train(domains, cfg, MODEL, progress=False).history
    b = train(domains, cfg, MODEL, progress=False).history
    c = train(domains, cfg.replace(seed=1), MODEL, progress=False).history
    pd.testing.assert_frame_equal(a, b)
    assert not a.value.equals(c.value)


def test_dynamic_schedule_distills_and_resumes_exactly(domains, tmp_path):
    teachers = {n: train({n: d}, TrainConfig(mode="specialist", **TINY), MODEL,
                         progress=False).model for n, d in domains.items()}
    cfg = TrainConfig(mode="distill", domain_schedule="dynamic", epochs=4, p=3, k=2,
                      eval_batch_size=64)
    full = train(domains, cfg, MODEL, teachers=teachers, out_dir=tmp_path / "full", progress=False)

    def interrupt(epoch, history):
        if epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(domains, cfg, MODEL, teachers=teachers, out_dir=tmp_path / "cut", progress=False,
              on_epoch_end=interrupt)
    resumed = train(domains, cfg, MODEL, teachers=teachers, out_dir=tmp_path / "cut", progress=False)
    pd.testing.assert_frame_equal(full.history, resumed.history)
    with pytest.raises(ValueError, match="dynamic domain schedule .* mode='distill'"):
        train(domains, TrainConfig(mode="naive", domain_schedule="dynamic", **TINY), MODEL,
              progress=False)


def test_a_student_is_not_reused_with_other_teachers(domains, tmp_path):
    def teachers(seed):
        return {n: train({n: d}, TrainConfig(mode="specialist", **{**TINY, "seed": seed}), MODEL,
                         progress=False).model for n, d in domains.items()}

    cfg = TrainConfig(mode="distill", **TINY)
    train(domains, cfg, MODEL, teachers=teachers(0), out_dir=tmp_path, progress=False)
    with pytest.raises(ValueError, match="other settings"):
        train(domains, cfg, MODEL, teachers=teachers(1), out_dir=tmp_path, progress=False)
