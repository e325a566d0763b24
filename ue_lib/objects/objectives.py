"""The guided student's objective (`ue_lib.training.objective` has the interface)."""

from __future__ import annotations

import hashlib

import numpy as np
import torch
from torch import nn

from ..training import Setup
from ..universal.objectives import Distillation, weights_digest


class GuidedStudent(Distillation):
    """The guided student of finding 3: an embedding head on RoI features (its training
    "domains" hold one domain's objects: `Split.features` are their pooled RoI features) trained
    to reproduce the teacher's embeddings of the same objects (`targets`: domain -> float32
    (N_train, D), row i the teacher's embedding of training object i), with the distillation
    loss `method`: ``embedding_mse`` (the paper's MSE on normalised embeddings; our
    reconstruction) or any other of `ue_lib.losses` (``kl``: the main paper's). The teacher is
    given as its embeddings, so it runs once per object, outside the loop.

    A measured student (notebook 08's `objects_student_measures`) names what changed in
    `measures`: "clean" (its training domains hold clean items too: the caller adds them, with
    their targets) and "init" (it starts from the weights of `init`, the universal kl head,
    instead of random ones)."""

    kind = "guided"
    follows_lag = False  # its teachers are tables: there is no teacher score to lag behind

    def __init__(self, profile, method: str, targets: dict[str, np.ndarray], roi: dict,
                 measures: tuple[str, ...] = (), init: nn.Module | None = None):
        super().__init__(profile, method, teachers={})
        self.targets_np = {n: np.asarray(t, np.float32) for n, t in targets.items()}
        self.roi, self.measures = dict(roi), tuple(measures)
        if ("init" in self.measures) != (init is not None):
            raise ValueError("guided student: give `init` exactly when 'init' is measured")
        self.init_state = None if init is None else {k: v.detach().clone()
                                                      for k, v in init.state_dict().items()}
        self._init_digest = None if init is None else weights_digest(init)

    @property
    def folder(self) -> str:
        return "+".join([f"guided-{self.method}", *self.measures])

    @property
    def needs_inputs(self) -> bool:
        return False  # its teacher is a table of embeddings

    def config(self) -> dict:
        if self._digests is None:
            self._digests = {n: hashlib.sha256(t.tobytes()).hexdigest()[:16]
                             for n, t in self.targets_np.items()}
        extra = {"measures": list(self.measures), "init": self._init_digest} if self.measures else {}
        return {**super().config(), "roi": self.roi, **extra}

    def initialize(self, model: nn.Module) -> None:
        if self.init_state is not None:
            model.load_state_dict(self.init_state)

    def check(self, domains) -> None:
        for name, d in domains.items():
            if name not in self.targets_np:
                raise ValueError(f"guided student: no teacher embeddings for domain {name!r}")
            if len(self.targets_np[name]) != len(d.train):
                raise ValueError(f"guided student: {len(self.targets_np[name])} teacher "
                                 f"embeddings for {len(d.train)} training objects of {name!r}")

    def teacher_table(self, name: str, domain, setup: Setup) -> tuple[int, torch.Tensor]:
        table = torch.from_numpy(self.targets_np[name])
        return table.shape[1], table
