"""The settings of SGML's system (notebook 07): the attribute head's weight, the ladder of
specialists (each rung: the settings its specialists train with), the teachers of its students,
the seeds and the Ks of its metrics."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import choice
from ..settings import CoreSettings, setting

# Notebook 07's ladder (SGML, Manandhar et al., 2020): each rung is the settings its specialists
# train with, named in plain words (the same name in every table, legend and sentence). The
# first rung is the project's specialists as they are (notebook 02's models, reused). The
# soft-binomial-deviance rungs are our reconstruction (`ue_lib.losses.SoftBinomialDevianceLoss`);
# gamma 0.25 places a negative pair whose attributes agree fully at beta + 0.25 = 0.75 (our
# choice, a parameter like every other).
MULTI_SIMILARITY, BINOMIAL_DEVIANCE, ATTRIBUTE_HEAD = ("multi-similarity", "binomial deviance",
                                                       "+ attribute head")
PAIR_WEIGHTS, SOFT_TARGETS = "soft BD: pair weights", "soft BD: soft targets"
SGML_LADDER = {
    MULTI_SIMILARITY: {},
    BINOMIAL_DEVIANCE: {"metric_loss": "binomial_deviance"},
    ATTRIBUTE_HEAD: {"metric_loss": "binomial_deviance", "attribute_weight": 1.0},
    PAIR_WEIGHTS: {"metric_loss": "soft_binomial_deviance", "attribute_weight": 1.0,
                   "soft_binomial_deviance.form": "weights", "soft_binomial_deviance.weight": 1.0},
    SOFT_TARGETS: {"metric_loss": "soft_binomial_deviance", "attribute_weight": 1.0,
                   "soft_binomial_deviance.form": "targets", "soft_binomial_deviance.gamma": 0.25},
}


@dataclass
class SGMLSettings(CoreSettings):
    attribute_weight: float = setting(0.0, "train", "weight of the attribute head's BCE (0: no "
                                      "attribute head; notebook 07's ladder sets it per rung)")
    sgml_ladder: dict = setting(lambda: dict(SGML_LADDER), "sgml",
                                "notebook 07: rung name -> the settings of its specialists")
    sgml_seeds: str | int | tuple | list = setting("0,1,2", "sgml")
    sgml_teachers: str = setting(f"{BINOMIAL_DEVIANCE},auto", "sgml",
                                 "rungs whose specialists teach a kl student in notebook 07 "
                                 "(domains without attributes keep their specialist); "
                                 "auto: the graded rung with the best validation nDCG")
    sgml_ks: str = setting("1,5,10", "sgml", "K of Recall@K, coarse Recall@K and nDCG@K")

    def check(self) -> None:
        super().check()
        self.non_negative("attribute_weight")
        self.canonical_seeds("sgml_seeds")
        self._check_sgml()

    def _check_sgml(self) -> None:
        """Notebook 07's settings: every rung's settings are valid settings, the teacher is a
        rung, and the Ks are positive integers."""
        if not self.sgml_ladder:
            raise ValueError("Profile.sgml_ladder is empty; e.g. {\"ms\": {}, \"bd\": "
                             "{\"metric_loss\": \"binomial_deviance\"}}")
        for rung, settings in self.sgml_ladder.items():
            if not isinstance(settings, dict):
                raise ValueError(f"Profile.sgml_ladder[{rung!r}] must be a dict of settings, "
                                 f"got {settings!r}")
            for knob in settings:
                self.setting_path(knob)
        for rung in self.methods("sgml_teachers"):
            choice("Profile", "sgml_teachers", rung, [*self.sgml_ladder, "auto"])
        self.sgml_k_list()

    def sgml_k_list(self) -> list[int]:
        """`sgml_ks` as a list of positive integers."""
        return self.k_list("sgml_ks")


# What the named profiles (`ue_lib.profiles.NAMED`) change of these settings.
PROFILES: dict[str, dict] = {
    "smoke": dict(sgml_seeds="0,1"),  # the whole ladder, two seeds
}
