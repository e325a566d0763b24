"""`ue sweep`: run one notebook over a grid of parameters (× seeds) and gather one table.

Each grid point runs in its own folder under `DIR/points/`, named from its parameters;
all points share `DIR/models/`, where every model sits in a folder named by the hash of
everything that determines it, so a specialist needed by ten points is trained once.
A point that finished is skipped when the sweep is run again (so an interrupted sweep
resumes); a point that fails is recorded in `DIR/failures.csv` and the sweep goes on.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from .io import atomic_write_text, slug
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
          log: Callable[[str], None] = print) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Run the grid; return (sweep table, failures). Writes DIR/sweep.csv and DIR/summary.html.

    `base` gives the profile, domains and overrides of every point (its `out_dir` and `seed`
    are replaced per point); its `models_dir` (default DIR/models) is where the points' models
    are shared. Parameter *names* are checked before anything runs; a bad *value* fails only
    its own point."""
    notebook = Path(notebook)
    if not notebook.is_file():
        raise RunError(f"notebook {notebook} not found")
    list_notebooks(notebook.parent, [notebook.stem])
    for name in params:
        setting_path(name)
    points = expand_grid(params, list(seeds))
    out = Path(out_dir).resolve()
    base = base or RunSpec(profile="smoke", out_dir=str(out))
    models = base.models_dir or str(out / "models")
    atomic_write_text(json.dumps({"notebook": str(notebook), "profile": base.profile, "params": params,
                                  "seeds": list(seeds), "domains": base.domains,
                                  "overrides": base.overrides}, indent=1, default=str),
                      out / "sweep.json")
    failures, tables, start, ran = [], [], time.perf_counter(), 0
    for i, point in enumerate(points, 1):
        folder = out / "points" / point_name(point)
        swept = {k: v for k, v in point.items() if k != "seed"}
        if (folder / "results.csv").is_file() and (folder / ".point.done").is_file():
            status = "already done, skipped"
        else:
            status, ran = _run_point(notebook, folder, base, point["seed"], swept, models,
                                     failures), ran + 1
        if (folder / ".point.done").is_file():
            table = pd.read_csv(folder / "results.csv")
            for k, v in swept.items():  # one column per swept parameter
                table[k] = str(v) if isinstance(v, (list, tuple, dict)) else v
            tables.append(table)
        elapsed = time.perf_counter() - start
        left = elapsed / ran * (len(points) - i) if ran else 0.0
        log(f"[{i}/{len(points)}] {point_name(point)}: {status} | elapsed {_fmt_time(elapsed)}, "
            f"about {_fmt_time(left)} left")
    return _write_tables(out, tables, failures, list(params), notebook.stem)


def _run_point(notebook: Path, folder: Path, base: RunSpec, seed: int, swept: dict, models: str,
               failures: list[dict]) -> str:
    """Run one point; a failure is recorded in `failures` (and the sweep goes on)."""
    try:
        spec = RunSpec(base.profile, str(folder), seed, base.domains, {**base.overrides, **swept},
                       models)
        run(spec, only=[notebook.stem], notebooks=notebook.parent, log=lambda _: None)
        atomic_write_text("ok", folder / ".point.done")
        return "done"
    except Exception as exc:  # recorded, and the sweep goes on
        failures.append({**swept, "seed": seed, "error": f"{type(exc).__name__}: {exc}"})
        return f"FAILED ({type(exc).__name__})"


def _write_tables(out: Path, tables: list[pd.DataFrame], failures: list[dict], knobs: list[str],
                  notebook: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    table = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
    fails = pd.DataFrame(failures)
    atomic_write_text(table.to_csv(index=False), out / "sweep.csv")
    atomic_write_text(fails.to_csv(index=False), out / "failures.csv")
    if not table.empty:
        from .plots import sweep_summary_html

        atomic_write_text(sweep_summary_html(table, knobs, notebook, fails), out / "summary.html")
    return table, fails


def read_sweep(sweep_dir: str | Path) -> tuple[dict[str, list], pd.DataFrame]:
    """A finished sweep folder's grid ({parameter: values}) and table (sweep.csv)."""
    folder = Path(sweep_dir)
    if not (folder / "sweep.csv").is_file():
        raise RunError(f"{folder / 'sweep.csv'} not found: run `ue sweep … --out {folder}` first")
    spec = json.loads((folder / "sweep.json").read_text())
    return spec["params"], pd.read_csv(folder / "sweep.csv")


def setting_labels(values: pd.Series) -> pd.Series:
    """A swept parameter's values as labels (`ue_lib.report.setting_label`: 'None' for None/NaN,
    '4' for 4.0), for grouping and plotting, the same as the tables of notebook 05."""
    from .report import setting_label

    return values.map(setting_label)
