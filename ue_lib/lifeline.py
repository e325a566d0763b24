"""Worker processes that end with their parent.

A pool's worker (`RunFolder.map`'s spawn processes, a Dask worker of `ue sweep --workers N`)
calls `watch_parent` when it starts: a daemon thread then checks every `INTERVAL` seconds
whether the process that started it is still its parent, and ends the worker the moment it is
not (the parent was killed: Ctrl-C, kill -9, the kernel's out-of-memory killer), instead of
leaving it running, reparented to PID 1, holding its memory. The multiprocessing resource
tracker ends by itself once the last process holding its pipe (the workers) is gone.

Polling rather than Linux's parent-death signal: that signal fires when the *thread* that
started the child ends, which in a Dask nanny or an executor is not the parent's life.
"""

from __future__ import annotations

import os
import signal
import threading
import time

INTERVAL = 0.5  # seconds between checks: a worker outlives its parent by at most about this


PARENT_VAR = "UE_LIFELINE_PARENT"  # the PID a worker must outlive no more than INTERVAL


def watch_parent(parent: int | None = None, interval: float = INTERVAL) -> int:
    """Start watching this process's parent (once per process); returns the parent's PID.
    `parent` (or $UE_LIFELINE_PARENT, which `announce_parent` sets for the children to come) is
    the PID of the process that started this one, as that process saw it: a worker spends seconds
    importing before it gets here, and if its parent died meanwhile, `os.getppid()` is already
    the reaper's PID (1), not the parent's. Without either, the parent is the present one."""
    if parent is None and os.environ.get(PARENT_VAR, "").isdigit():
        parent = int(os.environ[PARENT_VAR])
    if parent is None:
        parent = os.getppid()
    if not any(t.name == "ue-lifeline" for t in threading.enumerate()):
        threading.Thread(target=_watch, args=(parent, interval), daemon=True,
                         name="ue-lifeline").start()
    return parent


def announce_parent() -> None:
    """Tell the child processes this one starts from now on (they inherit the environment)
    that it is their parent (`watch_parent`)."""
    os.environ[PARENT_VAR] = str(os.getpid())


def _watch(parent: int, interval: float) -> None:
    while os.getppid() == parent:
        time.sleep(interval)
    os.kill(os.getpid(), signal.SIGKILL)  # the parent is gone: nothing is left to report to


def dask_setup(worker) -> None:
    """Dask's preload hook (``LocalCluster(preload=["ue_lib.lifeline"])``): each worker process
    watches its parent, the process that started the cluster."""
    watch_parent()
