"""The guided student's objective (`ue_lib.training.objective` has the interface)."""

from __future__ import annotations

import hashlib

import numpy as np
import torch

from ..training import Setup
from ..universal.objectives import Distillation


class GuidedStudent(Distillation):
    """The guided student of finding 3: an embedding head on RoI features (its training
    "domains" hold one domain's objects: `Split.features` are their pooled RoI features) trained
    to reproduce the teacher's embeddings of the same objects (`targets`: domain -> float32
    (N_train, D), row i the teacher's embedding of training object i), with the distillation
    loss `method`: ``embedding_mse`` (the paper's MSE on normalised embeddings; our
    reconstruction) or any other of `ue_lib.losses` (``kl``: the main paper's). The teacher is
    given as its embeddings, so it runs once per object, outside the loop."""

    kind = "guided"
    follows_lag = False  # its teachers are tables: there is no teacher score to lag behind

    def __init__(self, profile, method: str, targets: dict[str, np.ndarray], roi: dict):
        super().__init__(profile, method, teachers={})
        self.targets_np = {n: np.asarray(t, np.float32) for n, t in targets.items()}
        self.roi = dict(roi)

    @property
    def folder(self) -> str:
        return f"guided-{self.method}"

    @property
    def needs_inputs(self) -> bool:
        return False  # its teacher is a table of embeddings

    def config(self) -> dict:
        if self._digests is None:
            self._digests = {n: hashlib.sha256(t.tobytes()).hexdigest()[:16]
                             for n, t in self.targets_np.items()}
        return {**super().config(), "roi": self.roi}

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
