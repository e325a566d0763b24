"""`ue sweep`: grid expansion, folder names, resume, failures, the tidy table."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
from conftest import REPO
from test_cli import ue, ue_fast

from ue_lib.profiles import load_profile
from ue_lib.sweep import expand_grid, point_name

NB03 = REPO / "notebooks" / "03_absolute_vs_distribution_distillation.ipynb"


def test_expand_grid_is_the_cartesian_product_times_seeds():
    grid = expand_grid({"temperature": [0.05, 0.1], "neighbors": [None, 4]}, [0, 1])
    assert len(grid) == 8
    assert grid[0] == {"temperature": 0.05, "neighbors": None, "seed": 0}
    assert grid[1] == {"temperature": 0.05, "neighbors": None, "seed": 1}
    assert grid[-1] == {"temperature": 0.1, "neighbors": 4, "seed": 1}
    assert len({point_name(p) for p in grid}) == 8
    with pytest.raises(ValueError, match="--seeds"):
        expand_grid({"seed": [1]}, [0])


def test_point_names_are_readable_and_folder_safe():
    assert point_name({"temperature": 0.05, "seed": 0}) == "temperature=0.05,seed=0"
    name = point_name({"domains": "folder:/a/b", "seed": 1})
    assert "/" not in name and name.startswith("domains=folder-a-b")


def test_bad_sweep_parameters_stop_before_anything_runs(tmp_path, capsys):
    status, _, err = ue_fast(capsys, "sweep", NB03, "--out", tmp_path, "--profile", "smoke",
                             "-p", "temprature", "0.1", "0.2")
    assert status == 2 and "unknown parameter(s) temprature" in err
    status, _, err = ue_fast(capsys, "sweep", tmp_path / "nope.ipynb", "--out", tmp_path,
                             "-p", "temperature", "0.1")
    assert status == 2 and "nope.ipynb not found" in err
    assert not (tmp_path / "sweep.csv").exists()


SWEEP = ["sweep", NB03, "--profile", "smoke", "-p", "kl.temperature", "0.05", "0.5",
         "-p", "distill_methods", "kl", "--seeds", "0"]
POINT = "kl.temperature=0.05,distill_methods=kl,seed=0"


@pytest.fixture(scope="module")
def finished_sweep(tmp_path_factory, data_root):
    out = tmp_path_factory.mktemp("sweep")
    r = ue(*SWEEP, "--out", out, timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr
    return out, r.stdout


def test_sweep_table_and_summary(finished_sweep):
    out, stdout = finished_sweep
    assert "[2/2]" in stdout and "left" in stdout
    table = pd.read_csv(out / "sweep.csv")
    assert {"kl.temperature", "distill_methods", "notebook", "model", "method", "domain", "metric",
            "value", "seed"} <= set(table.columns)
    assert sorted(table["kl.temperature"].unique()) == [0.05, 0.5]
    kl = table[(table.method == "kl") & (table.metric == "recall@1")
               & ~table.domain.str.startswith("merged:")]
    assert len(kl) == 2 * 5  # two points x (four domains + the merged index)
    assert (out / "summary.html").read_text().count("<img") == 4
    assert (out / "points" / POINT / "results.csv").is_file()


def test_sweep_resume_does_not_rerun_finished_points(finished_sweep, tmp_path):
    out, _ = finished_sweep
    before = (out / "sweep.csv").read_text()
    r = ue(*SWEEP, "--out", out)
    assert r.returncode == 0 and r.stdout.count("already done, skipped") == 2
    assert (out / "sweep.csv").read_text() == before


def test_killed_sweep_resumes_to_the_same_table(finished_sweep, tmp_path):
    out, _ = finished_sweep
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "ue_lib.cli", *map(str, SWEEP), "--out",
                             str(killed)], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    first = killed / "points" / POINT / ".point.done"
    deadline = time.time() + 600
    while not first.exists() and time.time() < deadline:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    r = ue(*SWEEP, "--out", killed, timeout=900)
    assert r.returncode == 0
    assert f"{POINT}: already done, skipped" in r.stdout
    pd.testing.assert_frame_equal(pd.read_csv(killed / "sweep.csv"), pd.read_csv(out / "sweep.csv"))


def test_a_failing_point_is_recorded_and_the_rest_run(tmp_path, data_root):
    # direction 'sideways' is refused by the loss: that point fails, the other runs
    r = ue("sweep", NB03, "--profile", "smoke", "--out", tmp_path, "--seeds", "0",
           "-p", "distill_methods", "kl", "-p", "tune_baselines", "False",
           "-p", "kl.neighbors", "None", "-1", timeout=900)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "1 of 2 points failed" in r.stderr
    failures = pd.read_csv(tmp_path / "failures.csv")
    assert failures["kl.neighbors"].tolist() == [-1] and "neighbors" in failures.error[0]
    table = pd.read_csv(tmp_path / "sweep.csv")
    assert table["kl.neighbors"].isna().all() and not table.empty
    assert json.loads((tmp_path / "sweep.json").read_text())["params"]["kl.neighbors"] == [None, -1]


@pytest.mark.slow
def test_temperature_sweep_of_the_issue(tmp_path, data_root):
    """The sweep of the ablation issue, on the smoke profile: 4 temperatures x 2 seeds."""
    r = ue("sweep", NB03, "--out", tmp_path, "--profile", "smoke", "-p", "kl.temperature", "0.02",
           "0.05", "0.1", "0.5", "--seeds", "0", "1", timeout=1800)
    assert r.returncode == 0, r.stdout + r.stderr
    table = pd.read_csv(tmp_path / "sweep.csv")
    kl = table[(table.method == "kl") & (table.metric == "recall@1")
               & ~table.domain.str.startswith("merged")]
    assert len(kl) == 4 * 2 * 4  # temperatures x seeds x domains
    assert kl.groupby("kl.temperature").seed.nunique().eq(2).all()
    assert kl.value.between(0, 1).all()
    others = table[(table.method == "distance_mse") & (table.metric == "recall@1")]
    # losses without a temperature are trained once per seed and reused by every point
    assert others.groupby(["seed", "domain"]).value.nunique().eq(1).all()


NB02 = REPO / "notebooks" / "02_specialists.ipynb"
GRID = ["sweep", NB02, "--profile", "smoke", "-p", "epochs_specialist", "1", "2",
        "-p", "tune_baselines", "False", "--seeds", "0"]


def test_sweep_on_a_local_dask_cluster_equals_the_serial_sweep(tmp_path, data_root):
    """2 smoke points on a real local Dask cluster of 2 worker processes (loopback only), one
    per worker at the same time: the table of the serial sweep, every point shown, and a rerun
    skips them all."""
    times = {}
    for name, extra in (("serial", []), ("dask", ["--workers", "2"])):
        start = time.perf_counter()
        r = ue(*GRID, "--out", tmp_path / name, *extra, timeout=1200)
        times[name] = time.perf_counter() - start
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        assert r.stdout.count(": done |") == 2 and "[2/2]" in r.stdout
    print(f"2-point smoke sweep: serial {times['serial']:.0f} s, 2 Dask workers {times['dask']:.0f} s")
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "dask" / "sweep.csv"),
                                  pd.read_csv(tmp_path / "serial" / "sweep.csv"))
    again = ue(*GRID, "--out", tmp_path / "dask", "--workers", "2", timeout=600)
    assert again.returncode == 0 and again.stdout.count("already done, skipped") == 2
    # each specialist was trained once although the points ran at the same time: one per point
    # and domain (untuned baselines: `tune_baselines` False)
    domains = load_profile("smoke").domains.split(",")
    assert len(list((tmp_path / "dask" / "models" / "specialist").glob("*/model.pt"))) == 2 * len(domains)


def test_workers_that_cannot_see_the_sweep_folder_are_named(tmp_path):
    from ue_lib.sweep import check_shared

    (tmp_path / ".sweep-token").write_text("abc")
    assert check_shared(str(tmp_path), "abc", str(tmp_path)) == ""
    assert check_shared(str(tmp_path), "xyz", str(tmp_path)) == f"the sweep folder {tmp_path}"
    assert check_shared(str(tmp_path / "elsewhere"), "abc", str(tmp_path)).startswith("the sweep")
    assert check_shared(str(tmp_path), "abc", str(tmp_path / "no")) == f"the data root {tmp_path / 'no'}"
