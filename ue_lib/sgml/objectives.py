"""SGML's objective (`ue_lib.training.objective` has the interface): the attribute-multitask
specialist."""

from __future__ import annotations

import hashlib

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data import Domain
from ..training import Batch, Setup
from ..universal.objectives import Specialist
from .settings import SGMLSettings


class AttributeMultitask(Specialist):
    """SGML's multitask specialist (Manandhar et al., 2020): the embedding head and an *attribute
    head* trained together on one domain. Loss: the metric loss (the profile's `metric_loss`)
    plus ``attribute_weight`` × the binary cross-entropy of the attribute head against the
    domain's ground-truth attributes (`ue_lib.data.Split.attributes`, training images only;
    attributes are never an input at test time). A loss that grades pairs by their attributes
    (``takes_attributes``, e.g. ``soft_binomial_deviance``) also gets the predicted attribute
    probabilities a_i = sigmoid(logits_i); with ``binomial_deviance`` the head is trained but
    unlinked (the ladder's "BD + attribute head" rung).

    *Our reconstruction* (the paper's full text could not be obtained): the attribute head is
    one linear layer on the network's (unnormalised) embedding, so that on a frozen trunk the
    two tasks share the trainable head (a head on the frozen trunk's features would share
    nothing). It is part of the objective, not of the trained model, which embeds as any
    specialist does."""

    kind = "sgml"
    _attributes_digest: str | None = None  # of the training attributes, set by check()

    def config(self) -> dict:
        return {**super().config(), "attribute_weight": self.profile.attribute_weight,
                "attributes": self._attributes_digest}

    def check(self, domains: dict[str, Domain]) -> None:
        super().check(domains)
        (name, d), = domains.items()
        if d.train.attributes is None:
            raise ValueError(f"domain {name!r} has no attributes; the attribute-multitask "
                             f"objective trains on attribute-bearing domains only "
                             f"(ue_lib.data: Domain.attribute_names)")
        if self.profile.attribute_weight <= 0:
            raise ValueError(f"attribute_weight must be > 0 for the attribute head, got "
                             f"{self.profile.attribute_weight}; without the head train a Specialist")
        h = hashlib.sha256(np.ascontiguousarray(d.train.attributes, np.float32).tobytes())
        self._attributes_digest = h.hexdigest()[:16]

    def prepare(self, setup: Setup) -> None:
        super().prepare(setup)
        (d,) = setup.domains.values()
        self.attributes = torch.from_numpy(np.asarray(d.train.attributes, np.float32)).to(setup.device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(setup.seed)
            self.attribute_head = nn.Linear(setup.embedding_dim, self.attributes.shape[1]).to(setup.device)

    def loss(self, batch: Batch, embeddings: torch.Tensor) -> torch.Tensor:
        logits = self.attribute_head(embeddings)
        truth = self.attributes[batch.index.to(self.attributes.device)]
        bce = F.binary_cross_entropy_with_logits(logits, truth)
        if getattr(self.metric, "takes_attributes", False):
            metric = self.metric(embeddings, batch.labels, torch.sigmoid(logits))
        else:
            metric = self.metric(embeddings, batch.labels)
        return metric + self.profile.attribute_weight * bce


def specialist_objective(profile: SGMLSettings) -> Specialist:
    """A domain's specialist under `profile`: with an attribute head when ``attribute_weight``
    is set (:class:`AttributeMultitask`), else a plain :class:`Specialist`."""
    return AttributeMultitask(profile) if profile.attribute_weight > 0 else Specialist(profile)
