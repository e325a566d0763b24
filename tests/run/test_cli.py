"""The `ue` command line: bad input gives a non-zero exit and names the culprit."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO
from PIL import Image

from ue_lib.cli import main


def ue(*args, env=None, cwd=None, timeout=600):
    """Run the installed `ue` command in a fresh process (as a user would)."""
    return subprocess.run([sys.executable, "-m", "ue_lib.cli", *map(str, args)],
                          capture_output=True, text=True, env={**os.environ, **(env or {})},
                          cwd=cwd or REPO, timeout=timeout)


def ue_fast(capsys, *args):
    """The same command in this process (no interpreter start-up): returns (status, out, err)."""
    status = main([str(a) for a in args])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_unknown_profile(tmp_path):
    r = ue("run", "--profile", "huge", "--out", tmp_path)  # through the real entry point
    assert r.returncode == 2
    assert "unknown profile 'huge'" in r.stderr and "smoke" in r.stderr


@pytest.mark.parametrize("args, message", [
    (["-p", "tempreature", "0.1"], "unknown parameter(s) tempreature"),
    (["-p", "epochs_naive", "many"], "epochs_naive must be <class 'int'>, got 'many'"),
    (["-p", "kl.temperature", "-1"], "temperature must be"),
    (["-p", "temperature", "0.1"], "unknown parameter(s) temperature"),
    (["--only", "09"], "--only: no notebook matches 09"),
    (["--domains", "omniglot,birds"], "unknown domain 'birds'"),
])
def test_unknown_and_ill_typed_parameters(tmp_path, capsys, args, message):
    status, _, err = ue_fast(capsys, "run", "--profile", "smoke", "--out", tmp_path, *args)
    assert status == 2 and message in err


def test_missing_data_root(tmp_path, capsys, monkeypatch):
    empty = tmp_path / "empty"
    monkeypatch.setenv("UE_DATA", str(empty))
    status, _, err = ue_fast(capsys, "run", "--profile", "smoke", "--out", tmp_path / "run")
    assert status == 2
    assert "Data for domain 'omniglot' not found" in err
    assert str(empty / "omniglot") in err and "images_background_small1.zip" in err
    assert not (tmp_path / "run" / "results.csv").exists()


def test_corrupt_image_in_a_folder_domain(tmp_path):
    tree = tmp_path / "pics"
    rng = np.random.default_rng(0)
    for c in range(6):
        (tree / f"c{c}").mkdir(parents=True)
        for i in range(4):
            Image.fromarray(rng.integers(0, 255, (8, 8), dtype=np.uint8)).save(tree / f"c{c}" / f"{i}.png")
    bad = tree / "c2" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nnot an image")
    r = ue("run", "--profile", "smoke", "--out", tmp_path / "run", "--only", "02",
           "--domains", f"glyphs,folder:{tree}")
    assert r.returncode != 0
    assert "02_specialists failed" in r.stderr and "DataCorruptError" in r.stderr
    assert str(bad) in r.stderr


def test_check_needs_a_results_file(tmp_path, capsys):
    status, _, err = ue_fast(capsys, "check", tmp_path, "--baseline",
                             REPO / "tests" / "baselines" / "smoke.json")
    assert status == 2 and "results.csv not found" in err


def test_help_lists_the_commands(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for word in ("run", "check", "data"):
        assert word in out


def test_data_command(data_root, capsys):
    status, out, _ = ue_fast(capsys, "data", "omniglot", "--root", data_root)
    assert status == 0 and "omniglot: class-disjoint" in out


def test_data_command_names_a_missing_root(tmp_path, capsys):
    status, _, err = ue_fast(capsys, "data", "fashion", "--root", tmp_path, "--no-download")
    assert status == 2 and "Data for domain 'fashion' not found" in err
    assert Path(tmp_path / "fashion-mnist").as_posix() in err


def test_ue_train_names_an_unknown_part(capsys, tmp_path):
    status, _, err = ue_fast(capsys, "train", "--profile", "smoke", "--out", tmp_path,
                             "--parts", "teachers")
    assert status == 2 and "unknown part(s) teachers; valid: specialists, naive, students" in err
