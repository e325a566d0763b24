"""Profiles: validation, and which settings reach which model's fingerprint."""

import pytest

from ue_lib.config import ModelSettings
from ue_lib.profiles import NAMED, load_profile


def test_every_profile_is_valid():
    for name in NAMED:
        load_profile(name).check()


def test_unknown_and_ill_typed_overrides_are_named():
    with pytest.raises(ValueError, match="bogus"):
        load_profile("smoke", overrides={"bogus": 1})
    with pytest.raises((TypeError, ValueError), match="epochs_naive"):
        load_profile("smoke", overrides={"epochs_naive": "many"})


def test_loss_parameters_are_keyed_by_loss_and_default_to_the_losses_own():
    prof = load_profile("smoke", overrides={"kl.temperature": 0.1})
    assert prof.loss("kl") == {"temperature": 0.1, "neighbors": None, "direction": "teacher_student"}
    assert prof.loss("multi_similarity") == {"alpha": 2.0, "beta": 50.0, "base": 0.5, "margin": 0.1}
    with pytest.raises(ValueError, match="loss 'kl' takes temperature, neighbors, direction"):
        load_profile("smoke", overrides={"kl.tau": 0.1})
    with pytest.raises(ValueError, match="temperature must be a finite float > 0"):
        load_profile("smoke", overrides={"kl.temperature": -1})
    with pytest.raises(ValueError, match="unknown parameter.* nope.x"):
        load_profile("smoke", overrides={"nope.x": 1})


@pytest.mark.parametrize("value", [0, "0", (0, 1), [2], "0,1", "(0, 1)"])
def test_seed_lists_take_what_the_command_line_gives(value):
    prof = load_profile("smoke", overrides={"seeds": value})
    expected = [value] if isinstance(value, int) else (
        list(value) if isinstance(value, (tuple, list))
        else [int(v) for v in value.strip("()").split(",")])
    assert prof.seed_list("seeds") == expected and isinstance(prof.seeds, str)
    assert prof.seed_list("seeds", offset=10) == [10 + s for s in expected]
    with pytest.raises(ValueError, match="seeds must be comma-separated integers"):
        load_profile("smoke", overrides={"seeds": "zero"})


def test_paper_profile_settings_reach_the_model():
    prof = load_profile("paper")
    model = ModelSettings.part_of(prof)
    assert (model.backbone, model.weights, model.frozen_bn, model.channels) == \
        ("resnet50", "imagenet", True, 3)
    assert (prof.optimizer, prof.lr_schedule) == ("adamw", "cosine")
    assert prof.amp == "auto" and prof.augment and prof.p % 8 == 0  # shards over 2, 4 or 8 GPUs
    assert prof.data_kwargs(0)["lazy"] and prof.data_kwargs(0)["image_size"] == 224
    local = load_profile("paper", overrides={"weights": "/models/resnet50.pth"})
    assert ModelSettings.part_of(local).weights == "/models/resnet50.pth"
    with pytest.raises(ValueError, match="num_workers must be >= 0"):
        load_profile("paper", overrides={"num_workers": -1})


def test_a_profile_is_composed_of_the_systems_settings_groups():
    import dataclasses

    from ue_lib.objects.settings import ObjectsSettings
    from ue_lib.opqn.settings import OPQNSettings
    from ue_lib.profiles import CORE, SYSTEM_PROFILES, Profile
    from ue_lib.settings import CoreSettings
    from ue_lib.sgml.settings import SGMLSettings
    from ue_lib.universal.settings import UniversalSettings

    groups = [UniversalSettings, OPQNSettings, SGMLSettings, ObjectsSettings]
    core = {f.name for f in dataclasses.fields(CoreSettings)}
    own = [{f.name for f in dataclasses.fields(g)} - core for g in groups]
    names = [f.name for f in dataclasses.fields(Profile)]
    assert set(names) == core.union(*own) and len(names) == len(set(names))
    assert names[:len(core)] == [f.name for f in dataclasses.fields(CoreSettings)]  # the core first
    assert all(own) and not any(a & b for i, a in enumerate(own) for b in own[i + 1:])
    for part, fields in zip(SYSTEM_PROFILES, own):  # a system's named profiles set its own settings
        assert all(set(changes) <= fields for changes in part.values())
    assert all(set(changes) <= core for changes in CORE.values())
    # a group is a whole settings object of its own, checked like a profile
    assert OPQNSettings(quantize_dim=64, quantize_codes="4x8").code_shapes() == [(4, 8)]
    with pytest.raises(ValueError, match="quantize_codes"):
        OPQNSettings(quantize_dim=64, quantize_codes="5x8")
    assert Profile().group("optim") == CoreSettings().group("optim")
