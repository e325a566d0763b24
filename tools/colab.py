"""Colab and Binder, made from the one place the repository's address is written: pyproject.toml's
``[project.urls] Repository`` (docs/colab-binder.md).

    python tools/colab.py          # rewrite whatever is stale (after changing the address or
                                   # a dependency, or adding a notebook)
    python tools/colab.py --check  # exit 1 naming each stale file; change nothing

What it writes:

* the first two cells of every notebook (notebooks/0*.ipynb): a Markdown cell with the "Open in
  Colab" and "Launch on Binder" badges (tag ``colab-badge``) and a code cell that acts only on
  Colab (tag ``colab-setup``): it installs the project from its repository with pip, Debian's
  clip art with apt-get, and downloads the domains that download (``ue_lib.data.DOWNLOADED``)
  with the project's own ``ue data``. Anywhere else it does nothing. Only these two cells are
  touched, found by their tags; the rest of each notebook is left as it is.
* binder/environment.yml: the conda environment Binder builds, the project's dependencies from
  pyproject.toml with torch's CPU wheels (binder/apt.txt and binder/postBuild are written by
  hand).
* every Markdown block between ``<!-- launch-badges -->`` (or ``<!-- launch-table -->``) and
  ``<!-- /launch-badges -->`` (``<!-- /launch-table -->``) in README.md and docs/*.md.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import tomllib

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # this checkout's ue_lib, whatever is installed

from ue_lib.data import DOWNLOADED  # noqa: E402
from ue_lib.io import atomic_write  # noqa: E402
from ue_lib.runner import list_notebooks  # noqa: E402

BRANCH = "main"  # the branch the badges open and Colab installs from
BADGE_TAG, SETUP_TAG = "colab-badge", "colab-setup"
# `remove-cell`: a book of a run (Jupyter Book / myst-nb) leaves both out: it is read offline,
# where the badges' images (on Colab's and Binder's servers) cannot load, and nothing runs there
TAGS = {BADGE_TAG: [BADGE_TAG, "remove-cell"], SETUP_TAG: [SETUP_TAG, "remove-cell"]}
COLAB_BADGE = "https://colab.research.google.com/assets/colab-badge.svg"
BINDER_BADGE = "https://mybinder.org/badge_logo.svg"
CLIP_ART = "openclipart-svg"  # Debian's / Ubuntu's package (ue_lib.data.clipart)
CPU_WHEELS = "https://download.pytorch.org/whl/cpu"
PYTHON = "python=3.11"  # as environment.yml
BLOCK = re.compile(r"(<!-- (launch-badges|launch-table) -->\n)(.*?)(<!-- /\2 -->)", re.S)


class AddressError(ValueError):
    """pyproject.toml does not give a GitHub address Colab and Binder can open."""


def repository(pyproject: Path = REPO / "pyproject.toml") -> tuple[str, str]:
    """(the repository's address, its "owner/name"), from pyproject.toml's [project.urls]."""
    url = tomllib.loads(pyproject.read_text()).get("project", {}).get("urls", {}).get("Repository", "")
    match = re.fullmatch(r"https://github\.com/([\w.-]+/[\w.-]+?)(?:\.git)?/?", url)
    if not match:
        raise AddressError(f"{pyproject}: [project.urls] Repository is {url!r}, not a GitHub address "
                           f"such as https://github.com/OWNER/NAME; Colab and Binder open GitHub "
                           f"repositories, so set it to one")
    return url, match.group(1)


def colab_url(slug: str, notebook: str) -> str:
    return f"https://colab.research.google.com/github/{slug}/blob/{BRANCH}/notebooks/{notebook}"


def binder_url(slug: str, notebook: str = "") -> str:
    return f"https://mybinder.org/v2/gh/{slug}/{BRANCH}?urlpath=lab/tree/notebooks/{notebook}"


def colab_badge(slug: str, notebook: str) -> str:
    return f"[![Open in Colab]({COLAB_BADGE})]({colab_url(slug, notebook)})"


def binder_badge(slug: str, notebook: str = "") -> str:
    return f"[![Launch on Binder]({BINDER_BADGE})]({binder_url(slug, notebook)})"


def badge_source(slug: str, notebook: str) -> str:
    return (f"{colab_badge(slug, notebook)} {binder_badge(slug, notebook)}\n\n"
            f"*On Colab, run the next cell first: it installs ue_lib, its clip art and its data (a "
            f"few minutes). Anywhere else it does nothing. See docs/colab-binder.md.*")


def setup_source(url: str, notebook: str) -> str:
    """The setup cell: on Colab only, install the project, the clip art and the downloadable
    data, each command's output shown, and stop at the first that fails; elsewhere nothing."""
    return f'''# On Google Colab only (anywhere else this cell does nothing): install ue_lib from its
# repository, Debian's clip art and the data sets that download (docs/colab-binder.md)
import sys

if "google.colab" in sys.modules:
    import os
    import subprocess

    os.environ["JPY_SESSION_NAME"] = "{notebook}"  # Colab does not tell the kernel
    for command in (
        [sys.executable, "-m", "pip", "install", "--quiet", "git+{url}@{BRANCH}"],
        ["apt-get", "install", "-qq", "--yes", "{CLIP_ART}"],
        [sys.executable, "-m", "ue_lib.cli", "data", "{",".join(DOWNLOADED)}"],
    ):
        done = subprocess.run(command, capture_output=True, text=True)
        print(done.stdout + done.stderr, end="")
        if done.returncode:
            raise SystemExit(f"setup stopped: {{' '.join(command)}} failed (exit {{done.returncode}})")'''


def _cell(kind: str, tag: str, source: str) -> dict:
    cell = {"cell_type": kind, "id": tag, "metadata": {"tags": TAGS[tag]},
            "source": source.splitlines(keepends=True)}
    if kind == "code":
        cell.update(execution_count=None, outputs=[])
        cell = {k: cell[k] for k in ("cell_type", "execution_count", "id", "metadata", "outputs",
                                     "source")}
    else:
        cell = {k: cell[k] for k in ("cell_type", "id", "metadata", "source")}
    return cell


def launch_cells(notebook: str, pyproject: Path = REPO / "pyproject.toml") -> list[dict]:
    """The badge cell and the setup cell of `notebook` (a file name), as they are committed."""
    url, slug = repository(pyproject)
    return [_cell("markdown", BADGE_TAG, badge_source(slug, notebook)),
            _cell("code", SETUP_TAG, setup_source(url, notebook))]


def is_launch_cell(cell: dict) -> bool:
    return bool({BADGE_TAG, SETUP_TAG} & set(cell.get("metadata", {}).get("tags", [])))


def notebook_text(path: Path, pyproject: Path = REPO / "pyproject.toml") -> str:
    """The notebook at `path` with its launch cells (re)made at the top, the rest untouched."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    nb["cells"] = launch_cells(path.name, pyproject) + [c for c in nb["cells"] if not is_launch_cell(c)]
    return json.dumps(nb, indent=1, ensure_ascii=False) + "\n"


def binder_environment(pyproject: Path = REPO / "pyproject.toml") -> str:
    """binder/environment.yml: the project's dependencies (pyproject.toml), torch from its CPU
    wheels. The project itself is installed by binder/postBuild, once the repository is there."""
    deps = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    lines = ["# Made by tools/colab.py from pyproject.toml: edit that, then run `python tools/colab.py`.",
             "# Binder (repo2docker) builds this before it copies the repository, so the project",
             "# itself is installed by postBuild. torch and torchvision come from the CPU wheels",
             "# (Binder has no GPU): for a version both indexes hold, pip takes the +cpu build.",
             "name: ue_lib", "channels:", "  - conda-forge", "dependencies:", f"  - {PYTHON}",
             "  - pip", "  - pip:", f"      - --extra-index-url {CPU_WHEELS}"]
    return "\n".join(lines + [f"      - {d}" for d in deps]) + "\n"


def block_text(kind: str, pyproject: Path = REPO / "pyproject.toml") -> str:
    """A Markdown block: `launch-badges` (notebook 01 on Colab, the notebooks folder on Binder,
    as badges) or `launch-table` (every notebook on both, as plain links: the docs are pages of
    the offline book, where the badges' images cannot load)."""
    _, slug = repository(pyproject)
    names = [p.name for p in list_notebooks(REPO / "notebooks")]
    if kind == "launch-badges":
        return f"{colab_badge(slug, names[0])} {binder_badge(slug)}\n"
    rows = [f"| {name.removesuffix('.ipynb')} | [open in Colab]({colab_url(slug, name)}) | "
            f"[launch on Binder]({binder_url(slug, name)}) |" for name in names]
    return "\n".join(["| notebook | Colab | Binder |", "| --- | --- | --- |", *rows]) + "\n"


def markdown_text(path: Path, pyproject: Path = REPO / "pyproject.toml") -> str:
    return BLOCK.sub(lambda m: m.group(1) + block_text(m.group(2), pyproject) + m.group(4),
                     path.read_text(encoding="utf-8"))


def generated(pyproject: Path = REPO / "pyproject.toml") -> dict[Path, str]:
    """Every file this tool writes, with the text it should hold."""
    out = {path: notebook_text(path, pyproject) for path in list_notebooks(REPO / "notebooks")}
    out[REPO / "binder" / "environment.yml"] = binder_environment(pyproject)
    for path in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        if path.is_file() and BLOCK.search(path.read_text(encoding="utf-8")):
            out[path] = markdown_text(path, pyproject)
    return out


def stale(pyproject: Path = REPO / "pyproject.toml") -> dict[Path, str]:
    """The generated files whose committed text differs from what this tool makes."""
    return {path: text for path, text in generated(pyproject).items()
            if not path.is_file() or path.read_text(encoding="utf-8") != text}


def main(argv: list[str]) -> int:
    try:
        outdated = stale()
    except AddressError as exc:
        print(f"colab.py: error: {exc}", file=sys.stderr)
        return 2
    for path, text in outdated.items():
        name = path.relative_to(REPO)
        if "--check" in argv:
            print(f"stale: {name} (run `python tools/colab.py`)")
        else:
            atomic_write(path, lambda tmp, text=text: tmp.write_text(text, encoding="utf-8"))
            print(f"wrote {name}")
    return 1 if outdated and "--check" in argv else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
