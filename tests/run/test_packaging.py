"""The project's set-up files agree with each other."""

from __future__ import annotations

import re

import tomllib
import yaml
from conftest import REPO


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~ \[]", requirement.strip(), maxsplit=1)[0].lower()


def test_environment_yml_names_the_pyproject_dependencies():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = {_name(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"]}
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    listed = {_name(r) for r in pip_section if not r.startswith("-e")}
    assert listed == wanted
    assert "-e ." in pip_section
    assert "python=3.11" in env["dependencies"]


def test_ci_runs_the_readme_test_command():
    readme = (REPO / "README.md").read_text()
    ci = (REPO / ".ci" / "run").read_text()
    assert "make test" in readme and "make test" in ci
    assert "make demo" in readme


def test_importing_the_package_pins_the_cpu_code_paths_unless_told_not_to():
    import os
    import subprocess
    import sys

    import ue_lib

    code = "import os, ue_lib; print(os.environ.get('FAISS_SIMD_LEVEL'), os.environ.get('MKL_CBWR'))"
    env = {k: v for k, v in os.environ.items() if k not in ue_lib.AVX2_CODE_PATHS}

    def run(**extra) -> list[str]:
        return subprocess.run([sys.executable, "-c", code], env={**env, **extra}, check=True,
                              capture_output=True, text=True).stdout.split()

    if ue_lib._has_avx2():
        assert run() == ["AVX2", "AVX2"]
        assert run(MKL_CBWR="COMPATIBLE") == ["AVX2", "COMPATIBLE"]  # a user's own choice wins
    else:
        assert run() == ["None", "None"]
    assert run(UE_CPU_ISA="native") == ["None", "None"]


def test_ci_installs_the_browser_the_book_test_needs():
    ci = (REPO / ".ci" / "run").read_text()
    assert "apt-get install" in ci and "chromium chromium-driver" in ci
    assert "/usr/bin/chromium" in ci and "/usr/bin/chromedriver" in ci
