"""`ue sweep`: run one notebook over a grid of parameters (× seeds) and gather one table.

Each grid point runs in its own folder under `DIR/points/`, named from its parameters;
all points share `DIR/models/`, where every model sits in a folder named by the hash of
everything that determines it, so a specialist needed by ten points is trained once.
A point that finished is skipped when the sweep is run again (so an interrupted sweep
resumes); a point that fails is recorded in `DIR/failures.csv` and the sweep goes on.
"""

from __future__ import annotations

import base64
import io
import itertools
import json
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from .experiments import slug
from .profiles import load_profile, profile_fields
from .runner import RunError, list_notebooks, run
from .train import atomic_write_text


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
          seeds: list[int] = (0,), profile: str = "smoke", domains: str = "",
          base_overrides: dict | None = None, models_dir: str | Path | None = None,
          log: Callable[[str], None] = print) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Run the grid; return (sweep table, failures). Writes DIR/sweep.csv and DIR/summary.html.

    `base_overrides` apply to every point; `models_dir` (default DIR/models) is where the
    points' models are shared. Parameter *names* are checked before anything runs; a bad
    *value* fails only its own point."""
    notebook = Path(notebook)
    if not notebook.is_file():
        raise RunError(f"notebook {notebook} not found")
    list_notebooks(notebook.parent, [notebook.stem])
    points = expand_grid(params, list(seeds))
    base_overrides = dict(base_overrides or {})
    load_profile(profile, domains or None, base_overrides)
    unknown = sorted(set(params) - set(profile_fields()))
    if unknown:
        raise ValueError(f"unknown parameter(s) {', '.join(unknown)}; valid: {', '.join(profile_fields())}")
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(json.dumps({"notebook": str(notebook), "profile": profile, "params": params,
                                  "seeds": list(seeds), "domains": domains}, indent=1,
                                 default=str), out / "sweep.json")
    failures, tables, start, ran = [], [], time.perf_counter(), 0
    for i, point in enumerate(points, 1):
        folder = out / "points" / point_name(point)
        swept = {k: v for k, v in point.items() if k != "seed"}
        overrides = {**base_overrides, **swept}
        if (folder / "results.csv").is_file() and (folder / ".point.done").is_file():
            status = "already done, skipped"
        else:
            try:
                run(profile, folder, seed=point["seed"], only=[notebook.stem],
                    overrides=overrides, domains=domains, notebooks=notebook.parent,
                    models_dir=models_dir or out / "models", log=lambda _: None)
                atomic_write_text("ok", folder / ".point.done")
                status, ran = "done", ran + 1
            except Exception as exc:  # recorded, and the sweep goes on
                failures.append({**point, "error": f"{type(exc).__name__}: {exc}"})
                status, ran = f"FAILED ({type(exc).__name__})", ran + 1
        if (folder / ".point.done").is_file():
            table = pd.read_csv(folder / "results.csv")
            for k, v in swept.items():  # one column per swept parameter
                table[k] = str(v) if isinstance(v, (list, tuple, dict)) else v
            tables.append(table)
        elapsed = time.perf_counter() - start
        left = elapsed / ran * (len(points) - i) if ran else 0.0
        log(f"[{i}/{len(points)}] {point_name(point)}: {status} | elapsed {_fmt_time(elapsed)}, "
            f"about {_fmt_time(left)} left")
    table = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
    fails = pd.DataFrame(failures)
    atomic_write_text(table.to_csv(index=False), out / "sweep.csv")
    atomic_write_text(fails.to_csv(index=False), out / "failures.csv")
    if not table.empty:
        atomic_write_text(summary_html(table, list(params), notebook.stem, fails), out / "summary.html")
    return table, fails


def setting_labels(values: pd.Series) -> pd.Series:
    """A swept parameter's values as labels ('None' for None), for grouping and plotting."""
    return values.map(lambda v: "None" if v is None or (isinstance(v, float) and v != v) else str(v))


def knob_plot(table: pd.DataFrame, knob: str, metric: str = "recall@1", order: list | None = None):
    """`metric` against one swept parameter, per domain (mean and std over seeds and other knobs);
    `order`: the parameter's values in the order to show (default: as they appear)."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    from .report import label

    t = table[(table.metric == metric)].assign(model_name=lambda d: label(d))
    t = t[t.model_name.str.startswith("distill")] if (t.model == "distill").any() else t
    t = t.assign(**{knob: setting_labels(t[knob])})
    order = [str(v) for v in order] if order is not None else list(dict.fromkeys(t[knob]))
    fig, ax = plt.subplots(figsize=(7, 4))
    sns.pointplot(t, x=knob, y="value", hue="domain", errorbar="sd", dodge=0.2, ax=ax,
                  order=[setting_labels(pd.Series([v], dtype=object))[0] for v in order])
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} vs {knob}")
    ax.legend(bbox_to_anchor=(1.02, 1), loc="upper left", fontsize=8)
    fig.tight_layout()
    return fig


def summary_html(table: pd.DataFrame, knobs: list[str], notebook: str,
                 failures: pd.DataFrame | None = None) -> str:
    """A self-contained page: one plot per swept parameter and the mean table."""
    import matplotlib.pyplot as plt

    parts = [f"<h1>Sweep of {notebook}</h1>"]
    if failures is not None and not failures.empty:
        parts.append(f"<h2>Failed points</h2>{failures.to_html(index=False)}")
    final = table[~table.metric.str.endswith("_curve")]
    for knob in knobs:
        for metric in ("recall@1", "map@r"):
            fig = knob_plot(final, knob, metric, order=list(dict.fromkeys(final[knob])))
            buf = io.BytesIO()
            fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
            plt.close(fig)
            parts.append(f'<h2>{metric} vs {knob}</h2><img src="data:image/png;base64,'
                         f'{base64.b64encode(buf.getvalue()).decode()}">')
    means = (final[final.metric.isin(["recall@1", "map@r"])]
             .groupby(knobs + ["model", "method", "domain", "metric"]).value.agg(["mean", "std", "count"])
             .reset_index())
    parts.append(f"<h2>Mean over seeds</h2>{means.to_html(index=False, float_format='%.4f')}")
    return "<html><head><meta charset='utf-8'><title>sweep</title></head><body>" + "".join(parts) + \
        "</body></html>"
