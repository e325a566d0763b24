"""The objectives of the main paper's system (`ue_lib.training.objective` has the interface):
each domain's own model (:class:`Specialist`, the teachers), one model on the union of all
domains (:class:`NaiveFusion`), and the universal student distilled from the frozen specialists
(:class:`Distillation`, with any distillation loss of `ue_lib.losses`)."""

from __future__ import annotations

import hashlib
import math

import torch
import torch.nn.functional as F
from torch import nn

from ..data import Domain
from ..device import autocast, memory_format
from ..evaluate import embed, model_inputs
from ..losses import make_distillation_loss
from ..samplers import lag_weights
from ..training import Batch, MetricLearning, Objective, Setup, seeded_metric_loss
from .settings import UniversalSettings


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


def teacher_scales(domains, rescale: float) -> dict[str, float]:
    """Our construction of heterogeneous teachers (`teacher_rescale` h): the k-th of the D
    `domains` (in order, k = 0 … D-1) has its teacher's squared distances multiplied by
    s_k = 1 - h k / (D - 1), so the first keeps its scale and the last is shrunk to 1 - h."""
    names = list(domains)
    last = max(len(names) - 1, 1)
    return {n: 1.0 - rescale * k / last for k, n in enumerate(names)}


def rescale_teacher(t: torch.Tensor, scale: float) -> torch.Tensor:
    """Teacher embeddings whose squared distances are `scale` x those of the L2-normalised `t`:
    [sqrt(scale) t/|t|, sqrt(1 - scale)], still unit vectors (one more dimension), so every
    loss sees them as it sees any teacher. `scale` 1 gives t/|t| with a 0 appended."""
    unit = F.normalize(t.float(), dim=1)
    extra = torch.full((len(t), 1), math.sqrt(1.0 - scale), dtype=unit.dtype, device=unit.device)
    return torch.cat([unit * math.sqrt(scale), extra], dim=1)


class Distillation(Objective):
    """A universal student matching, domain by domain, that domain's frozen specialist with the
    distillation loss `method` (plus `metric_weight` × the metric loss on the labels)."""

    kind = "distill"
    epochs_setting = "epochs_distill"
    follows_lag = True

    def __init__(self, profile: UniversalSettings, method: str, teachers: dict[str, nn.Module]):
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
        if self.profile.teacher_rescale:  # only when set: other students keep their keys
            extra["teacher_rescale"] = self.profile.teacher_rescale
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
            self.metric = seeded_metric_loss(p, setup)
        self.distill = nn.ModuleDict()
        self.cache: dict[str, torch.Tensor] = {}
        self.scales = teacher_scales(setup.domains, p.teacher_rescale) if p.teacher_rescale else {}
        for name, d in setup.domains.items():
            t_dim, table = self.teacher_table(name, d, setup)
            if self.scales:
                t_dim, table = t_dim + 1, None if table is None else rescale_teacher(table, self.scales[name])
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
            t = self.teachers[batch.domain](batch.inputs).float()
        return rescale_teacher(t, self.scales[batch.domain]) if self.scales else t

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
