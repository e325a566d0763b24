"""Models, configs and the training loop (tiny synthetic domains, CPU, seconds)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import blob_domain

from ue_lib.config import ModelSettings
from ue_lib.models import SmallCNN, build_model
from ue_lib.profiles import Profile
from ue_lib.training import CHECKPOINT, FINAL, HISTORY, TrainJob, load_result, train
from ue_lib.universal.objectives import Distillation, NaiveFusion, Specialist

TINY = Profile(embedding_dim=8, width=8, p=3, k=2, eval_batch_size=64, epochs_specialist=3,
               epochs_naive=3, epochs_distill=3)


def model_settings(**changes) -> ModelSettings:
    return ModelSettings.part_of(Profile(), **changes)


def run(domains, objective, seed=0, **kw):
    return train(TrainJob(domains, objective, seed), progress=False, **kw)


def specialists(domains, profile=TINY, seed=0):
    return {n: run({n: d}, Specialist(profile), seed).model for n, d in domains.items()}


@pytest.fixture(scope="module")
def domains():
    return {"a": blob_domain("a", seed=0), "b": blob_domain("b", n_classes=14, seed=1)}


# ----------------------------------------------------------------------------- settings

def test_settings_validation():
    with pytest.raises(ValueError, match="Profile.metric_loss: unknown value 'tripplet'"):
        TINY.replace(metric_loss="tripplet")
    with pytest.raises(TypeError, match="Profile.epochs_naive must be <class 'int'>, got '3'"):
        TINY.replace(epochs_naive="3")
    with pytest.raises(ValueError, match="unknown setting.*epoch_count"):
        Profile.from_dict({"epoch_count": 3})
    with pytest.raises(ValueError, match="Profile.backbone: unknown value 'vgg'"):
        TINY.replace(backbone="vgg")
    with pytest.raises(ValueError, match="k must be >= 2"):
        TINY.replace(k=1)
    with pytest.raises(ValueError, match="Profile.lr must be a finite number > 0"):
        TINY.replace(lr=float("nan"))
    assert TINY.replace(lr=1).lr == 1.0 and isinstance(TINY.replace(lr=1).lr, float)
    # the model's settings are the profile's fields of the same names, not a renamed copy
    assert ModelSettings.part_of(TINY).embedding_dim == 8 and ModelSettings.part_of(TINY).channels == 1


# ----------------------------------------------------------------------------- models

def test_small_cnn_embedding_net():
    model = build_model(model_settings(), seed=0)
    assert 100_000 < sum(p.numel() for p in model.parameters() if p.requires_grad) < 500_000
    out = model(torch.rand(5, 1, 32, 32))
    assert out.shape == (5, 64)
    assert torch.allclose(out.norm(dim=1), torch.ones(5), atol=1e-5)
    again = build_model(model_settings(), seed=0)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(),
                                                 again.state_dict().values()))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in SmallCNN().modules())
    rgb = build_model(model_settings(channels=3, embedding_dim=16))
    assert rgb(torch.rand(2, 3, 32, 32)).shape == (2, 16)
    # GroupNorm groups divide every width: 4, 8, 12, 16 channels -> 4, 8, 4, 8 groups
    narrow = SmallCNN(width=4)
    assert [m.num_groups for m in narrow.modules() if isinstance(m, torch.nn.GroupNorm)] == [4, 8, 4, 8]
    assert [m.num_groups for m in SmallCNN().modules() if isinstance(m, torch.nn.GroupNorm)] == [8] * 4


@pytest.mark.parametrize("backbone", ["resnet18", "googlenet"])
def test_torchvision_backbones_random_init_and_local_weights(backbone, tmp_path):
    cfg = model_settings(backbone=backbone, embedding_dim=16, channels=1, frozen_bn=True)
    model = build_model(cfg).eval()
    assert model(torch.rand(2, 1, 64, 64)).shape == (2, 16)
    # weights from a local file (how an offline machine gets ImageNet weights)
    weights = tmp_path / "w.pth"
    torch.save(build_model(cfg.replace(frozen_bn=False)).backbone.state_dict(), weights)
    assert build_model(cfg.replace(weights=str(weights), frozen_bn=False))
    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        build_model(cfg.replace(weights=str(tmp_path / "nowhere.pth")))


# ----------------------------------------------------------------------------- training

def test_specialist_learns_and_selects_on_val(domains):
    result = run({"a": domains["a"]}, Specialist(TINY))
    h = result.history
    assert set(h.split) == {"train", "val"}  # a specialist's curves: validation only
    assert set(result.final.split) == {"val", "test"}
    val = h[(h.split == "val") & (h.metric == "recall@1")].set_index("epoch").value
    assert result.best_epoch == int(val.idxmax())
    assert val.max() > 0.6  # blobs are easy; chance is ~1/3
    with pytest.raises(ValueError, match="exactly one domain"):
        run(domains, Specialist(TINY))


def test_naive_and_distill_objectives(domains):
    naive = run(domains, NaiveFusion(TINY))
    assert set(naive.history.domain) == {"a", "b"} and set(naive.history.split) == {"train", "val", "test"}
    teachers = specialists(domains)
    with_metric = TINY.replace(metric_weight=0.5)
    for loss in ("kl", "distance_mse", "embedding_mse"):
        res = run(domains, Distillation(with_metric, loss, teachers))
        assert np.isfinite(res.history.value).all()
        # teachers stay frozen
        assert all(not p.requires_grad for t in teachers.values() for p in t.parameters())
    with pytest.raises(ValueError, match=r"missing teacher\(s\) for \['b'\]"):
        run(domains, Distillation(TINY, "kl", {"a": teachers["a"]}))


def test_history_records_the_batches_of_each_domain_per_epoch(domains, tmp_path):
    """The budget rows (`ue_lib.universal.histories.budget_table`): per epoch and domain the
    batches trained, beside the loss; they are not results (not in `final`, not among the
    recorded curves)."""
    from ue_lib.runfolder import RunFolder
    from ue_lib.spec import RunSpec
    from ue_lib.universal import histories

    naive = run(domains, NaiveFusion(TINY))  # 36 training images per domain, batches of 3 x 2
    counts = naive.history[naive.history.metric == "batches"]
    assert (counts.split == "train").all() and len(counts) == 3 * 2
    assert counts.groupby("epoch").value.sum().tolist() == [12.0, 12.0, 12.0]  # 6 of each domain
    loss = naive.history[naive.history.metric == "loss"]
    assert loss.groupby("epoch").size().tolist() == [2, 2, 2]  # the loss rows are unchanged
    assert "batches" not in set(naive.final.metric)
    recorded = RunFolder(RunSpec("smoke", str(tmp_path)), "t").rows_of("naive", "ms", naive, curves=True)
    assert not recorded.metric.str.startswith("batches").any()
    table = histories.budget_table({"naive": naive})
    assert table.batches.tolist() == [18.0, 18.0] and table.epochs.tolist() == [3, 3]
    assert table.batches_to_selected.tolist() == [6.0 * naive.best_epoch] * 2


def test_distill_with_wider_teacher_uses_a_projection(domains):
    teachers = specialists(domains, TINY.replace(embedding_dim=12))
    res = run(domains, Distillation(TINY, "embedding_mse", teachers))
    assert res.model(torch.rand(2, 1, 16, 16)).shape == (2, 8)


def test_rescaled_teachers_scale_each_domains_distances_and_key_only_when_set(domains):
    from ue_lib.losses import squared_distances
    from ue_lib.universal.objectives import rescale_teacher, teacher_scales

    assert teacher_scales(["a", "b", "c"], 0.5) == {"a": 1.0, "b": 0.75, "c": 0.5}
    assert teacher_scales(["a"], 0.9) == {"a": 1.0}
    t = torch.tensor([[3.0, 4.0], [0.0, 2.0], [1.0, 0.0]])
    r = rescale_teacher(t, 0.25)
    assert torch.allclose(r.norm(dim=1), torch.ones(3))  # still unit vectors, one more dimension
    assert torch.allclose(squared_distances(r), 0.25 * squared_distances(torch.nn.functional.normalize(t)))
    assert torch.equal(rescale_teacher(t, 1.0)[:, 2], torch.zeros(3))
    teachers = specialists(domains)
    plain = Distillation(TINY, "kl", teachers)
    assert "teacher_rescale" not in plain.config()  # the students trained before it keep their key
    mixed = Distillation(TINY.replace(teacher_rescale=0.5), "distance_mse", teachers)
    assert mixed.config()["teacher_rescale"] == 0.5
    res = run(domains, mixed)
    assert np.isfinite(res.history.value).all()
    assert mixed.scales == {"a": 1.0, "b": 0.5}
    d_b = squared_distances(mixed.cache["b"][:5])
    assert torch.allclose(d_b, 0.5 * squared_distances(mixed.cache["b"][:5, :-1] / mixed.scales["b"] ** 0.5),
                          atol=1e-6)
    with pytest.raises(ValueError, match="teacher_rescale must be in"):
        TINY.replace(teacher_rescale=1.0).check()


class NaNTeacher(torch.nn.Module):
    embedding_dim = 8

    def forward(self, x):
        return torch.full((len(x), 8), float("nan"))


def test_nan_loss_stops_with_a_message(domains):
    teachers = {"a": NaNTeacher(), "b": NaNTeacher()}
    with pytest.raises(FloatingPointError, match=r"non-finite loss \(nan\) at epoch 1, batch 1 "
                                                 r"\(domain '(a|b)', loss kl\); lower the"):
        run(domains, Distillation(TINY, "kl", teachers))


def _weights(model):
    return torch.cat([p.detach().flatten() for p in model.state_dict().values()])


def test_resume_gives_exactly_the_uninterrupted_result(domains, tmp_path):
    prof = TINY.replace(epochs_naive=4, eval_every=1)
    full = run(domains, NaiveFusion(prof), out_dir=tmp_path / "full")

    class Stop(Exception):
        pass

    def interrupt(epoch, history):
        if epoch == 2:
            raise Stop

    with pytest.raises(Stop):
        run(domains, NaiveFusion(prof), out_dir=tmp_path / "cut", on_epoch_end=interrupt)
    assert torch.load(tmp_path / "cut" / CHECKPOINT, weights_only=False)["epoch"] == 2
    resumed = run(domains, NaiveFusion(prof), out_dir=tmp_path / "cut")
    pd.testing.assert_frame_equal(full.history, resumed.history)
    assert torch.equal(_weights(full.model), _weights(resumed.model))
    assert full.best_epoch == resumed.best_epoch
    assert (tmp_path / "cut" / FINAL).is_file() and (tmp_path / "cut" / HISTORY).is_file()
    assert not (tmp_path / "cut" / CHECKPOINT).exists()
    # a finished run is loaded, not retrained; other settings in the same folder are refused
    again = run(domains, NaiveFusion(prof), out_dir=tmp_path / "cut")
    assert again.loaded and again.seconds == resumed.seconds
    assert torch.equal(_weights(again.model), _weights(full.model))
    assert torch.equal(_weights(load_result(tmp_path / "cut").model), _weights(full.model))
    with pytest.raises(ValueError, match="other settings"):
        run(domains, NaiveFusion(prof.replace(epochs_naive=5)), out_dir=tmp_path / "cut")


def test_same_seed_same_numbers_different_seed_different(domains):
    a = run(domains, NaiveFusion(TINY)).history
    b = run(domains, NaiveFusion(TINY)).history
    c = run(domains, NaiveFusion(TINY), seed=1).history
    pd.testing.assert_frame_equal(a, b)
    assert not a.value.equals(c.value)


def test_dynamic_schedule_distills_and_resumes_exactly(domains, tmp_path):
    teachers = specialists(domains)
    prof = TINY.replace(domain_schedule="dynamic", epochs_distill=4)
    full = run(domains, Distillation(prof, "kl", teachers), out_dir=tmp_path / "full")

    def interrupt(epoch, history):
        if epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(domains, Distillation(prof, "kl", teachers), out_dir=tmp_path / "cut",
            on_epoch_end=interrupt)
    resumed = run(domains, Distillation(prof, "kl", teachers), out_dir=tmp_path / "cut")
    pd.testing.assert_frame_equal(full.history, resumed.history)
    # naive fusion has no teachers to lag behind: it keeps round robin (and its fingerprint)
    assert NaiveFusion(prof).domain_schedule == "round_robin"
    assert NaiveFusion(prof).config() == NaiveFusion(TINY).config()


def test_a_student_is_not_reused_with_other_teachers(domains, tmp_path):
    run(domains, Distillation(TINY, "kl", specialists(domains, seed=0)), out_dir=tmp_path)
    with pytest.raises(ValueError, match="other settings"):
        run(domains, Distillation(TINY, "kl", specialists(domains, seed=1)), out_dir=tmp_path)
