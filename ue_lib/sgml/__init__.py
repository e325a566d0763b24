"""SGML's system: *Semantic Granularity Metric Learning* (Manandhar, Bastan & Yap, 2020;
notebook 07), *our reconstruction*: the paper's full text could not be obtained, so every choice
is a setting.

Items carry attributes and coarse groups (`ue_lib.data`); a specialist learns an *attribute head*
beside its embedding (`objectives.AttributeMultitask`) and a loss that grades pairs by how
similar their predicted attributes are, the soft-binomial deviance
(`ue_lib.losses.SoftBinomialDevianceLoss`, forms A "weights" and B "soft targets"). A ladder of
specialists (`settings.SGML_LADDER`: multi-similarity, binomial deviance, + attribute head,
SBD A, SBD B) is scored by Recall@K, coarse Recall@K and graded nDCG@K
(`ue_lib.evaluate.graded_metrics`); the graded specialists then teach the main paper's kl
student.

The role files, as in every system folder: `settings`, `objectives`, `models`, `experiments`,
`verdicts`, `figures`.
"""

from ..palette import OKABE_ITO, register_colors

# the colours of this system's models in every figure (`ue_lib.palette`)
COLORS = {
    "ms": OKABE_ITO["blue"],                # the project's specialists
    "bd": OKABE_ITO["grey"],                # the baseline of the ladder
    "bd+attr": OKABE_ITO["sky blue"],
    "sbd-a": OKABE_ITO["vermillion"],
    "sbd-b": OKABE_ITO["bluish green"],
    "kl ← specialists": OKABE_ITO["blue"],
    "kl ← sbd-a": OKABE_ITO["vermillion"],
    "kl ← sbd-b": OKABE_ITO["bluish green"],
    "kl ← bd+attr": OKABE_ITO["sky blue"],
    "kl ← bd": OKABE_ITO["grey"],
}
register_colors(COLORS)
