"""SGML's system: *Semantic Granularity Metric Learning* (Manandhar, Bastan & Yap, 2020;
notebook 07), *our reconstruction*: the paper's full text could not be obtained, so every choice
is a setting.

Items carry attributes and coarse groups (`ue_lib.data`); a specialist learns an *attribute head*
beside its embedding (`objectives.AttributeMultitask`) and a loss that grades pairs by how
similar their predicted attributes are, the soft-binomial deviance
(`ue_lib.losses.SoftBinomialDevianceLoss`, forms A "weights" and B "soft targets"). A ladder of
specialists (`settings.SGML_LADDER`: multi-similarity, binomial deviance, + attribute head,
soft BD: pair weights, soft BD: soft targets) is scored by Recall@K, coarse Recall@K and graded nDCG@K
(`ue_lib.evaluate.graded_metrics`); the graded specialists then teach the main paper's kl
student.

The role files, as in every system folder: `settings`, `objectives`, `models`, `experiments`,
`verdicts`, `figures`.
"""

from ..palette import OKABE_ITO, register_colors
from .settings import ATTRIBUTE_HEAD, BINOMIAL_DEVIANCE, MULTI_SIMILARITY, PAIR_WEIGHTS, SOFT_TARGETS

# the colours of this system's models in every figure (`ue_lib.palette`): a rung and the kl
# student it teaches share one
_RUNG_COLORS = {
    MULTI_SIMILARITY: OKABE_ITO["blue"],  # the project's specialists
    BINOMIAL_DEVIANCE: OKABE_ITO["grey"],  # the baseline of the ladder
    ATTRIBUTE_HEAD: OKABE_ITO["sky blue"],
    PAIR_WEIGHTS: OKABE_ITO["vermillion"],
    SOFT_TARGETS: OKABE_ITO["bluish green"],
}
COLORS = {**_RUNG_COLORS, "kl ← specialists": OKABE_ITO["blue"],
          **{f"kl ← {rung}": color for rung, color in _RUNG_COLORS.items() if rung != MULTI_SIMILARITY}}
register_colors(COLORS)
