"""A run folder: its data, its models (trained when missing, reused when present) and what each
notebook measured in it. Generic: the systems' model getters take a run folder
(`ue_lib.<system>.models`), and this module names no system.

Notebooks open one (`RunFolder.for_notebook`) instead of training by hand, so that a later
notebook reuses what an earlier one trained (same settings -> same folder) and each notebook
still runs alone in an empty folder. Layout of a run folder:

    models/specialist/<domain>-seed0-<hash>/   model.pt, history.csv (checkpoint.pt while training)
    models/naive/seed0-<hash>/
    models/distill-kl/seed0-<hash>/
    features/                                   cached trunk features
    results/<notebook>.csv                      the rows this notebook measured
    figures/<notebook>/<name>.png
    profiles/<notebook>.json                    the settings the notebook ran with

`<hash>` is the fingerprint of everything that determines the model (`ue_lib.training.TrainJob`),
so a model is reused exactly when it would come out the same, and a changed setting trains a
new one beside it. `models_dir` can point elsewhere, e.g. one folder shared by a sweep's points.
Within a process every model is loaded once (teachers included), whatever asks for it.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from .config import ModelSettings
from .data import Domain, load_domains
from .data.core import ENV_VAR, repository_root
from .evaluate import evaluate_merged
from .features import FeatureStore, attach_features
from .figures import use_theme
from .io import RESULT_COLUMNS, atomic_write_text, result_rows, save_figure
from .lifeline import watch_parent
from .models import build_trunk, caches_features, trunk_key
from .profiles import Profile
from .spec import HEADLESS_ENV, RunSpec
from .training import ModelStore, Objective, TrainJob, TrainResult, train
from .verdicts import float_format


@dataclass
class RunFolder:
    """One notebook's view of a run: settings, run folder, loaded domains, models, result rows."""

    spec: RunSpec
    notebook: str
    progress: bool = True
    rows: list[dict] = field(default_factory=list)
    _domains: dict[tuple, dict[str, Domain]] = field(default_factory=dict, repr=False)
    _models: dict[tuple, TrainResult] = field(default_factory=dict, repr=False)
    _memo: dict[tuple, object] = field(default_factory=dict, repr=False)
    _stores: dict[str, FeatureStore] = field(default_factory=dict, repr=False)
    _planning: bool = field(default=False, repr=False)  # `missing`: find models, train none
    _pool: ProcessPoolExecutor | None = field(default=None, repr=False)  # `map`'s workers
    _pool_size: int = field(default=0, repr=False)
    # a notebook's progress lines are grouped (`log`, `flush`): one line per kind of model
    grouped: bool = field(default=False, repr=False)
    _log: list[tuple] = field(default_factory=list, repr=False)

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

    @classmethod
    def for_notebook(cls, parameters: Mapping) -> RunFolder:
        """Open the run folder of a notebook from its own parameters (its `globals()`: the six
        run parameters, validated as a `RunSpec`, and the notebook's name, which `ue run`
        passes as `notebook` and Jupyter tells the kernel), set the display of tables (fixed
        decimals: `ue_lib.verdicts.float_format`) and figures (`ue_lib.figures.use_theme`),
        and print one line saying what runs. Run directly in Jupyter, whose kernel starts in
        notebooks/, a relative folder is the repository's (`in_repository`), as under `ue run`."""
        spec = RunSpec.from_parameters(in_repository(parameters))
        folder = cls.open(notebook_name(parameters), spec)
        pd.set_option("display.float_format", float_format)
        pd.set_option("display.max_colwidth", None)  # a sentence in a cell is shown whole
        use_theme()
        print(folder.describe())
        folder.group_progress_by_cell()
        return folder

    def group_progress_by_cell(self) -> None:
        """In an IPython kernel, collect this folder's progress lines during each cell and print
        them grouped after it (`flush`): one line per kind of model, not one per model."""
        try:
            from IPython import get_ipython
        except ImportError:
            return
        shell = get_ipython()
        if shell is not None:
            self.grouped = True
            shell.events.register("post_run_cell", lambda *_: self.flush())

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
            folder = self._model_dir(*key)
            if self._planning and ModelStore(folder, job.fingerprint).finished() is None:
                raise MissingModel(folder)
            result = train(job, out_dir=folder, progress=self.progress)
            self.log("model", objective.folder, result, objective.epochs)
            if self.progress and not self.grouped:
                print(model_line(f"{objective.folder} {name}", result, objective.epochs))
            self._models[key] = result
        return self._models[key]

    def _model_dir(self, kind: str, name: str, fingerprint: str) -> Path:
        return self.models_root / kind / f"{name}-{fingerprint[:10]}"

    def model_folder(self, result: TrainResult) -> Path:
        """The folder `result` (a model this run folder object holds) was loaded from or
        trained into."""
        for key, held in self._models.items():
            if held is result:
                return self._model_dir(*key)
        raise ValueError("this model was not trained or loaded by this run folder")

    @contextlib.contextmanager
    def loading_only(self):
        """Inside, a model the folder does not hold finished raises `MissingModel` instead of
        training (those it holds are loaded): for commands that use a finished run's models."""
        planning, self._planning = self._planning, True
        try:
            yield self
        finally:
            self._planning = planning

    def log(self, kind: str, *event) -> None:
        """Keep a progress event ("model", objective folder, result, epochs) or ("tuning", name)
        for the grouped lines of `flush` (a folder without `progress` keeps none)."""
        if self.progress:
            self._log.append((kind, *event))

    def note(self, text: str) -> None:
        """A progress line of this run (printed now unless lines are grouped)."""
        if self.progress and not self.grouped:
            print(text)

    def flush(self) -> None:
        """Print the progress collected since the last flush, grouped (`progress_lines`)."""
        lines, self._log = progress_lines(self._log), []
        if lines:
            print("\n".join(lines))

    def seconds(self) -> dict[str, float]:
        """Mean training seconds per model kind ("specialist", "naive", "distill", …) over the
        models this folder holds in memory, as each took when it was trained (so loaded models
        count too): for the expected time of a next run."""
        by_kind: dict[str, list[float]] = {}
        for result in self._models.values():
            kind = result.config["objective"]["kind"]
            by_kind.setdefault(kind, []).append(result.seconds)
        return {kind: float(np.mean(v)) for kind, v in by_kind.items()}

    def memo(self, key: tuple, make: Callable[[], object]):
        """`make()`, computed once per key in this run folder object (a system's tuning, say)."""
        if key not in self._memo:
            self._memo[key] = make()
        return self._memo[key]

    # ---- parallel work
    def missing(self, function: Callable, items: Sequence[tuple]) -> list[tuple]:
        """The items whose ``function(self, *args)`` needs a model that is not in the folder yet
        (each is run with training switched off: the models it finds are loaded, the first
        missing one stops it). For `map`: a pool is started only for work left to do."""
        out = []
        for args in items:
            with self.loading_only():
                try:
                    function(self, *args)
                except MissingModel:
                    out.append(args)
        return out

    def map(self, function: Callable, items: Sequence[tuple], what: str = "tasks") -> list:
        """``[function(self, *args) for args in items]``, in `workers` processes when the
        profile has more than one (`processes`: one per item for 1-2 rounds' worth), else here.
        The processes are kept for the next `map` (`_worker_pool`). Each worker opens this run
        folder (same spec and notebook, no progress lines): models it trains land in the folder
        and are found there afterwards, so `items` must not share a model that is still missing (train shared
        models first: a student's teachers, its tuning). `function` is a module-level
        function (it is pickled); its results come back in the order of `items`, and a worker's
        error is raised here, after the tasks still queued are cancelled. Trunk features are
        computed here first, so that workers only read them. Workers keep this machine's thread
        settings (training runs on the profile's `threads` everywhere): an op on fewer threads
        may round differently (faiss's OPQ does), and the numbers must not depend on `workers`."""
        items = list(items)
        n = processes(self.profile.workers, len(items))
        if n <= 1:
            return [function(self, *args) for args in items]
        if caches_features(self.profile):
            self.domains()  # trunk features cached before the workers look for them
        start = time.perf_counter()
        pool = self._worker_pool(n)
        try:
            futures = [pool.submit(_in_worker, function, args) for args in items]
            results = [f.result() for f in futures]
        except BaseException:
            self._pool = None
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        if self.progress:
            used = min(self._pool_size, len(items))
            print(f"{len(items)} {what} in {used} processes: {time.perf_counter() - start:.0f} s")
        return results

    def _worker_pool(self, n: int) -> ProcessPoolExecutor:
        """This run folder's worker processes (at least `n`), started at the first `map` and kept
        for the next (a worker's start, importing torch and loading the domains, is paid once per
        notebook); they end with this process (`shutdown_workers`, or at exit)."""
        if self._pool is not None and self._pool_size < n:
            self.shutdown_workers()
        if self._pool is None:
            self._pool_size = n
            self._pool = ProcessPoolExecutor(
                n, mp_context=multiprocessing.get_context("spawn"),
                initializer=_start_worker,
                initargs=(self.spec.to_parameters(), self.notebook, os.getpid()))
        return self._pool

    def shutdown_workers(self) -> None:
        """End the worker processes of `map` (a new `map` starts new ones)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)

    def prefetch(self, function: Callable, items: Sequence[tuple], what: str = "models") -> None:
        """Train, in `workers` processes, the models that ``function(self, *args)`` needs for
        `items` and that are not in the folder yet (`missing`), so that the calls that follow
        here find them. Nothing happens with one worker, inside a worker, while planning, or when
        at most one item is missing (it trains here, as it would have). Items must not share a
        missing model (see `map`)."""
        if self.profile.workers <= 1 or self._planning or _WORKER:
            return
        todo = self.missing(function, items)
        if len(todo) > 1:
            self.map(function, todo, what)

    # ---- measurements
    def rows_of(self, model: str, method: str, result: TrainResult, seed: int | None = None,
                merged: bool = False, curves: bool = False, profile: Profile | None = None
                ) -> pd.DataFrame:
        """The selected model's test metrics per domain (and, for universal models, the merged
        index: all domains' test sets in one index; and the per-epoch curves) as result rows,
        not kept (rows shown for comparison that another notebook owns): see `record`."""
        return pd.DataFrame(self._rows_of(model, method, result, seed, merged, curves, profile),
                            columns=RESULT_COLUMNS)

    def record(self, model: str, method: str, result: TrainResult, seed: int | None = None,
               merged: bool = False, curves: bool = False, profile: Profile | None = None) -> None:
        """Add `rows_of` to this notebook's results, and save them."""
        self.rows += self._rows_of(model, method, result, seed, merged, curves, profile)
        self.save_results()

    def _rows_of(self, model, method, result, seed, merged, curves, profile) -> list[dict]:
        seed = self.seed if seed is None else seed
        key = {"notebook": self.notebook, "model": model, "method": method, "seed": seed}
        new = [row for r in result.final.to_dict("records") if r["split"] == "test"
               for row in result_rows({r["metric"]: r["value"]}, **key, domain=r["domain"],
                                      split=r["split"], epoch=result.best_epoch)]
        if merged:
            for domain, metrics in evaluate_merged(result.model, self.domains(seed, profile)).items():
                name = "merged" if domain == "all" else f"merged:{domain}"
                new += result_rows(metrics, **key, domain=name, epoch=result.best_epoch)
        if curves:
            h = result.history[result.history.split != "train"]
            new += [row for r in h.itertuples() for row in result_rows(
                {f"{r.metric}_curve": r.value}, **key, domain=r.domain, split=r.split,
                epoch=int(r.epoch))]
        return new

    def add_rows(self, rows: pd.DataFrame) -> None:
        """Add result rows measured outside `record` (e.g. a system's experiments) and save
        them, skipping rows this notebook already holds (same model, method, domain, split,
        metric and seed)."""
        key = ("model", "method", "domain", "split", "metric", "seed")
        held = {tuple(r[k] for k in key) for r in self.rows}
        for r in rows[RESULT_COLUMNS].to_dict("records"):
            if tuple(r[k] for k in key) not in held:
                held.add(tuple(r[k] for k in key))
                self.rows.append(r)
        self.save_results()

    def results(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=RESULT_COLUMNS)

    def save_results(self) -> Path:
        """Write this notebook's rows to results/<notebook>.csv (atomically; `record` and
        `add_rows` do)."""
        return atomic_write_text(self.results().to_csv(index=False),
                                 self.out_dir / "results" / f"{self.notebook}.csv")

    def show(self, fig, name: str) -> None:
        """Save `fig` as figures/<notebook>/<name>.png and show it: in a notebook's kernel that
        PNG, as the cell's output, whatever matplotlib's backend (a kernel started with
        MPLBACKEND=Agg, as headless runs set, would otherwise show nothing); elsewhere
        `plt.show`."""
        path = save_figure(fig, self.out_dir / "figures" / self.notebook / f"{name}.png")
        if in_kernel():
            from IPython.display import Image, display

            display(Image(filename=str(path)))
            plt.close(fig)  # shown once: an inline backend would show it again
        else:
            plt.show()

    def interactive(self, make: Callable[[], object]) -> None:
        """Display the widget `make()` returns where someone can use it: in a Jupyter kernel
        that `ue run` did not start (`HEADLESS_ENV`). Headless, a widget is dead text in the
        executed notebook, its HTML and the book ("VBox(children=...)"), so nothing is made or
        shown there; the notebook shows a static figure of the same view beside it."""
        if in_kernel() and not os.environ.get(HEADLESS_ENV):
            from IPython.display import display

            display(make())

    def savefig(self, fig, name: str) -> Path:
        """Save `fig` as figures/<notebook>/<name>.png (without showing it)."""
        return save_figure(fig, self.out_dir / "figures" / self.notebook / f"{name}.png")


def in_kernel() -> bool:
    """Whether this code runs in a Jupyter kernel (where `display` draws a cell's output)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def in_repository(parameters: Mapping) -> dict:
    """A notebook's run parameters with its folders found as `ue run --out runs/mini` from the
    repository root finds them, whatever the kernel's working directory (Jupyter starts it in
    notebooks/): a relative `out_dir` or `models_dir` is made absolute against the repository
    root (`ue_lib.data.core.repository_root`), and without $UE_DATA the data root is the
    repository's data/ (set in $UE_DATA, as `ue run` sets it for its kernels and their
    workers). Under `ue run` the folders are absolute and $UE_DATA is set: nothing changes;
    without a repository (an installed ue_lib) neither does anything."""
    values = {name: parameters[name] for name in RunSpec.parameter_names() if name in parameters}
    root = repository_root()
    if root is None:
        return values
    for name in ("out_dir", "models_dir"):
        value = values.get(name)
        if isinstance(value, (str, os.PathLike)) and str(value) and \
                not Path(value).expanduser().is_absolute():
            values[name] = str(root / value)
    if not os.environ.get(ENV_VAR):
        os.environ[ENV_VAR] = str(root / "data")
    return values


def notebook_name(parameters: Mapping) -> str:
    """The running notebook's name (file stem): the `notebook` parameter `ue run` passes, else
    what Jupyter tells the kernel (``__session__``, VS Code's ``__vsc_ipynb_file__``, or the
    ``JPY_SESSION_NAME`` environment variable); ValueError saying how to set it otherwise."""
    for value in (parameters.get("notebook"), parameters.get("__session__"),
                  parameters.get("__vsc_ipynb_file__"), os.environ.get("JPY_SESSION_NAME")):
        if value:
            return Path(str(value)).stem
    raise ValueError("cannot tell which notebook this is: run it with `ue run`, or in Jupyter, "
                     "or set notebook = \"<its file name>\" in its parameters cell")


def processes(workers: int, tasks: int) -> int:
    """How many worker processes `RunFolder.map` runs `tasks` in: `workers`, except when the
    tasks fill more than one round but less than two (3 on 2 workers): then one per task, so
    that they share the cores to the end instead of one worker finishing a last round alone
    (3 equal tasks on 2 cores: 1.5 rounds instead of 2). A worker trains on the profile's
    `threads` either way, so the numbers do not change."""
    return tasks if workers < tasks < 2 * workers else min(workers, tasks)


class MissingModel(Exception):
    """Raised by `RunFolder.train` while `RunFolder.missing` plans: this model is not trained."""


_WORKER: dict = {}  # the run folder of a worker process of `RunFolder.map`


def _start_worker(parameters: dict, notebook: str, parent: int) -> None:
    watch_parent(parent)  # a killed kernel takes its workers along (`ue_lib.lifeline`)
    spec = RunSpec.from_parameters(parameters)
    torch.manual_seed(spec.seed)
    np.random.seed(spec.seed)
    _WORKER["folder"] = RunFolder(spec, notebook, progress=False)


def _in_worker(function: Callable, args: tuple):
    return function(_WORKER["folder"], *args)


def progress_lines(events: Sequence[tuple]) -> list[str]:
    """The progress of a cell in a few lines: one per kind of model trained, e.g. 'trained
    distill-kl: 2 models in 24.5 s; selected epochs 12, 17 of 30', and one line for every model
    found finished in the run folder, e.g. 'found in the run folder: 5 specialist, 1 naive'."""
    trained, found = {}, {}
    for kind, *event in events:
        if kind == "model":
            folder, result, epochs = event
            if result.loaded:
                found[folder] = found.get(folder, 0) + 1
            else:
                trained.setdefault(folder, []).append((result, epochs))
    lines = []
    for folder, group in trained.items():
        many = len(group) > 1
        lines.append(f"trained {folder}: {len(group)} model{'s' if many else ''} in "
                     f"{sum(r.seconds for r, _ in group):.1f} s; selected epoch{'s' if many else ''} "
                     f"{', '.join(str(r.best_epoch) for r, _ in group)} of "
                     f"{'/'.join(map(str, sorted({e for _, e in group})))}")
    if found:
        lines.append("found in the run folder: " + ", ".join(f"{n} {k}" for k, n in found.items()))
    return lines


def model_line(name: str, result: TrainResult, epochs: int) -> str:
    """One line per model: 'naive seed0: trained 30 epochs in 25 s; selected epoch 17 of 30 (val
    recall@1 0.853)' (or 'found' when it was loaded finished from its folder)."""
    val = result.split_mean("val", "recall@1")
    done = "found" if result.loaded else f"trained {epochs} epochs in {result.seconds:.1f} s"
    last = " (its last: still improving)" if result.best_epoch == epochs else ""
    return (f"{name}: {done}; selected epoch {result.best_epoch} of {epochs}{last}, mean val "
            f"recall@1 {val:.3f}")
