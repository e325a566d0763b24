"""What a model is trained to do: the objective interface of the training loop.

The loop (:mod:`.loop`) knows nothing about specialists, distillation or any paper's method. It builds
the network from the settings, draws one-domain P×K batches, embeds them and asks the
*objective* for the loss. An objective owns:

* its extra modules (proxies, projections, heads, codebooks): it is an ``nn.Module``, so they
  are optimised and checkpointed with the network (frozen teachers are kept outside the module
  tree: never optimised, never saved with the student);
* its loss on a batch: :meth:`Objective.loss` gets a :class:`Batch` (domain, item indices,
  inputs, labels) and the network's embeddings;
* what the batch must carry beyond that: an objective that needs more (a teacher's embeddings,
  attributes, boxes) builds a table per domain in :meth:`Objective.prepare` and reads its rows
  by ``batch.index``;
* the embedding it is evaluated on: :meth:`Objective.embedder` (the network itself by default);
* what the trained model keeps of it: :meth:`Objective.kept` names a module (learned codebooks, say)
  whose state at the selected epoch is saved with the network (`TrainResult.kept`);
* the settings that define it: :meth:`Objective.config` goes into the model's fingerprint, so a
  model is reused exactly when its objective's settings (and data, network, optimiser) match.

Adding a new objective takes four steps:

1. subclass :class:`Objective`; set ``kind`` (its folder under ``models/``) and
   ``epochs_setting`` (the settings field giving its epochs);
2. build its modules in ``prepare(setup)`` (seeded from ``setup.seed``);
3. return a scalar in ``loss(batch, embeddings)``;
4. add its own settings to ``config()``; then train it with ``RunFolder.train(objective,
   domains, seed, name)`` or ``train(TrainJob(domains, objective, seed))``.

The objectives of each paper's system live in its folder (``ue_lib/<system>/objectives.py``);
``tests/core/test_objectives.py`` adds a toy objective in a few lines and trains it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from ..data import Domain
from ..losses import make_metric_loss
from ..settings import CoreSettings


@dataclass
class Batch:
    """One training batch, all from one domain."""

    domain: str
    index: torch.Tensor  # positions of the items in the domain's training split (CPU, long)
    inputs: torch.Tensor  # what the network sees: float images on the device
    labels: torch.Tensor  # class labels, contiguous over all domains, on the device


@dataclass
class Setup:
    """What the loop tells an objective before training (see :meth:`Objective.prepare`)."""

    domains: dict[str, Domain]
    embedding_dim: int
    num_classes: int  # over all domains (proxy losses need it)
    device: torch.device
    seed: int
    selection_metric: str
    # (model, domains, split) -> {domain: metrics}: rank 0 evaluates, every rank gets the numbers
    evaluate: Callable[[nn.Module, dict, str], dict]


class Objective(nn.Module):
    """Base class; see the module doc. Subclasses set ``kind`` and ``epochs_setting`` and
    implement :meth:`loss` (and usually :meth:`prepare` and :meth:`config`)."""

    kind: ClassVar[str] = "objective"
    epochs_setting: ClassVar[str] = "epochs_naive"
    eval_splits: ClassVar[tuple[str, ...]] = ("val",)  # evaluated every `eval_every` epochs
    # the `dynamic` domain schedule follows `schedule_weights` (a student's lag behind its
    # teachers); an objective that gives none trains `dynamic` as round robin
    follows_lag: ClassVar[bool] = False

    @property
    def needs_inputs(self) -> bool:
        """Whether `loss` reads ``batch.inputs`` (under torchrun every rank then gathers the
        whole batch's inputs, not just the embeddings, labels and indices)."""
        return False

    def __init__(self, profile: CoreSettings):
        super().__init__()
        self.profile = profile

    # ---- identity
    @property
    def epochs(self) -> int:
        return getattr(self.profile, self.epochs_setting)

    @property
    def domain_schedule(self) -> str:
        schedule = self.profile.domain_schedule
        return "round_robin" if schedule == "dynamic" and not self.follows_lag else schedule

    @property
    def folder(self) -> str:
        """Where its models are kept: ``models/<folder>/``."""
        return self.kind

    def describe(self) -> str:
        """Its loss, for messages."""
        return self.kind

    def config(self) -> dict:
        """The settings that define the trained model (part of its fingerprint)."""
        return {"kind": self.kind, "epochs": self.epochs, "domain_schedule": self.domain_schedule,
                "eval_splits": list(self.eval_splits)}

    def check(self, domains: dict[str, Domain]) -> None:
        """Refuse domains this objective cannot train on (raise ValueError)."""

    # ---- training
    def initialize(self, model: nn.Module) -> None:
        """Change the network's freshly seeded weights before training (start from another
        model's, say); by default it keeps them. A resumed training restores its checkpoint after."""

    def prepare(self, setup: Setup) -> None:
        """Build the modules and tables the loss needs (before the optimiser is made)."""

    def loss(self, batch: Batch, embeddings: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def schedule_weights(self, history: list[dict]) -> dict[str, float] | None:
        """Per-domain weights of the `dynamic` domain schedule after an evaluation (None: none)."""
        return None

    def embedder(self, model: nn.Module) -> nn.Module:
        """The network whose embeddings are evaluated (and kept as the trained model)."""
        return model

    def kept(self) -> nn.Module | None:
        """A module of this objective that the trained model keeps (its state at the selected
        epoch goes into `TrainResult.kept` and `model.pt`); None: nothing beyond the network."""
        return None


def seeded_metric_loss(profile: CoreSettings, setup: Setup, name: str | None = None) -> nn.Module:
    """The metric loss `name` (default: the profile's `metric_loss`), its parameters initialised from
    the training's seed."""
    name = name or profile.metric_loss
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(setup.seed)
        return make_metric_loss(name, num_classes=setup.num_classes,
                                embedding_dim=setup.embedding_dim, **profile.loss(name))


class MetricLearning(Objective):
    """A metric loss on the class labels (the profile's `metric_loss`, or a subclass's
    `loss_name`)."""

    @property
    def loss_name(self) -> str:
        return self.profile.metric_loss

    def describe(self) -> str:
        return self.loss_name

    def config(self) -> dict:
        return {**super().config(), "metric_loss": self.loss_name,
                "loss_params": self.profile.loss(self.loss_name)}

    def prepare(self, setup: Setup) -> None:
        self.metric = seeded_metric_loss(self.profile, setup, self.loss_name)

    def loss(self, batch: Batch, embeddings: torch.Tensor) -> torch.Tensor:
        return self.metric(embeddings, batch.labels)
