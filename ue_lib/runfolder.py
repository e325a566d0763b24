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
"""

from __future__ import annotations

import json
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
from .objectives import Distillation, NaiveFusion, Objective, Specialist
from .profiles import Profile
from .spec import RunSpec
from .train import TrainJob, TrainResult, train


@dataclass
class RunFolder:
    """One notebook's view of a run: settings, run folder, loaded domains, models, result rows."""

    spec: RunSpec
    notebook: str
    progress: bool = True
    rows: list[dict] = field(default_factory=list)
    _domains: dict[tuple, dict[str, Domain]] = field(default_factory=dict, repr=False)
    _models: dict[tuple, TrainResult] = field(default_factory=dict, repr=False)
    _stores: dict[str, FeatureStore] = field(default_factory=dict, repr=False)

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
        cached = split_stage(settings) is not None and settings.cache_features
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
            result = train(job, out_dir=folder, progress=self.progress)
            if self.progress:
                print(model_line(f"{objective.folder} {name}", result, objective.epochs))
            self._models[key] = result
        return self._models[key]

    def specialists(self, seed: int | None = None, profile: Profile | None = None
                    ) -> dict[str, TrainResult]:
        """One model per domain (the teachers)."""
        p, seed = profile or self.profile, self.seed if seed is None else seed
        return {name: self.train(Specialist(p), {name: d}, seed, f"{slug(name)}-seed{seed}")
                for name, d in self.domains(seed, p).items()}

    def naive(self, seed: int | None = None, profile: Profile | None = None) -> TrainResult:
        """One model on the union of all domains (naive fusion)."""
        p, seed = profile or self.profile, self.seed if seed is None else seed
        return self.train(NaiveFusion(p), self.domains(seed, p), seed, f"seed{seed}")

    def student(self, method: str, seed: int | None = None, profile: Profile | None = None
                ) -> TrainResult:
        """A universal student distilled from this seed's specialists with loss `method`."""
        p, seed = profile or self.profile, self.seed if seed is None else seed
        teachers = {n: r.model for n, r in self.specialists(seed, p).items()}
        return self.train(Distillation(p, method, teachers), self.domains(seed, p), seed,
                          f"seed{seed}")

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

    def results(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=RESULT_COLUMNS)

    def save_results(self) -> Path:
        """Write this notebook's rows to results/<notebook>.csv (atomically)."""
        return atomic_write_text(self.results().to_csv(index=False),
                                 self.out_dir / "results" / f"{self.notebook}.csv")

    def savefig(self, fig, name: str) -> Path:
        return save_figure(fig, self.out_dir / "figures" / self.notebook / f"{name}.png")


def model_line(name: str, result: TrainResult, epochs: int) -> str:
    """One line per model: 'naive seed0: trained 30 epochs in 25 s; selected epoch 17 of 30 (val
    recall@1 0.853)' (or 'found' when it was loaded finished from its folder)."""
    f = result.final
    val = f[(f.split == "val") & (f.metric == "recall@1")].value.mean()
    done = f"trained {epochs} epochs in {result.seconds:.0f} s" if result.seconds else "found"
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
             method: str = "kl") -> pd.DataFrame:
    """One knob of notebook 05, in this process: for each value of `knob` (a profile setting,
    e.g. "kl.temperature" or "domain_schedule") and seed, the `method` student (and, when the
    knob changes them, its teachers) trained with that value; its test rows per domain, with a
    column named after the knob. Models are shared with the other notebooks' run folder."""
    parts = []
    for value in values:
        profile = folder.profile.with_overrides({knob: value})
        for s in seeds:
            rows = folder.record("distill", method, folder.student(method, s, profile), s,
                                 keep=False, profile=profile)
            parts.append(rows.assign(**{knob: value}))
    return pd.concat(parts, ignore_index=True)


def ablations(folder: RunFolder, sweep_dir: str = "", method: str = "kl"
              ) -> dict[str, tuple[list, pd.DataFrame]]:
    """Notebook 05's tables, {knob: (values, rows)}: the `method` student's per-domain test rows
    for each value of each knob. Read from a finished `ue sweep` folder when `sweep_dir` is
    given, else run the profile's `ablation_grid` over its `ablation_seeds` in this process."""
    if sweep_dir:
        from .sweep import read_sweep

        grid, table = read_sweep(sweep_dir)
        table = table[(table.model == "distill") & (table.method == method)
                      & ~table.metric.str.endswith("_curve") & ~table.domain.str.startswith("merged")]
        return {knob: (values, table) for knob, values in grid.items()}
    seeds = folder.profile.seed_list("ablation_seeds", offset=folder.seed)
    return {knob: (values, ablation(folder, knob, values, seeds, method))
            for knob, values in folder.profile.ablation_grid.items()}


PARTS = ("specialists", "naive", "students")


def train_models(spec: RunSpec, parts: tuple[str, ...] = PARTS,
                 progress: bool = True) -> list[tuple[str, float]]:
    """Train (or find finished) every model notebooks 01-04 use, into the folders they look in:
    per seed of the profile's `seeds` (offset by the run's seed, as notebook 04 does) the
    specialists, the naive model and the students (all `distill_methods` on the first seed, as
    notebook 03, the `final_methods` on the others). Returns (model, seconds) pairs. Run it
    under torchrun to train each model on several GPUs; `ue run` then only evaluates."""
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        raise ValueError(f"unknown part(s) {', '.join(unknown)}; valid: {', '.join(PARTS)}")
    folder = RunFolder(spec, "train", progress)
    seeds = spec.settings.seed_list(offset=spec.seed)
    done = []
    for s in seeds:
        if "specialists" in parts:
            done += [(f"specialist {n} seed {s}", r.seconds) for n, r in folder.specialists(s).items()]
        if "naive" in parts:
            done.append((f"naive seed {s}", folder.naive(s).seconds))
        if "students" in parts:
            methods = spec.settings.methods("distill_methods" if s == seeds[0] else "final_methods")
            done += [(f"distill-{m} seed {s}", folder.student(m, s).seconds) for m in methods]
    return done
