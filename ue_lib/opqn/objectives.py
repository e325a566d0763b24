"""OPQN's objective (`ue_lib.training.objective` has the interface): a network trained end to end
with its product quantizer, which the trained model keeps."""

from __future__ import annotations

import torch
from torch import nn

from ..training import MetricLearning
from .loss import OrthonormalQuantizer


class OPQN(MetricLearning):
    """A network trained end to end with its product quantizer: OPQN's margin loss on the raw
    and the soft-quantised subvectors plus the entropy of the assignments (`ue_lib.opqn.loss`,
    loss ``"opqn"``, settings ``-p opqn.NAME``). Trains on one domain or several; the trained
    model keeps its quantizer (`TrainResult.kept`, rebuilt by `quantizer_of`).
    Its validation and test rows (`TrainResult.final`, the history) score its codes, item against
    item; notebook 06 scores the float embedding and the asymmetric search itself."""

    kind = "opqn"
    epochs_setting = "epochs_quantize"

    @property
    def loss_name(self) -> str:
        return "opqn"

    def config(self) -> dict:
        return {**super().config(), "scored_on": "codes"}  # what selects its epoch (embedder)

    def kept(self) -> nn.Module:
        return self.metric.quantizer

    def embedder(self, model: nn.Module) -> nn.Module:
        """Scored on its codes while it trains (`CodesEmbedder`): the epoch kept is the one whose
        codes retrieve best on validation."""
        return CodesEmbedder(model, self.metric.quantizer)


class CodesEmbedder(nn.Module):
    """A network followed by its quantizer's hard codes (:meth:`OrthonormalQuantizer.hard_quantize`):
    how an OPQN model is scored while it trains, so that its epoch is selected on the retrieval
    of its *codes* (item against item, both quantised), not of its float embedding, which on
    pretrained features peaks before the quantizer has learned. Our choice (the authors' code
    keeps the lowest training loss)."""

    def __init__(self, model: nn.Module, quantizer: OrthonormalQuantizer):
        super().__init__()
        self.model, self.quantizer = model, quantizer
        self.takes_features = getattr(model, "takes_features", False)
        self.embedding_dim = quantizer.dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.quantizer.hard_quantize(self.model(x))


def quantizer_of(result) -> OrthonormalQuantizer:
    """The quantizer a trained OPQN model keeps (a `ue_lib.training.TrainResult` of the
    `OPQN` objective), at its selected epoch, in eval mode."""
    objective = result.config["objective"]
    if objective.get("kind") != "opqn" or result.kept is None:
        raise ValueError(f"not an OPQN model (objective {objective.get('kind')!r}): only models "
                         f"trained with ue_lib.opqn.objectives.OPQN keep a quantizer")
    params = objective["loss_params"]
    quantizer = OrthonormalQuantizer(result.config["model"]["embedding_dim"], params["subspaces"],
                                     params["codewords"], params["codebook"],
                                     params["normalize_input"])
    quantizer.load_state_dict(result.kept)
    return quantizer.eval()
