"""What a model is trained to do: the pluggable objectives of the training loop.

The loop (`ue_lib.train`) knows nothing about specialists, naive fusion or distillation. It
builds the network from the profile, draws one-domain P×K batches, embeds them and asks the
*objective* for the loss. An objective owns:

* its extra modules (proxies, projections, heads, codebooks): it is an ``nn.Module``, so they
  are optimised and checkpointed with the network (teachers are kept outside the module tree:
  frozen, never optimised, never saved with the student);
* its loss on a batch: :meth:`Objective.loss` gets a :class:`Batch` (domain, item indices,
  inputs, labels) and the network's embeddings;
* what the batch must carry beyond that: an objective that needs more (a teacher's embeddings,
  attributes, boxes) builds a table per domain in :meth:`Objective.prepare` and reads its rows
  by ``batch.index``, as :class:`Distillation` does with the teachers' embeddings;
* the embedding it is evaluated on: :meth:`Objective.embedder` (the network itself by default);
* what the trained model keeps of it: :meth:`Objective.kept` names a module (e.g. OPQN's
  quantizer) whose state at the selected epoch is saved with the network (`TrainResult.kept`);
* the settings that define it: :meth:`Objective.config` goes into the model's fingerprint, so a
  model is reused exactly when its objective's settings (and data, network, optimiser) match.

Adding a new objective takes four steps:

1. subclass :class:`Objective`; set ``kind`` (its folder under ``models/``) and
   ``epochs_setting`` (the profile field giving its epochs);
2. build its modules in ``prepare(setup)`` (seeded from ``setup.seed``);
3. return a scalar in ``loss(batch, embeddings)``;
4. add its own settings to ``config()``; then train it with ``RunFolder.train(objective,
   domains, seed)`` or ``train(TrainJob(domains, objective, profile, seed))``.

``tests/test_objectives.py`` adds a toy objective in a few lines and trains it through the loop.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .data import Domain
from .device import autocast, memory_format
from .evaluate import embed, model_inputs
from .losses import make_distillation_loss, make_metric_loss
from .profiles import Profile
from .samplers import lag_weights


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

    def __init__(self, profile: Profile):
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


def _seeded_metric_loss(profile: Profile, setup: Setup, name: str | None = None) -> nn.Module:
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
        self.metric = _seeded_metric_loss(self.profile, setup, self.loss_name)

    def loss(self, batch: Batch, embeddings: torch.Tensor) -> torch.Tensor:
        return self.metric(embeddings, batch.labels)


class Specialist(MetricLearning):
    """One domain's own model (the teachers of distillation)."""

    kind = "specialist"
    epochs_setting = "epochs_specialist"

    @property
    def domain_schedule(self) -> str:  # one domain: every schedule is the same; keep one name
        return "round_robin"

    def check(self, domains: dict[str, Domain]) -> None:
        if len(domains) != 1:
            raise ValueError(f"a specialist trains on exactly one domain, got {list(domains)}")


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


def specialist_objective(profile: Profile) -> Specialist:
    """A domain's specialist under `profile`: with an attribute head when ``attribute_weight``
    is set (:class:`AttributeMultitask`), else a plain :class:`Specialist`."""
    return AttributeMultitask(profile) if profile.attribute_weight > 0 else Specialist(profile)


class NaiveFusion(MetricLearning):
    """One model on the union of all domains. Its test curves are kept too (notebook 01
    measures what one shared stopping point costs each domain)."""

    kind = "naive"
    epochs_setting = "epochs_naive"
    eval_splits = ("val", "test")


def weights_digest(model: nn.Module) -> str:
    """Hash of a model's weights (identifies a teacher in its students' fingerprints)."""
    h = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


class Distillation(Objective):
    """A universal student matching, domain by domain, that domain's frozen specialist with the
    distillation loss `method` (plus `metric_weight` × the metric loss on the labels)."""

    kind = "distill"
    epochs_setting = "epochs_distill"
    follows_lag = True

    def __init__(self, profile: Profile, method: str, teachers: dict[str, nn.Module]):
        super().__init__(profile)
        self.method, self.teachers = method, dict(teachers)  # a dict: not submodules
        self._digests: dict[str, str] | None = None

    @property
    def folder(self) -> str:
        return f"distill-{self.method}"

    def describe(self) -> str:
        w = self.profile.metric_weight
        return self.method + (f" + {w} x {self.profile.metric_loss}" if w > 0 else "")

    def config(self) -> dict:
        if self._digests is None:
            self._digests = {n: weights_digest(t) for n, t in self.teachers.items()}
        extra = {"method": self.method, "loss_params": self.profile.loss(self.method),
                 "metric_weight": self.profile.metric_weight, "teachers": self._digests}
        if self.profile.metric_weight > 0:
            extra.update(metric_loss=self.profile.metric_loss,
                         metric_loss_params=self.profile.loss(self.profile.metric_loss))
        return {**super().config(), **extra}

    def check(self, domains: dict[str, Domain]) -> None:
        missing = [n for n in domains if n not in self.teachers]
        if missing:
            raise ValueError(f"distillation needs a frozen specialist for every domain; "
                             f"missing teacher(s) for {missing}")

    def prepare(self, setup: Setup) -> None:
        self.device, p = setup.device, self.profile
        if p.metric_weight > 0:
            self.metric = _seeded_metric_loss(p, setup)
        self.distill = nn.ModuleDict()
        self.cache: dict[str, torch.Tensor] = {}
        for name, d in setup.domains.items():
            t_dim, table = self.teacher_table(name, d, setup)
            self.distill[name] = make_distillation_loss(
                self.method, student_dim=setup.embedding_dim, teacher_dim=t_dim, **p.loss(self.method))
            if table is not None:
                self.cache[name] = table.to(setup.device)
        self.teacher_val: dict[str, float] = {}
        if self.domain_schedule == "dynamic":  # the teachers' own validation scores, once
            self.teacher_val = {n: setup.evaluate(self.teachers[n], {n: d}, "val")[n][
                setup.selection_metric] for n, d in setup.domains.items()}
            self.selection_metric = setup.selection_metric

    def teacher_table(self, name: str, domain: Domain, setup: Setup
                      ) -> tuple[int, torch.Tensor | None]:
        """Domain `name`'s teacher, made ready: its embedding size, and its embeddings of the
        training split (row i: item i) when the inputs never change (no augmentation), else
        None (`targets` then embeds each batch)."""
        p = self.profile
        teacher = self.teachers[name].to(setup.device, memory_format=memory_format(setup.device))
        teacher.eval().requires_grad_(False)
        t_dim = getattr(teacher, "embedding_dim", setup.embedding_dim)
        if p.augment:
            return t_dim, None
        return t_dim, torch.from_numpy(embed(teacher, model_inputs(teacher, domain.train),
                                             p.eval_batch_size, amp=p.amp))

    @property
    def needs_inputs(self) -> bool:
        return bool(self.profile.augment)  # the teacher embeds the augmented batch itself

    def targets(self, batch: Batch) -> torch.Tensor:
        """The teacher's embeddings of the batch (cached rows, or embedded now)."""
        if batch.domain in self.cache:
            return self.cache[batch.domain][batch.index.to(self.device)]
        with torch.no_grad(), autocast(self.profile.amp, self.device):
            return self.teachers[batch.domain](batch.inputs).float()

    def loss(self, batch: Batch, embeddings: torch.Tensor) -> torch.Tensor:
        loss = self.distill[batch.domain](embeddings, self.targets(batch))
        if self.profile.metric_weight > 0:
            loss = loss + self.profile.metric_weight * self.metric(embeddings, batch.labels)
        return loss

    def schedule_weights(self, history: list[dict]) -> dict[str, float] | None:
        if not self.teacher_val:
            return None
        rows = [r for r in history if r["split"] == "val" and r["metric"] == self.selection_metric]
        last = max((r["epoch"] for r in rows), default=None)
        student = {r["domain"]: r["value"] for r in rows if r["epoch"] == last}
        return lag_weights(self.teacher_val, student) if student else None


class OPQN(MetricLearning):
    """A network trained end to end with its product quantizer: OPQN's margin loss on the raw
    and the soft-quantised subvectors plus the entropy of the assignments (`ue_lib.quantize`,
    loss ``"opqn"``, settings ``-p opqn.NAME``). Trains on one domain or several; the trained
    model keeps its quantizer (`TrainResult.kept`, rebuilt by `ue_lib.quantize.quantizer_of`).
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
        """Scored on its codes while it trains (`ue_lib.quantize.CodesEmbedder`): the epoch kept
        is the one whose codes retrieve best on validation."""
        from .quantize import CodesEmbedder

        return CodesEmbedder(model, self.metric.quantizer)
