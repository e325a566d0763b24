"""What a model is and where it is kept: :class:`TrainJob` (everything that determines a model,
and its fingerprint), :class:`TrainResult` (a trained model with its curves) and
:class:`ModelStore` (a model's folder), the one place that decides reuse: a finished model is
returned only when the fingerprints match, and a checkpoint is resumed only from a run with the
same fingerprint.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import pandas as pd
import torch

from ..config import ModelSettings
from ..data import Domain
from ..data.files import is_file_backed
from ..io import atomic_write_text, torch_save
from ..models import EmbeddingNet, build_model
from ..settings import CoreSettings
from .objective import Objective

CHECKPOINT, FINAL, HISTORY = "checkpoint.pt", "model.pt", "history.csv"
# the profile settings every model's numbers depend on (besides model, optimiser and objective)
TRAIN_SETTINGS = ("p", "k", "batches_per_domain", "eval_every", "eval_batch_size", "augment",
                  "device", "amp", "threads")


@dataclass
class TrainResult:
    model: EmbeddingNet  # weights of the selected (best validation) epoch
    history: pd.DataFrame  # epoch, domain, split, metric, value (curves; split "train": the
    # mean "loss" and the number of "batches" of each domain per epoch)
    best_epoch: int
    final: pd.DataFrame  # domain, split, metric, value of the selected model on val and test
    seconds: float  # how long the training took (recorded with the model when it is loaded)
    config: dict
    loaded: bool = False  # found finished on disk instead of trained by this call
    kept: dict | None = None  # state of the objective's kept modules at the selected epoch

    def split_mean(self, split: str, metric: str) -> float:
        """The mean over domains of `metric` on `split` at the selected epoch."""
        rows = self.final[(self.final.split == split) & (self.final.metric == metric)]
        if rows.empty:
            raise ValueError(f"no {split} {metric} in this model's results; it has "
                             f"{', '.join(sorted(set(self.final.metric)))}")
        return float(rows.value.mean())


def _content(images) -> int | str:
    """A cheap summary of a split's pixels (file-backed images: of their paths and size)."""
    if is_file_backed(images):
        return images.fingerprint()
    return int(images[:, :, ::7, ::7].sum())


def data_fingerprint(domains: dict[str, Domain]) -> dict:
    return {name: {s: [len(sp), int(sp.labels.sum()), _content(sp.images)]
                   for s, sp in d.splits.items()} for name, d in domains.items()}


@dataclass
class TrainJob:
    """One model to train: `objective` on `domains`, from `seed`, with the network, optimiser
    and batches of the objective's profile."""

    domains: dict[str, Domain]
    objective: Objective
    seed: int = 0
    selection_metric: str = "recall@1"

    def __post_init__(self) -> None:
        self.objective.check(self.domains)

    @property
    def profile(self) -> CoreSettings:
        return self.objective.profile

    @cached_property
    def config(self) -> dict:
        """Everything that determines the model's numbers (computed once)."""
        p = self.profile
        train = {name: getattr(p, name) for name in TRAIN_SETTINGS}
        if p.deterministic:  # only when set: the models trained before it existed keep their key
            train["deterministic"] = True
        return {"domains": list(self.domains), "data": data_fingerprint(self.domains),
                "model": ModelSettings.part_of(p).to_dict(), "optim": p.group("optim"),
                "train": train,
                "objective": self.objective.config(), "seed": self.seed,
                "selection_metric": self.selection_metric}

    @cached_property
    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(self.config, sort_keys=True, default=str).encode()).hexdigest()


class ModelStore:
    """A model's folder: `checkpoint.pt` while it trains, `model.pt` and `history.csv` when done.
    The one place that decides whether a model is reused (only with the same fingerprint)."""

    def __init__(self, folder: str | Path | None, fingerprint: str, writes: bool = True):
        self.folder = Path(folder) if folder is not None else None
        self.fingerprint, self.writes = fingerprint, writes and folder is not None

    def finished(self) -> TrainResult | None:
        if self.folder is None or not (self.folder / FINAL).is_file():
            return None
        return load_result(self.folder, expect_fingerprint=self.fingerprint)

    def checkpoint(self, device: torch.device) -> dict | None:
        if self.folder is None or not (self.folder / CHECKPOINT).is_file():
            return None
        state = torch.load(self.folder / CHECKPOINT, map_location=device, weights_only=False)
        if state["fingerprint"] != self.fingerprint:
            raise ValueError(f"{self.folder / CHECKPOINT} was written by a run with other settings "
                             f"or data; use another output folder or delete it to start afresh")
        return state

    @contextlib.contextmanager
    def training(self):
        """Held while this process trains the model: an exclusive lock on ``<folder>/.lock``
        (``fcntl.flock``), so that two processes that need the same missing model (two sweep
        points on Dask workers, two notebooks' worker pools) do not train it at once: the
        second waits, then finds it finished. No folder, or a process that does not write: no
        lock. `train` takes none under torchrun (rank 0 waiting on a lock would leave the other
        ranks waiting in a collective)."""
        if not self.writes:
            yield
            return
        import fcntl

        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / ".lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)  # waits while another process trains it
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def save_checkpoint(self, state: dict) -> None:
        if self.writes:
            torch_save({**state, "fingerprint": self.fingerprint}, self.folder / CHECKPOINT)

    def save_final(self, result: TrainResult, weights: dict, world_size: int) -> None:
        if not self.writes:
            return
        torch_save({"model": weights, "kept": result.kept, "best_epoch": result.best_epoch,
                    "config": result.config,
                    "fingerprint": self.fingerprint, "seconds": result.seconds,
                    "history": result.history.to_dict("records"),
                    "final": result.final.to_dict("records"), "world_size": world_size},
                   self.folder / FINAL)
        atomic_write_text(result.history.to_csv(index=False), self.folder / HISTORY)
        (self.folder / CHECKPOINT).unlink(missing_ok=True)


def load_result(out_dir: str | Path, expect_fingerprint: str | None = None) -> TrainResult:
    """Load a finished model written by `train(..., out_dir=...)`."""
    out = Path(out_dir)
    state = torch.load(out / FINAL, map_location="cpu", weights_only=False)
    if expect_fingerprint is not None and state["fingerprint"] != expect_fingerprint:
        raise ValueError(f"{out / FINAL} was trained with other settings or data; use another "
                         f"output folder or delete it to retrain")
    model = build_model(ModelSettings.from_dict(state["config"]["model"]))
    model.load_state_dict(state["model"])
    model.eval()
    return TrainResult(model, pd.DataFrame(state["history"]), state["best_epoch"],
                       pd.DataFrame(state["final"]), float(state.get("seconds", 0.0)), state["config"],
                       loaded=True, kept=state.get("kept"))
