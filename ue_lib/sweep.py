"""`ue sweep`: run one notebook over a grid of parameters (× seeds) and gather one table.

Each grid point runs in its own folder under `DIR/points/`, named from its parameters;
all points share `DIR/models/`, where every model sits in a folder named by the hash of
everything that determines it, so a specialist needed by ten points is trained once.
A point that finished is skipped when the sweep is run again (so an interrupted sweep
resumes); a point that fails is recorded in `DIR/failures.csv` and the sweep goes on.

Points run one after another here, or in parallel on Dask (`workers` > 1: a local cluster of
that many worker processes on the loopback interface, `distributed.LocalCluster`; `scheduler`:
an existing cluster, e.g. `dask worker` processes on other machines, or SLURM / PBS jobs
through `dask-jobqueue`). The semantics do not change: the table is gathered in grid order, so
it is the serial sweep's; finished points are skipped before anything is submitted; a failed
point is recorded and the others go on. Two points that need the same missing model do not
train it twice: a model folder is locked while its model trains (`ue_lib.training.ModelStore`),
and the second waits and loads it. Workers need the sweep folder (with its models) and the
data root on a shared filesystem: each checks at the start that it sees both, or the sweep
stops naming the worker and what it could not see.
"""

from __future__ import annotations

import itertools
import json
import os
import secrets
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from .data import resolve_data_root
from .io import SWEEP_SPEC, SWEEP_TABLE, atomic_write_text, slug
from .lifeline import announce_parent
from .profiles import setting_path
from .runner import RunError, list_notebooks, run
from .spec import RunSpec


def expand_grid(params: dict[str, list], seeds: list[int]) -> list[dict]:
    """Cartesian product of the parameter values, times the seeds, in a stable order:
    {"temperature": [0.05, 0.1]}, [0, 1] -> 4 points, each {"temperature": …, "seed": …}."""
    if "seed" in params:
        raise ValueError("sweep seeds with --seeds, not -p seed")
    names = list(params)
    return [{**dict(zip(names, values)), "seed": seed}
            for values in itertools.product(*(params[n] for n in names)) for seed in seeds]


def point_name(point: dict) -> str:
    """Folder name of a grid point: 'temperature=0.05,seed=0' made folder-safe."""
    return slug(",".join(f"{k}={v}" for k, v in point.items()))


def _fmt_time(seconds: float) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(max(0.0, seconds)))


def sweep(notebook: str | Path, out_dir: str | Path, params: dict[str, list],
          seeds: list[int] = (0,), base: RunSpec | None = None,
          log: Callable[[str], None] = print, workers: int = 1,
          scheduler: str = "") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Run the grid; return (sweep table, failures). Writes DIR/sweep.csv and DIR/summary.html.

    `base` gives the profile, domains and overrides of every point (its `out_dir` and `seed`
    are replaced per point); its `models_dir` (default DIR/models) is where the points' models
    are shared. Parameter *names* are checked before anything runs; a bad *value* fails only
    its own point. `workers` > 1 runs the points on a local Dask cluster of that many processes,
    `scheduler` ("tcp://host:8786") on an existing one (see the module doc)."""
    notebook = Path(notebook).resolve()
    if not notebook.is_file():
        raise RunError(f"notebook {notebook} not found")
    list_notebooks(notebook.parent, [notebook.stem])
    for name in params:
        setting_path(name)
    if not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
    points = expand_grid(params, list(seeds))
    out = Path(out_dir).resolve()
    base = base or RunSpec(profile="smoke", out_dir=str(out))
    models = str(Path(base.models_dir).resolve()) if base.models_dir else str(out / "models")
    atomic_write_text(json.dumps({"notebook": str(notebook), "profile": base.profile, "params": params,
                                  "seeds": list(seeds), "domains": base.domains,
                                  "overrides": base.overrides}, indent=1, default=str),
                      out / SWEEP_SPEC)
    tasks = {point_name(p): (notebook, out / "points" / point_name(p), base, p["seed"],
                             {k: v for k, v in p.items() if k != "seed"}, models)
             for p in points}
    todo = [name for name in tasks if not _done(tasks[name][1])]
    progress = _Progress(len(points), len(todo), log)
    for name in tasks:
        if name not in todo:
            progress.report(name, "already done, skipped", ran=False)
    failures: dict[str, dict] = {}
    if workers > 1 or scheduler:
        outcomes = _on_dask(tasks, todo, workers, scheduler, out, progress)
    else:
        outcomes = ((name, run_point(*tasks[name])) for name in todo)
        outcomes = ((name, progress.report(name, status) or (status, failure))
                    for name, (status, failure) in outcomes)
    for name, (_, failure) in outcomes:
        if failure is not None:
            failures[name] = failure
    tables = []
    for _, folder, _, _, swept, _ in tasks.values():  # grid order: the serial table
        if _done(folder):
            table = pd.read_csv(folder / "results.csv")
            for k, v in swept.items():  # one column per swept parameter
                table[k] = str(v) if isinstance(v, (list, tuple, dict)) else v
            tables.append(table)
    return _write_tables(out, tables, [failures[n] for n in tasks if n in failures], list(params),
                         notebook.stem)


def _done(folder: Path) -> bool:
    return (folder / "results.csv").is_file() and (folder / ".point.done").is_file()


class _Progress:
    """One line per point as it ends: '[3/8] temperature=0.05,seed=0: done | elapsed …, about …
    left' (the estimate from the points run so far)."""

    def __init__(self, total: int, to_run: int, log: Callable[[str], None]):
        self.total, self.to_run, self.log = total, to_run, log
        self.seen = self.ran = 0
        self.start = time.perf_counter()

    def report(self, name: str, status: str, ran: bool = True) -> None:
        self.seen, self.ran = self.seen + 1, self.ran + ran
        elapsed = time.perf_counter() - self.start
        left = elapsed / self.ran * (self.to_run - self.ran) if self.ran else 0.0
        self.log(f"[{self.seen}/{self.total}] {name}: {status} | elapsed {_fmt_time(elapsed)}, "
                 f"about {_fmt_time(left)} left")


def run_point(notebook: Path, folder: Path, base: RunSpec, seed: int, swept: dict,
              models: str) -> tuple[str, dict | None]:
    """Run one point (here or in a Dask worker); returns (status, failure row or None): a
    failure is recorded, and the sweep goes on."""
    try:
        spec = RunSpec(base.profile, str(folder), seed, base.domains, {**base.overrides, **swept},
                       models)
        run(spec, only=[notebook.stem], notebooks=notebook.parent, log=lambda _: None)
        atomic_write_text("ok", folder / ".point.done")
        return "done", None
    except Exception as exc:  # recorded, and the sweep goes on
        return f"FAILED ({type(exc).__name__})", {**swept, "seed": seed,
                                                  "error": f"{type(exc).__name__}: {exc}"}


def check_shared(out: str, token: str, data_root: str) -> str:
    """Run on each worker: '' when it sees the sweep folder (the token file the client wrote)
    and the client's data root at the same paths, else what it cannot see."""
    token_file = Path(out) / ".sweep-token"
    if not token_file.is_file() or token_file.read_text() != token:
        return f"the sweep folder {out}"
    if not Path(data_root).is_dir():
        return f"the data root {data_root}"
    return ""


def local_cluster(workers: int):
    """The Dask cluster of `ue sweep --workers N` on this machine: `workers` processes of one
    thread each, on the loopback interface, each ending with this process (`ue_lib.lifeline`)."""
    from distributed import LocalCluster

    announce_parent()  # the workers' preload (`ue_lib.lifeline.dask_setup`) watches this process
    return LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                        dashboard_address=None, preload=["ue_lib.lifeline"])


def _on_dask(tasks: dict, todo: list[str], workers: int, scheduler: str, out: Path,
             progress: _Progress):
    """Yield (name, (status, failure)) of the points `todo` as they end on Dask workers."""
    try:
        from distributed import Client, as_completed
    except ImportError as exc:  # pragma: no cover - a dependency of the project
        raise RunError("parallel sweeps need dask.distributed: pip install 'dask[distributed]'"
                       ) from exc
    if not todo:
        return
    cluster = None if scheduler else local_cluster(workers)
    client = Client(scheduler or cluster)
    try:
        token = secrets.token_hex(8)
        atomic_write_text(token, out / ".sweep-token")
        root = str(resolve_data_root(None))
        seen = client.run(check_shared, str(out), token, root)
        blind = {w: what for w, what in seen.items() if what}
        if blind:
            raise RunError("; ".join(f"worker {w} cannot see {what}" for w, what in blind.items())
                           + ": Dask workers need the sweep folder and the data root on a shared "
                             "filesystem at the same paths (set UE_DATA on the workers)")
        env = {"UE_DATA": root, **{k: os.environ[k] for k in ("UE_CACHE",) if k in os.environ}}
        futures = {client.submit(_run_in_worker, env, *tasks[name], pure=False,
                                 key=f"point-{name}-{token}"): name for name in todo}
        for future in as_completed(futures):
            name = futures[future]
            status, failure = future.result()
            progress.report(name, status)
            yield name, (status, failure)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _run_in_worker(env: dict, *args) -> tuple[str, dict | None]:
    os.environ.update(env)  # the client's data root (checked to be visible here) and cache
    return run_point(*args)


def _write_tables(out: Path, tables: list[pd.DataFrame], failures: list[dict], knobs: list[str],
                  notebook: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    table = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
    fails = pd.DataFrame(failures)
    atomic_write_text(table.to_csv(index=False), out / SWEEP_TABLE)
    atomic_write_text(fails.to_csv(index=False), out / "failures.csv")
    if not table.empty:
        from .figures import sweep_summary_html  # matplotlib: only once the tables are written

        atomic_write_text(sweep_summary_html(table, knobs, notebook, fails), out / "summary.html")
    return table, fails
