"""The `ue` command line: bad input gives a non-zero exit and names the culprit."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO
from nbclient.exceptions import DeadKernelError
from papermill import PapermillExecutionError
from PIL import Image

from ue_lib import runner
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
    # runs that could not learn: refused before anything trains
    (["-p", "p", "1"], "Profile.p must be >= 2 with metric_loss multi_similarity: with p = 1 each "
                       "batch holds one class"),
    (["-p", "seeds", "[]"], "Profile.seeds has no seed: nothing would run"),
    (["-p", "objects_seeds", ""], "Profile.objects_seeds has no seed"),
])
def test_unknown_and_ill_typed_parameters(tmp_path, capsys, args, message):
    status, _, err = ue_fast(capsys, "run", "--profile", "smoke", "--out", tmp_path, *args)
    assert status == 2 and message in err
    assert not (tmp_path / "models").exists()  # refused before anything trained


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


def test_an_image_size_without_a_sane_bound_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("ue_lib.cli.run", lambda *_, **__: pytest.fail("the run started"))
    status, _, err = ue_fast(capsys, "run", "--profile", "smoke", "--out", tmp_path / "run",
                             "-p", "image_size", "100000")  # held 23 GB before its kernel died
    assert status == 2 and "Profile.image_size must be 1 to 1024 pixels, got 100000" in err


def one_error_line(err: str, command: str = "run") -> str:
    """The single line of a failed command: '<command>: error: …', nothing else (no traceback)."""
    assert err.count("\n") == 1 and err.startswith(f"ue {command}: error: "), err
    return err.strip()


@pytest.mark.parametrize("code, says", [
    (errno.EROFS, "read-only file system: {out}; make it writable for you, or choose another folder"),
    (errno.EACCES, "permission denied: {out}; make it writable for you, or choose another folder"),
    (errno.ENOSPC, "no space left on device: {out}; free some space there, or choose a folder on "
                   "another disk"),
])
def test_an_os_error_is_one_line_naming_the_path(tmp_path, capsys, monkeypatch, code, says):
    out, mkdir = tmp_path / "run", os.mkdir

    def refused(path, *args, **kwargs):  # the run folder is on a read-only / full disk, or not ours
        if str(path) == str(out):
            raise OSError(code, os.strerror(code), str(path))
        return mkdir(path, *args, **kwargs)

    monkeypatch.setattr(os, "mkdir", refused)
    status, _, err = ue_fast(capsys, "run", "--profile", "smoke", "--out", out, "--domains", "glyphs")
    assert status == 2
    assert one_error_line(err) == f"ue run: error: {says.format(out=out)}"


def _executor(raises, kernel_status=None):
    """A stand-in for papermill's executor that raises `raises` after starting cell 6 (as
    papermill saves the executed notebook: each started cell has a start time), its kernel
    ended with `kernel_status` (-9: killed, as by the out-of-memory killer)."""
    def execute(src, dst, **kwargs):
        cells = [{"cell_type": "code", "metadata": {"papermill": {"start_time": "t" if i < 6 else None}}}
                 for i in range(9)]
        Path(dst).write_text(json.dumps({"cells": [{"cell_type": "markdown"}] + cells}))
        runner.KERNEL_EXIT["status"] = kernel_status
        raise raises
    return execute


@pytest.mark.parametrize("raises, kernel_status, status, says", [
    (DeadKernelError("Kernel died"), -9, 2, "the kernel was killed (out of memory?) while running "
     "notebook 01_naive_fusion_overfitting, cell 6; free memory, or lower the settings that hold it"),
    (DeadKernelError("Kernel died"), -11, 2, "the kernel died of signal SIGSEGV while running "
     "notebook 01_naive_fusion_overfitting, cell 6; run the same command again to resume"),
    (KeyboardInterrupt(), None, 130, "interrupted; run the same command again to resume"),
    (PapermillExecutionError(6, 6, "x", "KeyboardInterrupt", "", []), None, 130, "interrupted; run "
     "the same command again to resume"),  # the kernel got the Ctrl-C too
])
def test_a_dead_kernel_and_ctrl_c_are_one_line(tmp_path, capsys, monkeypatch, raises, kernel_status,
                                               status, says):
    monkeypatch.setattr(runner, "execute_notebook", _executor(raises, kernel_status))
    got, _, err = ue_fast(capsys, "run", "--profile", "smoke", "--out", tmp_path, "--only", "01",
                          "--domains", "glyphs")
    assert got == status and one_error_line(err).startswith(f"ue run: error: {says}")


@pytest.mark.parametrize("command", ["train", "sweep", "check"])
def test_ctrl_c_in_any_command_is_one_line(tmp_path, capsys, monkeypatch, command):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    for name in ("ue_lib.universal.experiments.train_models", "ue_lib.cli.sweep", "ue_lib.cli.check"):
        monkeypatch.setattr(name, interrupted)
    argv = {"train": ["--profile", "smoke", "--domains", "glyphs", "--out", tmp_path],
            "sweep": [REPO / "notebooks" / "02_specialists.ipynb", "--profile", "smoke", "--out",
                      tmp_path, "-p", "lr", "0.001"],
            "check": [tmp_path, "--baseline", tmp_path / "b.json"]}[command]
    status, _, err = ue_fast(capsys, command, *argv)
    assert status == 130
    assert one_error_line(err, command) == f"ue {command}: error: interrupted; run the same " \
                                           f"command again to resume"
