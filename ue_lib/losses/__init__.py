"""Every loss of the project, in one place: distillation losses (`distillation`), metric losses
(`metric`), the binomial-deviance family (`deviance`), the shared helpers (`common`) and the one
registry by name (`registry`).

Distillation losses, ``loss(student, teacher)``, transfer the geometry of specialist embeddings
(teachers) to a universal student; the paper's loss is :class:`DistributionDistillationLoss`,
the others are the baselines it compares with. Metric losses, ``loss(embeddings, labels)``,
train the specialists and the naive universal model. Embeddings are L2-normalised inside every
loss; NaN detection is left to the training loop.
"""

from .common import squared_distances
from .deviance import SBD_FORMS, BinomialDevianceLoss, SoftBinomialDevianceLoss
from .distillation import (
    DarkRankLoss,
    DistanceDistillationLoss,
    DistributionDistillationLoss,
    EmbeddingDistillationLoss,
    RKDAngleLoss,
    RKDDistanceLoss,
)
from .metric import MultiSimilarityLoss, ProxyAnchorLoss, TripletLoss
from .registry import (
    DISTILLATION_LOSSES,
    METRIC_LOSSES,
    SUPPLIED,
    check_loss_params,
    loss_defaults,
    make_distillation_loss,
    make_metric_loss,
    needs_negatives,
    register_metric_loss,
)

__all__ = [
    "DISTILLATION_LOSSES",
    "METRIC_LOSSES",
    "SBD_FORMS",
    "SUPPLIED",
    "BinomialDevianceLoss",
    "DarkRankLoss",
    "DistanceDistillationLoss",
    "DistributionDistillationLoss",
    "EmbeddingDistillationLoss",
    "MultiSimilarityLoss",
    "ProxyAnchorLoss",
    "RKDAngleLoss",
    "RKDDistanceLoss",
    "SoftBinomialDevianceLoss",
    "TripletLoss",
    "check_loss_params",
    "needs_negatives",
    "loss_defaults",
    "make_distillation_loss",
    "make_metric_loss",
    "register_metric_loss",
    "squared_distances",
]
