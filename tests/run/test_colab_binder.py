"""Colab and Binder (tools/colab.py, binder/, docs/colab-binder.md): the notebooks' setup cell
does nothing outside Colab and exactly the expected installs on it, Binder's files name what
pyproject.toml names, and the repository's address is written by hand in one place only."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest
import tomllib
import yaml
from conftest import REPO

from ue_lib import data

spec = importlib.util.spec_from_file_location("colab", REPO / "tools" / "colab.py")
colab = importlib.util.module_from_spec(spec)
sys.modules["colab"] = colab
spec.loader.exec_module(colab)

NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
ADDRESS = PYPROJECT["project"]["urls"]["Repository"]
SLUG = ADDRESS.removeprefix("https://github.com/")
BINDER = REPO / "binder"


def cells(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def setup_source(path: Path) -> str:
    (cell,) = [c for c in cells(path) if "colab-setup" in c["metadata"].get("tags", [])]
    return "".join(cell["source"])


class Calls:
    """Stands in for every way a cell could start a process; records each call."""

    WAYS = [(subprocess, "run"), (subprocess, "call"), (subprocess, "check_call"),
            (subprocess, "check_output"), (subprocess, "Popen"), (os, "system"), (os, "popen"),
            (os, "execv"), (os, "execvp"), (os, "spawnv")]

    def __init__(self, monkeypatch, returncodes: dict[str, int] | None = None):
        self.made: list[tuple[str, list]] = []
        self.returncodes = returncodes or {}
        for module, name in self.WAYS:
            monkeypatch.setattr(module, name, self._recorder(name))

    def _recorder(self, name):
        def record(command, *args, **kwargs):
            self.made.append((name, command))
            code = next((c for word, c in self.returncodes.items() if word in command), 0)
            return subprocess.CompletedProcess(command, code, stdout=f"out {len(self.made)}\n",
                                               stderr=f"err {len(self.made)}\n")
        return record


def run_cell(source: str, name: str) -> dict:
    namespace: dict = {}
    exec(compile(source, f"{name}[colab-setup]", "exec"), namespace)
    return namespace


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem[:2])
def test_outside_colab_the_setup_cell_does_nothing(path, monkeypatch, capsys):
    """No process, no output, no import, no environment variable: in a papermill run (`ue
    run`, CI's smoke run) the cell costs an `if`."""
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    calls = Calls(monkeypatch)
    environ, modules = dict(os.environ), set(sys.modules)
    namespace = run_cell(setup_source(path), path.name)
    assert calls.made == []
    assert capsys.readouterr() == ("", "")
    assert set(namespace) == {"__builtins__", "sys"}  # `import sys` only
    assert dict(os.environ) == environ and set(sys.modules) == modules
    code = compile(setup_source(path), path.name, "exec")
    start = time.perf_counter()
    for _ in range(100):
        exec(code, {})
    assert (time.perf_counter() - start) / 100 < 0.001  # measured: about a microsecond


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem[:2])
def test_on_colab_the_setup_cell_installs_the_project_the_clip_art_and_the_data(path, monkeypatch,
                                                                                 capsys):
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    monkeypatch.setenv("JPY_SESSION_NAME", "")
    monkeypatch.delenv("JPY_SESSION_NAME")  # and put back as it was (absent) afterwards
    calls = Calls(monkeypatch)
    run_cell(setup_source(path), path.name)
    assert calls.made == [
        ("run", [sys.executable, "-m", "pip", "install", "--quiet", f"git+{ADDRESS}@main"]),
        ("run", ["apt-get", "install", "-qq", "--yes", "openclipart-svg"]),
        ("run", [sys.executable, "-m", "ue_lib.cli", "data", "omniglot,fashion,orl"]),
    ]
    assert os.environ["JPY_SESSION_NAME"] == path.name  # how RunFolder learns the notebook's name
    assert capsys.readouterr().out == "".join(f"out {i}\nerr {i}\n" for i in (1, 2, 3))


def test_on_colab_the_setup_stops_at_the_first_failing_command(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    monkeypatch.setenv("JPY_SESSION_NAME", "before")
    calls = Calls(monkeypatch, returncodes={"apt-get": 100})
    with pytest.raises(SystemExit) as stop:
        run_cell(setup_source(NOTEBOOKS[0]), NOTEBOOKS[0].name)
    assert str(stop.value) == "setup stopped: apt-get install -qq --yes openclipart-svg failed (exit 100)"
    assert [c[1][0] for c in calls.made] == [sys.executable, "apt-get"]  # no data download after it
    assert capsys.readouterr().out == "out 1\nerr 1\nout 2\nerr 2\n"  # each command's own words


def test_the_domains_colab_and_binder_download_are_those_whose_loaders_download(tmp_path,
                                                                                  monkeypatch):
    """Every domain is checked in an empty data root with downloads allowed; each download is
    stopped where it starts (torchvision's download_url, which the loaders use)."""
    from torchvision.datasets import utils

    tried, current = set(), []

    def no_network(url, folder, filename=None, **kwargs):
        tried.add(current[-1])
        raise OSError("no network in this test")

    monkeypatch.setattr(utils, "download_url", no_network)
    monkeypatch.delenv("UE_DATA", raising=False)
    for name in data.LOADERS:
        current.append(name)
        try:
            data.check_domain(name, root=tmp_path / "empty", download=True)
        except data.DataError:
            pass
    assert tried == set(data.DOWNLOADED) == {"omniglot", "fashion", "orl"}


def test_every_notebook_starts_with_its_badge_and_setup_cells():
    for path in NOTEBOOKS:
        badge, setup, *rest = cells(path)
        assert [badge, setup] == colab.launch_cells(path.name), path.name
        assert not any(colab.is_launch_cell(c) for c in rest), path.name
        text = "".join(badge["source"])
        assert f"(https://colab.research.google.com/github/{SLUG}/blob/main/notebooks/{path.name})" in text
        assert "(https://colab.research.google.com/assets/colab-badge.svg)" in text
        assert f"(https://mybinder.org/v2/gh/{SLUG}/main?urlpath=lab/tree/notebooks/{path.name})" in text
        assert setup["cell_type"] == "code" and setup["outputs"] == [] and \
            setup["execution_count"] is None
        # a book of the run (read offline: the badges' images cannot load) leaves both out
        assert "remove-cell" in badge["metadata"]["tags"] and "remove-cell" in setup["metadata"]["tags"]


def test_the_generated_files_are_what_the_generator_makes_from_pyproject():
    """`python tools/colab.py --check`: nothing stale (badge and setup cells, Binder's
    environment, the docs' badge blocks)."""
    made = colab.generated()
    assert set(made) >= {*NOTEBOOKS, BINDER / "environment.yml", REPO / "docs" / "colab-binder.md"}
    assert colab.stale() == {}
    assert colab.main(["--check"]) == 0


def _by_hand(path: Path, text: str) -> str:
    """A file's text without what tools/colab.py writes (checked equal to its output above)."""
    if path.suffix == ".ipynb":
        return json.dumps([c for c in json.loads(text)["cells"] if not colab.is_launch_cell(c)])
    if path.suffix == ".md":
        return colab.BLOCK.sub("", text)
    return "" if path == BINDER / "environment.yml" else text


def test_the_repository_address_is_written_by_hand_in_pyproject_only():
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                           cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    written, generated = {}, set()
    for name in files:
        path = REPO / name
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, FileNotFoundError):
            continue
        if SLUG in text:
            generated.add(name)
        if n := _by_hand(path, text).count(SLUG):
            written[name] = n
    assert written == {"pyproject.toml": 1}
    assert {f"notebooks/{p.name}" for p in NOTEBOOKS} <= generated  # and the scan saw them


def test_a_fork_changes_the_address_in_pyproject_and_everything_follows(tmp_path):
    fork = tmp_path / "pyproject.toml"
    fork.write_text((REPO / "pyproject.toml").read_text().replace(ADDRESS, "https://github.com/me/fork"))
    badge, setup = colab.launch_cells(NOTEBOOKS[0].name, fork)
    made = json.dumps([badge, setup]) + colab.block_text("launch-table", fork)
    assert SLUG not in made
    assert made.count("me/fork") == 2 + 1 + 2 * len(NOTEBOOKS)  # two badges, pip, the table
    assert "git+https://github.com/me/fork@main" in "".join(setup["source"])
    fork.write_text((REPO / "pyproject.toml").read_text().replace(ADDRESS, "https://gitlab.com/me/fork"))
    with pytest.raises(colab.AddressError, match=r"Repository is 'https://gitlab.com/me/fork', not a "
                                                 r"GitHub address"):
        colab.repository(fork)


# ---- Binder


def test_binders_environment_names_the_pyproject_dependencies_with_cpu_torch():
    env = yaml.safe_load((BINDER / "environment.yml").read_text())
    root = yaml.safe_load((REPO / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    options = [line for line in pip if line.startswith("-")]
    assert [line for line in pip if line not in options] == PYPROJECT["project"]["dependencies"]
    assert options == ["--extra-index-url https://download.pytorch.org/whl/cpu"]
    # the python of the root environment; nothing local (repo2docker builds this before it
    # copies the repository, and caches it): postBuild installs the project
    pythons = [d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python")]
    assert pythons == [d for d in root["dependencies"] if isinstance(d, str) and d.startswith("python")]
    assert env["channels"] == root["channels"]


def test_binders_apt_txt_installs_the_clip_art():
    lines = [line.strip() for line in (BINDER / "apt.txt").read_text().splitlines()]
    assert [line for line in lines if line and not line.startswith("#")] == ["openclipart-svg"]


def _post_build(tmp_path: Path, fail: str = "") -> tuple[subprocess.CompletedProcess, list[str]]:
    """Run binder/postBuild as repo2docker does (`./binder/postBuild` from the repository root),
    with a `python` first on PATH that records its arguments (and fails when they hold `fail`)."""
    bin_dir, log = tmp_path / "bin", tmp_path / "python.log"
    bin_dir.mkdir(exist_ok=True)
    log.write_text("")
    fake = bin_dir / "python"
    fake.write_text('#!/bin/bash\necho "$*" >> "$LOG"\n[[ -z "$FAIL" || "$*" != *"$FAIL"* ]]\n')
    fake.chmod(0o755)
    done = subprocess.run(["./binder/postBuild"], cwd=REPO, capture_output=True, text=True,
                          env={"PATH": f"{bin_dir}:/usr/bin:/bin", "LOG": str(log), "FAIL": fail})
    return done, log.read_text().splitlines()


def test_binders_post_build_is_executable_installs_the_project_and_registers_the_kernel(tmp_path):
    mode = subprocess.run(["git", "ls-files", "--stage", "binder/postBuild"], cwd=REPO,
                          capture_output=True, text=True, check=True).stdout.split()
    assert mode[:1] in (["100755"], [])  # committed executable (not yet staged: the disk's mode)
    assert os.access(BINDER / "postBuild", os.X_OK)
    assert (BINDER / "postBuild").read_text().startswith("#!/bin/bash\n")
    kernel = next(line.split("$(PY) ", 1)[1].split(" >")[0] for line in
                  (REPO / "Makefile").read_text().splitlines() if "ipykernel install" in line)
    done, ran = _post_build(tmp_path)
    assert done.returncode == 0, done.stderr
    assert ran == ["-m pip install --no-deps -e .", kernel,
                   f"-m ue_lib.cli data {','.join(data.DOWNLOADED)}"]
    # a failed install fails the build (set -e); a data source that is down does not
    done, ran = _post_build(tmp_path, fail="pip install")
    assert done.returncode != 0 and ran == ["-m pip install --no-deps -e ."]
    done, ran = _post_build(tmp_path, fail="ue_lib.cli data")
    assert done.returncode == 0 and len(ran) == 3
    assert re.search(r"postBuild: a data download failed", done.stdout)
