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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..io import slug
from ..training import TrainResult
from ..verdicts import num
from .histories import COLLAPSED, PEAKED_EARLY, model_flags
from .objectives import Distillation, NaiveFusion, Specialist
from .settings import BEST, UniversalSettings

VAL_SCORE = "val_recall@1"  # the column of a tuning table that selects (TrainJob's selection metric)
# flags that keep a tuning point from being chosen (`histories.flag`): a collapsed model, and one
# selected at its first epochs (its number is an early one). "Still improving" is no defect of
# the point: it says the budget is short, for every point alike.
DISQUALIFIED = (COLLAPSED, PEAKED_EARLY)


@dataclass(frozen=True, eq=False)
class Tuning:
    """One model's tuning at a run's base seed: a distillation method's (`distill_tuning`), or a
    baseline's (`tune_baselines`: 'specialist:<domain>' or 'naive')."""

    method: str
    # one row per grid point, in grid order: its settings (a column per tuned setting), the
    # mean over domains of its validation recall@1 at its selected epoch (`val_recall@1`,
    # NaN when the training diverged: see `error`), `best_epoch`, `epochs`, `seconds` (of its
    # training, also when loaded), `flag` (`histories.flag`) and `chosen`
    table: pd.DataFrame
    chosen: dict  # the overrides of the best point (ties: the first in grid order)
    profile: UniversalSettings  # the profile with `chosen` applied: what the model trains with
    results: tuple = ()  # each point's TrainResult, in grid order (None where it diverged)

    @property
    def score(self) -> float:
        """The chosen point's mean validation recall@1."""
        return float(self.table[self.table.chosen][VAL_SCORE].iloc[0])

    @property
    def qualified(self) -> bool:
        """Whether the chosen point carries no disqualifying flag (`DISQUALIFIED`)."""
        return not _disqualified(self.table[self.table.chosen].flag.iloc[0])

    def describe(self) -> str:
        """'kl: lr=0.002 (mean val recall@1 0.853) over lr=0.0006 (0.841)'."""
        def point(row) -> str:
            return ", ".join(f"{k}={row[k]}" for k in self.chosen) or "the profile's settings"

        def score(row) -> str:
            return "diverged" if row.error else num(row[VAL_SCORE]) + (
                f", {row.flag.split(':')[0]}" if _disqualified(row.flag) else "")

        best = self.table[self.table.chosen].iloc[0]
        rest = ", ".join(f"{point(r)} ({score(r)})" for _, r in self.table[~self.table.chosen].iterrows())
        return (f"{self.method}: {point(best)} (mean val recall@1 {score(best)})"
                + (f" over {rest}" if rest else ""))


def _disqualified(flag_text: str) -> bool:
    return any(str(flag_text).startswith(kind) for kind in DISQUALIFIED)


def untuned(profile: UniversalSettings) -> UniversalSettings:
    """`profile` with its specialists and naive fusion trained with its own settings (no
    `tune_baselines`): the models of a run before the baselines were tuned."""
    return profile.with_overrides({"tune_baselines": False}) if profile.tune_baselines else profile


def specialists(folder, seed: int | None = None, profile: UniversalSettings | None = None
                ) -> dict[str, TrainResult]:
    """One model per domain (the teachers), each with its tuned settings (`specialist`); the
    missing ones are trained in the run's worker processes first (`train_ahead`)."""
    p = profile or folder.profile
    train_ahead(folder, [folder.seed if seed is None else seed], parts=("specialists",), profile=p)
    return {name: specialist(folder, name, seed, p) for name in folder.domains(seed, p)}


# ---- training ahead, in the run's worker processes (`RunFolder.prefetch`): each model is a task
# (kind, ...) of `_make`, module-level so that it can be sent to a worker

PARTS = ("specialists", "naive", "students")  # the kinds of model notebooks 01-04 use


def _make(folder, kind: str, *args) -> None:
    """Train (or find) one model: ("specialist", domain, seed, profile), ("naive", seed,
    profile), ("point", tuning name, profile, point) or ("student", method, seed, profile)."""
    {"specialist": specialist, "naive": naive, "point": _tuning_point, "student": student}[kind](
        folder, *args)


def train_ahead(folder, seeds: Sequence[int], methods: Sequence[str] = (),
                parts: Sequence[str] = PARTS, profile: UniversalSettings | None = None) -> None:
    """Train the missing models of `parts` at `seeds` (the students of `methods`) in the run's
    worker processes, level by level so that no two workers need the same missing model: the
    baselines' tuning points, then the specialists and naive fusion at each seed, then the
    students' tuning points, then the students. With one worker it does nothing: the models are
    trained one after another where they are asked for, as before."""
    p = profile or folder.profile
    if p.workers <= 1:
        return
    domains = list(folder.domains(folder.seed, p))
    names = ([f"specialist:{d}" for d in domains] if "specialists" in parts or "students" in parts
             else []) + (["naive"] if "naive" in parts else [])
    levels = [[("point", n, p, point) for n in names for point in p.baseline_points() if point],
              [("specialist", d, s, p) for s in seeds for d in domains
               if "specialists" in parts or "students" in parts]
              + [("naive", s, p) for s in seeds if "naive" in parts]]
    if "students" in parts:
        levels += [[("point", f"distill:{m}", p, point) for m in methods
                    for point in (p.tuning_points() if p.distill_tuning else [])],
                   [("student", m, s, p) for m in methods for s in seeds]]
    for tasks in levels:
        folder.prefetch(_make, tasks)


def specialist(folder, domain: str, seed: int | None = None,
               profile: UniversalSettings | None = None) -> TrainResult:
    """`domain`'s own model (its teacher), trained with the settings its tuning chose
    (`baseline_tuning`; the profile's own without `tune_baselines`)."""
    p = profile or folder.profile
    return _specialist(folder, domain, seed, baseline_profile(folder, f"specialist:{domain}", p))


def _specialist(folder, domain: str, seed: int | None, p: UniversalSettings) -> TrainResult:
    seed = folder.seed if seed is None else seed
    d = folder.domains(seed, p)[domain]
    return folder.train(Specialist(p), {domain: d}, seed, f"{slug(domain)}-seed{seed}")


def naive(folder, seed: int | None = None, profile: UniversalSettings | None = None) -> TrainResult:
    """One model on the union of all domains (naive fusion), with its tuned settings (its missing
    tuning points trained in the run's worker processes first: `train_ahead`)."""
    p = profile or folder.profile
    train_ahead(folder, [folder.seed if seed is None else seed], parts=("naive",), profile=p)
    return _naive(folder, seed, baseline_profile(folder, "naive", p))


def _naive(folder, seed: int | None, p: UniversalSettings) -> TrainResult:
    seed = folder.seed if seed is None else seed
    return folder.train(NaiveFusion(p), folder.domains(seed, p), seed, f"seed{seed}")


def baseline_profile(folder, name: str, profile: UniversalSettings) -> UniversalSettings:
    """The profile baseline `name` ('specialist:<domain>' or 'naive') trains with: its tuning's
    choice over `profile.baseline_points()`, or `profile` itself when there is no grid."""
    points = profile.baseline_points()
    if points == [{}]:
        return profile
    return baseline_tuning(folder, name, profile).profile


def baseline_tuning(folder, name: str, profile: UniversalSettings | None = None) -> Tuning:
    """The tuning of baseline `name` ('specialist:<domain>' or 'naive'): one model per point of
    `profile.baseline_points()` at the run's base seed, the best by mean validation recall@1
    kept (`_tune`), as a student's tuning is. Made once per run folder object."""
    p = profile or folder.profile
    domain = name.partition(":")[2]
    key = ("tuning", name, _key(p))
    domains = folder.domains(folder.seed, p)
    return folder.memo(key, lambda: _tune(folder, name, p, p.baseline_points(),
                                          lambda point: _tuning_point(folder, name, p, point),
                                          {domain: domains[domain]} if domain else domains))


def _tuning_point(folder, name: str, p: UniversalSettings, point: dict) -> TrainResult:
    """The model of one tuning point at the run's base seed: of a baseline ('specialist:<domain>'
    or 'naive': `p` with `point`) or of a distillation method ('distill:<method>')."""
    kind, _, rest = name.partition(":")
    if kind == "distill":
        return distill(folder, rest, folder.seed, p, point)
    trained = p.with_overrides(point) if point else p
    if kind == "specialist":
        return _specialist(folder, rest, folder.seed, trained)
    return _naive(folder, folder.seed, trained)


def baseline_tunings(folder, profile: UniversalSettings | None = None) -> list[Tuning]:
    """Every baseline's tuning (each specialist's, then naive fusion's); [] without a baseline
    grid (`UniversalSettings.baseline_points`)."""
    p = profile or folder.profile
    if p.baseline_points() == [{}]:
        return []
    names = [f"specialist:{d}" for d in folder.domains(folder.seed, p)] + ["naive"]
    return [baseline_tuning(folder, n, p) for n in names]


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


def _key(p: UniversalSettings) -> str:
    return json.dumps(dataclasses.asdict(p), sort_keys=True, default=str)


def tuning(folder, method: str, profile: UniversalSettings | None = None) -> Tuning:
    """The tuning of `method` under `profile`: one student per point of its `distill_tuning`
    grid (the same grid for every method), each distilled from the specialists at the run's
    base seed (`folder.seed`) and judged by its mean validation recall@1 at its selected epoch
    (test is never looked at; `_tune`). Models are kept in and reused from the models folder
    like any other. Without `distill_tuning` the one point is the profile itself. Each tuning
    is made once per run folder object."""
    p = profile or folder.profile
    domains = folder.domains(folder.seed, p)
    return folder.memo(("tuning", method, _key(p)), lambda: _tune(
        folder, method, p, p.tuning_points(),
        lambda point: _tuning_point(folder, f"distill:{method}", p, point), domains))


def tunings(folder, methods: Sequence[str], profile: UniversalSettings | None = None) -> list[Tuning]:
    """The tunings of `methods` (`tuning`), their missing points trained in the run's worker
    processes first (`train_ahead`)."""
    p = profile or folder.profile
    train_ahead(folder, [folder.seed], methods, parts=("students",), profile=p)
    return [tuning(folder, m, p) for m in methods]


def _point_row(point: dict, result: TrainResult, domains: Mapping) -> dict:
    return {**point, VAL_SCORE: result.split_mean("val", "recall@1"),
            "best_epoch": result.best_epoch, "epochs": result.config["objective"]["epochs"],
            "seconds": result.seconds, "flag": model_flags({"point": result}, domains).get("point", ""),
            "error": ""}


def _choose(rows: list[dict]) -> int | None:
    """The best point by validation score (the first on ties) among those that trained and carry
    no disqualifying flag; if every trained point is flagged, the best of them."""
    trained = [i for i, r in enumerate(rows) if not r["error"]]
    clean = [i for i in trained if not _disqualified(rows[i]["flag"])] or trained
    return max(clean, key=lambda i: (rows[i][VAL_SCORE], -i)) if clean else None


def _tune(folder, name: str, p: UniversalSettings, points: list[dict],
          train: Callable[[dict], TrainResult], domains: Mapping) -> Tuning:
    """Train `points` (`train(point)`), keep the best by `_choose`. A point whose training
    diverged (non-finite loss) is recorded with NaN and its error, and is never chosen (a new
    process tries it again)."""
    rows, results = [], []
    for point in points:
        try:
            results.append(train(point))
            rows.append(_point_row(point, results[-1], domains))
        except FloatingPointError as exc:  # e.g. a learning rate too high for this loss
            results.append(None)
            rows.append({**point, VAL_SCORE: float("nan"), "best_epoch": 0, "epochs": 0,
                         "seconds": float("nan"), "flag": "", "error": str(exc)})
    best = _choose(rows)
    if best is None:
        raise FloatingPointError(f"every tuning point of {name} diverged: "
                                 + "; ".join(r["error"] for r in rows))
    table = pd.DataFrame(rows).assign(chosen=[i == best for i in range(len(rows))])
    chosen = points[best]
    made = Tuning(name, table, chosen, p.with_overrides(chosen) if chosen else p, tuple(results))
    if len(points) > 1:
        folder.note(f"tuning {made.describe()}")
    return made


def final_methods(folder, profile: UniversalSettings | None = None) -> list[str]:
    """The students notebook 04 repeats (`final_methods`), with "best" replaced by the method of
    `distill_methods` not already listed whose tuned student had the best validation score
    without a disqualifying flag (`best_other`); "best" is dropped when none is left."""
    p = profile or folder.profile
    listed = p.methods("final_methods")
    if BEST not in listed:
        return listed
    named = [m for m in listed if m != BEST]
    best = best_other(folder, named, p)
    return list(dict.fromkeys(best if m == BEST else m for m in listed if m != BEST or best))


def best_other(folder, exclude: Sequence[str], profile: UniversalSettings | None = None) -> str | None:
    """The method of `distill_methods` outside `exclude` with the best chosen validation score
    among the tunings whose chosen point is not disqualified (`Tuning.qualified`); None when
    there is none. Validation only: test never chooses."""
    p = profile or folder.profile
    tunings = [tuning(folder, m, p) for m in p.methods("distill_methods") if m not in exclude]
    ok = [t for t in tunings if t.qualified and np.isfinite(t.score)]
    return max(ok, key=lambda t: t.score).method if ok else None


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
