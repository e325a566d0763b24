"""What a model is and where it is kept: :class:`TrainJob` (everything that determines a model,
and its fingerprint), :class:`TrainResult` (a trained model with its curves) and
:class:`ModelStore` (a model's folder), the one place that decides reuse: a finished model is
returned only when the fingerprints match, and a checkpoint is resumed only from a run with the
same fingerprint. A `model.pt` or `checkpoint.pt` that cannot be read is moved aside
(`ue_lib.io.read_derived`) and made again: resumed from a readable checkpoint, else retrained.
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
from ..io import Stale, atomic_write_text, read_derived, read_named, rebuilding, torch_save
from ..models import EmbeddingNet, build_model
from ..settings import CoreSettings
from .objective import Objective

CHECKPOINT, FINAL, HISTORY = "checkpoint.pt", "model.pt", "history.csv"
# what a checkpoint (the training loop's state) and a finished model's file must hold
CHECKPOINT_KEYS = ("epoch", "model", "objective", "optimizer", "scheduler", "history", "best",
                   "fingerprint")
FINAL_KEYS = ("model", "best_epoch", "config", "fingerprint", "history", "final")
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
    The one place that decides whether a model is reused (only with the same fingerprint).

    A file that cannot be read is moved aside and made again (`healed` names it). One with
    another fingerprint is too when the folder is named by the fingerprint (a run folder's
    ``<name>-<fingerprint[:10]>``: the file is not what its name says); in a folder the caller
    chose it is refused, a model of other settings the caller may still want."""

    def __init__(self, folder: str | Path | None, fingerprint: str, writes: bool = True):
        self.folder = Path(folder) if folder is not None else None
        self.fingerprint, self.writes = fingerprint, writes and folder is not None
        self.healed: Path | None = None  # the last file moved aside, being made again

    def _read(self, name: str, reader):
        """`reader(path)` of the folder's file `name`; None when missing or moved aside."""
        if self.folder is None or not (self.folder / name).is_file():
            return None
        keyed = self.folder.name.endswith(f"-{self.fingerprint[:10]}")
        out = read_derived(self.folder / name, lambda p: reader(p, self.fingerprint if keyed else None))
        if out is None:
            self.healed = self.folder / name
        return out

    def _refuse_other(self, name: str, stored: str, fix: str) -> None:
        if stored != self.fingerprint:
            raise ValueError(f"{self.folder / name} was {fix}")

    def finished(self) -> TrainResult | None:
        read = self._read(FINAL, _read_final)
        if read is None:
            return None
        self._refuse_other(FINAL, read[0], "trained with other settings or data; use another output "
                                           "folder or delete it to retrain")
        return read[1]

    def checkpoint(self, device: torch.device) -> dict | None:
        state = self._read(CHECKPOINT, lambda p, want: _read_state(p, device, CHECKPOINT_KEYS, want))
        if state is None:
            return None
        self._refuse_other(CHECKPOINT, state["fingerprint"], "written by a run with other settings "
                           "or data; use another output folder or delete it to start afresh")
        return state

    @contextlib.contextmanager
    def training(self):
        """Held while this process trains the model: the folder's lock (`_locked`). An error
        while a file moved aside is made again names it (`ue_lib.io.rebuilding`)."""
        with self._locked(), rebuilding(lambda: self.healed):  # known once a file was read
            yield

    @contextlib.contextmanager
    def _locked(self):
        """An exclusive lock on ``<folder>/.lock`` (``fcntl.flock``), so that two processes that
        need the same missing model (two sweep points on Dask workers, two notebooks' worker
        pools) do not train it at once: the second waits, then finds it finished. No folder, or
        a process that does not write: no lock. `train` takes none under torchrun (rank 0
        waiting on a lock would leave the other ranks waiting in a collective)."""
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


def _read_state(path: Path, device, keys: tuple[str, ...], want: str | None) -> dict:
    """A checkpoint or model file as a dict holding `keys`; Stale when `want` is given and its
    stored fingerprint is another."""
    state = torch.load(path, map_location=device, weights_only=False)
    if not isinstance(state, dict) or not set(keys) <= set(state):
        raise ValueError(f"it is not a {path.name} (it lacks some of {', '.join(keys)})")
    if want is not None and state["fingerprint"] != want:
        raise Stale(f"it holds fingerprint {str(state['fingerprint'])[:10]}…, not the one its "
                    f"folder is named by ({want[:10]}…)")
    return state


def _read_final(path: Path, want: str | None = None) -> tuple[str, TrainResult]:
    """A finished model's file: its stored fingerprint and the model (see `_read_state`)."""
    state = _read_state(path, "cpu", FINAL_KEYS, want)
    model = build_model(ModelSettings.from_dict(state["config"]["model"]))
    model.load_state_dict(state["model"])
    model.eval()
    return state["fingerprint"], TrainResult(
        model, pd.DataFrame(state["history"]), state["best_epoch"], pd.DataFrame(state["final"]),
        float(state.get("seconds", 0.0)), state["config"], loaded=True, kept=state.get("kept"))


def load_result(out_dir: str | Path, expect_fingerprint: str | None = None) -> TrainResult:
    """Load a finished model written by `train(..., out_dir=...)`; a file that cannot be read is
    an UnreadableFileError naming it (`train` with the same job makes it again)."""
    path = Path(out_dir) / FINAL
    stored, result = read_named(path, _read_final, "the model file",
                                "run the training again to make it (the damaged file is moved aside)")
    if expect_fingerprint is not None and stored != expect_fingerprint:
        raise ValueError(f"{path} was trained with other settings or data; use another "
                         f"output folder or delete it to retrain")
    return result
