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
