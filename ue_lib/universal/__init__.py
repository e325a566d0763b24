"""The main paper's system: *Unifying Specialist Image Embedding into Universal Image Embedding*
(Feng et al., 2020; notebooks 01-05).

Specialists (one model per domain), naive fusion (one model on all domains) and the universal
student distilled from the frozen specialists, with every distillation loss of `ue_lib.losses`
tuned alike. The role files, as in every system folder: `settings` (its part of a profile),
`objectives` (what its models train to do), `models` (its models in a run folder), `experiments`
(what its notebooks run), `verdicts` (its claims, decided by `ue_lib.verdicts`' rules) and
`figures`; here also `histories` (what training curves and budgets say and which models are
flagged), `examples` (the worked examples of notebooks 01 and 03), `neighbours` (how much of a
teacher's order and nearest neighbours a student keeps), `temperature` (what the softmax
over distances does at each τ) and `explorer` (one query's neighbours per model, by hand).
"""

from ..palette import OKABE_ITO, register_colors

# the colours of this system's models in every figure (`ue_lib.palette`)
COLORS = {
    "specialist": OKABE_ITO["blue"],
    "teacher": OKABE_ITO["blue"],                 # the teachers are the specialists
    "naive": OKABE_ITO["grey"],                   # the baseline
    "distill:kl": OKABE_ITO["vermillion"],        # the paper's student
    "distill:distance_mse": OKABE_ITO["bluish green"],
    "distill:embedding_mse": OKABE_ITO["reddish purple"],
    "distill:rkd_distance": OKABE_ITO["orange"],
    "distill:rkd_angle": OKABE_ITO["sky blue"],
    "distill:darkrank": OKABE_ITO["black"],
    "kl compressed": OKABE_ITO["reddish purple"],  # the kl student in a compressed index (`explorer`)
}
register_colors(COLORS)
