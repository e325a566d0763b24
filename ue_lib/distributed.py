"""Multi-process training with torchrun: who this process is, and the few collectives we need.

``torchrun --nproc_per_node N -m ue_lib.cli train …`` starts N processes with ``RANK``,
``LOCAL_RANK`` and ``WORLD_SIZE`` in their environment; :func:`context` joins them into one
process group (NCCL on GPUs, gloo on CPUs). A plain ``python``/notebook process has no such
variables and gets a one-process context in which every collective is a no-op, so single-GPU
and CPU runs need no change.

The training loop (``ue_lib.training.loop``) uses it like this:

* every rank draws the same batch schedule and takes its own share of each P x K batch
  (whole classes, see ``MultiDomainBatchSampler(rank=, world_size=)``) and embeds it;
* :meth:`DistContext.gather_batch` then gives every rank the *whole* batch in the order one
  process would see it: the embeddings through ``torch.distributed.nn.functional.all_gather``
  (its backward sums each rank's gradient into the rank that made the embedding), the labels,
  item indices (and, for an objective that needs them, the inputs) without gradient. Every
  loss of this project is a function of the whole batch, not a sum over items: the batch-level
  ones (the distillation losses compare each anchor with every other item of the batch, the
  metric losses mine pairs in it, proxy-anchor's log-sum-exp per proxy runs over the batch)
  would be different functions of a shard (with P x K 32 x 4 on 4 GPUs a KL anchor would see 31
  candidates instead of 127). So every rank computes the loss of the whole batch, the same
  number; backward gives each rank world_size x the gradient of its own embeddings, and
  DistributedDataParallel's average over ranks leaves exactly the one-process gradient of the
  network's weights (tested against one process on gloo);
* the model is wrapped in ``DistributedDataParallel``; gradients of the losses' own parameters
  (proxies, projections: the same on every rank, from the same whole-batch loss) are averaged
  with :meth:`DistContext.all_reduce_grads`;
* a non-finite loss on any rank stops every rank at the same step (:meth:`DistContext.any`,
  an all-reduced flag), instead of leaving the others waiting in a collective;
* rank 0 evaluates and :meth:`DistContext.broadcast` hands its numbers to the others, so every
  rank selects the same epoch; only rank 0 writes checkpoints, models and results.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from .device import resolve_device


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def device(self, name: str = "auto") -> torch.device:
        """`name` resolved; on CUDA each process gets the GPU of its local rank (made current by
        :func:`context` when it joined the process group)."""
        device = resolve_device(name)
        if self.enabled and device.type == "cuda" and device.index is None:
            device = torch.device("cuda", self.local_rank)
        return device

    def broadcast(self, obj):
        """Rank 0's `obj` on every rank (any picklable object)."""
        if not self.enabled:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def all_reduce_grads(self, params: Iterable[torch.nn.Parameter]) -> None:
        """Average the gradients of `params` over the ranks (those with a gradient: every rank
        trains on the same domain at the same step, so they agree on which ones)."""
        if not self.enabled:
            return
        for p in params:
            if p.grad is not None:
                dist.all_reduce(p.grad)
                p.grad.div_(self.world_size)

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def any(self, flag: bool, device: torch.device | str = "cpu") -> list[int]:
        """The ranks on which `flag` is true (every rank gets the same list; [] or [0] alone).
        `device`: where the collective's tensors live (the rank's GPU under NCCL)."""
        if not self.enabled:
            return [0] if flag else []
        flags = [torch.zeros(1, device=device) for _ in range(self.world_size)]
        dist.all_gather(flags, torch.tensor([float(flag)], device=device))
        return [r for r, f in enumerate(flags) if f.item()]

    def check_shares(self, n: int, k: int, device: torch.device | str = "cpu") -> None:
        """Every rank holds `n` items of this batch, whole classes of `k` (what `gather_batch`
        needs); else a ValueError on every rank naming the shares and the fix."""
        if not self.enabled:
            return
        sizes = [torch.zeros(1, dtype=torch.long, device=device) for _ in range(self.world_size)]
        dist.all_gather(sizes, torch.tensor([n], device=device))
        if len({int(s) for s in sizes}) != 1 or n % k:
            raise ValueError(f"the ranks hold {[int(s) for s in sizes]} items of one batch: each must "
                             f"hold the same number of whole classes of {k} items; choose P (the `p` "
                             f"setting) divisible by the {self.world_size} processes and domains with "
                             f"at least P classes")

    def gather_batch(self, tensor: torch.Tensor, k: int, grad: bool = False) -> torch.Tensor:
        """The whole P x K batch from each rank's share of it, in the one-process order: rank r
        holds classes r, r + N, r + 2N, ... of the batch, K consecutive items each
        (``MultiDomainBatchSampler``), so the shares are interleaved back class by class. With
        `grad`, through ``torch.distributed.nn.functional.all_gather`` (differentiable). Every
        rank must hold as many whole classes (`check_shares`, once per batch)."""
        if not self.enabled:
            return tensor
        if grad:
            import torch.distributed.nn.functional as dist_nn

            parts = dist_nn.all_gather(tensor)
        else:
            parts = [torch.empty_like(tensor) for _ in range(self.world_size)]
            dist.all_gather(parts, tensor.contiguous())
        rest = tensor.shape[1:]
        stacked = torch.stack(list(parts)).view(self.world_size, len(tensor) // k, k, *rest)
        return stacked.transpose(0, 1).reshape(self.world_size * len(tensor), *rest)


def context(device: str = "auto") -> DistContext:
    """This process's place in a torchrun job (joining the process group on first use)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext()
    ctx = DistContext(int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0")), world)
    if not dist.is_initialized():
        backend = "nccl" if resolve_device(device).type == "cuda" else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(ctx.local_rank)
        # the others wait while rank 0 evaluates (minutes on the big test sets): a long timeout
        dist.init_process_group(backend, timeout=timedelta(hours=1))
    return ctx


def shutdown() -> None:
    """Leave the process group. Collected first: a DistributedDataParallel still held by a
    reference cycle (say, the frames of a training stopped by an error) would otherwise be
    destroyed at exit, after its group, and abort the process (measured: 1 exit in 12 of the
    NaN test aborted; none in 30 with the collection)."""
    if dist.is_available() and dist.is_initialized():
        gc.collect()
        dist.destroy_process_group()


__all__ = ["DistContext", "context", "shutdown"]
