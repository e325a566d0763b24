"""What the main paper's notebooks run beyond single models: every seed of notebook 04, the
ablations of notebook 05 (in this process, or read from a finished sweep), and every model
notebooks 01-04 use, trained ahead (`ue train`, also under torchrun)."""

from __future__ import annotations

import pandas as pd

from ..io import read_sweep
from ..verdicts import Rules
from . import models
from .histories import peak_epochs, stopping_cost


def repeat_over_seeds(folder, seeds: list[int], methods: list[str], rules: Rules | None = None
                      ) -> tuple[dict[int, pd.DataFrame], dict[int, pd.DataFrame]]:
    """Notebook 04: per seed, the specialists, naive fusion and the `methods` students, their
    test rows recorded (universal models with the merged index); returns naive fusion's
    validation peaks and stopping costs per seed (`histories.peak_epochs` / `stopping_cost`)."""
    rules = rules or Rules()
    p, peaks, costs = folder.profile, {}, {}
    for s in seeds:
        for res in models.specialists(folder, s).values():
            folder.record("specialist", p.metric_loss, res, seed=s)
        naive = models.naive(folder, s)
        folder.record("naive", p.metric_loss, naive, seed=s, merged=True)
        peaks[s] = peak_epochs(naive.history, "recall@1", "val", rules)
        costs[s] = stopping_cost(naive.history, naive.best_epoch, "recall@1", rules)
        for method in methods:
            folder.record("distill", method, models.student(folder, method, s), seed=s, merged=True)
    return peaks, costs


def ablation(folder, knob: str, values: list, seeds: list[int], method: str = "kl",
             tuned: bool = True) -> pd.DataFrame:
    """One knob of notebook 05, in this process: for each value of `knob` (a profile setting,
    e.g. "kl.temperature" or "domain_schedule") and seed, the `method` student (and, when the
    knob changes them, its teachers) trained with that value; its test rows per domain, with a
    column named after the knob. Models are shared with the other notebooks' run folder.

    One knob varies at a time around the student the other notebooks report: with `tuned`
    (and a `distill_tuning`), around the settings `models.tuning` chose at the base profile (not
    re-tuned per value: a knob is compared at that setting; a knob that is itself a tuned
    setting replaces the chosen value), so the knob's profile value gives that very student.
    `tuned=False`: around the profile's own settings."""
    chosen = models.tuning(folder, method).chosen if tuned and folder.profile.distill_tuning else {}
    parts = []
    for value in values:
        profile = folder.profile.with_overrides({knob: value})
        for s in seeds:
            student = models.distill(folder, method, s, profile, {**chosen, knob: value})
            rows = folder.rows_of("distill", method, student, s, profile=profile)
            parts.append(rows.assign(**{knob: value}))
    return pd.concat(parts, ignore_index=True)


def ablations(folder, sweep_dir: str = "", method: str = "kl", tuned: bool = True
              ) -> dict[str, tuple[list, pd.DataFrame]]:
    """Notebook 05's tables, {knob: (values, rows)}: the `method` student's per-domain test rows
    for each value of each knob (around its tuned settings unless `tuned=False`: `ablation`).
    Read from a finished `ue sweep` folder when `sweep_dir` is given, else run the profile's
    `ablation_grid` over its `ablation_seeds` in this process."""
    if sweep_dir:
        grid, table = read_sweep(sweep_dir)
        table = table[(table.model == "distill") & (table.method == method)
                      & ~table.metric.str.endswith("_curve") & ~table.domain.str.startswith("merged")]
        return {knob: (values, table) for knob, values in grid.items()}
    seeds = folder.profile.seed_list("ablation_seeds", offset=folder.seed)
    return {knob: (values, ablation(folder, knob, values, seeds, method, tuned))
            for knob, values in folder.profile.ablation_grid.items()}


PARTS = ("specialists", "naive", "students")


def train_models(folder, parts: tuple[str, ...] = PARTS) -> list[tuple[str, object]]:
    """Train (or find finished) every model notebooks 01-04 use, into the folders they look in:
    per seed of the profile's `seeds` (offset by the run's seed, as notebook 04 does) the
    specialists, the naive model and the students (all `distill_methods` on the first seed, as
    notebook 03, the `final_methods` on the others), each student with its tuned settings, and
    the other points of each method's tuning (`models.tuning`). Returns (name, TrainResult)
    pairs, each model once (`result.loaded`: found finished). Run it under torchrun to train
    each model on several GPUs; `ue run` then only evaluates."""
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        raise ValueError(f"unknown part(s) {', '.join(unknown)}; valid: {', '.join(PARTS)}")
    p = folder.profile
    seeds = p.seed_list("seeds", offset=folder.seed)
    done, listed = [], set()

    def add(name: str, result) -> None:
        if id(result) not in listed:  # a tuning point is also the base seed's student
            listed.add(id(result))
            done.append((name, result))

    for s in seeds:
        if "specialists" in parts:
            for n, r in models.specialists(folder, s).items():
                add(f"specialist {n} seed {s}", r)
        if "naive" in parts:
            add(f"naive seed {s}", models.naive(folder, s))
        if "students" in parts:
            for m in p.methods("distill_methods" if s == seeds[0] else "final_methods"):
                add(f"distill-{m} seed {s}", models.student(folder, m, s))
    if "students" in parts and p.distill_tuning:
        for m in dict.fromkeys(p.methods("distill_methods") + p.methods("final_methods")):
            diverged = models.tuning(folder, m).table.error.tolist()
            for point, error in zip(p.tuning_points(), diverged):
                if not error:  # each trained point (now in memory)
                    label = ",".join(f"{k}={v}" for k, v in point.items())
                    add(f"distill-{m} tuning {label} seed {folder.seed}",
                        models.distill(folder, m, folder.seed, p, point))
    return done
