"""Multi-process training with torchrun: who this process is, and the few collectives we need.

``torchrun --nproc_per_node N -m ue_lib.cli train …`` starts N processes with ``RANK``,
``LOCAL_RANK`` and ``WORLD_SIZE`` in their environment; :func:`context` joins them into one
process group (NCCL on GPUs, gloo on CPUs). A plain ``python``/notebook process has no such
variables and gets a one-process context in which every collective is a no-op, so single-GPU
and CPU runs need no change.

The training loop (``ue_lib.train``) uses it like this:

* every rank draws the same batch schedule and takes its own share of each P x K batch
  (whole classes, see ``MultiDomainBatchSampler(rank=, world_size=)``);
* the model is wrapped in ``DistributedDataParallel``; gradients of the losses' own parameters
  (proxies, projections) are averaged with :meth:`DistContext.all_reduce_grads`;
* rank 0 evaluates and :meth:`DistContext.broadcast` hands its numbers to the others, so every
  rank selects the same epoch; only rank 0 writes checkpoints, models and results.
"""

from __future__ import annotations

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
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


__all__ = ["DistContext", "context", "shutdown"]
