"""The training loop: one loop for every model, its loss given by an objective (:mod:`.objective`).

Every `eval_every` epochs (and after the last) each domain's validation split (and, if the
objective asks, its test split) is evaluated; these rows are the history the notebooks plot.
The model kept is the one with the best mean validation score (never test): :class:`Selection`.
A checkpoint is written atomically after every epoch, and a rerun resumes from it, ending with
exactly the numbers of an uninterrupted run (:class:`.store.ModelStore`).

In-memory images are indexed directly; file-backed ones (`ue_lib.data.files`) are decoded,
cropped and flipped by DataLoader workers. On CUDA the loop runs in bfloat16 autocast with
channels-last tensors (`ue_lib.device`). Under `torchrun` every process embeds its share of
each batch with DistributedDataParallel, gathers the whole batch and computes its loss (the
gradient is one process's), and rank 0 evaluates and writes (`ue_lib.distributed`). While a
model trains its folder is locked, so two processes never train the same model at once.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from .. import distributed, timing
from ..config import ModelSettings
from ..data import Domain
from ..data.files import is_file_backed
from ..data.transforms import jitter
from ..device import autocast, memory_format, to_input
from ..evaluate import evaluate_domains, model_inputs
from ..models import build_model
from ..samplers import MultiDomainBatchSampler
from ..settings import CoreSettings
from .objective import Batch, Setup
from .store import ModelStore, TrainJob, TrainResult


@dataclass
class Selection:
    """The best evaluated epoch so far by mean validation score, its weights and the state of
    the objective's kept modules (`Objective.kept`) at that epoch."""

    epoch: int = 0
    score: float = -1.0
    weights: dict | None = field(default=None, repr=False)
    kept: dict | None = field(default=None, repr=False)

    def offer(self, epoch: int, rows: list[dict], metric: str, model: nn.Module,
              kept: nn.Module | None = None) -> float:
        score = float(np.mean([r["value"] for r in rows
                               if r["split"] == "val" and r["metric"] == metric]))
        if score > self.score:
            self.epoch, self.score = epoch, score
            self.weights = _copy_state(model)
            self.kept = _copy_state(kept) if kept is not None else None
        return score

    def state(self) -> dict:
        return {"epoch": self.epoch, "score": self.score, "model": self.weights, "kept": self.kept}

    @classmethod
    def from_state(cls, state: dict) -> Selection:
        return cls(state["epoch"], state["score"], state["model"], state.get("kept"))


def _copy_state(module: nn.Module) -> dict:
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


class _TrainImages(Dataset):
    """(domain, index) -> uint8 image tensor, for the DataLoader that serves file-backed
    domains (with the train transform when augmenting; in-memory domains are passed through)."""

    def __init__(self, domains: dict[str, Domain], augment: bool):
        self.sources = {n: d.train.images.dataset(train=augment) if is_file_backed(d.train.images)
                        else torch.from_numpy(d.train.images) for n, d in domains.items()}

    def __len__(self) -> int:
        return sum(len(s) for s in self.sources.values())

    def __getitem__(self, key: tuple[str, int]) -> torch.Tensor:
        name, i = key
        return self.sources[name][i]


def _stack(items: list[torch.Tensor]) -> torch.Tensor:
    return torch.stack(items)


def _epoch_batches(domains: dict[str, Domain], inputs: dict, sampler, augment: bool, seed: int,
                   epoch: int, device: torch.device):
    """Yield one epoch's (domain, index tensor, inputs) in the sampler's order; `inputs` are each
    domain's training images (uint8) or cached trunk features (`ue_lib.evaluate.model_inputs`)."""
    if not any(is_file_backed(x) for x in inputs.values()):
        for name, idx in sampler:
            idx_t = torch.as_tensor(idx)
            yield name, idx_t, torch.from_numpy(inputs[name][idx_t.numpy()])
        return
    batches = list(sampler)
    workers = max(getattr(d.train.images, "num_workers", 0) for d in domains.values())
    loader = DataLoader(_TrainImages(domains, augment),
                        batch_sampler=[[(name, i) for i in idx] for name, idx in batches],
                        collate_fn=_stack, num_workers=workers, pin_memory=device.type == "cuda",
                        generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
    for (name, idx), x in zip(batches, loader):
        yield name, torch.as_tensor(idx), x


def _global_labels(domains: dict[str, Domain]) -> dict[str, torch.Tensor]:
    """Map each domain's training labels to one contiguous range over all domains
    (proxy losses need it; for the other losses it changes nothing)."""
    out, offset = {}, 0
    for name, d in domains.items():
        classes, inverse = np.unique(d.train.labels, return_inverse=True)
        out[name] = torch.as_tensor(inverse + offset, dtype=torch.long)
        offset += len(classes)
    return out


def _optimizer(p: CoreSettings, params) -> torch.optim.Optimizer:
    """The profile's optimiser in its ``foreach`` form (one kernel per step for all tensors, not
    one per tensor): the same numbers bit for bit as the per-tensor loop, measured 0.84 ms
    instead of 1.36 ms per Adam step of a head. (``fused`` was faster still, 0.38 ms, but
    rounds differently: every trained number would move.)"""
    if p.optimizer == "adam":
        return torch.optim.Adam(params, lr=p.lr, weight_decay=p.weight_decay, foreach=True)
    if p.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=p.lr, weight_decay=p.weight_decay, foreach=True)
    return torch.optim.SGD(params, lr=p.lr, momentum=p.momentum, weight_decay=p.weight_decay,
                           foreach=True)


class LearnedNothing(ValueError):
    """A training whose loss gave nothing to learn from (`_Trainer._check_learns`)."""


class _Trainer:
    """The state of one training: network, objective, optimiser, sampler, history, selection."""

    def __init__(self, job: TrainJob, ctx: distributed.DistContext):
        p, self.job, self.ctx = job.profile, job, ctx
        self.device = device = ctx.device(p.device)
        self.model = build_model(ModelSettings.part_of(p), seed=job.seed)
        job.objective.initialize(self.model)
        self.model = self.model.to(device, memory_format=memory_format(device))
        self.net = (DistributedDataParallel(self.model, device_ids=[device.index]
                                            if device.type == "cuda" else None)
                    if ctx.enabled else self.model)
        self.labels = _global_labels(job.domains)
        self.objective = job.objective
        self.objective.prepare(Setup(job.domains, p.embedding_dim, sum(
            len(torch.unique(v)) for v in self.labels.values()), device, job.seed,
            job.selection_metric, self.evaluate_domains))
        self.objective.to(device)
        self.opt = _optimizer(p, list(self.model.parameters()) + list(self.objective.parameters()))
        self.sched = (torch.optim.lr_scheduler.CosineAnnealingLR(self.opt, T_max=self.objective.epochs)
                      if p.lr_schedule == "cosine" else None)
        self.sampler = MultiDomainBatchSampler(
            {n: d.train.labels for n, d in job.domains.items()}, p.p, p.k,
            schedule=self.objective.domain_schedule, seed=job.seed, rank=ctx.rank,
            world_size=ctx.world_size, batches_per_domain=p.batches_per_domain)
        self.inputs = {n: model_inputs(self.model, d.train) for n, d in job.domains.items()}
        # in-memory images get the affine jitter here; file-backed ones are cropped by the loader;
        # cached trunk features are not augmented
        self.jitter = jitter() if p.augment else None
        self.jittered = {n for n, x in self.inputs.items()
                         if not is_file_backed(x) and x.dtype == np.uint8}
        self.start, self.history, self.selection = 0, [], Selection()
        self._step_flops: float | None = None  # FLOPs of one step's forward, loss and backward

    def evaluate_domains(self, model: nn.Module, domains: dict, split: str) -> dict:
        """Rank 0's per-domain metrics, on every rank."""
        p = self.job.profile
        return self.ctx.broadcast(evaluate_domains(model, domains, split, batch_size=p.eval_batch_size,
                                                   amp=p.amp) if self.ctx.is_main else None)

    def evaluate(self, splits, epoch: int) -> list[dict]:
        embedder = self.objective.embedder(self.model)
        return [{"epoch": epoch, "domain": name, "split": split, "metric": m, "value": v}
                for split in splits
                for name, metrics in self.evaluate_domains(embedder, self.job.domains, split).items()
                for m, v in metrics.items()]

    def state(self, epoch: int) -> dict:
        return {"epoch": epoch, "model": self.model.state_dict(),
                "objective": self.objective.state_dict(), "optimizer": self.opt.state_dict(),
                "scheduler": self.sched.state_dict() if self.sched is not None else None,
                "history": self.history, "best": self.selection.state()}

    def restore(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.objective.load_state_dict(state["objective"])
        self.opt.load_state_dict(state["optimizer"])
        if self.sched is not None:
            self.sched.load_state_dict(state["scheduler"])
        self.start, self.history = state["epoch"], state["history"]
        self.selection = Selection.from_state(state["best"])
        self._reweight()  # resumed: the dynamic schedule's weights as they were

    def _reweight(self) -> None:
        weights = self.objective.schedule_weights(self.history)
        if weights is not None:
            self.sampler.set_weights(weights)

    def _batch(self, name: str, idx: torch.Tensor, images: torch.Tensor) -> Batch:
        x = to_input(images, self.device)
        if self.jitter is not None and name in self.jittered:
            x = self.jitter(x)
        return Batch(name, idx, x, self.labels[name][idx].to(self.device))

    def _whole_batch(self, batch: Batch, emb: torch.Tensor) -> tuple[Batch, torch.Tensor]:
        """Under torchrun: the whole P x K batch on every rank (`DistContext.gather_batch`), so
        the objective computes the loss one process would (see `ue_lib.distributed`)."""
        if not self.ctx.enabled:
            return batch, emb
        k, gather = self.job.profile.k, self.ctx.gather_batch
        self.ctx.check_shares(len(emb), k, self.device)
        inputs = gather(batch.inputs, k) if self.objective.needs_inputs else batch.inputs
        whole = Batch(batch.domain, gather(batch.index.to(self.device), k).cpu(), inputs,
                      gather(batch.labels, k))
        return whole, gather(emb, k, grad=True)

    def _loss(self, batch: Batch) -> torch.Tensor:
        """The objective's loss on one batch (forward pass included)."""
        with autocast(self.job.profile.amp, self.device):
            emb = self.net(batch.inputs).float()
        return self.objective.loss(*self._whole_batch(batch, emb))

    def train_epoch(self, epoch: int, batch_bar: bool) -> None:
        p, seed = self.job.profile, self.job.seed
        self.model.train()
        self.sampler.set_epoch(epoch)
        torch.manual_seed(seed * 1_000_003 + epoch)  # augmentation draws: resumable
        sums: dict[str, list[float]] = {n: [] for n in self.job.domains}
        batches = _epoch_batches(self.job.domains, self.inputs, self.sampler, p.augment, seed, epoch,
                                 self.device)
        for b, (name, idx, images) in enumerate(tqdm(batches, desc=f"epoch {epoch + 1}", leave=False,
                                                     total=len(self.sampler), disable=not batch_bar)):
            batch = self._batch(name, idx, images)
            counting = self._step_flops is None and timing.enabled()  # profiled: one step's FLOPs
            loss, forward = timing.count_flops(self._loss, batch) if counting else (self._loss(batch), 0)
            bad = self.ctx.any(not bool(torch.isfinite(loss)), self.device)  # all stop together
            if bad:
                where = f" on rank(s) {bad}" if self.ctx.enabled else f" ({loss.item()})"
                raise FloatingPointError(
                    f"non-finite loss{where} at epoch {epoch + 1}, batch {b + 1} "
                    f"(domain {name!r}, loss {self.objective.describe()}); lower the learning "
                    f"rate (now {p.lr}) or check the inputs of that domain")
            self.opt.zero_grad(set_to_none=True)
            _, backward = timing.count_flops(loss.backward) if counting else (loss.backward(), 0)
            self._step_flops = forward + backward if counting else self._step_flops
            self.ctx.all_reduce_grads(self.objective.parameters())  # the network's own: DDP does it
            self.opt.step()
            timing.add_flops("training", self._step_flops or 0.0)
            sums[name].append(loss.item())
        if epoch == 0:
            self._check_learns([v for values in sums.values() for v in values])
        if self.sched is not None:
            self.sched.step()
        self.history += [{"epoch": epoch + 1, "domain": n, "split": "train", "metric": "loss",
                          "value": float(np.mean(v))} for n, v in sums.items() if v]
        # the training budget: batches of each domain this epoch (the budget tables of the notebooks)
        self.history += [{"epoch": epoch + 1, "domain": n, "split": "train", "metric": "batches",
                          "value": float(len(v))} for n, v in sums.items()]

    def _check_learns(self, losses: list[float]) -> None:
        """Stop a training whose first epoch's loss was exactly 0.0, or one and the same value,
        on every batch (of two or more): no batch gave a gradient to learn from, as when one
        class per batch (`p` 1) leaves a pair loss without negatives."""
        if len(losses) < 2 or len(set(losses)) > 1:
            return
        p = self.job.profile
        raise LearnedNothing(
            f"{self.objective.folder} ({self.objective.describe()}) learned nothing: its loss was "
            f"{losses[0]} on every one of the {len(losses)} batches of epoch 1; check the batch "
            f"(-p p {p.p}: classes per batch, -p k {p.k}: images per class), the loss's "
            f"parameters and the learning rate (-p lr {p.lr})")

    def after_epoch(self, done: int) -> float | None:
        """Evaluate when due; returns the validation score then."""
        if done % self.job.profile.eval_every and done != self.objective.epochs:
            return None
        rows = self.evaluate(self.objective.eval_splits, done)
        self.history += rows
        score = self.selection.offer(done, rows, self.job.selection_metric, self.model,
                                     self.objective.kept())
        self._reweight()
        return score

    def result(self, seconds: float) -> TrainResult:
        """The selected weights, with their val and test metrics (from the history where it has
        them)."""
        self.model.load_state_dict(self.selection.weights)
        self.model.eval()
        kept = self.objective.kept()
        if kept is not None and self.selection.kept is not None:  # as it was at that epoch too
            kept.load_state_dict(self.selection.kept)
        best, splits = self.selection.epoch, self.objective.eval_splits
        final = [r for r in self.history if r["epoch"] == best and r["split"] in splits]
        missing = tuple(s for s in ("val", "test") if s not in splits)
        final += self.evaluate(missing, best) if missing else []
        final = [{k: v for k, v in r.items() if k != "epoch"} for r in final if r["split"] != "train"]
        return TrainResult(self.model, pd.DataFrame(self.history), best, pd.DataFrame(final),
                           seconds, self.job.config, kept=self.selection.kept)


@contextlib.contextmanager
def cpu_threads(n: int):
    """torch's and faiss's CPU threads set to `n` (0: unchanged) inside the block. Tiny ops (a head
    on cached features) run fastest on one thread: measured 15 ms vs 93 ms per step with the
    cores busy; and two workers each evaluating on 2 faiss threads fight over 2 cores. The
    evaluator's search gives the same ranking on any number of threads (`ue_lib.evaluate.search`)."""
    import faiss

    before = torch.get_num_threads(), faiss.omp_get_max_threads()
    if n:
        torch.set_num_threads(n)
        faiss.omp_set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before[0])
        faiss.omp_set_num_threads(before[1])


@contextlib.contextmanager
def deterministic_algorithms(on: bool):
    """With `on`: torch's deterministic algorithms (``torch.use_deterministic_algorithms``; an op
    without one raises, naming it), cuDNN's deterministic convolutions without autotuning, and
    the cuBLAS workspace setting they need (``CUBLAS_WORKSPACE_CONFIG``, set if unset); the
    previous state is restored after. Off: nothing changes."""
    if not on:
        yield
        return
    import os

    before = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic,
              torch.backends.cudnn.benchmark)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = before[1:]


def train(job: TrainJob, out_dir: str | Path | None = None, resume: bool = True,
          progress: bool = True, on_epoch_end: Callable[[int, pd.DataFrame], None] | None = None
          ) -> TrainResult:
    """Train `job` (or load it finished from `out_dir`); see the module doc."""
    ctx = distributed.context(job.profile.device)
    store = ModelStore(out_dir, job.fingerprint, writes=ctx.is_main)  # only rank 0 writes
    if resume and (done := store.finished()) is not None:
        return done
    # one process at a time per model folder (under torchrun only rank 0 writes: the others
    # train with it and take no lock)
    with store.training() if not ctx.enabled else contextlib.nullcontext():
        if resume and (done := store.finished()) is not None:  # another process made it meanwhile
            return done
        with cpu_threads(job.profile.threads), deterministic_algorithms(job.profile.deterministic):
            return _train(job, ctx, store, resume, progress, on_epoch_end)


def _train(job: TrainJob, ctx, store: ModelStore, resume: bool, progress: bool,
           on_epoch_end) -> TrainResult:
    trainer = _Trainer(job, ctx)
    if resume and (state := store.checkpoint(trainer.device)) is not None:
        trainer.restore(state)
    t0, epochs = time.perf_counter(), job.objective.epochs
    # bars per epoch and per batch in a terminal only: in a notebook they would bury the output
    # (`RunFolder.train` prints one line per model instead)
    batch_bar = progress and ctx.is_main and sys.stderr.isatty()
    bar = tqdm(range(trainer.start, epochs), desc=job.objective.folder, unit="epoch",
               disable=not batch_bar, initial=trainer.start, total=epochs)
    saved = t0
    for epoch in bar:
        trainer.train_epoch(epoch, batch_bar)
        score = trainer.after_epoch(epoch + 1)
        if score is not None:
            bar.set_postfix({f"val {job.selection_metric}": f"{score:.3f}"})
        # a checkpoint is a few MB and an atomic rename (13 ms measured here): written every
        # `checkpoint_seconds`, not after every epoch of a training that takes seconds
        if time.perf_counter() - saved >= job.profile.checkpoint_seconds:
            store.save_checkpoint(trainer.state(epoch + 1))
            saved = time.perf_counter()
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1, pd.DataFrame(trainer.history))
    result = trainer.result(time.perf_counter() - t0)
    store.save_final(result, trainer.selection.weights, ctx.world_size)
    ctx.barrier()  # the others wait until rank 0 has written
    return result
