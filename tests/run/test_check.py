"""`ue check` (ue_lib.check) on hand-made results.csv files: no training, milliseconds."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest

from ue_lib.check import CheckError, check, format_check, read_baseline, record_baseline

NB1, NB3 = "01_naive_fusion_overfitting", "03_absolute_vs_distribution_distillation"
METRICS = ["recall@1", "map@r", "mmp@5"]


def _results() -> pd.DataFrame:
    """Two notebooks, three models, final rows plus learning-curve rows."""
    rows = []
    for nb, model, method, epoch in [(NB1, "naive", "multi_similarity", 4),
                                     (NB3, "distill", "kl", 2), (NB3, "distill", "darkrank", 3)]:
        for d, domain in enumerate(["omniglot", "fashion", "merged"]):
            for m, metric in enumerate(METRICS):
                value = 0.1 + 0.07 * d + 0.2 * m + 0.01 * epoch + 1e-3 / 3  # non-terminating
                rows.append([nb, model, method, domain, "test", metric, value, 0, epoch])
                rows += [[nb, model, method, domain, "val", f"{metric}_curve", value * e / 5, 0, e]
                         for e in range(1, 4)]
            rows.append([nb, model, method, domain, "test", "search_us", 3.0 + d, 0, epoch])
    return pd.DataFrame(rows, columns=["notebook", "model", "method", "domain", "split", "metric",
                                       "value", "seed", "epoch"])


def _run(tmp_path, name, results: pd.DataFrame):
    folder = tmp_path / name
    folder.mkdir()
    results.to_csv(folder / "results.csv", index=False)
    return folder


@pytest.fixture
def recorded(tmp_path):
    """(run folder, baseline path, its results) with the baseline recorded from the run."""
    results = _results()
    run = _run(tmp_path, "run", results)
    return run, record_baseline(run, tmp_path / "baseline.json"), results


def _bad(table: pd.DataFrame) -> pd.DataFrame:
    return table[table.status != "OK"]


def test_identical_run_passes_and_the_baseline_holds_values_and_epochs(recorded):
    run, baseline, results = recorded
    stored = json.loads(baseline.read_text())
    assert stored["format"] == 2 and len(stored["rows"]) == 27  # final rows only: no timings
    assert {"value", "epoch"} <= set(stored["rows"][0])
    ok, table = check(run, baseline)
    assert ok and (table.status == "OK").all() and len(table) == 27
    assert (table["diff"] == 0).all()  # values round-trip through CSV and JSON exactly
    text = format_check(table)
    assert "OK: all 27 rows match the baseline" in text and "FAILED" not in text


def test_every_map_at_r_ten_percent_lower_fails_with_exactly_those_rows(recorded, tmp_path):
    _, baseline, results = recorded
    lower = results.copy()
    lower.loc[lower.metric == "map@r", "value"] *= 0.9
    ok, table = check(_run(tmp_path, "lower", lower), baseline)
    assert not ok
    bad = _bad(table)
    assert set(bad.status) == {"DRIFT"} and set(bad.metric) == {"map@r"} and len(bad) == 9
    assert (bad["diff"] < 0).all()
    text = format_check(table)
    assert "FAILED: 9 of 27 rows differ (DRIFT 9, OK 18)" in text
    for col in ("notebook", "model", "method", "domain", "metric", "seed", "baseline", "value",
                "diff", "epoch_baseline", "epoch_run", "status"):
        assert col in text.splitlines()[1]
    drift_lines = [line for line in text.splitlines() if "DRIFT" in line and "map@r" in line]
    assert len(drift_lines) == 9 and any("darkrank" in line and NB3 in line for line in drift_lines)


def test_a_tiny_drift_fails_with_the_default_tolerance(recorded, tmp_path):
    _, baseline, results = recorded
    nudged = results.copy()
    nudged.loc[0, "value"] += 1e-6  # far below the old 0.05 tolerance
    ok, table = check(_run(tmp_path, "nudged", nudged), baseline)
    assert not ok and _bad(table).index.tolist() == [0]


def test_one_models_selected_epoch_changed_fails_with_epoch(recorded, tmp_path):
    _, baseline, results = recorded
    moved = results.copy()
    kl_final = (moved.method == "kl") & ~moved.metric.str.endswith("_curve")
    moved.loc[kl_final, "epoch"] = 3  # values unchanged: only the selection moved
    ok, table = check(_run(tmp_path, "moved", moved), baseline)
    assert not ok
    bad = _bad(table)
    assert set(bad.status) == {"EPOCH"} and set(bad.method) == {"kl"} and len(bad) == 9
    assert set(bad.epoch_baseline) == {2} and set(bad.epoch_run) == {3}
    assert "EPOCH" in format_check(table)


def test_a_missing_row_fails_with_missing(recorded, tmp_path):
    _, baseline, results = recorded
    gone = results.drop(results.index[(results.metric == "recall@1") & (results.domain == "fashion")
                                      & (results.method == "darkrank")])
    ok, table = check(_run(tmp_path, "gone", gone), baseline)
    bad = _bad(table)
    assert not ok and bad.status.tolist() == ["MISSING"]
    assert bad.iloc[0][["method", "domain", "metric"]].tolist() == ["darkrank", "fashion", "recall@1"]


def test_a_new_row_fails_with_new(recorded, tmp_path):
    _, baseline, results = recorded
    extra = results.iloc[[0]].assign(domain="glyphs")
    more = pd.concat([results, extra], ignore_index=True)
    ok, table = check(_run(tmp_path, "more", more), baseline)
    bad = _bad(table)
    assert not ok and bad.status.tolist() == ["NEW"] and bad.iloc[0].domain == "glyphs"
    assert "NEW 1" in format_check(table)


def test_per_metric_tolerance_overrides_the_default(tmp_path):
    results = _results()
    baseline = record_baseline(_run(tmp_path, "run", results), tmp_path / "b.json", tolerance={
        "default": {"abs": 1e-9, "rel": 0.0, "epoch": True},
        "map@r": {"rel": 0.15}})  # missing keys come from the default entry
    lower = results.copy()
    lower.loc[lower.metric.isin(["map@r", "mmp@5"]), "value"] *= 0.9
    ok, table = check(_run(tmp_path, "lower", lower), baseline)
    bad = _bad(table)
    assert not ok and set(bad.metric) == {"mmp@5"}  # map@r within its 15 %, mmp@5 not
    assert table.loc[table.metric == "map@r", "allowed"].gt(0.01).all()


def test_cross_machine_tolerates_noise_but_not_a_systematic_change(recorded, tmp_path):
    _, baseline, results = recorded
    final = ~results.metric.str.endswith("_curve")
    noisy = results.copy()  # as another CPU: single values up to 0.05 off, each metric's mean kept
    k = noisy[final].groupby("metric").cumcount()
    noisy.loc[final, "value"] += 0.05 * (k % 3 - 1)
    noisy.loc[final & (noisy.method == "kl"), "epoch"] = 3
    assert not check(_run(tmp_path, "noisy", noisy), baseline)[0]  # the stored tolerance: exact
    ok, table = check(tmp_path / "noisy", baseline, tolerance="cross-machine")
    assert ok and (table.notebook == "(all rows)").sum() == 3  # one mean per metric
    lower = noisy.copy()
    lower.loc[lower.metric == "map@r", "value"] *= 0.9
    ok, table = check(_run(tmp_path, "lower", lower), baseline, tolerance="cross-machine")
    bad = _bad(table)
    assert not ok and bad.status.tolist() == ["SHIFT"] and bad.metric.tolist() == ["map@r"]
    text = format_check(table)
    assert "(all rows)" in text and "SHIFT 1" in text and "FAILED" in text


def test_rerecording_keeps_the_tolerance(tmp_path):
    run = _run(tmp_path, "run", _results())
    custom = {"default": {"abs": 0.001, "rel": 0.0, "epoch": False}}
    path = record_baseline(run, tmp_path / "b.json", tolerance=custom)
    record_baseline(run, path)
    assert read_baseline(path)["tolerance"] == custom


def test_notebooks_restricts_the_comparison(recorded, tmp_path):
    _, baseline, results = recorded
    only_03 = results[results.notebook == NB3].copy()
    ok, table = check(_run(tmp_path, "only03", only_03), baseline)
    assert not ok and set(_bad(table).status) == {"MISSING"}
    assert "no rows at all from 01_naive_fusion_overfitting" in format_check(table)
    for names in ([NB3], ["03"], [f"{NB3}.ipynb"]):
        ok, table = check(tmp_path / "only03", baseline, notebooks=names)
        assert ok and set(table.notebook) == {NB3} and len(table) == 18
    # a drift outside the chosen notebooks is not looked at; inside, it is
    both = results.copy()
    both.loc[both.notebook == NB1, "value"] += 0.5
    ok, _ = check(_run(tmp_path, "both", both), baseline, notebooks=["03"])
    assert ok
    ok, _ = check(tmp_path / "both", baseline, notebooks=["01"])
    assert not ok
    with pytest.raises(CheckError, match="no rows of 07_nothing"):
        check(tmp_path / "both", baseline, notebooks=["07_nothing"])


def test_old_format_baseline_names_the_fix(recorded, tmp_path):
    run, _, results = recorded
    old = tmp_path / "old.json"
    final = results[~results.metric.str.endswith("_curve")].drop(columns="epoch")
    old.write_text(json.dumps({"tolerance": {"default": 0.05}, "rows": final.to_dict("records")}))
    with pytest.raises(CheckError) as err:
        check(run, old)
    assert str(old) in str(err.value) and "old format" in str(err.value)
    assert f"ue check DIR --baseline {old} --record" in str(err.value)


@pytest.mark.parametrize("content, message", [
    ("{not json", "cannot read baseline"),
    ('{"format": 2, "rows": [], "tolerance": {"default": {"abs": -1}}}', "tolerance entry 'default'"),
    ('{"format": 3, "rows": [], "tolerance": {"default": {}}}', "newer ue_lib"),
])
def test_unreadable_baselines_raise_check_error(recorded, tmp_path, content, message):
    run, _, _ = recorded
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    with pytest.raises(CheckError, match=message):
        check(run, bad)


def test_missing_files_raise_check_error(recorded, tmp_path):
    run, baseline, _ = recorded
    with pytest.raises(CheckError, match="results.csv not found: run `ue run"):
        check(tmp_path / "nowhere", baseline)
    with pytest.raises(CheckError, match="record one with"):
        check(run, tmp_path / "none.json")
    with pytest.raises(CheckError, match="unknown tolerance 'loose'"):
        check(run, baseline, tolerance="loose")


def test_a_row_recorded_twice_is_an_error(tmp_path):
    results = _results()
    run = _run(tmp_path, "twice", pd.concat([results, results.iloc[[0]]]))
    with pytest.raises(CheckError, match="rows share a key"):
        record_baseline(run, tmp_path / "b.json")


def test_the_module_does_not_import_torch():
    code = "import sys, ue_lib.check; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_a_failure_names_a_changed_environment(tmp_path):
    results = _results()
    run = _run(tmp_path, "run", results)
    (run / "run.json").write_text(json.dumps({"profile": "smoke", "versions": {"torch": "2.14"}}))
    baseline = record_baseline(run, tmp_path / "b.json")
    assert read_baseline(baseline)["recorded_from"]["versions"] == {"torch": "2.14"}
    other = _run(tmp_path, "other", results.assign(value=results.value + 0.01))
    (other / "run.json").write_text(json.dumps({"profile": "smoke", "versions": {"torch": "2.15"}}))
    ok, table = check(other, baseline)
    assert not ok and "torch 2.14 -> 2.15" in format_check(table)
    assert "--tolerance cross-machine" in format_check(table)


def test_timings_are_never_compared(recorded, tmp_path):
    run, baseline, results = recorded
    slower = results.assign(value=results.value.where(results.metric != "search_us", 99.0))
    ok, table = check(_run(tmp_path, "slower", slower), baseline)
    assert ok and "search_us" not in set(table.metric)


@pytest.mark.parametrize("damage, message", [
    # a baseline row whose seed is null, or missing
    (lambda rows: rows[4].update(seed=None), "baseline {baseline}: row 5 of its rows (notebook "
     f"{NB1}, model naive, domain fashion, metric map@r) has no seed, not an integer; re-record it"),
    (lambda rows: rows[0].pop("seed"), "baseline {baseline}: row 1 of its rows"),
    (lambda rows: rows[2].update(epoch="late"), "row 3 of its rows (notebook "
     f"{NB1}, model naive, domain omniglot, metric mmp@5) has epoch 'late', not an integer or empty"),
])
def test_a_damaged_baseline_row_is_named(recorded, tmp_path, capsys, damage, message):
    from ue_lib.cli import main

    run, baseline, _ = recorded
    stored = json.loads(baseline.read_text())
    damage(stored["rows"])
    baseline.write_text(json.dumps(stored))
    assert main(["check", str(run), "--baseline", str(baseline)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ue check: error: ") and err.count("\n") == 1  # one line, no traceback
    assert message.format(baseline=baseline) in err


def test_a_results_row_without_a_seed_is_named(recorded, tmp_path, capsys):
    from ue_lib.cli import main

    _, baseline, results = recorded
    results = results.astype({"seed": object})
    results.loc[4, "seed"] = ""  # written as an empty field
    run = _run(tmp_path, "noseed", results)
    for argv in (["check", str(run), "--baseline", str(baseline)],
                 ["check", str(run), "--baseline", str(tmp_path / "new.json"), "--record"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err
        assert f"ue check: error: {run / 'results.csv'} line 6 (notebook {NB1}, model naive, " \
               f"domain omniglot, metric map@r) has no seed, not an integer; run the same " \
               f"`ue run` command again to rebuild results.csv" in err
