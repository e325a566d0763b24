"""The artefacts of a run folder, trained when missing and reused when present.

Notebooks call these instead of training by hand, so that a later notebook
reuses what an earlier one trained (same settings -> same folder) and each
notebook still runs alone in an empty folder. Layout of a run folder:

    models/specialist/<domain>-seed0-<hash>/   model.pt, history.csv (checkpoint.pt while training)
    models/naive/seed0-<hash>/
    models/distill-kl/seed0-<hash>/

`<hash>` is the hash of everything that determines the model (data, every setting), so a
model is reused exactly when it would come out the same, and a changed setting trains a new
one beside it. `models_dir` can point elsewhere, e.g. one folder shared by a sweep's points.
    results/<notebook>.csv                the rows this notebook measured
    figures/<notebook>/<name>.png
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .data import Domain, load_domain
from .evaluate import embed, merged_retrieval_metrics
from .profiles import Profile, load_profile
from .train import TrainResult, atomic_write_text, run_config, train

RESULT_COLUMNS = ["notebook", "model", "method", "domain", "split", "metric", "value", "seed",
                  "epoch"]


def slug(text: str) -> str:
    """A folder-safe name: 'temperature=0.05,seed=0' stays; 'folder:/a/b' -> 'folder-a-b-<hash>'
    (a short hash is added whenever characters were replaced or the name was shortened, so two
    different texts never share a folder)."""
    clean = re.sub(r"[^A-Za-z0-9_.,=+-]+", "-", text).strip("-")
    if clean != text or len(clean) > 100:
        clean = f"{clean[:100]}-{hashlib.sha1(text.encode()).hexdigest()[:6]}"
    return clean


@dataclass
class Experiment:
    """One notebook's view of a run: profile, run folder, loaded domains, result rows."""

    profile: Profile
    out_dir: Path
    notebook: str
    seed: int = 0
    progress: bool = True
    models_dir: Path | None = None  # default: <out_dir>/models
    rows: list[dict] = field(default_factory=list)
    _domains: dict[int, dict[str, Domain]] = field(default_factory=dict)

    # ---- data
    def domains(self, seed: int | None = None) -> dict[str, Domain]:
        """The profile's domains. Splits depend on the seed, so each seed has its own."""
        seed = self.seed if seed is None else seed
        if seed not in self._domains:
            p = self.profile
            self._domains[seed] = {
                name: load_domain(name, **{**p.data_kwargs(seed), **p.per_domain.get(name, {})})
                for name in p.domain_names}
        return self._domains[seed]

    # ---- models
    @property
    def models_root(self) -> Path:
        return Path(self.models_dir) if self.models_dir else self.out_dir / "models"

    def _train(self, kind: str, name: str, domains: dict[str, Domain], cfg,
               teachers=None) -> TrainResult:
        model_cfg, optim_cfg = self.profile.model_config(), self.profile.optim_config()
        _, fingerprint = run_config(domains, cfg, model_cfg, optim_cfg, teachers=teachers)
        folder = self.models_root / kind / f"{name}-{fingerprint[:10]}"
        return train(domains, cfg, model_cfg, optim_cfg, teachers=teachers, out_dir=folder,
                     progress=self.progress)

    def specialists(self, seed: int | None = None) -> dict[str, TrainResult]:
        """One model per domain (the teachers)."""
        seed = self.seed if seed is None else seed
        cfg = self.profile.train_config("specialist", seed)
        return {name: self._train("specialist", f"{slug(name)}-seed{seed}", {name: d}, cfg)
                for name, d in self.domains(seed).items()}

    def naive(self, seed: int | None = None) -> TrainResult:
        """One model on the union of all domains (naive fusion)."""
        seed = self.seed if seed is None else seed
        cfg = self.profile.train_config("naive", seed)
        return self._train("naive", f"seed{seed}", self.domains(seed), cfg)

    def student(self, method: str, seed: int | None = None, **loss_params) -> TrainResult:
        """A universal student distilled from this seed's specialists with `method`."""
        seed = self.seed if seed is None else seed
        params = {**self.profile.distill_params(method), **loss_params}
        cfg = self.profile.train_config("distill", seed, method, distill_loss_params=params)
        teachers = {n: r.model for n, r in self.specialists(seed).items()}
        return self._train(f"distill-{method}", f"seed{seed}", self.domains(seed), cfg, teachers)

    # ---- measurements
    def merged(self, result: TrainResult, seed: int | None = None, split: str = "test") -> dict:
        """Merged-index metrics of a universal model (all domains' test sets in one index)."""
        doms = self.domains(self.seed if seed is None else seed)
        emb = {n: embed(result.model, getattr(d, split).images) for n, d in doms.items()}
        return merged_retrieval_metrics(emb, {n: getattr(d, split).labels for n, d in doms.items()})

    def record(self, model: str, method: str, result: TrainResult, seed: int | None = None,
               merged: bool = False, curves: bool = False, keep: bool = True) -> pd.DataFrame:
        """The selected model's test metrics per domain (and, for universal models, the merged
        index; and the per-epoch curves) as result rows, added to this notebook's results
        unless `keep=False` (for rows shown for comparison that another notebook owns)."""
        seed = self.seed if seed is None else seed
        base = {"notebook": self.notebook, "model": model, "method": method, "seed": seed,
                "epoch": result.best_epoch}
        new = [{**base, **r} for r in result.final.to_dict("records") if r["split"] == "test"]
        if merged:
            for domain, metrics in self.merged(result, seed).items():
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
        path = self.out_dir / "results" / f"{self.notebook}.csv"
        atomic_write_text(self.results().to_csv(index=False), path)
        return path

    def savefig(self, fig, name: str) -> Path:
        path = self.out_dir / "figures" / self.notebook / f"{name}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp.png")
        fig.savefig(tmp, dpi=110, bbox_inches="tight")
        tmp.replace(path)
        return path


PARTS = ("specialists", "naive", "students")


def train_models(profile: str, out_dir: str | Path, seed: int = 0, domains: str = "",
                 overrides: dict | None = None, models_dir: str = "",
                 parts: tuple[str, ...] = PARTS, progress: bool = True) -> list[tuple[str, float]]:
    """Train (or find finished) every model notebooks 01-04 use, into the folders they look in:
    per seed of the profile's `seeds` (offset by `seed`, as notebook 04 does) the specialists,
    the naive model and the students (all `distill_methods` on the first seed, as notebook 03,
    the `final_methods` on the others). Returns (model folder kind and name, seconds) pairs.
    Run it under torchrun to train each model on several GPUs; `ue run` then only evaluates."""
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        raise ValueError(f"unknown part(s) {', '.join(unknown)}; valid: {', '.join(PARTS)}")
    prof = load_profile(profile, domains or None, overrides)
    exp = Experiment(prof, Path(out_dir), "train", seed, progress,
                     Path(models_dir) if models_dir else None)
    seeds = prof.seed_list(offset=seed)
    done = []
    for s in seeds:
        if "specialists" in parts:
            done += [(f"specialist {n} seed {s}", r.seconds) for n, r in exp.specialists(s).items()]
        if "naive" in parts:
            done.append((f"naive seed {s}", exp.naive(s).seconds))
        if "students" in parts:
            methods = prof.methods("distill_methods" if s == seeds[0] else "final_methods")
            done += [(f"distill-{m} seed {s}", exp.student(m, s).seconds) for m in methods]
    return done


def setup(notebook: str, profile: str = "mini", out_dir: str = "runs/mini", seed: int = 0,
          domains: str = "", overrides: dict | None = None, models_dir: str = "",
          progress: bool = True) -> Experiment:
    """Validate a notebook's papermill parameters and open its run folder."""
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"parameter seed must be an integer, got {seed!r}")
    if not isinstance(domains, str):
        raise TypeError(f"parameter domains must be a comma-separated string, got {domains!r}")
    if overrides is not None and not isinstance(overrides, dict):
        raise TypeError(f"parameter overrides must be a dict, got {overrides!r}")
    prof = load_profile(profile, domains or None, overrides)
    torch.manual_seed(seed)
    np.random.seed(seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(json.dumps(prof.to_dict(), indent=1, default=str),
                      out / "profiles" / f"{notebook}.json")
    return Experiment(prof, out, notebook, seed, progress, Path(models_dir) if models_dir else None)
