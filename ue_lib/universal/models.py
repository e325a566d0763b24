"""The main paper's models in a run folder (`ue_lib.runfolder.RunFolder`): the specialists, naive
fusion and the distilled students, each trained when missing and reused when present, and the
equal tuning of every distillation method.

Every function takes the run folder first; `seed` defaults to the run's and `profile` to its
profile. Students are tuned (`UniversalSettings.distill_tuning`): every distillation method gets
the same grid, one student per point at the run's base seed, kept in the same model folders (so
the tuning of notebook 03 is loaded, not repeated, by notebooks 04 and 05). The point with the
best mean validation recall@1 (never test) gives the settings of that method's student at every
seed; the base seed's student is that point's model itself. Teachers never change with the
tuning.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..io import slug
from ..training import TrainResult
from .objectives import Distillation, NaiveFusion, Specialist
from .settings import UniversalSettings

VAL_SCORE = "val_recall@1"  # the column of a tuning table that selects (TrainJob's selection metric)


@dataclass(frozen=True, eq=False)
class Tuning:
    """One distillation method's tuning (`UniversalSettings.distill_tuning`) at a run's base seed."""

    method: str
    # one row per grid point, in grid order: its settings (a column per tuned setting), the
    # mean over domains of its validation recall@1 at its selected epoch (`val_recall@1`,
    # NaN when the training diverged: see `error`), `best_epoch`, `epochs`, `seconds` (of its
    # training, also when loaded) and `chosen`
    table: pd.DataFrame
    chosen: dict  # the overrides of the best point (ties: the first in grid order)
    profile: UniversalSettings  # the profile with `chosen` applied: what the method's students train with

    def describe(self) -> str:
        """'kl: lr=0.002 (mean val recall@1 0.853) over lr=0.0006 (0.841)'."""
        def point(row) -> str:
            return ", ".join(f"{k}={row[k]}" for k in self.chosen) or "the profile's settings"

        best = self.table[self.table.chosen].iloc[0]
        rest = ", ".join(f"{point(r)} ({'diverged' if r.error else f'{r[VAL_SCORE]:.3f}'})"
                         for _, r in self.table[~self.table.chosen].iterrows())
        return (f"{self.method}: {point(best)} (mean val recall@1 {best[VAL_SCORE]:.3f})"
                + (f" over {rest}" if rest else ""))


def specialists(folder, seed: int | None = None, profile: UniversalSettings | None = None
                ) -> dict[str, TrainResult]:
    """One model per domain (the teachers)."""
    p = profile or folder.profile
    return {name: specialist(folder, name, seed, p) for name in folder.domains(seed, p)}


def specialist(folder, domain: str, seed: int | None = None,
               profile: UniversalSettings | None = None) -> TrainResult:
    """`domain`'s own model (its teacher)."""
    p, seed = profile or folder.profile, folder.seed if seed is None else seed
    d = folder.domains(seed, p)[domain]
    return folder.train(Specialist(p), {domain: d}, seed, f"{slug(domain)}-seed{seed}")


def naive(folder, seed: int | None = None, profile: UniversalSettings | None = None) -> TrainResult:
    """One model on the union of all domains (naive fusion)."""
    p, seed = profile or folder.profile, folder.seed if seed is None else seed
    return folder.train(NaiveFusion(p), folder.domains(seed, p), seed, f"seed{seed}")


def student(folder, method: str, seed: int | None = None, profile: UniversalSettings | None = None,
            tuned: bool = True) -> TrainResult:
    """The universal student of loss `method` at `seed`, distilled from this seed's
    specialists: trained with the settings `tuning(folder, method, profile)` chose (the base
    seed's student is the chosen point's model, every other seed's is trained with its
    settings), or with the profile's own when `tuned=False` or the profile has no
    `distill_tuning`."""
    p = profile or folder.profile
    chosen = tuning(folder, method, p).chosen if tuned and p.distill_tuning else {}
    return distill(folder, method, seed, p, chosen)


def distill(folder, method: str, seed: int | None = None, profile: UniversalSettings | None = None,
            overrides: dict | None = None) -> TrainResult:
    """A student of loss `method` distilled from the specialists of `profile` at `seed`,
    trained with `profile` plus `overrides` (settings of the student alone: its teachers and
    data stay those of `profile`). No tuning: see `student`."""
    p, seed = profile or folder.profile, folder.seed if seed is None else seed
    teachers = {n: r.model for n, r in specialists(folder, seed, p).items()}
    trained = p.with_overrides(overrides) if overrides else p
    return folder.train(Distillation(trained, method, teachers), folder.domains(seed, p), seed,
                        f"seed{seed}")


def tuning(folder, method: str, profile: UniversalSettings | None = None) -> Tuning:
    """The tuning of `method` under `profile`: one student per point of its `distill_tuning`
    grid (the same grid for every method), each distilled from the specialists at the run's
    base seed (`folder.seed`) and judged by its mean validation recall@1 at its selected epoch
    (test is never looked at). Models are kept in and reused from the models folder like any
    other; a point whose training diverged (non-finite loss) is recorded with NaN and its error,
    and is never chosen (a new process tries it again). Without `distill_tuning` the one point
    is the profile itself. Each tuning is made once per run folder object."""
    p = profile or folder.profile
    key = ("tuning", method, json.dumps(dataclasses.asdict(p), sort_keys=True, default=str))
    return folder.memo(key, lambda: _tune(folder, method, p))


def _tune(folder, method: str, p: UniversalSettings) -> Tuning:
    rows, best = [], None
    for i, point in enumerate(p.tuning_points()):
        try:
            result = distill(folder, method, folder.seed, p, point)
        except FloatingPointError as exc:  # e.g. a learning rate too high for this loss
            rows.append({**point, VAL_SCORE: float("nan"), "best_epoch": 0, "epochs": 0,
                         "seconds": float("nan"), "error": str(exc)})
            continue
        score = result.split_mean("val", "recall@1")
        rows.append({**point, VAL_SCORE: score, "best_epoch": result.best_epoch,
                     "epochs": result.config["objective"]["epochs"],
                     "seconds": result.seconds, "error": ""})
        if best is None or score > rows[best][VAL_SCORE]:  # ties: the first point
            best = i
    if best is None:
        raise FloatingPointError(f"every tuning point of {method} diverged: "
                                 + "; ".join(r["error"] for r in rows))
    table = pd.DataFrame(rows).assign(chosen=[i == best for i in range(len(rows))])
    chosen = p.tuning_points()[best]
    made = Tuning(method, table, chosen, p.with_overrides(chosen) if chosen else p)
    if folder.progress and p.distill_tuning:
        print(f"tuning {made.describe()}")
    return made


def labelled(folder, methods: Sequence[str] = (), seed: int | None = None) -> dict[str, TrainResult]:
    """This seed's specialists, naive fusion and the students of `methods`, keyed by the labels
    of `ue_lib.universal.verdicts.label` ('specialist:<domain>', 'naive', 'distill:<method>'):
    the input of `budget_table`."""
    return {**{f"specialist:{n}": r for n, r in specialists(folder, seed).items()},
            "naive": naive(folder, seed),
            **{f"distill:{m}": student(folder, m, seed) for m in methods}}


def references(folder, metric: str = "recall@1", seed: int | None = None,
               profile: UniversalSettings | None = None) -> dict[str, float]:
    """Reference levels for plots: the mean over domains of the test `metric` of the naive
    model ("naive") and of the specialists, each on its own domain ("specialist"), at `seed`
    (the run's by default); the models are loaded when present, else trained."""
    experts = specialists(folder, seed, profile).values()
    return {"naive": naive(folder, seed, profile).split_mean("test", metric),
            "specialist": float(np.mean([r.split_mean("test", metric) for r in experts]))}
