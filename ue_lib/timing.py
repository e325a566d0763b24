"""Where a process's time goes: a sampling profiler that runs inside the process, and a FLOP count.

Off unless ``UE_PROFILE_DIR`` is set (``ue profile`` sets it; see `ue_lib.profile_report`).
Then importing ``ue_lib`` starts a CPU-time timer that, every ``UE_PROFILE_INTERVAL`` seconds of
the process's CPU time (default 0.01), looks at the main thread's Python stack and adds that
interval to one *category* (`CATEGORIES`, by the rules of `classify`). Every few seconds and at exit
it writes ``<UE_PROFILE_DIR>/<tag>.<pid>.json`` atomically, so a killed process loses at most the
last few seconds. ``UE_PROFILE_TAG`` (the runner sets it to the notebook's name) is inherited by
the notebook's kernel and its workers, which is how their files are grouped.

A stack is sampled from Python frames only: CPU time inside a C call (a matrix product, faiss's
search, on all its threads) is counted in the category of the Python code that called it. A
process that waits (for its workers, say) uses no CPU and is not sampled: the workers are
profiled themselves. No external sampler (py-spy) is needed: it relies on ptrace, which
containers often forbid (here it stalled the processes it sampled).

FLOPs: the training loop, the evaluator's search and the embedding pass add their floating-point
operations with `add_flops` (counted by torch's ``FlopCounterMode`` on one batch, or from the
matrix sizes), so a report can set the work done against the machine's measured GEMM rate.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import signal
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

ENV_DIR, ENV_TAG, ENV_INTERVAL = "UE_PROFILE_DIR", "UE_PROFILE_TAG", "UE_PROFILE_INTERVAL"

CATEGORIES = ("start-up and imports", "data", "training: forward", "training: loss",
              "training: backward", "training: optimiser", "training: other", "evaluation",
              "index building and search", "models saved and loaded", "figures", "other")

# (substring of the frame's file name, function name or None for any) -> tag
_RULES: tuple[tuple[str, str | None, str], ...] = (
    ("<frozen importlib", None, "import"),
    ("ue_lib/training/loop.py", "train_epoch", "train"),
    ("ue_lib/evaluate/", None, "evaluate"),
    ("torch/autograd/", None, "backward"),
    ("torch/_tensor.py", "backward", "backward"),
    ("torch/optim/", None, "optimiser"),
    ("ue_lib/losses/", None, "loss"),
    ("/loss.py", None, "loss"),  # a system's own loss module (torch's too)
    ("ue_lib/", "loss", "loss"),
    ("torch/nn/modules/", None, "forward"),
    ("faiss/", None, "index"),
    ("/indexes.py", None, "index"),  # a system's faiss indexes
    ("matplotlib/", None, "figures"),
    ("seaborn/", None, "figures"),
    ("figures.py", None, "figures"),
    ("IPython/core/pylabtools.py", None, "figures"),
    ("ue_lib/data/", None, "data"),
    ("/scenes.py", None, "data"),  # synthetic images composed by a system, cached
    ("torchvision/models/detection/", None, "evaluate"),  # a detection model's inference
    ("torch/serialization.py", None, "store"),
    ("ue_lib/training/store.py", None, "store"),
    ("ue_lib/features.py", None, "cache"),
)
# the innermost frame of a thread that waits: (file name substring, function)
_WAITS: tuple[tuple[str, str], ...] = (
    ("threading.py", "wait"), ("threading.py", "_wait_for_tstate_lock"), ("threading.py", "join"),
    ("selectors.py", "select"), ("queue.py", "get"), ("concurrent/futures/", "result"),
    ("concurrent/futures/", "wait"), ("multiprocessing/connection.py", "_recv"),
    ("multiprocessing/connection.py", "wait"), ("multiprocessing/connection.py", "poll"),
    ("multiprocessing/queues.py", "get"), ("asyncio/base_events.py", "_run_once"),
    ("zmq/", "poll"), ("lifeline.py", "_watch"),
)
_TRAINING = (("backward", "training: backward"), ("optimiser", "training: optimiser"),
             ("loss", "training: loss"), ("forward", "training: forward"))
_PLAIN = (("evaluate", "evaluation"), ("index", "index building and search"),
          ("store", "models saved and loaded"), ("figures", "figures"), ("data", "data"))


def is_waiting(innermost: tuple[str, str]) -> bool:
    """Whether a thread whose innermost Python frame is (file name, function) is waiting."""
    filename, function = innermost
    return any(part in filename and function == name for part, name in _WAITS)


def tags(frames: Iterable[tuple[str, str]]) -> set[str]:
    """The tags (`_RULES`) of a stack's (file name, function) frames."""
    filename_tags = set()
    for filename, function in frames:
        filename = filename.replace("\\", "/")
        filename_tags.update(tag for part, name, tag in _RULES
                             if part in filename and (name is None or name == function))
    return filename_tags


def classify(frames: list[tuple[str, str]]) -> str | None:
    """The category of one sampled stack, innermost frame first; None for a waiting thread.

    Imports anywhere in the stack count as start-up, computing the trunk features for the cache
    as data; evaluation wins over training (the loop evaluates between epochs); inside a
    training epoch backward > optimiser > loss > forward; then index work, models saved or
    loaded, figures, data; anything else is "other"."""
    if not frames or is_waiting(frames[0]):
        return None
    found = tags(frames)
    if "import" in found:
        return "start-up and imports"
    if "cache" in found:  # trunk features computed for the cache: data preparation
        return "data"
    if "evaluate" in found:
        return "evaluation"
    if "train" in found and "store" not in found:  # a checkpoint written between epochs: stored
        return next((cat for tag, cat in _TRAINING if tag in found), "training: other")
    return next((cat for tag, cat in _PLAIN if tag in found), "other")


def _stack(frame) -> list[tuple[str, str]]:
    out = []
    while frame is not None:
        out.append((frame.f_code.co_filename, frame.f_code.co_name))
        frame = frame.f_back
    return out


def process_start_time() -> float:
    """This process's start, as a `time.time()` value (now, where it cannot be read)."""
    try:
        import psutil

        return psutil.Process().create_time()
    except Exception:  # noqa: BLE001 (no psutil, or no /proc): start-up is then not counted
        return time.time()


class Profiler:
    """Per-category CPU seconds and FLOPs of this process (see the module doc).

    Sampling is driven by the CPU-time interval timer (``ITIMER_PROF``): every `interval`
    seconds of this process's CPU time, ``SIGPROF`` runs `_on_signal` in the main thread between
    two bytecodes, with the main thread's current frame, and adds the CPU time used since the
    previous sample to that frame's category. (Walking another thread's frames from a
    sampling thread, ``sys._current_frames``, crashed the interpreter here.) A process waiting
    uses no CPU and is not sampled. Only the main thread's stack is seen: the kernel runs cells
    there, and a worker its tasks."""

    def __init__(self, out_dir: str | os.PathLike, tag: str, interval: float = 0.01):
        self.path = Path(out_dir) / f"{tag or 'process'}.{os.getpid()}.json"
        self.tag, self.interval = tag, interval
        self.started, self.loaded = process_start_time(), time.time()
        self.seconds: dict[str, float] = defaultdict(float)
        self.flops: dict[str, float] = defaultdict(float)
        self.waiting = 0.0
        self._written = time.perf_counter()
        self._cpu = time.process_time()
        from .io import atomic_write_text  # here, not at import: only a profiled process needs it

        self._write = atomic_write_text  # (imported before any signal arrives, never in a handler)

    def start(self) -> Profiler | None:
        """Install the timer and its handler (from the main thread only; None elsewhere)."""
        if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
            return None
        signal.signal(signal.SIGPROF, self._on_signal)
        signal.setitimer(signal.ITIMER_PROF, self.interval, self.interval)
        atexit.register(self.stop)
        return self

    def _on_signal(self, signum, frame) -> None:
        # the CPU time since the last sample, not the interval: a Python handler runs only
        # between bytecodes, and the signals that arrive during one long C call (a faiss search
        # over a million items) are delivered as one, after it
        cpu = time.process_time()
        self.sample(_stack(frame), cpu - self._cpu)
        self._cpu = cpu
        if time.perf_counter() - self._written > 5.0:
            self._written = time.perf_counter()
            try:
                self.write()
            except OSError:
                pass

    def sample(self, frames: list[tuple[str, str]], dt: float) -> None:
        """Add `dt` seconds to the category of a stack (innermost frame first)."""
        category = classify(frames)
        if category is None:
            self.waiting += dt
        else:
            self.seconds[category] += dt

    def add_flops(self, kind: str, flops: float) -> None:
        self.flops[kind] += float(flops)

    def record(self) -> dict:
        seconds = dict(self.seconds)
        seconds["start-up and imports"] = (seconds.get("start-up and imports", 0.0)
                                           + max(0.0, self.loaded - self.started))
        return {"tag": self.tag, "pid": os.getpid(), "argv": sys.argv[:3],
                "wall": time.time() - self.started, "waiting": self.waiting,
                "seconds": seconds, "flops": dict(self.flops)}

    def write(self) -> None:
        """The record, written atomically (a reader never sees half a file)."""
        self._write(json.dumps(self.record()), self.path)

    def stop(self) -> None:
        signal.setitimer(signal.ITIMER_PROF, 0, 0)
        try:
            self.write()
        except OSError:
            pass


_PROFILER: Profiler | None = None


def start_from_environment() -> Profiler | None:
    """Start this process's profiler when ``UE_PROFILE_DIR`` is set (once per process)."""
    global _PROFILER
    out = os.environ.get(ENV_DIR)
    if out and _PROFILER is None:
        try:
            interval = float(os.environ.get(ENV_INTERVAL, "0.01"))
        except ValueError:
            interval = 0.01
        _PROFILER = Profiler(out, os.environ.get(ENV_TAG, ""), interval).start()  # None off main
    return _PROFILER


def enabled() -> bool:
    return _PROFILER is not None


_RELABEL: list[str] = []  # `counted_as`: the kind that FLOPs of any kind are counted as


def add_flops(kind: str, flops: float) -> None:
    """Count `flops` floating-point operations of `kind` ("training", "evaluation"; inside
    `counted_as`, that block's kind); a no-op unless this process is profiled."""
    if _PROFILER is not None:
        _PROFILER.add_flops(_RELABEL[-1] if _RELABEL else kind, flops)


@contextlib.contextmanager
def counted_as(kind: str):
    """Count the FLOPs of the block as `kind` (the trunk's pass that fills the feature cache is
    an embedding pass, counted as "data")."""
    _RELABEL.append(kind)
    try:
        yield
    finally:
        _RELABEL.pop()


def count_flops(function, *args, **kwargs) -> tuple[object, float]:
    """``function(*args, **kwargs)`` and the FLOPs torch counted in it (``FlopCounterMode``)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        out = function(*args, **kwargs)
    return out, float(counter.get_total_flops())
