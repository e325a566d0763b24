"""A run folder: its models, trained when missing and reused when present, and what each
notebook measured in it.

Notebooks call these instead of training by hand, so that a later notebook reuses what an
earlier one trained (same settings -> same folder) and each notebook still runs alone in an
empty folder. Layout of a run folder:

    models/specialist/<domain>-seed0-<hash>/   model.pt, history.csv (checkpoint.pt while training)
    models/naive/seed0-<hash>/
    models/distill-kl/seed0-<hash>/
    results/<notebook>.csv                      the rows this notebook measured
    figures/<notebook>/<name>.png
    profiles/<notebook>.json                    the settings the notebook ran with

`<hash>` is the fingerprint of everything that determines the model (`ue_lib.train.TrainJob`),
so a model is reused exactly when it would come out the same, and a changed setting trains a
new one beside it. `models_dir` can point elsewhere, e.g. one folder shared by a sweep's points.
Within a process every model is loaded once (teachers included), whatever asks for it.

Students are tuned (`Profile.distill_tuning`): every distillation method gets the same grid,
one student per point at the run's base seed, kept in the same model folders (so the tuning of
notebook 03 is loaded, not repeated, by notebooks 04 and 05). The point with the best mean
validation recall@1 (never test) gives the settings of that method's student at every seed;
the base seed's student is that point's model itself. Teachers never change with the tuning.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .config import ModelSettings
from .data import Domain, load_domains
from .evaluate import evaluate_merged
from .features import FeatureStore, attach_features
from .io import RESULT_COLUMNS, atomic_write_text, save_figure, slug
from .models import build_trunk, split_stage, trunk_key
from .objectives import OPQN, Distillation, NaiveFusion, Objective, Specialist, specialist_objective
from .profiles import Profile
from .spec import RunSpec
from .train import ModelStore, TrainJob, TrainResult, train

VAL_SCORE = "val_recall@1"  # the column of a tuning table that selects (TrainJob's selection metric)


@dataclass(frozen=True, eq=False)
class Tuning:
    """One distillation method's tuning (`Profile.distill_tuning`) at a run's base seed."""

    method: str
    # one row per grid point, in grid order: its settings (a column per tuned setting), the
    # mean over domains of its validation recall@1 at its selected epoch (`val_recall@1`,
    # NaN when the training diverged: see `error`), `best_epoch`, `epochs`, `seconds` (of its
    # training, also when loaded) and `chosen`
    table: pd.DataFrame
    chosen: dict  # the overrides of the best point (ties: the first in grid order)
    profile: Profile  # the profile with `chosen` applied: what the method's students train with

    def describe(self) -> str:
        """'kl: lr=0.002 (mean val recall@1 0.853) over lr=0.0006 (0.841)'."""
        def point(row) -> str:
            return ", ".join(f"{k}={row[k]}" for k in self.chosen) or "the profile's settings"

        best = self.table[self.table.chosen].iloc[0]
        rest = ", ".join(f"{point(r)} ({'diverged' if r.error else f'{r[VAL_SCORE]:.3f}'})"
                         for _, r in self.table[~self.table.chosen].iterrows())
        return (f"{self.method}: {point(best)} (mean val recall@1 {best[VAL_SCORE]:.3f})"
                + (f" over {rest}" if rest else ""))


def _split_mean(result: TrainResult, split: str, metric: str) -> float:
    """The mean over domains of `metric` on `split` at the selected epoch."""
    f = result.final
    rows = f[(f.split == split) & (f.metric == metric)]
    if rows.empty:
        raise ValueError(f"no {split} {metric} in this model's results; it has "
                         f"{', '.join(sorted(set(f.metric)))}")
    return float(rows.value.mean())


@dataclass
class RunFolder:
    """One notebook's view of a run: settings, run folder, loaded domains, models, result rows."""

    spec: RunSpec
    notebook: str
    progress: bool = True
    rows: list[dict] = field(default_factory=list)
    _domains: dict[tuple, dict[str, Domain]] = field(default_factory=dict, repr=False)
    _models: dict[tuple, TrainResult] = field(default_factory=dict, repr=False)
    _tunings: dict[tuple, Tuning] = field(default_factory=dict, repr=False)
    _stores: dict[str, FeatureStore] = field(default_factory=dict, repr=False)
    _planning: bool = field(default=False, repr=False)  # `missing`: find models, train none

    @classmethod
    def open(cls, notebook: str, spec: RunSpec, progress: bool = True) -> RunFolder:
        """Open the run folder of `spec` for `notebook`: seed the global generators, create the
        folder and record the settings the notebook runs with."""
        torch.manual_seed(spec.seed)
        np.random.seed(spec.seed)
        folder = cls(spec, notebook, progress)
        atomic_write_text(json.dumps(spec.settings.to_dict(), indent=1, default=str),
                          folder.out_dir / "profiles" / f"{notebook}.json")
        return folder

    @property
    def profile(self) -> Profile:
        return self.spec.settings

    def describe(self) -> str:
        p = self.profile
        return (f"profile {p.name}: domains {p.domain_names}, {p.backbone} ({p.embedding_dim}-d), "
                f"{p.image_size}px, P x K = {p.p} x {p.k}, seed {self.seed}, run folder {self.out_dir}")

    @property
    def seed(self) -> int:
        return self.spec.seed

    @property
    def out_dir(self) -> Path:
        return Path(self.spec.out_dir)

    @property
    def models_root(self) -> Path:
        return self.spec.models_root

    # ---- data
    def domains(self, seed: int | None = None, profile: Profile | None = None) -> dict[str, Domain]:
        """The profile's domains. Splits depend on the seed, so each seed has its own. With a
        frozen pretrained trunk, every split also carries the trunk's cached outputs
        (`ue_lib.features`: computed once per image and run folder, kept in `features/`)."""
        p, seed = profile or self.profile, self.seed if seed is None else seed
        settings = ModelSettings.part_of(p)
        cached = caches_features(p)
        trunk = trunk_key(settings, p.image_size) if cached else None
        key = (seed, json.dumps(p.group("data"), sort_keys=True, default=str), trunk)
        if key not in self._domains:
            domains = load_domains(p.domain_names, **p.data_kwargs(seed))
            if cached:
                store = self._stores.setdefault(trunk, FeatureStore(self.features_root, p.eval_batch_size))
                attach_features(domains, store, build_trunk(settings), trunk)
            self._domains[key] = domains
        return self._domains[key]

    @property
    def features_root(self) -> Path:
        """Where cached trunk features are kept: beside the models (shared like them)."""
        return self.models_root.parent / "features"

    # ---- models
    def train(self, objective: Objective, domains: dict[str, Domain], seed: int,
              name: str) -> TrainResult:
        """The model of `objective` on `domains` from `seed`: from memory, from its folder
        `models/<objective.folder>/<name>-<hash>`, or trained now into that folder."""
        job = TrainJob(domains, objective, seed)
        key = (objective.folder, name, job.fingerprint)
        if key not in self._models:
            folder = self.models_root / objective.folder / f"{name}-{job.fingerprint[:10]}"
            if self._planning and ModelStore(folder, job.fingerprint).finished() is None:
                raise MissingModel(folder)
            result = train(job, out_dir=folder, progress=self.progress)
            if self.progress:
                print(model_line(f"{objective.folder} {name}", result, objective.epochs))
            self._models[key] = result
        return self._models[key]

    def seconds(self) -> dict[str, float]:
        """Mean training seconds per model kind ("specialist", "naive", "distill", …) over the
        models this folder holds in memory, as each took when it was trained (so loaded models
        count too): for the expected time of a next run."""
        by_kind: dict[str, list[float]] = {}
        for result in self._models.values():
            kind = result.config["objective"]["kind"]
            by_kind.setdefault(kind, []).append(result.seconds)
        return {kind: float(np.mean(v)) for kind, v in by_kind.items()}

    def specialists(self, seed: int | None = None, profile: Profile | None = None
                    ) -> dict[str, TrainResult]:
        """One model per domain (the teachers)."""
        p = profile or self.profile
        return {name: self.specialist(name, seed, p) for name in self.domains(seed, p)}

    def specialist(self, domain: str, seed: int | None = None, profile: Profile | None = None
                   ) -> TrainResult:
        """`domain`'s own model (its teacher)."""
        p, seed = profile or self.profile, self.seed if seed is None else seed
        d = self.domains(seed, p)[domain]
        return self.train(Specialist(p), {domain: d}, seed, f"{slug(domain)}-seed{seed}")

    def naive(self, seed: int | None = None, profile: Profile | None = None) -> TrainResult:
        """One model on the union of all domains (naive fusion)."""
        p, seed = profile or self.profile, self.seed if seed is None else seed
        return self.train(NaiveFusion(p), self.domains(seed, p), seed, f"seed{seed}")

    def student(self, method: str, seed: int | None = None, profile: Profile | None = None,
                tuned: bool = True) -> TrainResult:
        """The universal student of loss `method` at `seed`, distilled from this seed's
        specialists: trained with the settings `tuning(method, profile)` chose (the base seed's
        student is the chosen point's model, every other seed's is trained with its settings),
        or with the profile's own when `tuned=False` or the profile has no `distill_tuning`."""
        p = profile or self.profile
        chosen = self.tuning(method, p).chosen if tuned and p.distill_tuning else {}
        return self.distill(method, seed, p, chosen)

    def distill(self, method: str, seed: int | None = None, profile: Profile | None = None,
                overrides: dict | None = None) -> TrainResult:
        """A student of loss `method` distilled from the specialists of `profile` at `seed`,
        trained with `profile` plus `overrides` (settings of the student alone: its teachers
        and data stay those of `profile`). No tuning: see `student`."""
        p, seed = profile or self.profile, self.seed if seed is None else seed
        teachers = {n: r.model for n, r in self.specialists(seed, p).items()}
        trained = p.with_overrides(overrides) if overrides else p
        return self.train(Distillation(trained, method, teachers), self.domains(seed, p), seed,
                          f"seed{seed}")

    # ---- compressed retrieval (notebook 06)
    def opqn(self, domains: dict[str, Domain], name: str, seed: int, shape: tuple[int, int],
             overrides: dict | None = None, profile: Profile | None = None) -> TrainResult:
        """An OPQN network (`quantize_dim`-d) with M x K codes `shape`, trained on `domains`
        (one domain, or all for a universal index) with `profile` plus `overrides`."""
        p, (m, k) = profile or self.profile, shape
        trained = p.with_overrides({"embedding_dim": p.quantize_dim, "opqn.subspaces": m,
                                    "opqn.codewords": k, **(overrides or {})})
        return self.train(OPQN(trained), domains, seed, name)

    def experiment_domains(self, domain: str, protocol: str, seed: int) -> dict[str, Domain]:
        """Notebook 06's data: one domain under a face-retrieval protocol
        (`ue_lib.quantize.Protocol`), or every profile domain for ``universal``."""
        from .quantize import Protocol

        p = self.profile
        if domain == "universal":
            return self.domains(seed)
        p_dom = p if domain in p.domain_names else p.with_overrides({"domains": domain})
        return {domain: Protocol(protocol).apply(self.domains(seed, p_dom)[domain], seed)}

    # ---- semantic granularity (notebook 07)
    def rung_profile(self, rung: str) -> Profile:
        """The profile a rung of `sgml_ladder` trains its specialists with."""
        p = self.profile
        if rung not in p.sgml_ladder:
            raise ValueError(f"unknown rung {rung!r} of sgml_ladder; valid: {', '.join(p.sgml_ladder)}")
        return p.with_overrides(p.sgml_ladder[rung])

    def attribute_domains(self, seed: int | None = None) -> list[str]:
        """The profile's domains that carry attributes (`Domain.attribute_names`): notebook 07's
        ladder trains on these; ValueError naming the domains when none does."""
        domains = self.domains(seed)
        names = [n for n, d in domains.items() if d.has_attributes]
        if not names:
            raise ValueError(f"none of the domains {list(domains)} has attributes; notebook 07 "
                             f"needs at least one (glyphs, omniglot, fashion, clipart, or cub / "
                             f"inshop with their attribute files): add one with --domains")
        return names

    def rung_specialist(self, rung: str, domain: str, seed: int | None = None) -> TrainResult:
        """`domain`'s specialist of ladder rung `rung` at `seed` (a rung without settings is the
        project's specialist itself: notebook 02's model, reused)."""
        p, seed = self.rung_profile(rung), self.seed if seed is None else seed
        d = self.domains(seed, p)[domain]
        return self.train(specialist_objective(p), {domain: d}, seed,
                          self._rung_name(rung, f"{slug(domain)}-seed{seed}"))

    def _rung_name(self, rung: str, name: str) -> str:
        """A rung's model name: `name` (the project's own model's) for a rung without settings,
        so that it is that model; else `name` tagged with the rung."""
        return f"{name}-{slug(rung)}" if self.profile.sgml_ladder[rung] else name

    def rung_student(self, rung: str, seed: int | None = None) -> TrainResult:
        """The kl student (with notebook 03's tuned settings, `student`) distilled from rung
        `rung`'s specialists where a domain has attributes and from the project's specialist
        where it has none."""
        seed = self.seed if seed is None else seed
        attributed = set(self.attribute_domains(seed))
        teachers = {n: (self.rung_specialist(rung, n, seed) if n in attributed else r).model
                    for n, r in self.specialists(seed).items()}
        p = self.profile
        chosen = self.tuning("kl", p).chosen if p.distill_tuning else {}
        trained = p.with_overrides(chosen) if chosen else p
        return self.train(Distillation(trained, "kl", teachers), self.domains(seed), seed,
                          self._rung_name(rung, f"seed{seed}"))

    def tuning(self, method: str, profile: Profile | None = None) -> Tuning:
        """The tuning of `method` under `profile`: one student per point of its `distill_tuning`
        grid (the same grid for every method), each distilled from the specialists at the run's
        base seed (`self.seed`) and judged by its mean validation recall@1 at its selected epoch
        (test is never looked at). Models are kept in and reused from the models folder like
        any other; a point whose training diverged (non-finite loss) is recorded with NaN and
        its error, and is never chosen (a new process tries it again). Without
        `distill_tuning` the one point is the profile itself."""
        p = profile or self.profile
        key = (method, json.dumps(dataclasses.asdict(p), sort_keys=True, default=str))
        if key in self._tunings:
            return self._tunings[key]
        rows, best = [], None
        for i, point in enumerate(p.tuning_points()):
            try:
                result = self.distill(method, self.seed, p, point)
            except FloatingPointError as exc:  # e.g. a learning rate too high for this loss
                rows.append({**point, VAL_SCORE: float("nan"), "best_epoch": 0, "epochs": 0,
                             "seconds": float("nan"), "error": str(exc)})
                continue
            score = _split_mean(result, "val", "recall@1")
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
        tuning = Tuning(method, table, chosen, p.with_overrides(chosen) if chosen else p)
        if self.progress and p.distill_tuning:
            print(f"tuning {tuning.describe()}")
        self._tunings[key] = tuning
        return tuning

    def labelled(self, methods: Sequence[str] = (), seed: int | None = None
                 ) -> dict[str, TrainResult]:
        """This seed's specialists, naive fusion and the students of `methods`, keyed by the
        labels of `report.label` ('specialist:<domain>', 'naive', 'distill:<method>'): the
        input of `report.budget_table`."""
        return {**{f"specialist:{n}": r for n, r in self.specialists(seed).items()},
                "naive": self.naive(seed), **{f"distill:{m}": self.student(m, seed) for m in methods}}

    def references(self, metric: str = "recall@1", seed: int | None = None,
                   profile: Profile | None = None) -> dict[str, float]:
        """Reference levels for plots: the mean over domains of the test `metric` of the naive
        model ("naive") and of the specialists, each on its own domain ("specialist"), at `seed`
        (the run's by default); the models are loaded when present, else trained."""
        specialists = self.specialists(seed, profile).values()
        return {"naive": _split_mean(self.naive(seed, profile), "test", metric),
                "specialist": float(np.mean([_split_mean(r, "test", metric) for r in specialists]))}

    # ---- parallel work
    def missing(self, function: Callable, items: Sequence[tuple]) -> list[tuple]:
        """The items whose ``function(self, *args)`` needs a model that is not in the folder yet
        (each is run with training switched off: the models it finds are loaded, the first
        missing one stops it). For `map`: a pool is started only for work left to do."""
        out = []
        for args in items:
            self._planning = True
            try:
                function(self, *args)
            except MissingModel:
                out.append(args)
            finally:
                self._planning = False
        return out

    def map(self, function: Callable, items: Sequence[tuple], what: str = "tasks") -> list:
        """``[function(self, *args) for args in items]``, in `workers` processes when the
        profile has more than one, else here. Each worker opens this run folder (same spec and
        notebook, no progress lines): models it trains land in the folder and are found there
        afterwards, so `items` must not share a model that is still missing (train shared
        models first: a student's teachers, its tuning). `function` is a module-level
        function (it is pickled); its results come back in the order of `items`, and a worker's
        error is raised here, after the tasks still queued are cancelled. Trunk features are
        computed here first, so that workers only read them. Workers keep this machine's thread
        settings (training runs on the profile's `threads` everywhere): an op on fewer threads
        may round differently (faiss's OPQ does), and the numbers must not depend on `workers`."""
        items = list(items)
        n = min(self.profile.workers, len(items))
        if n <= 1:
            return [function(self, *args) for args in items]
        if caches_features(self.profile):
            self.domains()  # trunk features cached before the workers look for them
        start = time.perf_counter()
        pool = ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_start_worker,
                                   initargs=(self.spec.to_parameters(), self.notebook))
        try:
            futures = [pool.submit(_in_worker, function, args) for args in items]
            results = [f.result() for f in futures]
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        pool.shutdown()
        if self.progress:
            print(f"{len(items)} {what} in {n} processes: {time.perf_counter() - start:.0f} s")
        return results

    # ---- measurements
    def record(self, model: str, method: str, result: TrainResult, seed: int | None = None,
               merged: bool = False, curves: bool = False, keep: bool = True,
               profile: Profile | None = None) -> pd.DataFrame:
        """The selected model's test metrics per domain (and, for universal models, the merged
        index: all domains' test sets in one index; and the per-epoch curves) as result rows,
        added to this notebook's results unless `keep=False` (for rows shown for comparison
        that another notebook owns)."""
        seed = self.seed if seed is None else seed
        base = {"notebook": self.notebook, "model": model, "method": method, "seed": seed,
                "epoch": result.best_epoch}
        new = [{**base, **r} for r in result.final.to_dict("records") if r["split"] == "test"]
        if merged:
            for domain, metrics in evaluate_merged(result.model, self.domains(seed, profile)).items():
                name = "merged" if domain == "all" else f"merged:{domain}"
                new += [{**base, "domain": name, "split": "test", "metric": m, "value": v}
                        for m, v in metrics.items()]
        if curves:
            h = result.history[result.history.split != "train"]
            new += [{**base, "domain": r.domain, "split": r.split, "metric": f"{r.metric}_curve",
                     "value": r.value, "epoch": int(r.epoch)} for r in h.itertuples()]
        if keep:
            self.rows += new
        return pd.DataFrame(new, columns=RESULT_COLUMNS)

    def add_rows(self, rows: pd.DataFrame) -> None:
        """Add result rows measured outside `record` (e.g. notebook 06's indexes), skipping rows
        this notebook already holds (same model, method, domain, split, metric and seed)."""
        key = ("model", "method", "domain", "split", "metric", "seed")
        held = {tuple(r[k] for k in key) for r in self.rows}
        for r in rows[RESULT_COLUMNS].to_dict("records"):
            if tuple(r[k] for k in key) not in held:
                held.add(tuple(r[k] for k in key))
                self.rows.append(r)

    def results(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=RESULT_COLUMNS)

    def save_results(self) -> Path:
        """Write this notebook's rows to results/<notebook>.csv (atomically)."""
        return atomic_write_text(self.results().to_csv(index=False),
                                 self.out_dir / "results" / f"{self.notebook}.csv")

    def savefig(self, fig, name: str) -> Path:
        return save_figure(fig, self.out_dir / "figures" / self.notebook / f"{name}.png")


def caches_features(profile: Profile) -> bool:
    """Whether `profile` trains on cached outputs of a frozen trunk (`ue_lib.features`)."""
    settings = ModelSettings.part_of(profile)
    return split_stage(settings) is not None and settings.cache_features


class MissingModel(Exception):
    """Raised by `RunFolder.train` while `RunFolder.missing` plans: this model is not trained."""


_WORKER: dict = {}  # the run folder of a worker process of `RunFolder.map`


def _start_worker(parameters: dict, notebook: str) -> None:
    spec = RunSpec.from_parameters(parameters)
    torch.manual_seed(spec.seed)
    np.random.seed(spec.seed)
    _WORKER["folder"] = RunFolder(spec, notebook, progress=False)


def _in_worker(function: Callable, args: tuple):
    return function(_WORKER["folder"], *args)


def model_line(name: str, result: TrainResult, epochs: int) -> str:
    """One line per model: 'naive seed0: trained 30 epochs in 25 s; selected epoch 17 of 30 (val
    recall@1 0.853)' (or 'found' when it was loaded finished from its folder)."""
    val = _split_mean(result, "val", "recall@1")
    done = "found" if result.loaded else f"trained {epochs} epochs in {result.seconds:.1f} s"
    last = " (its last: still improving)" if result.best_epoch == epochs else ""
    return (f"{name}: {done}; selected epoch {result.best_epoch} of {epochs}{last}, mean val "
            f"recall@1 {val:.3f}")


def repeat_over_seeds(folder: RunFolder, seeds: list[int], methods: list[str], rules=None
                      ) -> tuple[dict[int, pd.DataFrame], dict[int, pd.DataFrame]]:
    """Notebook 04: per seed, the specialists, naive fusion and the `methods` students, their
    test rows recorded (universal models with the merged index); returns naive fusion's
    validation peaks and stopping costs per seed (`ue_lib.report.peak_epochs` / `stopping_cost`)."""
    from .report import Rules, peak_epochs, stopping_cost

    rules = rules or Rules()
    p, peaks, costs = folder.profile, {}, {}
    for s in seeds:
        for res in folder.specialists(s).values():
            folder.record("specialist", p.metric_loss, res, seed=s)
        naive = folder.naive(s)
        folder.record("naive", p.metric_loss, naive, seed=s, merged=True)
        peaks[s] = peak_epochs(naive.history, "recall@1", "val", rules)
        costs[s] = stopping_cost(naive.history, naive.best_epoch, "recall@1", rules)
        for method in methods:
            folder.record("distill", method, folder.student(method, s), seed=s, merged=True)
    return peaks, costs


def ablation(folder: RunFolder, knob: str, values: list, seeds: list[int],
             method: str = "kl", tuned: bool = True) -> pd.DataFrame:
    """One knob of notebook 05, in this process: for each value of `knob` (a profile setting,
    e.g. "kl.temperature" or "domain_schedule") and seed, the `method` student (and, when the
    knob changes them, its teachers) trained with that value; its test rows per domain, with a
    column named after the knob. Models are shared with the other notebooks' run folder.

    One knob varies at a time around the student the other notebooks report: with `tuned`
    (and a `distill_tuning`), around the settings `folder.tuning(method)` chose at the base
    profile (not re-tuned per value: a knob is compared at that setting; a knob that is itself
    a tuned setting replaces the chosen value), so the knob's profile value gives that very
    student. `tuned=False`: around the profile's own settings."""
    chosen = folder.tuning(method).chosen if tuned and folder.profile.distill_tuning else {}
    parts = []
    for value in values:
        profile = folder.profile.with_overrides({knob: value})
        for s in seeds:
            student = folder.distill(method, s, profile, {**chosen, knob: value})
            rows = folder.record("distill", method, student, s, keep=False, profile=profile)
            parts.append(rows.assign(**{knob: value}))
    return pd.concat(parts, ignore_index=True)


def ablations(folder: RunFolder, sweep_dir: str = "", method: str = "kl", tuned: bool = True
              ) -> dict[str, tuple[list, pd.DataFrame]]:
    """Notebook 05's tables, {knob: (values, rows)}: the `method` student's per-domain test rows
    for each value of each knob (around its tuned settings unless `tuned=False`: `ablation`).
    Read from a finished `ue sweep` folder when `sweep_dir` is given, else run the profile's
    `ablation_grid` over its `ablation_seeds` in this process."""
    if sweep_dir:
        from .sweep import read_sweep

        grid, table = read_sweep(sweep_dir)
        table = table[(table.model == "distill") & (table.method == method)
                      & ~table.metric.str.endswith("_curve") & ~table.domain.str.startswith("merged")]
        return {knob: (values, table) for knob, values in grid.items()}
    seeds = folder.profile.seed_list("ablation_seeds", offset=folder.seed)
    return {knob: (values, ablation(folder, knob, values, seeds, method, tuned))
            for knob, values in folder.profile.ablation_grid.items()}


def ablation_plan(folder: RunFolder, tables: dict[str, tuple[list, pd.DataFrame]]) -> str:
    """Notebook 05: `report.ablation_plan` for the knobs and seeds in `tables` (as `ablations`
    returns them; the run's seed when none ran), timed with this run's kl-student seconds."""
    from .report import ablation_plan as plan

    ran = {knob: values for knob, (values, _) in tables.items()}
    seeds = sorted({int(s) for _, t in tables.values() for s in t.seed.unique()}) or [folder.seed]
    return plan(ran, folder.profile, folder.seconds().get("distill", float("nan")), seeds)


def experiment_label(domain: str, protocol: str) -> str:
    return domain if domain == "universal" else f"{domain} {protocol}"


def _split_inputs(model, domains: dict[str, Domain], split: str):
    """(embeddings, labels, is_query) of `split` over `domains` (several: merged, leave-one-out,
    labels made distinct per domain)."""
    from .evaluate import combined_labels, embed, model_inputs

    parts = {n: getattr(d, split) for n, d in domains.items()}
    x = np.concatenate([embed(model, model_inputs(model, sp)) for sp in parts.values()])
    if len(parts) > 1:
        return x, combined_labels({n: sp.labels for n, sp in parts.items()})[0], None
    (sp,) = parts.values()
    return x, sp.labels, sp.is_query


def compressed_rows(folder: RunFolder, domain: str, protocol: str, seed: int,
                    shape: tuple[int, int], overrides: dict | None = None,
                    kinds: Sequence[str] | None = None) -> pd.DataFrame:
    """Notebook 06, one experiment, seed and code shape: the OPQN network's float embedding
    against the faiss `kinds` of that same embedding and against its own OPQN codes
    (`ue_lib.quantize.compare_indexes`, on the test split); for ``universal`` also the kl
    student of notebooks 03-04 (float and faiss, at the same bits: `pq_shape`). Result rows:
    model = index ("float", "pq", "opq", "opqn"; "kl float", …), method = "<bits> bits",
    domain = the experiment. `kinds` default: the profile's `quantize_baselines`."""
    from .quantize import compare_indexes, pq_shape, quantizer_of

    p = folder.profile
    kinds = p.methods("quantize_baselines") if kinds is None else kinds
    domains = folder.experiment_domains(domain, protocol, seed)
    name = f"{slug(domain)}-{protocol or 'merged'}-{shape[0]}x{shape[1]}-seed{seed}"
    result = folder.opqn(domains, name, seed, shape, overrides)
    bits = shape[0] * int(np.log2(shape[1]))
    train_x = _split_inputs(result.model, domains, "train")[0]
    rows = compare_indexes(train_x, *_split_inputs(result.model, domains, "test"), shape,
                           quantizer_of(result), kinds, seed=seed, max_queries=p.quantize_queries)
    if domain == "universal":
        student = folder.student("kl", seed).model
        s_train = _split_inputs(student, domains, "train")[0]
        rows += compare_indexes(s_train, *_split_inputs(student, domains, "test"),
                                pq_shape(s_train.shape[1], bits), None, kinds, seed=seed,
                                prefix="kl ", max_queries=p.quantize_queries)
    base = {"notebook": folder.notebook, "method": f"{bits} bits",
            "domain": experiment_label(domain, protocol), "split": "test", "seed": seed,
            "epoch": result.best_epoch}
    return pd.DataFrame([{**base, "model": r["index"], "metric": r["metric"], "value": r["value"]}
                         for r in rows], columns=RESULT_COLUMNS)


def compressed_retrieval(folder: RunFolder) -> pd.DataFrame:
    """Notebook 06's main table: `compressed_rows` for every experiment (`quantize_experiments`),
    code shape (`quantize_codes`) and seed (`quantize_seeds`, offset by the run's seed)."""
    p = folder.profile
    seeds = p.seed_list("quantize_seeds", offset=folder.seed)
    experiments = p.quantize_experiment_list()
    if ("universal", "") in experiments:  # the students every code shape shares: made first
        if p.distill_tuning:
            folder.tuning("kl")  # shared by every seed's student
        folder.map(_kl_student, folder.missing(_kl_student, [(s,) for s in seeds]), "students")
    items = [(d, proto, s, shape) for d, proto in experiments for shape in p.code_shapes()
             for s in seeds]
    return pd.concat(folder.map(compressed_rows, items, "OPQN models"), ignore_index=True)


def _kl_student(folder: RunFolder, seed: int) -> None:
    folder.student("kl", seed)


def opqn_ablation(folder: RunFolder, shape: tuple[int, int] | None = None) -> pd.DataFrame:
    """Notebook 06's ablations: OPQN with one setting of `quantize_ablation` changed at a time,
    on the first experiment, at `shape` (default: the middle code shape), every seed. Rows as
    `compressed_rows` for the OPQN codes only, model "opqn" for the defaults (the main table's
    model, reused) and "opqn codebook=random", … for each change."""
    from .report import setting_label

    p = folder.profile
    shapes = p.code_shapes()
    shape = shape or shapes[len(shapes) // 2]
    domain, protocol = p.quantize_experiment_list()[0]
    seeds = p.seed_list("quantize_seeds", offset=folder.seed)
    points = [("opqn", {})] + [(f"opqn {knob.partition('.')[2] or knob}={setting_label(v)}", {knob: v})
                               for knob, values in p.quantize_ablation.items() for v in values[1:]]
    items = [(domain, protocol, s, shape, overrides, ()) for _, overrides in points for s in seeds]
    parts = folder.map(compressed_rows, items, "OPQN models")
    models = [model for model, _ in points for _ in seeds]
    return pd.concat([rows[rows.model == "opqn"].assign(model=model)
                      for rows, model in zip(parts, models)], ignore_index=True)


PARTS = ("specialists", "naive", "students")


def train_models(spec: RunSpec, parts: tuple[str, ...] = PARTS,
                 progress: bool = True) -> list[tuple[str, TrainResult]]:
    """Train (or find finished) every model notebooks 01-04 use, into the folders they look in:
    per seed of the profile's `seeds` (offset by the run's seed, as notebook 04 does) the
    specialists, the naive model and the students (all `distill_methods` on the first seed, as
    notebook 03, the `final_methods` on the others), each student with its tuned settings, and
    the other points of each method's tuning (`RunFolder.tuning`). Returns (name, result)
    pairs, each model once (`result.loaded`: found finished). Run it under torchrun to train each model on
    several GPUs; `ue run` then only evaluates."""
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        raise ValueError(f"unknown part(s) {', '.join(unknown)}; valid: {', '.join(PARTS)}")
    folder, p = RunFolder(spec, "train", progress), spec.settings
    seeds = p.seed_list(offset=spec.seed)
    done, listed = [], set()

    def add(name: str, result: TrainResult) -> None:
        if id(result) not in listed:  # a tuning point is also the base seed's student
            listed.add(id(result))
            done.append((name, result))

    for s in seeds:
        if "specialists" in parts:
            for n, r in folder.specialists(s).items():
                add(f"specialist {n} seed {s}", r)
        if "naive" in parts:
            add(f"naive seed {s}", folder.naive(s))
        if "students" in parts:
            for m in p.methods("distill_methods" if s == seeds[0] else "final_methods"):
                add(f"distill-{m} seed {s}", folder.student(m, s))
    if "students" in parts and p.distill_tuning:
        for m in dict.fromkeys(p.methods("distill_methods") + p.methods("final_methods")):
            diverged = folder.tuning(m).table.error.tolist()
            for point, error in zip(p.tuning_points(), diverged):
                if not error:  # each trained point (now in memory)
                    label = ",".join(f"{k}={v}" for k, v in point.items())
                    add(f"distill-{m} tuning {label} seed {folder.seed}",
                        folder.distill(m, folder.seed, p, point))
    return done


# ----------------------------------------------------------------------------- notebook 07

def granular_metrics(embeddings: np.ndarray, labels: np.ndarray, groups=None, attributes=None,
                     is_query=None, ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """Recall@K and MAP@R (`ue_lib.evaluate.split_metrics`'s protocol: query/gallery when
    `is_query` is given, else leave-one-out) with coarse Recall@K and nDCG@K
    (`ue_lib.evaluate.graded_metrics`) of one set of embeddings."""
    from .evaluate import graded_metrics, query_gallery_metrics, retrieval_metrics

    if is_query is None:
        out = retrieval_metrics(embeddings, labels, ks)
        graded = graded_metrics(embeddings, labels, query_groups=groups,
                                query_attributes=attributes, ks=ks)
    else:
        q, g = np.asarray(is_query, bool), ~np.asarray(is_query, bool)
        pick = {n: (None, None) if a is None else (a[q], a[g])
                for n, a in (("groups", groups), ("attributes", attributes))}
        out = query_gallery_metrics(embeddings[q], labels[q], embeddings[g], labels[g], ks)
        graded = graded_metrics(embeddings[q], labels[q], query_groups=pick["groups"][0],
                                query_attributes=pick["attributes"][0], gallery=embeddings[g],
                                gallery_labels=labels[g], gallery_groups=pick["groups"][1],
                                gallery_attributes=pick["attributes"][1], ks=ks)
    return {**out, **graded}


def _rows(folder: RunFolder, model: str, method: str, domain: str, seed: int, epoch: int,
          metrics: dict[str, float]) -> list[dict]:
    return [{"notebook": folder.notebook, "model": model, "method": method, "domain": domain,
             "split": "test", "seed": seed, "epoch": epoch, "metric": m, "value": v}
            for m, v in metrics.items()]


def split_granular_metrics(model, split, ks: Sequence[int]) -> dict[str, float]:
    """`granular_metrics` of `model`'s embeddings of one split, under the split's protocol."""
    from .evaluate import embed, model_inputs

    x = embed(model, model_inputs(model, split))
    return granular_metrics(x, split.labels, split.groups, split.attributes, split.is_query, ks)


def _ladder_rows(folder: RunFolder, rung: str, domain: str, seed: int) -> list[dict]:
    result = folder.rung_specialist(rung, domain, seed)
    metrics = split_granular_metrics(result.model, folder.domains(seed)[domain].test,
                                     folder.profile.sgml_k_list())
    return _rows(folder, rung, "specialist", domain, seed, result.best_epoch, metrics)


def granularity_ladder(folder: RunFolder) -> pd.DataFrame:
    """Notebook 07's ladder: every rung of `sgml_ladder` as specialists on every attribute-bearing
    domain, every seed of `sgml_seeds` (offset by the run's seed); their test Recall@K, MAP@R,
    coarse Recall@K and nDCG@K (`granular_metrics`, Ks `sgml_ks`), trained and scored in the
    profile's `workers` processes (`RunFolder.map`). Rows: model = rung, method "specialist"."""
    p = folder.profile
    items = [(rung, name, s) for s in p.seed_list("sgml_seeds", offset=folder.seed)
             for rung in p.sgml_ladder for name in folder.attribute_domains(s)]
    parts = folder.map(_ladder_rows, items, "specialists")
    return pd.DataFrame([r for part in parts for r in part], columns=RESULT_COLUMNS)


def graded_rungs(profile: Profile) -> list[str]:
    """The rungs of `sgml_ladder` whose loss grades pairs by attributes (``takes_attributes``)."""
    from .losses import METRIC_LOSSES

    return [rung for rung, settings in profile.sgml_ladder.items()
            if getattr(METRIC_LOSSES[settings.get("metric_loss", profile.metric_loss)],
                       "takes_attributes", False)]


def teacher_choice(folder: RunFolder) -> tuple[str, pd.DataFrame]:
    """The graded rung (`graded_rungs`) whose specialists have the best *validation* nDCG@K
    (largest K of `sgml_ks`), averaged over the attribute-bearing domains and `sgml_seeds`
    (test is never looked at; ties: the first rung). Returns it and the table behind it
    (rung, val score)."""
    p = folder.profile
    metric = f"ndcg@{p.sgml_k_list()[-1]}"
    rungs = graded_rungs(p)
    if not rungs:
        raise ValueError("sgml_teachers has auto but sgml_ladder has no rung whose loss grades "
                         "pairs by attributes (e.g. soft_binomial_deviance)")
    scores = {}
    for rung in rungs:
        values = [split_granular_metrics(folder.rung_specialist(rung, n, s).model,
                                         folder.domains(s)[n].val, p.sgml_k_list())[metric]
                  for s in p.seed_list("sgml_seeds", offset=folder.seed)
                  for n in folder.attribute_domains(s)]
        scores[rung] = float(np.mean(values))
    best = max(rungs, key=lambda r: (scores[r], -rungs.index(r)))
    table = pd.DataFrame({"rung": rungs, f"val {metric}": [scores[r] for r in rungs],
                          "chosen": [r == best for r in rungs]}).set_index("rung")
    return best, table


def teacher_rungs(folder: RunFolder, chosen: str | None = None) -> list[str]:
    """`sgml_teachers` with ``auto`` resolved to `chosen` (`teacher_choice`'s rung; computed
    when not given)."""
    rungs = folder.profile.methods("sgml_teachers")
    if "auto" in rungs and chosen is None:
        chosen = teacher_choice(folder)[0]
    return [chosen if r == "auto" else r for r in rungs]


def _teacher(folder: RunFolder, rung: str | None, domain: str, seed: int) -> None:
    if rung is None:
        folder.specialist(domain, seed)
    else:
        folder.rung_specialist(rung, domain, seed)


def _student_rows(folder: RunFolder, rung: str | None, seed: int) -> list[dict]:
    from .evaluate import combined_labels, embed, model_inputs

    p, domains = folder.profile, folder.domains(seed)
    if rung is None:
        model, result = STUDENT_OF_SPECIALISTS, folder.student("kl", seed)
    else:
        model, result = f"kl ← {rung}", folder.rung_student(rung, seed)
    xs = {n: embed(result.model, model_inputs(result.model, d.test)) for n, d in domains.items()}
    rows = []
    for n, d in domains.items():
        metrics = granular_metrics(xs[n], d.test.labels, d.test.groups, d.test.attributes,
                                   d.test.is_query, p.sgml_k_list())
        rows += _rows(folder, model, "student", n, seed, result.best_epoch, metrics)
    labels = combined_labels({n: d.test.labels for n, d in domains.items()})[0]
    groups = combined_labels({n: d.test.labels if d.test.groups is None else d.test.groups
                              for n, d in domains.items()})[0]
    metrics = granular_metrics(np.concatenate(list(xs.values())), labels, groups,
                               ks=p.sgml_k_list())
    return rows + _rows(folder, model, "student", "merged", seed, result.best_epoch, metrics)


def granularity_students(folder: RunFolder, chosen: str | None = None) -> pd.DataFrame:
    """Notebook 07's link to the main story: the kl student of the project's specialists
    (`RunFolder.student`, model "kl ← specialists") and the kl student of each rung of
    `teacher_rungs` (`RunFolder.rung_student`, model "kl ← <rung>"), every seed of `sgml_seeds`:
    `granular_metrics` per domain and on the merged index of all domains (labels and coarse
    groups made distinct per domain; a domain without groups counts its classes as its groups;
    attributes differ between domains, so the merged nDCG grades by class and group only).
    The models the students share are made first (the kl tuning here, the teachers in
    `workers` processes), then the students in `workers` processes. `chosen`: the graded rung
    `teacher_choice` chose, if the caller has it. Rows: method "student"."""
    p = folder.profile
    seeds, rungs = p.seed_list("sgml_seeds", offset=folder.seed), teacher_rungs(folder, chosen)
    if p.distill_tuning:
        folder.tuning("kl")
    teachers = [(None, n, s) for s in seeds for n in folder.domains(s)]
    teachers += [(r, n, s) for s in seeds for r in rungs for n in folder.attribute_domains(s)]
    folder.map(_teacher, folder.missing(_teacher, teachers), "teachers")
    parts = folder.map(_student_rows, [(r, s) for s in seeds for r in [None, *rungs]], "students")
    return pd.DataFrame([r for part in parts for r in part], columns=RESULT_COLUMNS)


STUDENT_OF_SPECIALISTS = "kl ← specialists"


def granularity_pairs(folder: RunFolder, domain: str | None = None, pairs: int = 3000
                      ) -> pd.DataFrame:
    """Test pairs of `domain` (default: the attribute-bearing domain with the most attributes
    on per image, whose pairs have the most graded g) at the run's seed:
    `pairs` seeded random pairs (mostly negatives) and `pairs` seeded positive pairs (an anchor
    and a random other item of its class), with their ground-truth granularity similarity g
    (cosine of the attribute vectors), whether they share a class, and each rung's learned
    cosine similarity. Columns: domain, rung, g, same_class, similarity."""
    from .evaluate import embed, l2_normalise, model_inputs

    seed = folder.seed
    if domain is None:  # the most graded one: most attributes on per image
        domain = max(folder.attribute_domains(seed), key=lambda n: float(
            (folder.domains(seed)[n].test.attributes >= 0.5).sum(1).mean()))
    test = folder.domains(seed)[domain].test
    rng = np.random.default_rng(seed)
    n = len(test.labels)
    order = np.argsort(test.labels, kind="stable")
    _, start, inverse, count = np.unique(test.labels[order], return_index=True, return_inverse=True,
                                         return_counts=True)
    anchors = rng.integers(0, n, pairs)
    cls = inverse[np.argsort(order)][anchors]  # each anchor's class position
    partners = order[start[cls] + (rng.random(pairs) * count[cls]).astype(int)]
    i = np.concatenate([rng.integers(0, n, pairs), anchors])
    j = np.concatenate([rng.integers(0, n, pairs), partners])
    i, j = i[i != j], j[i != j]
    a = l2_normalise(np.asarray(test.attributes, np.float64))
    g = np.clip((a[i] * a[j]).sum(1), 0.0, 1.0)
    out = []
    for rung in folder.profile.sgml_ladder:
        result = folder.rung_specialist(rung, domain, seed)
        x = l2_normalise(embed(result.model, model_inputs(result.model, test)))
        out.append(pd.DataFrame({"domain": domain, "rung": rung, "g": g,
                                 "same_class": test.labels[i] == test.labels[j],
                                 "similarity": (x[i] * x[j]).sum(1)}))
    return pd.concat(out, ignore_index=True)
