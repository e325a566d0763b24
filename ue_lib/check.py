"""Regression check of a run against a recorded baseline (`ue check`). Torch-free.

A baseline file holds every final (non-`_curve`, non-timing: `ue_lib.io.TIMING_METRICS`) row
of a run's results.csv — its value and
the selected epoch of the model it measures — keyed by `BASELINE_KEY`, and the tolerances.
A row passes when the run has it, its selected epoch is the baseline's and
|run - baseline| <= abs + rel * |baseline| for the row metric's tolerance entry. The default
tolerance is exact up to float round-off, because the same seed on the same machine gives
identical numbers; docs/regression-check.md has the measurements behind it and the
`cross-machine` tolerance. An entry's optional `mean_rel` also compares, per metric, the mean
over all rows: |mean(run) - mean(baseline)| <= mean_rel * |mean(baseline)| (a systematic
change moves the mean; another CPU's noise mostly averages out).

Statuses: OK; DRIFT (value outside tolerance); EPOCH (selected epoch differs; wins over DRIFT,
as it is the cause); MISSING (baseline row absent from the run); NEW (run row absent from the
baseline); SHIFT (a metric's mean moved beyond `mean_rel`; one row per metric, notebook
'(all rows)'). Every status but OK fails: a new row means a notebook now measures something
else, and the baseline should be re-recorded along with the change.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from .io import TIMING_METRICS, atomic_write_text

FORMAT = 2
BASELINE_KEY = ["notebook", "model", "method", "domain", "split", "metric", "seed"]
STATUSES = ["DRIFT", "EPOCH", "MISSING", "NEW", "SHIFT", "OK"]
# Same seed, same machine: bit-identical values. 1e-9 only absorbs float formatting round-off;
# the smallest real change of a smoke metric is > 1e-6 (one query of one rank among ~10^5).
DEFAULT_TOLERANCE = {"default": {"abs": 1e-9, "rel": 0.0, "epoch": True, "mean_rel": None}}
# Another CPU (SIMD kernels, BLAS paths, thread count) perturbs the last bits, which chaotic
# smoke training grows into single values up to 0.13 apart, while each metric's mean moved
# <= 1.4 % (docs/regression-check.md). So: single rows only guard against breakage, the mean
# (4 %) catches a systematic change such as every MAP@R 10 % lower.
NAMED_TOLERANCES = {
    "exact": DEFAULT_TOLERANCE,
    "cross-machine": {"default": {"abs": 0.2, "rel": 0.0, "epoch": False, "mean_rel": 0.04}},
}
TABLE_COLUMNS = BASELINE_KEY + ["baseline", "value", "diff", "allowed", "epoch_baseline",
                                "epoch_run", "status"]


class CheckError(Exception):
    """A check cannot be made; the message names the file at fault and the fix."""


def _record_hint(path) -> str:
    return f"re-record it with `ue check DIR --baseline {path} --record` from a run you trust"


def read_results(run_dir: str | Path) -> pd.DataFrame:
    """The final rows of run_dir/results.csv (no curves, no timings), values parsed exactly."""
    path = Path(run_dir) / "results.csv"
    if not path.is_file():
        raise CheckError(f"{path} not found: run `ue run --profile PROFILE --out {run_dir}` first")
    exact = {"value": lambda s: float(s) if s.strip() else math.nan}  # Python's float round-trips
    try:
        results = pd.read_csv(path, converters=exact)
    except (ValueError, pd.errors.ParserError) as exc:
        raise CheckError(f"cannot read {path}: {exc}") from exc
    absent = [c for c in BASELINE_KEY + ["value", "epoch"] if c not in results]
    if absent:
        raise CheckError(f"{path} lacks column(s) {', '.join(absent)}: re-run the notebooks "
                         f"with this ue_lib (`ue run ... --out {run_dir}`)")
    metric = results.metric.astype(str)
    final = results[~metric.str.endswith("_curve") & ~metric.isin(TIMING_METRICS)]
    check_numbers(final, lambda i: f"{path} line {i + 2}",  # line 1: the header
                  f"run the same `ue run` command again to rebuild {path.name}")
    twice = final[final.duplicated(BASELINE_KEY, keep=False)]
    if len(twice):
        raise CheckError(f"{path}: {len(twice)} rows share a key ({', '.join(BASELINE_KEY)}), "
                         f"e.g. {twice.iloc[0][BASELINE_KEY].to_dict()}: a notebook records a "
                         f"row twice")
    return final[BASELINE_KEY + ["value", "epoch"]].reset_index(drop=True)


NUMBERS = {"seed": "an integer", "epoch": "an integer or empty", "value": "a number or empty"}


def check_numbers(rows: pd.DataFrame, where: Callable[[int], str], fix: str) -> None:
    """Every row's seed an integer, its epoch an integer or empty, its value a number or empty;
    else CheckError naming the first row that is not (`where(its index)`) and `fix`."""
    for column, need in NUMBERS.items():
        raw = rows[column]
        number = pd.to_numeric(raw, errors="coerce")
        bad = (raw.notna() & number.isna()) | (number.isna() if column == "seed" else False)
        if column != "value":
            bad |= number.notna() & (number % 1 != 0)
        if bad.any():
            i = bad.idxmax()  # the first bad row
            key = ", ".join(f"{k} {rows.at[i, k]}" for k in ("notebook", "model", "domain", "metric"))
            got = f"no {column}" if pd.isna(raw[i]) else f"{column} {raw[i]!r}"
            raise CheckError(f"{where(i)} ({key}) has {got}, not {need}; {fix}")


def _tolerance_entries(tolerance: dict, where) -> dict:
    """Validated tolerance: every entry full (abs, rel, epoch, mean_rel), gaps from `default`."""
    if not isinstance(tolerance, dict) or not isinstance(tolerance.get("default"), dict):
        raise CheckError(f"{where}: the tolerance needs a 'default' entry like "
                         f"{DEFAULT_TOLERANCE['default']}, got {tolerance!r}")
    base = {**DEFAULT_TOLERANCE["default"], **tolerance["default"]}
    entries = {}
    for metric, entry in tolerance.items():
        full = {**base, **entry} if isinstance(entry, dict) else None
        numbers = ("abs", "rel") if full is None or full["mean_rel"] is None else \
            ("abs", "rel", "mean_rel")
        if full is None or set(full) != set(base) or not isinstance(full["epoch"], bool) or \
                not all(isinstance(full[k], (int, float)) and full[k] >= 0 for k in numbers):
            raise CheckError(f"{where}: tolerance entry {metric!r} must be {{'abs': >= 0, "
                             f"'rel': >= 0, 'epoch': true/false, 'mean_rel': null or >= 0}}, "
                             f"got {entry!r}")
        entries[metric] = full
    return entries


def _run_info(run_dir: Path) -> dict:
    try:
        info = json.loads((Path(run_dir) / "run.json").read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return {k: info.get(k) for k in ("profile", "git_commit", "versions")}


def record_baseline(run_dir: str | Path, path: str | Path, tolerance: dict | None = None) -> Path:
    """Write the final rows of run_dir/results.csv (value and selected epoch) as a baseline.
    Without `tolerance`, a current-format baseline at `path` keeps its tolerances."""
    rows = read_results(run_dir)
    named = NAMED_TOLERANCES
    if tolerance is None and Path(path).is_file():
        try:
            old = read_baseline(path)
            tolerance, named = old["tolerance"], {**named, **old.get("named_tolerances", {})}
        except CheckError:
            pass  # an old or broken file is simply replaced
    tolerance = tolerance or DEFAULT_TOLERANCE
    _tolerance_entries(tolerance, "record_baseline")
    records = [{**r, "seed": int(r["seed"]),
                "epoch": None if pd.isna(r["epoch"]) else int(r["epoch"])}
               for r in rows.to_dict("records")]
    baseline = {
        "about": "ue check baseline (docs/regression-check.md): final rows of a `ue run`, "
                 "value and selected epoch",
        "format": FORMAT, "recorded_from": _run_info(Path(run_dir)),
        "tolerance": tolerance, "named_tolerances": named, "rows": records,
    }
    return atomic_write_text(json.dumps(baseline, indent=1) + "\n", Path(path))


def read_baseline(path: str | Path) -> dict:
    """The baseline file, checked for the current format."""
    path = Path(path)
    if not path.is_file():
        raise CheckError(f"baseline {path} not found: record one with "
                         f"`ue check DIR --baseline {path} --record`")
    try:
        baseline = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckError(f"cannot read baseline {path} ({exc}): {_record_hint(path)}") from exc
    if not isinstance(baseline, dict) or not isinstance(baseline.get("rows"), list):
        raise CheckError(f"baseline {path} has no list of rows: {_record_hint(path)}")
    version = baseline.get("format")
    if version != FORMAT:
        what = "a newer ue_lib" if isinstance(version, int) and version > FORMAT else \
            "an old format (one absolute tolerance, no selected epochs)"
        raise CheckError(f"baseline {path} is {what}; {_record_hint(path)}")
    _tolerance_entries(baseline.get("tolerance"), f"baseline {path}")
    return baseline


def _choose_tolerance(baseline: dict, tolerance, path) -> dict:
    if tolerance is None:
        return baseline["tolerance"]
    if isinstance(tolerance, dict):
        return tolerance
    named = {**NAMED_TOLERANCES, **baseline.get("named_tolerances", {})}
    if tolerance not in named:
        raise CheckError(f"unknown tolerance {tolerance!r}; baseline {path} and ue_lib know "
                         f"{', '.join(sorted(named))}")
    return named[tolerance]


def select_notebooks(names, available) -> list[str]:
    """Notebooks of `available` named by `names` (full names, or numbers like '03')."""
    available = sorted(set(available))
    chosen, unknown = [], []
    for name in names:
        stem = Path(str(name)).name.removesuffix(".ipynb")
        hits = [nb for nb in available if nb == stem or nb.startswith(f"{stem}_")]
        chosen += hits
        unknown += [] if hits else [str(name)]
    if unknown:
        raise CheckError(f"--notebooks: the baseline has no rows of {', '.join(unknown)}; it has "
                         f"{', '.join(available)}")
    return sorted(set(chosen))


def compare(expected: pd.DataFrame, got: pd.DataFrame, tolerance: dict) -> pd.DataFrame:
    """The comparison table (TABLE_COLUMNS) of baseline rows and run rows."""
    table = expected.merge(got, on=BASELINE_KEY, how="left", suffixes=("_baseline", "_run"),
                           indicator=True)  # in the baseline's order, then the run's new rows
    new = got.merge(expected[BASELINE_KEY], on=BASELINE_KEY, how="left", indicator=True)
    new = new[new._merge == "left_only"].rename(columns={"value": "value_run", "epoch": "epoch_run"})
    table = pd.concat([table, new.assign(_merge="right_only")], ignore_index=True)
    entries = _tolerance_entries(tolerance, "tolerance")
    tol = pd.DataFrame([entries.get(m, entries["default"]) for m in table.metric],
                       index=table.index)
    table = table.rename(columns={"value_baseline": "baseline", "value_run": "value"})
    table["diff"] = table.value - table.baseline
    table["allowed"] = tol["abs"] + tol["rel"] * table.baseline.abs()
    same_value = (table["diff"].abs() <= table.allowed) | (table.value.isna() & table.baseline.isna())
    eb, er = table.epoch_baseline, table.epoch_run
    same_epoch = (eb == er).fillna(False) | (eb.isna() & er.isna()) | ~tol["epoch"].astype(bool)
    table["status"] = "OK"
    table.loc[~same_value, "status"] = "DRIFT"
    table.loc[~same_epoch, "status"] = "EPOCH"
    table.loc[table._merge == "left_only", "status"] = "MISSING"
    table.loc[table._merge == "right_only", "status"] = "NEW"
    for col in ("epoch_baseline", "epoch_run"):
        table[col] = table[col].astype("Int64")
    shifts = _mean_shifts(table[table.status.isin(["OK", "DRIFT", "EPOCH"])], entries)
    return pd.concat([table[TABLE_COLUMNS], shifts], ignore_index=True) if len(shifts) else \
        table[TABLE_COLUMNS]


def _mean_shifts(both: pd.DataFrame, entries: dict) -> pd.DataFrame:
    """One row per metric whose tolerance has `mean_rel`: the means over the rows both have."""
    rows = []
    for metric, group in both.groupby("metric"):
        limit = entries.get(metric, entries["default"])["mean_rel"]
        if limit is None:
            continue
        base, run = group.baseline.mean(), group.value.mean()
        allowed = limit * abs(base)
        rows.append({"notebook": "(all rows)", "model": f"mean of {len(group)}", "method": "-",
                     "domain": "-", "split": "-", "metric": metric, "seed": pd.NA,
                     "baseline": base, "value": run, "diff": run - base, "allowed": allowed,
                     "status": "OK" if abs(run - base) <= allowed else "SHIFT"})
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


def check(run_dir: str | Path, baseline_path: str | Path, notebooks: list[str] | None = None,
          tolerance: str | dict | None = None) -> tuple[bool, pd.DataFrame]:
    """Compare run_dir/results.csv with a baseline: (ok, table of every row; see TABLE_COLUMNS).
    `notebooks` restricts both sides to those notebooks; `tolerance` (a name such as
    'cross-machine', or a dict like the baseline's) replaces the baseline's tolerance."""
    got = read_results(run_dir)
    baseline = read_baseline(baseline_path)
    expected = pd.DataFrame(baseline["rows"], columns=BASELINE_KEY + ["value", "epoch"])
    if notebooks:
        chosen = select_notebooks(notebooks, expected.notebook)
        expected = expected[expected.notebook.isin(chosen)]
        got = got[got.notebook.isin(chosen)]
    check_numbers(expected, lambda i: f"baseline {baseline_path}: row {i + 1} of its rows",
                  _record_hint(baseline_path))
    expected = expected.astype({"value": float, "epoch": "Int64", "seed": "int64"})
    got = got.astype({"value": float, "epoch": "Int64", "seed": "int64"})
    table = compare(expected, got, _choose_tolerance(baseline, tolerance, baseline_path))
    table.attrs.update(baseline=str(baseline_path), run=str(run_dir),
                       recorded_from=baseline.get("recorded_from") or {},
                       run_from=_run_info(Path(run_dir)))
    return bool((table.status == "OK").all()), table


def _environment_note(table: pd.DataFrame) -> str:
    before = (table.attrs.get("recorded_from") or {}).get("versions") or {}
    now = (table.attrs.get("run_from") or {}).get("versions") or {}
    changed = [f"{k} {before[k]} -> {now[k]}" for k in sorted(set(before) & set(now))
               if before[k] != now[k]]
    if not changed:
        return ""
    return ("note: the run's environment differs from the baseline's (" + "; ".join(changed)
            + "); across machines compare with `--tolerance cross-machine`")


def format_check(table: pd.DataFrame, all_rows: bool = False) -> str:
    """A readable report: counts, the rows that are not OK (every row with all_rows) and a
    final `OK:` or `FAILED:` line."""
    counts = table.status.value_counts()
    summary = ", ".join(f"{s} {int(counts[s])}" for s in STATUSES if s in counts)
    bad = table[table.status != "OK"]
    lines = [f"{len(table)} rows compared with {table.attrs.get('baseline', 'the baseline')}: "
             f"{summary or 'none'}"]
    shown = (table if all_rows else bad).sort_values(["status", "notebook"], kind="stable")
    for col in ("seed", "epoch_baseline", "epoch_run"):  # NA shows as '-'
        shown[col] = shown[col].astype(object).where(shown[col].notna(), "-")
    if len(shown):
        lines.append(shown.to_string(index=False, na_rep="-", float_format=lambda v: f"{v:.6g}"))
    absent = sorted(set(bad.notebook[bad.status == "MISSING"])
                    - set(table.notebook[table.status != "MISSING"]))
    if absent:
        lines.append(f"no rows at all from {', '.join(absent)}: not run? compare only the "
                     f"notebooks you ran with --notebooks")
    if bad.empty:
        lines.append(f"OK: all {len(table)} rows match the baseline within its tolerance")
    elif note := _environment_note(table):
        lines.append(note)
    if len(bad):
        lines.append(f"FAILED: {len(bad)} of {len(table)} rows differ ({summary}); if the change "
                     f"is meant, re-record the baseline with --record and say so in the commit")
    return "\n".join(lines)


__all__ = ["BASELINE_KEY", "CheckError", "DEFAULT_TOLERANCE", "NAMED_TOLERANCES", "check",
           "compare", "format_check", "read_baseline", "read_results", "record_baseline",
           "select_notebooks"]
