"""One training loop, used three ways.

* `specialist` — one domain, a metric loss on its labels.
* `naive` — all domains, batches follow the multi-domain schedule (one domain
  per batch), one metric loss: the "naive fusion" universal model.
* `distill` — all domains; each batch is embedded by the student and by that
  domain's frozen specialist, and the student is trained to match it with a
  distillation loss (plus `metric_weight` × the metric loss on the labels).

Every `eval_every` epochs (and after the last) each domain's val and test splits
are evaluated; the per-epoch rows are the history the notebooks plot. The model
kept is the one with the best mean validation score (never test). With an
`out_dir`, a checkpoint is written atomically after every epoch and a rerun
resumes from it, ending with exactly the numbers of an uninterrupted run.

In-memory images are indexed directly; file-backed ones (`ue_lib.data.files`) are decoded,
cropped and flipped by DataLoader workers. On CUDA the loop runs in bfloat16 autocast with
channels-last tensors (`ue_lib.device`). Under `torchrun` every process trains on its share
of each batch with DistributedDataParallel, and rank 0 evaluates and writes
(`ue_lib.distributed`).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from . import distributed
from .config import ModelConfig, OptimConfig, TrainConfig
from .data import Domain
from .data.files import is_file_backed as _file_backed
from .device import autocast, memory_format, resolve_device, to_input
from .evaluate import embed, split_metrics
from .losses import make_distillation_loss, make_metric_loss
from .models import EmbeddingNet, build_model
from .samplers import MultiDomainBatchSampler, lag_weights

CHECKPOINT, FINAL, HISTORY = "checkpoint.pt", "model.pt", "history.csv"


@dataclass
class TrainResult:
    model: EmbeddingNet  # weights of the selected (best validation) epoch
    history: pd.DataFrame  # epoch, domain, split, metric, value (curves; split "train" = loss)
    best_epoch: int
    final: pd.DataFrame  # domain, split, metric, value of the selected model on val and test
    seconds: float  # training time of this call (0 when loaded finished from disk)
    config: dict


# ----------------------------------------------------------------------------- helpers

def atomic_save(obj, path: Path) -> None:
    """torch.save to a temporary file in the same folder, then rename over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def atomic_write_text(text: str, path: Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def _fingerprint(config: dict) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()


def _data_fingerprint(domains: dict[str, Domain]) -> dict:
    return {name: {s: [len(sp), int(sp.labels.sum()), _content(sp.images)]
                   for s, sp in d.splits.items()} for name, d in domains.items()}


def _content(images) -> int | str:
    """A cheap summary of a split's pixels (file-backed images: of their paths and size)."""
    if _file_backed(images):
        return images.fingerprint()
    return int(images[:, :, ::7, ::7].sum())


class _TrainImages(Dataset):
    """(domain, index) -> uint8 image tensor, for the DataLoader that serves file-backed
    domains (with the train transform when augmenting; in-memory domains are passed through)."""

    def __init__(self, domains: dict[str, Domain], augment: bool):
        self.sources = {n: d.train.images.dataset(train=augment) if _file_backed(d.train.images)
                        else torch.from_numpy(d.train.images) for n, d in domains.items()}

    def __len__(self) -> int:
        return sum(len(s) for s in self.sources.values())

    def __getitem__(self, key: tuple[str, int]) -> torch.Tensor:
        name, i = key
        return self.sources[name][i]


def _stack(items: list[torch.Tensor]) -> torch.Tensor:
    return torch.stack(items)


def _epoch_batches(domains: dict[str, Domain], sampler, cfg: TrainConfig, epoch: int,
                   device: torch.device):
    """Yield one epoch's (domain, index tensor, uint8 images) in the sampler's order."""
    if not any(_file_backed(d.train.images) for d in domains.values()):
        for name, idx in sampler:
            idx_t = torch.as_tensor(idx)
            yield name, idx_t, torch.from_numpy(domains[name].train.images[idx_t.numpy()])
        return
    batches = list(sampler)
    workers = max(getattr(d.train.images, "num_workers", 0) for d in domains.values())
    loader = DataLoader(_TrainImages(domains, cfg.augment),
                        batch_sampler=[[(name, i) for i in idx] for name, idx in batches],
                        collate_fn=_stack, num_workers=workers, pin_memory=device.type == "cuda",
                        generator=torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch))
    for (name, idx), x in zip(batches, loader):
        yield name, torch.as_tensor(idx), x


def augmenter() -> Callable[[torch.Tensor], torch.Tensor]:
    """Per-image random affine jitter (small rotation, shift, scale)."""
    from torchvision.transforms import v2

    t = v2.RandomAffine(degrees=8, translate=(0.08, 0.08), scale=(0.9, 1.1))
    return lambda x: torch.stack([t(im) for im in x])


def _global_labels(domains: dict[str, Domain]) -> dict[str, torch.Tensor]:
    """Map each domain's training labels to one contiguous range over all domains
    (proxy losses need it; for the other losses it changes nothing)."""
    out, offset = {}, 0
    for name, d in domains.items():
        classes, inverse = np.unique(d.train.labels, return_inverse=True)
        out[name] = torch.as_tensor(inverse + offset, dtype=torch.long)
        offset += len(classes)
    return out


def evaluate_history_rows(model: nn.Module, domains: dict[str, Domain], splits, epoch: int,
                          batch_size: int, amp: str = "auto") -> list[dict]:
    rows = []
    for name, d in domains.items():
        for split in splits:
            sp = getattr(d, split)
            metrics = split_metrics(embed(model, sp.images, batch_size, amp=amp), sp)
            rows += [{"epoch": epoch, "domain": name, "split": split, "metric": m, "value": v}
                     for m, v in metrics.items()]
    return rows


def _selection_score(rows: list[dict], metric: str) -> float:
    vals = [r["value"] for r in rows if r["split"] == "val" and r["metric"] == metric]
    return float(np.mean(vals))


def _last_val(history: list[dict], metric: str) -> dict[str, float]:
    """Each domain's validation `metric` at the latest evaluated epoch of `history`."""
    rows = [r for r in history if r["split"] == "val" and r["metric"] == metric]
    last = max((r["epoch"] for r in rows), default=None)
    return {r["domain"]: r["value"] for r in rows if r["epoch"] == last}


def weights_digest(model: nn.Module) -> str:
    """Hash of a model's weights (identifies a teacher in its students' run configs)."""
    h = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def run_config(domains: dict[str, Domain], cfg: TrainConfig, model_cfg: ModelConfig,
               optim_cfg: OptimConfig, selection_metric: str = "recall@1",
               teachers: dict[str, nn.Module] | None = None) -> tuple[dict, str]:
    """Everything that determines a run's numbers (data, settings and, for a student, its
    teachers' weights), and its hash: checkpoints and finished runs are reused only when it
    matches."""
    config = {"train": cfg.to_dict(), "model": model_cfg.to_dict(), "optim": optim_cfg.to_dict(),
              "domains": list(domains), "data": _data_fingerprint(domains),
              "selection_metric": selection_metric}
    if cfg.mode == "distill" and teachers:
        config["teachers"] = {n: weights_digest(teachers[n]) for n in domains if n in teachers}
    return config, _fingerprint(config)


# ----------------------------------------------------------------------------- training

def train(domains: dict[str, Domain], cfg: TrainConfig, model_cfg: ModelConfig | None = None,
          optim_cfg: OptimConfig | None = None, teachers: dict[str, nn.Module] | None = None,
          out_dir: str | Path | None = None, resume: bool = True, progress: bool = True,
          on_epoch_end: Callable[[int, pd.DataFrame], None] | None = None,
          selection_metric: str = "recall@1") -> TrainResult:
    """Train one model in `cfg.mode` on `domains` (name -> Domain); see the module doc."""
    model_cfg, optim_cfg = model_cfg or ModelConfig(), optim_cfg or OptimConfig()
    if cfg.mode == "specialist" and len(domains) != 1:
        raise ValueError(f"a specialist trains on exactly one domain, got {list(domains)}")
    if cfg.mode == "distill":
        missing = [n for n in domains if teachers is None or n not in teachers]
        if missing:
            raise ValueError(f"distill mode needs a frozen specialist for every domain; "
                             f"missing teacher(s) for {missing}")
    if cfg.domain_schedule == "dynamic" and cfg.mode != "distill":
        raise ValueError("the dynamic domain schedule follows how far the student lags behind its "
                         "teachers: use it with mode='distill'")
    ctx = distributed.context(cfg.device)
    device = ctx.device(cfg.device)
    config, fingerprint = run_config(domains, cfg, model_cfg, optim_cfg, selection_metric, teachers)
    out = Path(out_dir) if out_dir is not None else None
    if out is not None and resume and (out / FINAL).is_file():
        return load_result(out, expect_fingerprint=fingerprint)
    write = out is not None and ctx.is_main  # only rank 0 writes

    def evaluate(model: nn.Module, splits, epoch: int) -> list[dict]:  # rank 0's numbers
        rows = (evaluate_history_rows(model, domains, splits, epoch, cfg.eval_batch_size, cfg.amp)
                if ctx.is_main else None)
        return ctx.broadcast(rows)

    # ---- model, losses, optimiser
    model = build_model(model_cfg, seed=cfg.seed).to(device, memory_format=memory_format(device))
    net = (DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda"
                                   else None) if ctx.enabled else model)
    labels = _global_labels(domains)
    n_classes = int(sum(len(torch.unique(v)) for v in labels.values()))
    losses = nn.ModuleDict()
    if cfg.mode != "distill" or cfg.metric_weight > 0:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            losses["metric"] = make_metric_loss(cfg.metric_loss, num_classes=n_classes,
                                                embedding_dim=model_cfg.embedding_dim,
                                                **cfg.metric_loss_params)
    teacher_cache: dict[str, torch.Tensor] = {}
    if cfg.mode == "distill":
        for i, name in enumerate(domains):
            teacher = teachers[name].to(device, memory_format=memory_format(device)).eval()
            for p in teacher.parameters():
                p.requires_grad_(False)
            t_dim = getattr(teacher, "embedding_dim", model_cfg.embedding_dim)
            losses[f"distill{i}"] = make_distillation_loss(
                cfg.distill_loss, student_dim=model_cfg.embedding_dim, teacher_dim=t_dim,
                **cfg.distill_loss_params)
            if not cfg.augment:  # inputs never change: embed the training set once
                teacher_cache[name] = torch.from_numpy(embed(
                    teacher, domains[name].train.images, cfg.eval_batch_size, amp=cfg.amp)).to(device)
    losses.to(device)
    params = list(model.parameters()) + list(losses.parameters())
    opt = _optimizer(optim_cfg, params)
    sched = (torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs)
             if optim_cfg.lr_schedule == "cosine" else None)

    # ---- data
    sampler = MultiDomainBatchSampler({n: d.train.labels for n, d in domains.items()},
                                      cfg.p, cfg.k, schedule=cfg.domain_schedule, seed=cfg.seed,
                                      rank=ctx.rank, world_size=ctx.world_size)
    # in-memory images get the affine jitter here; file-backed ones are cropped by the loader
    augment = augmenter() if cfg.augment else None
    jittered = {n for n, d in domains.items() if not _file_backed(d.train.images)}
    teacher_val: dict[str, float] = {}
    if cfg.domain_schedule == "dynamic":  # the teachers' own validation scores, once
        teacher_val = ctx.broadcast({n: split_metrics(
            embed(teachers[n], d.val.images, cfg.eval_batch_size, amp=cfg.amp), d.val
        )[selection_metric] for n, d in domains.items()} if ctx.is_main else None)

    # ---- resume
    start, history, best = 0, [], {"epoch": 0, "score": -1.0, "model": None}
    if out is not None and resume and (out / CHECKPOINT).is_file():
        ckpt = torch.load(out / CHECKPOINT, map_location=device, weights_only=False)
        if ckpt["fingerprint"] != fingerprint:
            raise ValueError(f"{out / CHECKPOINT} was written by a run with other settings or "
                             f"data; use another output folder or delete it to start afresh")
        model.load_state_dict(ckpt["model"])
        losses.load_state_dict(ckpt["losses"])
        opt.load_state_dict(ckpt["optimizer"])
        if sched is not None:
            sched.load_state_dict(ckpt["scheduler"])
        start, history, best = ckpt["epoch"], ckpt["history"], ckpt["best"]
    if teacher_val and _last_val(history, selection_metric):  # resumed: weights as they were
        sampler.set_weights(lag_weights(teacher_val, _last_val(history, selection_metric)))

    # ---- loop
    t0 = time.perf_counter()
    # a bar per epoch; one per batch too, in a terminal (in a notebook it would bury the output)
    batch_bar = progress and ctx.is_main and sys.stderr.isatty()
    epochs = tqdm(range(start, cfg.epochs), desc=f"{cfg.mode}", unit="epoch",
                  disable=not progress or not ctx.is_main, initial=start, total=cfg.epochs)
    for epoch in epochs:
        model.train()
        sampler.set_epoch(epoch)
        torch.manual_seed(cfg.seed * 1_000_003 + epoch)  # augmentation draws: resumable
        sums: dict[str, list[float]] = {n: [] for n in domains}
        batches = _epoch_batches(domains, sampler, cfg, epoch, device)
        for b, (name, idx_t, images) in enumerate(tqdm(batches, desc=f"epoch {epoch + 1}",
                                                       total=len(sampler), leave=False,
                                                       disable=not batch_bar)):
            x = to_input(images, device)
            if augment is not None and name in jittered:
                x = augment(x)
            with autocast(cfg.amp, device):
                emb = net(x).float()
            if cfg.mode == "distill":
                i = list(domains).index(name)
                if name in teacher_cache:
                    target = teacher_cache[name][idx_t.to(device)]
                else:
                    with torch.no_grad(), autocast(cfg.amp, device):
                        target = teachers[name](x).float()
                loss = losses[f"distill{i}"](emb, target)
                if "metric" in losses:
                    loss = loss + cfg.metric_weight * losses["metric"](emb, labels[name][idx_t].to(device))
            else:
                loss = losses["metric"](emb, labels[name][idx_t].to(device))
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"non-finite loss ({loss.item()}) at epoch {epoch + 1}, batch {b + 1} "
                    f"(domain {name!r}, loss {_loss_name(cfg)}); lower the learning rate "
                    f"(now {optim_cfg.lr}) or check the inputs of that domain")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            ctx.all_reduce_grads(losses.parameters())  # the model's own: DDP does it
            opt.step()
            sums[name].append(loss.item())
        if sched is not None:
            sched.step()
        done = epoch + 1
        history += [{"epoch": done, "domain": n, "split": "train", "metric": "loss",
                     "value": float(np.mean(v))} for n, v in sums.items() if v]
        if done % cfg.eval_every == 0 or done == cfg.epochs:
            rows = evaluate(model, cfg.eval_splits, done)
            history += rows
            score = _selection_score(rows, selection_metric)
            if score > best["score"]:
                best = {"epoch": done, "score": score,
                        "model": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}}
            epochs.set_postfix({f"val {selection_metric}": f"{score:.3f}"})
            if teacher_val:
                sampler.set_weights(lag_weights(teacher_val, _last_val(history, selection_metric)))
        if write:
            atomic_save({"epoch": done, "model": model.state_dict(), "losses": losses.state_dict(),
                         "optimizer": opt.state_dict(),
                         "scheduler": sched.state_dict() if sched is not None else None,
                         "history": history, "best": best, "fingerprint": fingerprint,
                         "config": config}, out / CHECKPOINT)
        if on_epoch_end is not None:
            on_epoch_end(done, pd.DataFrame(history))

    seconds = time.perf_counter() - t0
    model.load_state_dict(best["model"])
    model.eval()
    # metrics of the selected weights: the history already has them for the evaluated splits
    final = [r for r in history if r["epoch"] == best["epoch"] and r["split"] in cfg.eval_splits]
    missing = tuple(s for s in ("val", "test") if s not in cfg.eval_splits)
    final += evaluate(model, missing, best["epoch"]) if missing else []
    final = [{k: v for k, v in r.items() if k != "epoch"} for r in final if r["split"] != "train"]
    result = TrainResult(model, pd.DataFrame(history), best["epoch"], pd.DataFrame(final),
                         seconds, config)
    if write:
        atomic_save({"model": best["model"], "best_epoch": best["epoch"], "config": config,
                     "fingerprint": fingerprint, "seconds": seconds, "history": history,
                     "final": final, "world_size": ctx.world_size}, out / FINAL)
        atomic_write_text(result.history.to_csv(index=False), out / HISTORY)
        (out / CHECKPOINT).unlink(missing_ok=True)
    ctx.barrier()  # the others wait until rank 0 has written
    return result


def load_result(out_dir: str | Path, expect_fingerprint: str | None = None) -> TrainResult:
    """Load a finished run written by `train(..., out_dir=...)`."""
    out = Path(out_dir)
    state = torch.load(out / FINAL, map_location="cpu", weights_only=False)
    if expect_fingerprint is not None and state["fingerprint"] != expect_fingerprint:
        raise ValueError(f"{out / FINAL} was trained with other settings or data; use another "
                         f"output folder or delete it to retrain")
    model_cfg = ModelConfig.from_dict(state["config"]["model"])
    model = build_model(model_cfg)
    model.load_state_dict(state["model"])
    model.eval()
    return TrainResult(model, pd.DataFrame(state["history"]), state["best_epoch"],
                       pd.DataFrame(state["final"]), 0.0, state["config"])


def _loss_name(cfg: TrainConfig) -> str:
    if cfg.mode != "distill":
        return cfg.metric_loss
    return cfg.distill_loss + (f" + {cfg.metric_weight} x {cfg.metric_loss}"
                               if cfg.metric_weight > 0 else "")


def _optimizer(cfg: OptimConfig, params) -> torch.optim.Optimizer:
    if cfg.name == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.name == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


__all__ = ["TrainResult", "train", "load_result", "resolve_device", "atomic_save",
           "atomic_write_text"]
