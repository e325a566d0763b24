"""The generic run folder (`ue_lib.runfolder`): which notebook opens it, and how rows are kept,
saved and de-duplicated."""

from __future__ import annotations

import pandas as pd
import pytest
from helpers import blob_domain

from ue_lib.io import RESULT_COLUMNS
from ue_lib.runfolder import RunFolder, notebook_name
from ue_lib.spec import RunSpec
from ue_lib.universal.objectives import Specialist


def test_the_notebook_name_comes_from_ue_run_or_from_jupyter(monkeypatch):
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    assert notebook_name({"notebook": "03_x", "__session__": "/a/04_y.ipynb"}) == "03_x"
    assert notebook_name({"notebook": "", "__session__": "/a/04_y.ipynb"}) == "04_y"
    assert notebook_name({"__vsc_ipynb_file__": "/b/05_z.ipynb"}) == "05_z"
    with pytest.raises(ValueError, match="cannot tell which notebook this is"):
        notebook_name({"notebook": ""})
    monkeypatch.setenv("JPY_SESSION_NAME", "/c/06_w.ipynb")
    assert notebook_name({"notebook": ""}) == "06_w"


def test_for_notebook_opens_the_run_folder_from_the_notebooks_parameters(tmp_path, capsys):
    params = {"profile": "smoke", "out_dir": str(tmp_path), "seed": 1, "domains": "", "overrides": {},
              "models_dir": "", "notebook": "02_specialists", "unrelated": 3}
    run = RunFolder.for_notebook(params)
    assert run.notebook == "02_specialists" and run.seed == 1 and run.profile.name == "smoke"
    assert (tmp_path / "profiles" / "02_specialists.json").is_file()
    assert capsys.readouterr().out.startswith("profile smoke: domains ")
    assert pd.get_option("display.float_format")(0.5) == "0.500"


def test_record_keeps_and_saves_rows_and_rows_of_only_returns_them(tmp_path):
    run = RunFolder(RunSpec("smoke", str(tmp_path)), "01_t", progress=False)
    p = run.profile.with_overrides({"backbone": "small_cnn", "weights": None, "trainable_stages": -1,
                                    "channels": 1, "image_size": 16, "width": 4, "head_hidden": 0,
                                    "embedding_dim": 8, "p": 3, "k": 2, "epochs_specialist": 2})
    result = run.train(Specialist(p), {"blobs": blob_domain()}, 0, "blobs-seed0")
    shown = run.rows_of("specialist", "ms", result, curves=True)
    assert list(shown.columns) == RESULT_COLUMNS and run.rows == []
    assert not (tmp_path / "results" / "01_t.csv").exists()
    run.record("specialist", "ms", result, curves=True)
    saved = pd.read_csv(tmp_path / "results" / "01_t.csv")
    assert len(saved) == len(shown) == len(run.rows)
    assert saved.metric.str.endswith("_curve").sum() == 2 * 6  # two epochs x six metrics of val
    assert set(saved.epoch[~saved.metric.str.endswith("_curve")]) == {result.best_epoch}
    run.add_rows(shown)  # the same rows again: nothing is added
    assert len(pd.read_csv(tmp_path / "results" / "01_t.csv")) == len(saved)


def test_a_notebook_run_from_notebooks_writes_to_the_repositorys_runs(tmp_path, monkeypatch, capsys):
    from ue_lib.data import core, resolve_data_root
    from ue_lib.runfolder import in_repository

    repo = tmp_path / "repo"  # a repository: pyproject.toml and notebooks/ beside ue_lib
    (repo / "notebooks").mkdir(parents=True)
    (repo / "pyproject.toml").write_text("[project]\nname = 'ue_lib'\n")
    monkeypatch.setattr(core, "CHECKOUT", repo)
    monkeypatch.chdir(repo / "notebooks")  # where Jupyter starts the kernel
    monkeypatch.setenv("UE_DATA", "")  # not set (and restored after the test)
    defaults = {"profile": "smoke", "out_dir": "runs/mini", "seed": 0, "domains": "",
                "overrides": {}, "models_dir": "", "notebook": "02_specialists"}
    run = RunFolder.for_notebook(defaults)
    assert run.out_dir == repo / "runs" / "mini" and run.models_root == repo / "runs" / "mini" / "models"
    assert (repo / "runs" / "mini" / "profiles" / "02_specialists.json").is_file()
    assert not (repo / "notebooks" / "runs").exists()
    assert resolve_data_root() == repo / "data"  # the repository's data/, not notebooks/data
    assert f"run folder {repo / 'runs' / 'mini'}" in capsys.readouterr().out

    # under `ue run` the folders are absolute and $UE_DATA is set: nothing changes
    monkeypatch.setenv("UE_DATA", str(tmp_path / "shared"))
    run = RunFolder.for_notebook({**defaults, "out_dir": str(tmp_path / "r"),
                                  "models_dir": str(tmp_path / "m")})
    assert run.out_dir == tmp_path / "r" and run.models_root == tmp_path / "m"
    assert resolve_data_root() == tmp_path / "shared"
    monkeypatch.setattr(core, "CHECKOUT", tmp_path / "site-packages")  # an installed ue_lib
    assert in_repository(defaults) == {k: v for k, v in defaults.items() if k != "notebook"}
