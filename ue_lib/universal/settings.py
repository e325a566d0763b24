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
BASELINE_GROUPS = ("optim",)  # what of it also tunes the specialists and naive fusion
BEST = "best"  # in final_methods: the validation-best other method of notebook 03


# When does distribution distillation help? Each factor varies the students alone (the teachers
# and data stay the run's), one level being the run's own students ({}): the capacity of the
# student, how heterogeneous the teachers' distance scales are (`teacher_rescale`, our
# construction) and the temperature of kl. Every competitor is trained at every level.
KL_CONDITIONS = {
    "student capacity": {"as profiled": {}, "linear head": {"head_hidden": 0},
                         "16-d embedding": {"embedding_dim": 16}},
    "teacher heterogeneity": {"none": {}, "0.5": {"teacher_rescale": 0.5},
                              "0.9": {"teacher_rescale": 0.9}},
    "kl temperature": {"0.02": {"kl.temperature": 0.02}, "as profiled": {},
                       "0.2": {"kl.temperature": 0.2}},
}
CONDITION_GROUPS = ("model", "distill", "optim")  # what a condition may change of a student


@dataclass
class UniversalSettings(CoreSettings):
    epochs_specialist: int = setting(10, "train")
    epochs_naive: int = setting(20, "train")
    epochs_distill: int = setting(10, "train")
    distill_methods: str = setting("kl,distance_mse,embedding_mse,rkd_distance,rkd_angle,darkrank",
                                   "universal", "the students notebook 03 trains")
    final_methods: str = setting("kl,distance_mse,embedding_mse", "universal",
                                 'the students notebook 04 repeats per seed; "best": the other '
                                 "method of distill_methods with the best tuned validation score")
    metric_weight: float = setting(0.0, "distill", "weight of the metric loss added to distillation")
    teacher_rescale: float = setting(0.0, "distill", "our construction of heterogeneous teachers for "
                                     "notebook 05: h in [0, 1) scales the k-th domain's teacher "
                                     "distances by 1 - h k / (D - 1); 0: the teachers as trained")
    distill_tuning: dict = setting(dict, "distill", 'the same grid for every distillation method, on '
                                   'validation at the base seed: e.g. {"lr": [2e-3, 6e-4]}; {}: none')
    tune_baselines: bool = setting(True, "universal", "the specialists and naive fusion get the "
                                   "students' tuning budget: the optimiser settings of "
                                   "distill_tuning, chosen on validation")
    seeds: str | int | tuple | list = setting("0,1,2", "universal", 'notebook 04; "0,1,2", 0 or (0, 1)')
    ablation_grid: dict = setting(lambda: {"kl.temperature": [0.02, 0.05, 0.2]}, "universal",
                                  "notebook 05: one 1-D grid of the kl student per knob")
    ablation_seeds: str | int | tuple | list = setting("0", "universal")
    kl_conditions: dict = setting(lambda: dict(KL_CONDITIONS), "universal",
                                  "notebook 05's controlled experiment: {factor: {level: settings "
                                  "of the students}}, {} being the run's own students")
    kl_competitors: str = setting("distance_mse,best", "universal",
                                  "what kl is compared with under kl_conditions (best: as in "
                                  "final_methods)")

    def check(self) -> None:
        super().check()
        from ..losses import DISTILLATION_LOSSES

        positive("Profile", epochs_specialist=self.epochs_specialist, epochs_naive=self.epochs_naive,
                 epochs_distill=self.epochs_distill)
        self.non_negative("metric_weight")
        if not 0 <= self.teacher_rescale < 1:
            raise ValueError(f"Profile.teacher_rescale must be in [0, 1), got {self.teacher_rescale}; "
                             f"e.g. -p teacher_rescale 0.5")
        for m in self.methods("distill_methods"):
            choice("Profile", "distill_methods", m, DISTILLATION_LOSSES)
        for which in ("final_methods", "kl_competitors"):
            for m in self.methods(which):
                choice("Profile", which, m, (*DISTILLATION_LOSSES, BEST))
        self._check_conditions()
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

    def _check_conditions(self) -> None:
        """`kl_conditions`: {factor: {level: overrides}}, each override a setting of a student
        (its network, its distillation or its optimiser: not the data or the teachers) with a
        value this profile accepts."""
        fix = ("; e.g. -p kl_conditions \"{'student capacity': {'as profiled': {}, "
               "'linear head': {'head_hidden': 0}}}\"")
        if not isinstance(self.kl_conditions, dict):
            raise ValueError(f"Profile.kl_conditions must be a dict of factors{fix}")
        groups = self.groups()
        for factor, levels in self.kl_conditions.items():
            if not isinstance(levels, dict) or not all(isinstance(v, dict) for v in levels.values()):
                raise ValueError(f"Profile.kl_conditions[{factor!r}] must map level names to "
                                 f"settings{fix}")
            for level, overrides in levels.items():
                where = f"Profile.kl_conditions[{factor!r}][{level!r}]"
                for key in overrides:
                    path = self.setting_path(key)
                    if path[0] != "loss_params" and groups[path[0]] not in CONDITION_GROUPS:
                        allowed = ", ".join(CONDITION_GROUPS)
                        raise ValueError(f"{where}: {key} is a {groups[path[0]]!r} setting; a "
                                         f"condition changes only the students ({allowed} "
                                         f"settings, or LOSS.PARAM){fix}")
                try:
                    self.with_overrides({"kl_conditions": {}, **overrides})
                except (TypeError, ValueError) as exc:
                    raise ValueError(f"{where}: {exc}") from None

    def tuning_points(self) -> list[dict]:
        """The grid of `distill_tuning`, one dict of overrides per point, in grid order (the
        first key varies slowest); [{}] when there is no tuning (the profile itself)."""
        return _points(self.distill_tuning)

    def baseline_points(self) -> list[dict]:
        """The grid the specialists and naive fusion are tuned over (`tune_baselines`): the
        settings of `distill_tuning` in `BASELINE_GROUPS` (the optimiser's; a distillation
        loss's parameter or `metric_weight` means nothing to a model trained on labels), in
        grid order; [{}] without `tune_baselines` or without such a setting."""
        groups = self.groups()
        grid = {k: v for k, v in self.distill_tuning.items()
                if self.tune_baselines and groups[self.setting_path(k)[0]] in BASELINE_GROUPS}
        return _points(grid)


def _points(grid: dict) -> list[dict]:
    return [dict(zip(grid, values)) for values in itertools.product(*grid.values())]


# What the named profiles (`ue_lib.profiles.NAMED`) change of these settings.
PROFILES: dict[str, dict] = {
    # 3 epochs of 4 batches per domain (the core's smoke settings) for every model; two knobs
    # keep CI fast; every knob works: `-p ablation_grid "{'kl.neighbors': [None, 4]}"`
    "smoke": dict(
        epochs_specialist=3, epochs_naive=3, epochs_distill=3, seeds="0,1",
        final_methods="kl,distance_mse,best",
        distill_tuning={"lr": [2e-3, 6e-4]},  # mini's shape: its own lr first (reused), one more
        ablation_grid={"kl.temperature": [0.05, 0.5], "domain_schedule": ["round_robin", "dynamic"]},
        kl_conditions={"student capacity": {"as profiled": {}, "linear head": {"head_hidden": 0}},
                       "teacher heterogeneity": {"none": {}, "0.9": {"teacher_rescale": 0.9}}}),
    # Every model sees the same 10 batches of each domain per epoch for 30 epochs (equal
    # budgets). Every model gets the same tuning on validation: the lr from {2e-3 (the
    # profile's: that model is reused), 6e-4}, i.e. one more training per distillation method,
    # specialist and naive fusion (`tune_baselines`). `rkd_angle` is not among notebook 03's
    # methods: at 37 s per training (three times the others) its tuning does not fit;
    # `-p distill_methods kl,distance_mse,embedding_mse,rkd_distance,rkd_angle,darkrank` brings
    # it back (tuned too). Notebook 04 repeats kl, distance_mse and the validation-best other
    # loss; notebook 05's temperature study is part of its controlled experiment
    # (`kl_conditions`), so its one-knob ablation looks at the neighbour set instead.
    "mini": dict(
        epochs_specialist=30, epochs_naive=30, epochs_distill=30,
        seeds="0,1,2", distill_methods="kl,distance_mse,embedding_mse,rkd_distance,darkrank",
        final_methods="kl,distance_mse,best", distill_tuning={"lr": [2e-3, 6e-4]},
        ablation_grid={"kl.neighbors": [None, 8]}),
    # One naive epoch from scratch is ~7 s of training plus ~5 s of evaluating val and test, so
    # curves are evaluated every 2nd epoch (core). Its methods are compared after the same
    # tuning as mini's (the default lr 1e-3 and 3e-4: one more student per method, roughly a
    # minute each, estimated from its naive epochs).
    "scratch": dict(
        epochs_specialist=8, epochs_naive=16, epochs_distill=8, seeds="0,1,2",
        final_methods="kl,distance_mse,best", distill_tuning={"lr": [1e-3, 3e-4]},
        ablation_grid={"kl.temperature": [0.02, 0.05, 0.2]}),
    # Each distillation method's student lr is tuned on validation over 3 points around 3e-5
    # (its own first: a tie keeps it), two more students per method.
    "paper": dict(
        epochs_specialist=30, epochs_naive=40, epochs_distill=30, final_methods="kl,distance_mse,best",
        seeds="0,1,2", distill_tuning={"lr": [3e-5, 1e-5, 1e-4]},
        ablation_grid={"kl.temperature": [0.02, 0.05, 0.2]}),
}
