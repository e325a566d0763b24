"""The settings of the main paper's system: specialists, naive fusion, the distilled students,
their equal tuning, and the seeds and knobs of notebooks 04-05.

`distill_tuning` gives every distillation method the same small tuning budget: a grid over
settings of the student's training (`{"lr": [2e-3, 6e-4]}`), one student per point at the run's
base seed, the best by mean validation recall@1 kept for every seed (`ue_lib.universal.models
.tuning`). A profile's own value goes first in its grid: a tie keeps it, and that point's
student is the untuned one, reused.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from ..config import choice, positive
from ..settings import CoreSettings, setting

TUNABLE_GROUPS = ("optim", "train", "distill")  # what `distill_tuning` may vary


@dataclass
class UniversalSettings(CoreSettings):
    epochs_specialist: int = setting(10, "train")
    epochs_naive: int = setting(20, "train")
    epochs_distill: int = setting(10, "train")
    distill_methods: str = setting("kl,distance_mse,embedding_mse,rkd_distance,rkd_angle,darkrank",
                                   "universal", "the students notebook 03 trains")
    final_methods: str = setting("kl,distance_mse,embedding_mse", "universal",
                                 "the students notebook 04 repeats per seed")
    metric_weight: float = setting(0.0, "distill", "weight of the metric loss added to distillation")
    distill_tuning: dict = setting(dict, "distill", 'the same grid for every distillation method, on '
                                   'validation at the base seed: e.g. {"lr": [2e-3, 6e-4]}; {}: none')
    seeds: str | int | tuple | list = setting("0,1,2", "universal", 'notebook 04; "0,1,2", 0 or (0, 1)')
    ablation_grid: dict = setting(lambda: {"kl.temperature": [0.02, 0.05, 0.2]}, "universal",
                                  "notebook 05: one 1-D grid of the kl student per knob")
    ablation_seeds: str | int | tuple | list = setting("0", "universal")

    def check(self) -> None:
        super().check()
        from ..losses import DISTILLATION_LOSSES

        positive("Profile", epochs_specialist=self.epochs_specialist, epochs_naive=self.epochs_naive,
                 epochs_distill=self.epochs_distill)
        self.non_negative("metric_weight")
        for m in self.methods("distill_methods") + self.methods("final_methods"):
            choice("Profile", "distill_methods", m, DISTILLATION_LOSSES)
        self.canonical_seeds("seeds", "ablation_seeds")
        for knob in self.ablation_grid:
            self.setting_path(knob)
        self._check_tuning()

    def _check_tuning(self) -> None:
        """`distill_tuning`: settings a student is trained with (not the data, the network or a
        notebook's choices: the teachers and the validation splits stay the run's), each with a
        non-empty list of values this profile accepts. Canonical form: lists."""
        fix = '; e.g. -p distill_tuning "{\'lr\': [1e-3, 3e-4]}", or {} for no tuning'
        groups = self.groups()
        canonical = {}
        for key, values in self.distill_tuning.items():
            where = f"Profile.distill_tuning[{key!r}]"
            try:
                path = self.setting_path(key)
            except ValueError as exc:
                raise ValueError(f"{where}: {exc}{fix}") from None
            group = groups[path[0]]
            if group not in TUNABLE_GROUPS or key == "distill_tuning":
                raise ValueError(f"{where}: {key} is a {group!r} setting; tuning varies only how a "
                                 f"student is trained from the run's teachers (settings of the "
                                 f"groups {', '.join(TUNABLE_GROUPS)}, or LOSS.PARAM){fix}")
            if not isinstance(values, (list, tuple)) or not values:
                raise ValueError(f"{where} must be a non-empty list of values, got {values!r}{fix}")
            checked = []
            for value in values:
                try:  # the type and value checks of the setting itself
                    point = self.with_overrides({"distill_tuning": {}, key: value})
                except (TypeError, ValueError) as exc:
                    raise ValueError(f"{where}: {value!r} is not a valid {key} ({exc}){fix}") from None
                checked.append(point.setting(key))  # as the profile holds it: 1 -> 1.0
            canonical[key] = checked
        self.distill_tuning = canonical  # a new dict: the caller's is not changed

    def tuning_points(self) -> list[dict]:
        """The grid of `distill_tuning`, one dict of overrides per point, in grid order (the
        first key varies slowest); [{}] when there is no tuning (the profile itself)."""
        grid = self.distill_tuning
        return [dict(zip(grid, values)) for values in itertools.product(*grid.values())]


# What the named profiles (`ue_lib.profiles.NAMED`) change of these settings.
PROFILES: dict[str, dict] = {
    # 3 epochs of 4 batches per domain (the core's smoke settings) for every model; two knobs
    # keep CI fast; every knob works: `-p ablation_grid "{'kl.neighbors': [None, 4]}"`
    "smoke": dict(
        epochs_specialist=3, epochs_naive=3, epochs_distill=3, seeds="0,1",
        distill_tuning={"lr": [2e-3, 6e-4]},  # mini's shape: its own lr first (reused), one more
        ablation_grid={"kl.temperature": [0.05, 0.5], "domain_schedule": ["round_robin", "dynamic"]}),
    # Every model sees the same 10 batches of each domain per epoch for 30 epochs (equal
    # budgets). Every distillation method gets the same tuning on validation: the lr of its
    # student from {2e-3 (the profile's: that student is reused), 6e-4}, i.e. one more training
    # per method. `rkd_angle` is not among notebook 03's methods: at 37 s per training (three
    # times the others) its tuning does not fit the 10 minutes; `-p distill_methods
    # kl,distance_mse,embedding_mse,rkd_distance,rkd_angle,darkrank` brings it back (tuned too).
    "mini": dict(
        epochs_specialist=30, epochs_naive=30, epochs_distill=30,
        seeds="0,1,2", distill_methods="kl,distance_mse,embedding_mse,rkd_distance,darkrank",
        final_methods="kl,distance_mse", distill_tuning={"lr": [2e-3, 6e-4]},
        ablation_grid={"kl.temperature": [0.02, 0.05, 0.2]}),
    # One naive epoch from scratch is ~7 s of training plus ~5 s of evaluating val and test, so
    # curves are evaluated every 2nd epoch (core). Its methods are compared after the same
    # tuning as mini's (the default lr 1e-3 and 3e-4: one more student per method, roughly a
    # minute each, estimated from its naive epochs).
    "scratch": dict(
        epochs_specialist=8, epochs_naive=16, epochs_distill=8, seeds="0,1,2",
        final_methods="kl,distance_mse", distill_tuning={"lr": [1e-3, 3e-4]},
        ablation_grid={"kl.temperature": [0.02, 0.05, 0.2]}),
    # Each distillation method's student lr is tuned on validation over 3 points around 3e-5
    # (its own first: a tie keeps it), two more students per method.
    "paper": dict(
        epochs_specialist=30, epochs_naive=40, epochs_distill=30, final_methods="kl,distance_mse",
        seeds="0,1,2", distill_tuning={"lr": [3e-5, 1e-5, 1e-4]},
        ablation_grid={"kl.temperature": [0.02, 0.05, 0.2]}),
}
