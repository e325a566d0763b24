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
    models.train_ahead(folder, seeds, methods)  # in the run's worker processes, when it has them
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
    folder.prefetch(_ablation_student, [(method, knob, value, s, chosen) for value in values
                                        for s in seeds], "students")
    parts = []
    for value in values:
        profile = folder.profile.with_overrides({knob: value})
        for s in seeds:
            student = models.distill(folder, method, s, profile, {**chosen, knob: value})
            rows = folder.rows_of("distill", method, student, s, profile=profile)
            parts.append(rows.assign(**{knob: value}))
    return pd.concat(parts, ignore_index=True)


def _ablation_student(folder, method: str, knob: str, value, seed: int, chosen: dict) -> None:
    """`ablation`'s student for one value and seed (a task of `RunFolder.prefetch`)."""
    models.distill(folder, method, seed, folder.profile.with_overrides({knob: value}),
                   {**chosen, knob: value})


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


def fairness(folder, seeds: list[int], method: str = "kl") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Notebook 04: the baselines before their tuning (`models.untuned`: the profile's own
    settings) beside the run's tuned ones. Returns (epochs: per specialist, naive fusion and
    seed, the lr and selected epoch `untuned` and `tuned`; rows: the test rows per domain of
    the untuned specialists, untuned naive fusion and the `method` student distilled from the
    untuned specialists, per seed: the comparisons of notebook 04 redone without the tuning)."""
    p = folder.profile
    before = models.untuned(p)
    models.train_ahead(folder, seeds, [method], profile=before)
    epochs, rows = [], []
    for s in seeds:
        pairs = [(f"specialist:{d}", models.specialist(folder, d, s), models.specialist(folder, d, s, before))
                 for d in folder.domains(s)]
        pairs.append(("naive", models.naive(folder, s), models.naive(folder, s, before)))
        for name, tuned, raw in pairs:
            epochs.append({"model": name, "seed": s, "epochs": tuned.config["objective"]["epochs"],
                           "untuned lr": raw.config["optim"]["lr"],
                           "untuned": raw.best_epoch, "tuned lr": tuned.config["optim"]["lr"],
                           "tuned": tuned.best_epoch})
            rows.append(folder.rows_of(name.split(":")[0], p.metric_loss, raw, s))
        rows.append(folder.rows_of("distill", method, models.student(folder, method, s, before), s))
    return pd.DataFrame(epochs), pd.concat(rows, ignore_index=True)


# ---------------------------------------------------------------- when does kl help (notebook 05)

def competitors(folder) -> list[str]:
    """What kl is compared with under `kl_conditions`: `kl_competitors`, "best" resolved as in
    `models.final_methods` (the validation-best other loss), without kl and repeats."""
    p = folder.profile
    named = [m for m in p.methods("kl_competitors") if m not in ("best", "kl")]
    best = models.best_other(folder, ["kl", *named]) if "best" in p.methods("kl_competitors") else None
    return list(dict.fromkeys(named + ([best] if best else [])))


def _own(profile, method: str, overrides: dict) -> dict:
    """The part of `overrides` that concerns a `method` student: a loss parameter of another
    loss does not change it (so its model is the one without it, trained once)."""
    def mine(key: str) -> bool:
        path = profile.setting_path(key)
        return path[0] != "loss_params" or path[1] == method

    return {k: v for k, v in overrides.items() if mine(k)}


def _condition_rows(folder, method: str, seed: int, overrides: dict) -> pd.DataFrame:
    """The per-domain test rows of the `method` student at `seed` trained with its tuned
    settings plus `overrides` (a level of `kl_conditions`)."""
    chosen = models.tuning(folder, method).chosen if folder.profile.distill_tuning else {}
    student = models.distill(folder, method, seed, None, {**chosen, **overrides})
    return folder.rows_of("distill", method, student, seed)


def conditions(folder) -> pd.DataFrame:
    """Notebook 05's controlled experiment: for every factor and level of `kl_conditions`, every
    seed of `seeds` and kl and each of its `competitors`, the student's per-domain test rows
    (columns `factor` and `level` added). Only the students change: the teachers are the run's.
    The run's own students (a level {}) are notebook 04's, found; the others are trained in
    `workers` processes, each distinct model once (a kl-only setting leaves the others' models
    as they are)."""
    p = folder.profile
    seeds = p.seed_list("seeds", offset=folder.seed)
    methods = ["kl", *competitors(folder)]
    for s in seeds:  # shared by every level: teachers, tunings, the run's own students
        for m in methods:
            models.student(folder, m, s)
    plan = [(factor, level, m, s, _own(p, m, overrides))
            for factor, levels in p.kl_conditions.items() for level, overrides in levels.items()
            for m in methods for s in seeds]
    unique = list({_task_key(m, s, o): (m, s, o) for *_, m, s, o in plan}.values())
    done = dict(zip([_task_key(*t) for t in unique], folder.map(_condition_rows, unique, "students")))
    parts = [done[_task_key(m, s, o)].assign(factor=factor, level=level)
             for factor, level, m, s, o in plan]
    return pd.concat(parts, ignore_index=True)


def _task_key(method: str, seed: int, overrides: dict) -> tuple:
    return method, seed, tuple(sorted((k, repr(v)) for k, v in overrides.items()))


PARTS = models.PARTS


def train_models(folder, parts: tuple[str, ...] = PARTS) -> list[tuple[str, object]]:
    """Train (or find finished) every model notebooks 01-04 use, into the folders they look in:
    per seed of the profile's `seeds` (offset by the run's seed, as notebook 04 does) the
    specialists, the naive model and the students (all `distill_methods` on the first seed, as
    notebook 03, the `final_methods` on the others), each with its tuned settings, and the other
    points of each tuning (`models.tuning`, `models.baseline_tuning`). Returns (name,
    TrainResult) pairs, each model once (`result.loaded`: found finished). Run it under
    torchrun to train each model on several GPUs; `ue run` then only evaluates."""
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        raise ValueError(f"unknown part(s) {', '.join(unknown)}; valid: {', '.join(PARTS)}")
    p = folder.profile
    seeds = p.seed_list("seeds", offset=folder.seed)
    done, listed = [], set()

    def add(name: str, result) -> None:
        if result is not None and id(result) not in listed:  # a tuning point is also a model
            listed.add(id(result))
            done.append((name, result))

    for s in seeds:
        if "specialists" in parts:
            for n, r in models.specialists(folder, s).items():
                add(f"specialist {n} seed {s}", r)
        if "naive" in parts:
            add(f"naive seed {s}", models.naive(folder, s))
        if "students" in parts:
            methods = p.methods("distill_methods") if s == seeds[0] else models.final_methods(folder)
            for m in methods:
                add(f"distill-{m} seed {s}", models.student(folder, m, s))
    for name, tuning in _tunings(folder, parts):
        for point, result in zip(tuning.table.drop(columns=_TUNING_COLUMNS).to_dict("records"),
                                 tuning.results):
            label = ",".join(f"{k}={v}" for k, v in point.items())
            add(f"{name} tuning {label} seed {folder.seed}", result)
    return done


_TUNING_COLUMNS = [models.VAL_SCORE, "best_epoch", "epochs", "seconds", "flag", "error", "chosen"]


def _tunings(folder, parts: tuple[str, ...]) -> list[tuple[str, models.Tuning]]:
    """The tunings behind the models of `parts` (each made once, so their models are in memory)."""
    p, out = folder.profile, []
    if p.baseline_points() != [{}]:
        if "specialists" in parts:
            out += [(f"specialist {d}", models.baseline_tuning(folder, f"specialist:{d}"))
                    for d in folder.domains()]
        if "naive" in parts:
            out.append(("naive", models.baseline_tuning(folder, "naive")))
    if "students" in parts and p.distill_tuning:
        methods = dict.fromkeys(p.methods("distill_methods") + models.final_methods(folder))
        out += [(f"distill-{m}", models.tuning(folder, m)) for m in methods]
    return out
