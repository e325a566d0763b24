"""Atomic writes: every file the project writes (checkpoints, models, caches, results, figures)
goes to a temporary file in the same folder first and is then renamed over its target, so an
interrupted run never leaves a half-written file behind. Torch-free: `torch_save` imports torch
only when called.

`RESULT_COLUMNS` is the one declaration of a results table's columns (`results.csv`, each
notebook's `results/<notebook>.csv`, the sweep tables), and `result_rows` the one builder of its
rows. `read_sweep` reads a finished sweep folder (`ue sweep` writes it).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path

import pandas as pd

RESULT_COLUMNS = ["notebook", "model", "method", "domain", "split", "metric", "value", "seed",
                  "epoch"]
# metrics that are wall-clock measurements (a search time per query, a time per image, a
# training time): shown and kept in results.csv, never compared with a regression baseline,
# since they vary from run to run
TIMING_METRICS = ("search_us", "ms_per_image", "train_seconds")
SWEEP_SPEC, SWEEP_TABLE = "sweep.json", "sweep.csv"  # in a sweep folder: its grid, its table


def result_rows(metrics: Mapping[str, float], *, notebook: str, model: str, method: str,
                domain: str, seed: int, epoch: int, split: str = "test") -> list[dict]:
    """Rows of a results table (`RESULT_COLUMNS`), one per metric of `metrics` ({name: value}),
    all with the same key: the one place a result row is made."""
    return [{"notebook": notebook, "model": model, "method": method, "domain": domain,
             "split": split, "metric": m, "value": v, "seed": seed, "epoch": epoch}
            for m, v in metrics.items()]


def read_sweep(sweep_dir: str | os.PathLike) -> tuple[dict[str, list], pd.DataFrame]:
    """A finished sweep folder's grid ({parameter: values}) and table (a DataFrame of its
    `sweep.csv`); FileNotFoundError naming the file and the fix when it has none."""
    folder = Path(sweep_dir)
    if not (folder / SWEEP_TABLE).is_file():
        raise FileNotFoundError(f"{folder / SWEEP_TABLE} not found: run `ue sweep … --out {folder}` "
                                f"first")
    spec = json.loads((folder / SWEEP_SPEC).read_text())
    return spec["params"], pd.read_csv(folder / SWEEP_TABLE)


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call `write(tmp)` on a temporary path beside `path`, then rename it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def atomic_write_text(text: str, path: str | os.PathLike) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def torch_save(obj, path: str | os.PathLike) -> Path:
    import torch

    return atomic_write(path, lambda tmp: torch.save(obj, tmp))


def save_figure(fig, path: str | os.PathLike, dpi: int = 110) -> Path:
    return atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=dpi, bbox_inches="tight"))


def slug(text: str) -> str:
    """A folder-safe name: 'temperature=0.05,seed=0' stays; 'folder:/a/b' -> 'folder-a-b-<hash>'
    (a short hash is added whenever characters were replaced or the name was shortened, so two
    different texts never share a folder)."""
    import hashlib
    import re

    clean = re.sub(r"[^A-Za-z0-9_.,=+-]+", "-", text).strip("-")
    if clean != text or len(clean) > 100:
        clean = f"{clean[:100]}-{hashlib.sha1(text.encode()).hexdigest()[:6]}"
    return clean
