"""Profiles: validation, and which settings reach which model's fingerprint."""

import pytest

from ue_lib.profiles import PROFILES, load_profile


def test_every_profile_is_valid():
    for name in PROFILES:
        load_profile(name).check()


def test_unknown_and_ill_typed_overrides_are_named():
    with pytest.raises(ValueError, match="bogus"):
        load_profile("smoke", overrides={"bogus": 1})
    with pytest.raises((TypeError, ValueError), match="epochs_naive"):
        load_profile("smoke", overrides={"epochs_naive": "many"})


@pytest.mark.parametrize("change", [{"temperature": 0.5}, {"neighbors": 4},
                                    {"metric_weight": 0.3}, {"domain_schedule": "dynamic"}])
def test_distillation_settings_reach_only_the_students(change):
    """A sweep over a distillation knob reuses the specialists and the naive model: their
    settings (and so the folders they are kept in) do not name the knob."""
    base, changed = load_profile("mini"), load_profile("mini", overrides=change)
    for mode in ("specialist", "naive"):
        assert base.train_config(mode, 0).to_dict() == changed.train_config(mode, 0).to_dict()
    assert base.train_config("distill", 0).to_dict() != changed.train_config("distill", 0).to_dict()


@pytest.mark.parametrize("value", [0, "0", (0, 1), [2], "0,1", "(0, 1)"])
def test_seed_lists_take_what_the_command_line_gives(value):
    prof = load_profile("smoke", overrides={"seeds": value})
    expected = [value] if isinstance(value, int) else (
        list(value) if isinstance(value, (tuple, list))
        else [int(v) for v in value.strip("()").split(",")])
    assert prof.seed_list() == expected and isinstance(prof.seeds, str)
    assert prof.seed_list(offset=10) == [10 + s for s in expected]
    with pytest.raises(ValueError, match="seeds must be comma-separated integers"):
        load_profile("smoke", overrides={"seeds": "zero"})


def test_paper_profile_settings_reach_the_configs():
    prof = load_profile("paper")
    model, optim, cfg = prof.model_config(), prof.optim_config(), prof.train_config("naive")
    assert (model.backbone, model.pretrained, model.frozen_bn, model.in_channels) == \
        ("resnet50", "imagenet", True, 3)
    assert (optim.name, optim.lr_schedule) == ("adamw", "cosine")
    assert cfg.amp == "auto" and cfg.augment and prof.p % 8 == 0  # shards over 2, 4 or 8 GPUs
    assert prof.data_kwargs(0)["lazy"] and prof.data_kwargs(0)["image_size"] == 224
    local = load_profile("paper", overrides={"weights": "/models/resnet50.pth"})
    assert local.model_config().pretrained == "/models/resnet50.pth"
    with pytest.raises(ValueError, match="num_workers must be >= 0"):
        load_profile("paper", overrides={"num_workers": -1})
