"""The notebooks: committed clean, runnable alone, and the smoke profile end to end with a
regression check against tests/baselines/smoke.json.

Re-record the baseline (only when a change is *meant* to move the numbers, e.g. a new loss
default or data split, and say so in the commit message):

    UE_DATA=../shared/data .venv/bin/ue run --profile smoke --out runs/smoke
    .venv/bin/ue check runs/smoke --baseline tests/baselines/smoke.json --record
"""

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
from test_cli import ue

BASELINE = REPO / "tests" / "baselines" / "smoke.json"
NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def test_committed_notebooks_have_no_outputs():
    assert len(NOTEBOOKS) >= 4
    for path in NOTEBOOKS:
        nb = json.loads(path.read_text())
        for cell in nb["cells"]:
            if cell["cell_type"] == "code":
                assert not cell.get("outputs") and cell.get("execution_count") is None, path.name


def test_notebooks_have_the_standard_parameters_cell():
    for path in NOTEBOOKS:
        cells = json.loads(path.read_text())["cells"]
        params = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
        assert len(params) == 1, path.name
        source = "".join(params[0]["source"])
        for name in ("profile", "out_dir", "seed", "domains", "overrides", "models_dir"):
            assert f"\n{name} =" in f"\n{source}", (path.name, name)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory, data_root):
    out = tmp_path_factory.mktemp("smoke")
    start = time.perf_counter()
    r = ue("run", "--profile", "smoke", "--out", out, timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr
    print(f"\nsmoke profile: {time.perf_counter() - start:.0f} s\n{r.stdout}")
    return out


def test_smoke_run_outputs(smoke_run):
    for book in NOTEBOOKS:
        assert (smoke_run / "notebooks" / book.name).is_file()
        assert (smoke_run / "notebooks" / f"{book.stem}.html").is_file()
        assert list((smoke_run / "figures" / book.stem).glob("*.png")), book.stem
    results = pd.read_csv(smoke_run / "results.csv")
    for col in ("notebook", "model", "method", "domain", "metric", "value", "seed", "epoch"):
        assert col in results
    final = results[~results.metric.str.endswith("_curve")]
    assert set(final.model) == {"specialist", "naive", "distill"}
    assert {"omniglot", "fashion", "glyphs", "merged"} <= set(final.domain)
    assert final.value.between(0, 1).all()
    info = json.loads((smoke_run / "run.json").read_text())
    assert info["profile"] == "smoke" and set(info["seconds"]) == {b.stem for b in NOTEBOOKS}
    assert "torch" in info["versions"]


def test_smoke_run_matches_the_baseline(smoke_run, tmp_path):
    r = ue("check", smoke_run, "--baseline", BASELINE)
    assert r.returncode == 0, r.stdout + r.stderr
    # a value moved beyond its tolerance, and a row missing, both fail with a readable table
    drifted = tmp_path / "drifted"
    drifted.mkdir()
    results = pd.read_csv(smoke_run / "results.csv")
    i = results.index[(results.metric == "recall@1") & (results.model == "naive")][0]
    results.loc[i, "value"] += 0.2
    results = results.drop(results.index[(results.metric == "map@r") & (results.model == "specialist")][:1])
    results.to_csv(drifted / "results.csv", index=False)
    r = ue("check", drifted, "--baseline", BASELINE)
    assert r.returncode == 1
    assert "DRIFT" in r.stdout and "MISSING" in r.stdout and "FAILED" in r.stdout
    assert "naive" in r.stdout and "recall@1" in r.stdout


def test_rerun_skips_finished_notebooks(smoke_run):
    before = (smoke_run / "results.csv").read_text()
    r = ue("run", "--profile", "smoke", "--out", smoke_run)
    assert r.returncode == 0
    assert r.stdout.count("already done, skipped") == len(NOTEBOOKS)
    assert (smoke_run / "results.csv").read_text() == before


def test_kill_and_resume_gives_the_uninterrupted_results(smoke_run, tmp_path):
    out = tmp_path / "killed"
    first_three = ["--only", "01", "02", "03"]
    cmd = [sys.executable, "-m", "ue_lib.cli", "run", "--profile", "smoke", "--out", str(out),
           *first_three]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    target = out / "models" / "distill-kl"
    deadline = time.time() + 600
    while not list(target.glob("seed0-*/checkpoint.pt")) and time.time() < deadline:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # the runner and its kernel, mid-notebook 03
    proc.wait()
    assert not (out / "results.csv").exists()
    r = ue("run", "--profile", "smoke", "--out", out, *first_three, timeout=900)
    assert r.returncode == 0, r.stderr
    assert "01_naive_fusion_overfitting: already done" in r.stdout
    uninterrupted = pd.read_csv(smoke_run / "results.csv")
    uninterrupted = uninterrupted[uninterrupted.notebook.str[:2].isin(["01", "02", "03"])]
    pd.testing.assert_frame_equal(pd.read_csv(out / "results.csv"),
                                  uninterrupted.reset_index(drop=True))


def test_a_notebook_runs_alone_in_an_empty_folder(tmp_path, data_root):
    r = ue("run", "--profile", "smoke", "--out", tmp_path, "--only", "03", timeout=900)
    assert r.returncode == 0, r.stderr
    results = pd.read_csv(tmp_path / "results.csv")
    assert set(results.notebook) == {"03_absolute_vs_distribution_distillation"}
    assert len(list((tmp_path / "models" / "specialist").glob("*-seed0-*/model.pt"))) == 3
