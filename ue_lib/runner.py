"""Run the numbered notebooks with papermill (`ue run`) and compare results with a
recorded baseline (`ue check`)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import subprocess
import time
from pathlib import Path

import pandas as pd

from .data import check_domain, resolve_data_root
from .data.core import ENV_VAR
from .experiments import RESULT_COLUMNS
from .profiles import load_profile
from .train import atomic_write_text

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
BASELINE_KEY = ["notebook", "model", "method", "domain", "split", "metric", "seed"]


class RunError(Exception):
    """A run stopped; the message names the notebook / parameter / file at fault."""


def list_notebooks(folder: Path = NOTEBOOK_DIR, only: list[str] | None = None) -> list[Path]:
    books = sorted(p for p in Path(folder).glob("[0-9][0-9]_*.ipynb"))
    if not books:
        raise RunError(f"no numbered notebooks (NN_name.ipynb) found in {folder}")
    if only:
        chosen = [b for b in books if any(b.stem == o or b.stem.startswith(f"{o}_")
                                          or b.name == o for o in only)]
        unknown = [o for o in only if not any(b.stem == o or b.stem.startswith(f"{o}_")
                                              or b.name == o for b in books)]
        if unknown:
            raise RunError(f"--only: no notebook matches {', '.join(unknown)}; notebooks: "
                           f"{', '.join(b.stem for b in books)}")
        books = chosen
    return books


def _digest(*parts) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part if isinstance(part, bytes) else json.dumps(part, sort_keys=True,
                                                                   default=str).encode())
    return h.hexdigest()


def _versions() -> dict:
    import faiss
    import numpy
    import papermill
    import torch
    import torchvision

    from . import __version__

    return {"python": platform.python_version(), "torch": torch.__version__,
            "torchvision": torchvision.__version__, "faiss": faiss.__version__,
            "numpy": numpy.__version__, "papermill": papermill.__version__,
            "ue_lib": __version__, "machine": platform.platform(),
            "cuda": torch.cuda.is_available()}


def _git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=NOTEBOOK_DIR.parent,
                              capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def export_html(notebook: Path) -> Path:
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter().from_filename(str(notebook))
    out = notebook.with_suffix(".html")
    atomic_write_text(body, out)
    return out


def run(profile: str, out_dir: str | Path, seed: int = 0, only: list[str] | None = None,
        overrides: dict | None = None, domains: str = "", notebooks: Path = NOTEBOOK_DIR,
        models_dir: str | Path = "", log=print) -> pd.DataFrame:
    """Execute the notebooks in order; return the merged results table (also in results.csv)."""
    prof = load_profile(profile, domains or None, overrides)  # bad parameters stop here
    books = list_notebooks(notebooks, only)
    for name in prof.domain_names:  # and missing data too, before any notebook starts
        check_domain(name)
    with _data_root_for_kernels():
        return _run_notebooks(books, profile, out_dir, seed, overrides, domains, models_dir, prof,
                              notebooks, log)


@contextlib.contextmanager
def _data_root_for_kernels():
    """Kernels run inside the run folder: give them the data root as an absolute path (and
    leave this process's environment as it was)."""
    before = os.environ.get(ENV_VAR)
    os.environ[ENV_VAR] = str(resolve_data_root().resolve())
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(ENV_VAR, None)
        else:
            os.environ[ENV_VAR] = before


def _run_notebooks(books, profile, out_dir, seed, overrides, domains, models_dir, prof, notebooks,
                   log) -> pd.DataFrame:
    import papermill as pm

    out = Path(out_dir).resolve()
    (out / "notebooks").mkdir(parents=True, exist_ok=True)
    params = {"profile": profile, "out_dir": str(out), "seed": seed, "domains": domains,
              "overrides": dict(overrides or {}),
              "models_dir": str(Path(models_dir).resolve()) if models_dir else ""}
    run_info_path = out / "run.json"
    info = json.loads(run_info_path.read_text()) if run_info_path.is_file() else {}
    info.update({"profile": profile, "parameters": params, "resolved_profile": prof.to_dict(),
                 "versions": _versions(), "git_commit": _git_commit()})
    timings = info.setdefault("seconds", {})
    for i, book in enumerate(books, 1):
        executed = out / "notebooks" / book.name
        marker = out / "notebooks" / f".{book.stem}.done"
        digest = _digest(params, book.read_bytes())
        if marker.is_file() and marker.read_text() == digest and executed.is_file():
            log(f"[{i}/{len(books)}] {book.stem}: already done, skipped")
            continue
        log(f"[{i}/{len(books)}] {book.stem}: running …")
        start = time.perf_counter()
        try:
            pm.execute_notebook(str(book), str(executed), parameters=params, kernel_name="python3",
                                progress_bar=False, cwd=str(out), log_output=False)
        except pm.PapermillExecutionError as exc:
            raise RunError(f"notebook {book.stem} failed in cell {exc.exec_count} "
                           f"(execution count): {exc.ename}: {exc.evalue}\n"
                           f"the executed notebook with the traceback: {executed}") from exc
        finally:
            timings[book.stem] = round(time.perf_counter() - start, 1)
            atomic_write_text(json.dumps(info, indent=1, default=str), run_info_path)
        export_html(executed)
        atomic_write_text(digest, marker)
        log(f"[{i}/{len(books)}] {book.stem}: done in {timings[book.stem]:.1f} s")
    results = collect_results(out, list_notebooks(notebooks))
    atomic_write_text(results.to_csv(index=False), out / "results.csv")
    log(f"results: {out / 'results.csv'} ({len(results)} rows); total "
        f"{sum(timings.values()):.0f} s")
    return results


def collect_results(out: Path, books: list[Path]) -> pd.DataFrame:
    parts = [pd.read_csv(p) for b in books if (p := out / "results" / f"{b.stem}.csv").is_file()]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=RESULT_COLUMNS)


# ----------------------------------------------------------------------------- check

def record_baseline(run_dir: str | Path, path: str | Path, tolerance: dict | None = None) -> Path:
    """Write the final (non-curve) rows of run_dir/results.csv as a baseline file."""
    results = pd.read_csv(Path(run_dir) / "results.csv")
    rows = results[~results.metric.str.endswith("_curve")][BASELINE_KEY + ["value"]]
    baseline = {
        "about": "ue check baseline: recorded from `ue run`; see README 'Regression baselines'",
        "tolerance": tolerance or {"default": 0.05},
        "rows": rows.to_dict("records"),
    }
    atomic_write_text(json.dumps(baseline, indent=1), Path(path))
    return Path(path)


def check(run_dir: str | Path, baseline_path: str | Path) -> tuple[bool, pd.DataFrame]:
    """Compare run_dir/results.csv with a baseline; return (ok, table of every baseline row)."""
    results_path = Path(run_dir) / "results.csv"
    if not results_path.is_file():
        raise RunError(f"{results_path} not found: run `ue run --out {run_dir}` first")
    try:
        baseline = json.loads(Path(baseline_path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise RunError(f"cannot read baseline {baseline_path}: {exc}") from exc
    tol = baseline.get("tolerance", {})
    expected = pd.DataFrame(baseline["rows"])
    got = pd.read_csv(results_path)
    got = got[~got.metric.str.endswith("_curve")].drop_duplicates(BASELINE_KEY, keep="last")
    table = expected.merge(got[BASELINE_KEY + ["value"]], on=BASELINE_KEY, how="left",
                           suffixes=("_baseline", "_run"))
    table["tolerance"] = table.metric.map(lambda m: tol.get(m, tol.get("default", 0.05)))
    table["diff"] = table.value_run - table.value_baseline
    table["status"] = "ok"
    table.loc[table["diff"].abs() > table.tolerance, "status"] = "DRIFT"
    table.loc[table.value_run.isna(), "status"] = "MISSING"
    return bool((table.status == "ok").all()), table


def format_check(table: pd.DataFrame, all_rows: bool = False) -> str:
    shown = table if all_rows else table[table.status != "ok"]
    n_bad = int((table.status != "ok").sum())
    head = f"{len(table)} baseline values, {n_bad} outside tolerance or missing"
    if shown.empty:
        return head
    cols = BASELINE_KEY + ["value_baseline", "value_run", "diff", "tolerance", "status"]
    return head + "\n" + shown[cols].to_string(index=False, float_format=lambda v: f"{v:.4f}")


__all__ = ["RunError", "check", "collect_results", "format_check", "list_notebooks",
           "record_baseline", "run"]
