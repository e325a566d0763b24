"""Where the time goes: ``ue profile`` runs notebooks with every process profiled
(`ue_lib.timing`) and makes one table per run folder.

For each notebook: its wall time (``run.json``), the seconds its kernel and workers spent in each
category of `ue_lib.timing.CATEGORIES` (summed over processes, so with 2 workers they can add up
to twice the wall time), the FLOPs its trainings and evaluations counted, and its *compute floor*:
those FLOPs divided by this machine's best measured matrix-multiply rate on all its cores
(`gemm_rate`, single-threaded products at the sizes the heads and the evaluator use, times the
number of cores). The wall time as a multiple of the floor says how far the notebook is from
spending its time on arithmetic alone; the categories say where the rest goes.

The table is written to ``<run folder>/profile/where_the_time_goes.md`` and ``.csv``.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pandas as pd

from .io import atomic_write_text
from .timing import CATEGORIES, ENV_DIR, ENV_TAG

FLOP_KINDS = ("data", "training", "evaluation")  # the trunk's pass for the feature cache is "data"

# (m, k, n) of the products timed by `gemm_rate`: a P x K batch through a head's layers, an
# evaluation batch, and the evaluator's query-by-gallery similarity block
GEMM_SIZES = ((64, 1280, 256), (64, 256, 64), (512, 1280, 256), (512, 64, 2048))


def gemm_rate(sizes=GEMM_SIZES, seconds: float = 0.2) -> dict:
    """This machine's float32 matrix-multiply rate in GFLOP/s: each (m, k, n) of `sizes` timed
    on one thread (as the profile's `threads` 1 trains) for about `seconds`; the best of them,
    and that times the number of cores (the rate the floor assumes)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rates = {}
        for m, k, n in sizes:
            a, b = torch.randn(m, k), torch.randn(k, n)
            a @ b  # warm-up
            reps, start = 0, time.perf_counter()
            while (elapsed := time.perf_counter() - start) < seconds:
                a @ b
                reps += 1
            rates[f"{m}x{k}x{n}"] = 2.0 * m * k * n * reps / elapsed / 1e9
    finally:
        torch.set_num_threads(before)
    cores = os.cpu_count() or 1
    return {"per_size": rates, "best_per_core": max(rates.values()), "cores": cores,
            "machine": max(rates.values()) * cores}


def read_profiles(profile_dir: str | Path) -> pd.DataFrame:
    """One row per profiled process: tag (notebook), pid, wall, waiting, seconds per category,
    FLOPs of training and evaluation. Unreadable files are skipped (a process killed while
    writing leaves none: writes are atomic)."""
    rows = []
    for path in sorted(Path(profile_dir).glob("*.json")):
        try:
            rec = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        rows.append({"notebook": rec.get("tag", ""), "pid": rec.get("pid"),
                     "wall": rec.get("wall", 0.0), "waiting": rec.get("waiting", 0.0),
                     **{c: rec.get("seconds", {}).get(c, 0.0) for c in CATEGORIES},
                     **{f"{kind}_flops": rec.get("flops", {}).get(kind, 0.0) for kind in FLOP_KINDS}})
    columns = ["notebook", "pid", "wall", "waiting", *CATEGORIES, *(f"{k}_flops" for k in FLOP_KINDS)]
    return pd.DataFrame(rows, columns=columns)


def where_the_time_goes(processes: pd.DataFrame, walls: dict[str, float], rate: dict) -> pd.DataFrame:
    """Per notebook (of `walls`, in that order): wall seconds, processes, the seconds of each
    category summed over its processes, GFLOPs, floor seconds and wall / floor."""
    rows = []
    for notebook, wall in walls.items():
        mine = processes[processes.notebook == notebook]
        flops = float(sum(mine[f"{kind}_flops"].sum() for kind in FLOP_KINDS))
        floor = flops / (rate["machine"] * 1e9)
        rows.append({"notebook": notebook, "wall s": wall, "processes": len(mine),
                     **{c: float(mine[c].sum()) for c in CATEGORIES},
                     "GFLOP": flops / 1e9, "floor s": floor,
                     "wall / floor": wall / floor if floor > 0 else float("nan")})
    return pd.DataFrame(rows)


def markdown(table: pd.DataFrame, rate: dict) -> str:
    """The table as Markdown: seconds without decimals, the multiple with one."""
    shown = table.copy()
    for column in ["wall s", *CATEGORIES, "GFLOP"]:
        shown[column] = shown[column].map(lambda v: f"{v:,.0f}")
    shown["floor s"] = shown["floor s"].map(lambda v: f"{v:,.2f}")
    shown["wall / floor"] = shown["wall / floor"].map(lambda v: f"{v:,.0f}×" if v == v else "–")
    total = table["wall s"].sum()
    head = (f"Process-seconds per category, summed over each notebook's kernel and workers; "
            f"floor: its FLOPs at {rate['best_per_core']:.1f} GFLOP/s per core × {rate['cores']} "
            f"cores. All notebooks: {total:,.0f} s of wall time.\n\n")
    lines = ["| " + " | ".join(shown.columns) + " |", "|" + " --- |" * len(shown.columns)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in shown.itertuples(index=False)]
    return head + "\n".join(lines) + "\n"


def report(run_dir: str | Path) -> str:
    """Make the table of a profiled run folder (its ``profile/`` and ``run.json``), write it
    beside them and return it as Markdown."""
    run_dir = Path(run_dir)
    walls = json.loads((run_dir / "run.json").read_text()).get("seconds", {})
    processes = read_profiles(run_dir / "profile")
    walls = {nb: s for nb, s in walls.items() if (processes.notebook == nb).any()}
    rate = gemm_rate()
    table = where_the_time_goes(processes, walls, rate)
    text = markdown(table, rate)
    atomic_write_text(text, run_dir / "profile" / "where_the_time_goes.md")
    atomic_write_text(table.to_csv(index=False), run_dir / "profile" / "where_the_time_goes.csv")
    atomic_write_text(json.dumps(rate, indent=1), run_dir / "profile" / "gemm_rate.json")
    return text


def profile_run(run_notebooks, spec, only=None, log=print) -> str:
    """Run the notebooks of `spec` (``ue run``'s `run_notebooks`) with every process profiled,
    then `report`. A notebook already done is skipped by the runner and keeps its old profile;
    profile a fresh run folder to measure all of them."""
    out = Path(spec.out_dir).resolve()
    profile_dir = out / "profile"
    profile_dir.mkdir(parents=True, exist_ok=True)
    before = {k: os.environ.get(k) for k in (ENV_DIR, ENV_TAG)}
    os.environ[ENV_DIR] = str(profile_dir)
    try:
        run_notebooks(spec, only=only, log=log)
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return report(out)
