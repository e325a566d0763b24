"""`ue book RUN_DIR`: a static website of a run folder, for reading a run without running it.

The book is made with Sphinx, myst-nb and the book theme (chosen by measurement:
docs/book.md) from the run's executed notebooks (RUN_DIR/notebooks/NN_name.ipynb, read as they
are, never executed again), in notebook order, with

* the README's introduction as its front page;
* the glossary, taken at build time from the executed notebook that has a "## Glossary"
  section (so there is no second copy to keep in step);
* every figure: the notebooks' outputs, and a page of the files in RUN_DIR/figures that no
  notebook output shows;
* a page of the run: its profile and parameters, versions and the time of each notebook
  (RUN_DIR/run.json);
* the repository's docs/*.md pages, in the order of the README's reading list.

It works offline: MathJax is served from the book itself (the `sphinx-mathjax-offline`
package's copy), widgets' JavaScript is not loaded from a CDN, and images on other sites
(badges) become plain links. The output folder is publishable as it is (`.nojekyll` for
GitHub Pages) and replaced whole when the book is built again.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from io import StringIO
from pathlib import Path, PurePosixPath
from warnings import catch_warnings, simplefilter

from .data.core import repository_root
from .runner import RunError, list_notebooks

GLOSSARY_HEADING = "## Glossary"
MATHJAX_SCRIPT = "tex-chtml.js"  # the one combined MathJax component the book loads
REMOTE_IMAGE = re.compile(r"!\[([^\]]*)\]\((https?://[^)\s]+)(?:\s+\"[^\"]*\")?\)")
REMOTE_HTML_IMAGE = re.compile(r"<img\b[^>]*\bsrc=[\"']https?://[^>]*>", re.IGNORECASE)
HTML_ALT = re.compile(r"\balt=[\"']([^\"']*)[\"']", re.IGNORECASE)
ANSI = re.compile(r"\x1b\[[0-9;]*m")
LOCAL_LINK = re.compile(r"(?<!!)\[([^\]]*)\]\(([^)\s]+)\)")
DOCS_LINK = re.compile(r"\]\(docs/([\w.-]+\.md)(?:#[^)]*)?\)")


class BookError(Exception):
    """A book that cannot be made from this folder; the message names the cause and the fix."""


@dataclass
class Book:
    """What `build_book` made."""

    out: Path
    pages: list[str]
    seconds: float
    warnings: list[str] = field(default_factory=list)


def read_notebook(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BookError(f"{path} is not a readable notebook ({exc}); run that notebook again "
                        f"with `ue run --only {Path(path).stem[:2]}`") from exc


def is_executed(notebook: dict) -> bool:
    """Whether a notebook was run: some code cell has an execution count."""
    return any(c.get("cell_type") == "code" and c.get("execution_count") is not None
               for c in notebook.get("cells", []))


def executed_notebooks(run_dir: Path) -> dict[Path, dict]:
    """The run folder's executed notebooks, in the order `ue run` runs them
    (`ue_lib.runner.list_notebooks`), each read once: {path: notebook}; a BookError when there
    is no run folder or no executed notebook in it."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise BookError(f"{run_dir} is not a folder; give a run folder made by `ue run --out`")
    if not (run_dir / "run.json").is_file() and not (run_dir / "notebooks").is_dir():
        raise BookError(f"{run_dir} is not a run folder (no run.json, no notebooks/); give the "
                        f"folder `ue run --out` wrote")
    try:
        paths = list_notebooks(run_dir / "notebooks")
    except RunError:
        paths = []
    books = {p: nb for p, nb in ((p, read_notebook(p)) for p in paths) if is_executed(nb)}
    if not books:
        raise BookError(f"{run_dir / 'notebooks'} holds no executed notebook; run them first: "
                        f"ue run --out {run_dir}")
    return books


def read_run(run_dir: Path) -> dict:
    """The run's run.json ({} when the run folder has none)."""
    path = Path(run_dir) / "run.json"
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BookError(f"{path} is not readable ({exc}); run `ue run --out {run_dir}` again to "
                        f"rewrite it, or move it aside") from exc


def introduction(readme: str) -> str:
    """The README's introduction: its title, the lead paragraphs and its first section (all up
    to its second level-2 heading)."""
    lines, sections = [], 0
    fence = False
    for line in readme.splitlines():
        if line.lstrip().startswith("```"):
            fence = not fence
        if not fence and line.startswith("## "):
            sections += 1
            if sections == 2:
                break
        lines.append(line)
    return "\n".join(lines).rstrip() + "\n"


def offline_markdown(text: str) -> str:
    """Markdown whose images on other sites (badges) are links with their alt text, so a page
    loads nothing from outside the book."""
    text = REMOTE_IMAGE.sub(lambda m: m.group(1) or m.group(2), text)

    def html(m: re.Match) -> str:
        alt = HTML_ALT.search(m.group(0))
        return alt.group(1) if alt else ""
    return REMOTE_HTML_IMAGE.sub(html, text)


def _source(cell: dict) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def glossary_page(notebooks: Mapping[Path, dict], link_of) -> str | None:
    """The glossary page, from the first notebook with a "## Glossary" section (its markdown
    cells up to the next heading of level 1 or 2), or None."""
    for path, nb in notebooks.items():
        cells, found = [], False
        for cell in nb.get("cells", []):
            text = _source(cell) if cell.get("cell_type") == "markdown" else ""
            if not found:
                found = text.startswith(GLOSSARY_HEADING)
                if found:
                    cells.append(text[len(GLOSSARY_HEADING):].strip())
                continue
            if cell.get("cell_type") != "markdown" or re.match(r"#{1,2} ", text):
                break
            cells.append(text.strip())
        if found:
            title = _notebook_title(path, nb)
            return (f"# Glossary\n\n*From [{title}]({link_of(path)}), as executed in this run.*\n\n"
                    + "\n\n".join(cells) + "\n")
    return None


def _notebook_title(path: Path, nb: dict) -> str:
    for cell in nb.get("cells", []):
        text = _source(cell)
        if cell.get("cell_type") == "markdown" and text.startswith("# "):
            return text.splitlines()[0][2:].strip()
    return path.stem


def _cell(value) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return text.replace("|", "\\|").replace("\n", " ")


def _duration(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s" if minutes else f"{seconds:.1f} s"


def run_page(run: dict, link_of=None) -> str:
    """The page of a run: profile, parameters, versions, git commit and each notebook's time,
    from the run folder's run.json (missing entries are left out)."""
    parameters = run.get("parameters", {})
    lines = [f"# The run: profile `{run.get('profile', parameters.get('profile', '?'))}`", ""]
    if run.get("git_commit"):
        lines += [f"Code at git commit `{run['git_commit']}`.", ""]
    seconds = run.get("seconds", {})
    if seconds:
        lines += ["## Time per notebook", "", "| notebook | time |", "| --- | --- |"]
        for name, value in seconds.items():
            label = f"[{name}]({link_of(name)})" if link_of and link_of(name) else name
            lines.append(f"| {label} | {_duration(value)} |")
        lines += [f"| **all** | **{_duration(sum(seconds.values()))}** |", ""]
    for title, table in (("Parameters", parameters), ("Versions", run.get("versions", {})),
                         ("Profile settings", run.get("resolved_profile", {}))):
        if table:
            lines += [f"## {title}", "", "| name | value |", "| --- | --- |"]
            lines += [f"| `{name}` | {_cell(value)} |" for name, value in table.items()]
            lines.append("")
    return "\n".join(lines)


def _shown_images(notebooks: Mapping[Path, dict]) -> set[str]:
    """sha256 of every PNG the notebooks show (`RunFolder.show` displays the saved file's bytes)."""
    shown = set()
    for nb in notebooks.values():
        for cell in nb.get("cells", []):
            for output in cell.get("outputs", []):
                data = output.get("data", {}).get("image/png")
                if data:
                    png = base64.b64decode("".join(data) if isinstance(data, list) else data)
                    shown.add(hashlib.sha256(png).hexdigest())
    return shown


def extra_figures(run_dir: Path, notebooks: Mapping[Path, dict]) -> list[Path]:
    """The image files of RUN_DIR/figures that no notebook output shows, in notebook order."""
    shown = _shown_images(notebooks)
    files = sorted((Path(run_dir) / "figures").glob("*/*.png"))
    return [p for p in files if hashlib.sha256(p.read_bytes()).hexdigest() not in shown]


def _figures_page(figures: list[Path], run_dir: Path, src: Path) -> str:
    lines = ["# Other figures", "", "The run's figure files that no notebook shows.", ""]
    folder = None
    for path in figures:
        rel = path.relative_to(Path(run_dir) / "figures")
        if rel.parent != folder:
            folder = rel.parent
            lines += [f"## {folder.as_posix()}", ""]
        (src / "figures" / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, src / "figures" / rel)
        lines += [f"![{rel.stem}](figures/{rel.as_posix()})", ""]
    return "\n".join(lines)


def docs_order(readme: str, docs: list[Path]) -> list[Path]:
    """The docs pages in the order of the README's tables that link them (its reading list),
    then of its other links, then the others by name."""
    by_name = {p.name: p for p in docs}
    rows = "\n".join(line for line in readme.splitlines() if line.startswith("|"))
    names = DOCS_LINK.findall(rows) + DOCS_LINK.findall(readme)
    linked = [by_name[n] for n in dict.fromkeys(names) if n in by_name]
    return linked + sorted(set(docs) - set(linked))


def local_links(text: str, page: str, repo: Path | None, src: Path) -> str:
    """A staged page's links to the repository's files, made to work in the book: a docs page
    or a staged notebook stays a link, the README becomes the front page, another file of the
    repository is copied in (Sphinx makes it a download), anything else becomes its text and
    path. `page` is the page's path in the book (e.g. "docs/data.md")."""
    here = PurePosixPath(page).parent

    def fix(m: re.Match) -> str:
        label, target = m.group(1), m.group(2)
        path = target.partition("#")[0]
        if not path or re.match(r"[a-z][a-z0-9+.-]*:", target):
            return m.group(0)  # an anchor on this page, or another site
        rel = PurePosixPath(os.path.normpath(here / path))
        if (src / rel).is_file():
            return m.group(0)  # a page or file of the book
        if rel == PurePosixPath("README.md"):
            return f"[{label}]({os.path.relpath('index.md', here)})"
        found = repo / rel if repo is not None and not rel.parts[0] == ".." else None
        if found is not None and found.is_file() and found.suffix not in (".md", ".ipynb"):
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(found, src / rel)
            return m.group(0)
        return label if label.strip("`").rstrip("/") == str(rel) else f"{label} (`{rel}`)"
    return LOCAL_LINK.sub(fix, text)


def _stage_notebook(nb: dict, dst: Path) -> None:
    """A copy of an executed notebook whose markdown loads nothing from other sites (`nb` is
    changed in place: the book's reading of it)."""
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "markdown":
            cell["source"] = offline_markdown(_source(cell))
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if "text/markdown" in data:
                text = data["text/markdown"]
                data["text/markdown"] = offline_markdown("".join(text) if isinstance(text, list)
                                                         else text)
    dst.write_text(json.dumps(nb, ensure_ascii=False), encoding="utf-8")


def _toctree(caption: str, entries: list[str]) -> str:
    return ("```{toctree}\n" f":caption: {caption}\n:maxdepth: 1\n\n" + "\n".join(entries)
            + "\n```\n")


def _readme(repo: Path | None) -> str:
    if repo is not None and (repo / "README.md").is_file():
        return (repo / "README.md").read_text(encoding="utf-8")
    from importlib.metadata import PackageNotFoundError, metadata

    try:  # an installed copy: pyproject's readme is the package's description
        return metadata("ue_lib").get_payload() or "# ue_lib\n"
    except PackageNotFoundError:
        return "# ue_lib\n"


def stage(run_dir: Path, notebooks: Mapping[Path, dict], src: Path, repo: Path | None,
          run: dict) -> list[str]:
    """Write the book's sources into `src` (`notebooks`: `executed_notebooks`, `run`: its
    run.json); return its pages in order."""
    run_dir, readme = Path(run_dir), _readme(repo)
    (src / "notebooks").mkdir(parents=True)
    names = {p.stem: f"notebooks/{p.name}" for p in notebooks}
    figures = extra_figures(run_dir, notebooks)  # before staging changes the notebooks' markdown
    glossary = glossary_page(notebooks, lambda p: names[p.stem])
    for path, nb in notebooks.items():
        _stage_notebook(nb, src / names[path.stem])
    pages = {"run.md": run_page(run, lambda name: names.get(name))}
    if glossary:
        pages["glossary.md"] = glossary
    if figures:
        pages["figures.md"] = _figures_page(figures, run_dir, src)
    for name, text in pages.items():
        (src / name).write_text(text, encoding="utf-8")
    docs = docs_order(readme, sorted((repo / "docs").glob("*.md")) if repo else [])
    if docs:
        (src / "docs").mkdir()
        texts = {path.name: offline_markdown(path.read_text(encoding="utf-8")) for path in docs}
        for name, text in texts.items():
            (src / "docs" / name).write_text(text, encoding="utf-8")
        for name, text in texts.items():  # once every page is there
            (src / "docs" / name).write_text(local_links(text, f"docs/{name}", repo, src),
                                             encoding="utf-8")
    this_run = [n[:-3] for n in ("glossary.md", "run.md", "figures.md") if n in pages]
    index = (local_links(offline_markdown(introduction(readme)), "index.md", repo, src)
             + f"\nThis book shows a run of profile `{run.get('profile', run_dir.name)}`: its executed "
             "notebooks as they ran, its figures, and the project's documentation.\n\n"
             + _toctree("Notebooks", [n[:-6] for n in names.values()])
             + _toctree("This run", this_run)
             + (_toctree("Documentation", [f"docs/{p.stem}" for p in docs]) if docs else ""))
    (src / "index.md").write_text(index, encoding="utf-8")
    return ["index", *(n[:-6] for n in names.values()), *this_run,
            *(f"docs/{p.stem}" for p in docs)]


def sphinx_config(title: str) -> dict:
    """The book's Sphinx settings (written as the staged conf.py)."""
    return {
        "project": title, "html_title": title,
        "extensions": ["myst_nb", "sphinx-mathjax-offline"],
        "html_theme": "sphinx_book_theme",
        "html_theme_options": {"home_page_in_toc": True, "show_navbar_depth": 1,
                               "use_download_button": False},
        "html_copy_source": False, "html_show_sourcelink": False,
        "nb_execution_mode": "off",  # executed notebooks are shown as they ran
        "nb_ipywidgets_js": {},  # widgets need a kernel; their JavaScript is not fetched
        "nb_render_markdown_format": "myst",  # tables and $math$ in the notebooks' outputs
        "myst_enable_extensions": ["dollarmath"],
        "myst_heading_anchors": 3,  # links to a heading of a docs page: page.md#heading
        "exclude_patterns": ["_build"],
        "suppress_warnings": ["mystnb.unknown_mime_type"],
    }


def _conf_py(config: dict) -> str:
    return "".join(f"{name} = {value!r}\n" for name, value in config.items())


def _trim_mathjax(out: Path) -> None:
    """Keep the one combined MathJax component the book loads (and the folders it loads lazily:
    fonts, TeX extensions, menu, accessibility); the package ships eleven."""
    folder = out / "_static" / "mathjax"
    for path in folder.glob("*.js"):
        if path.name != MATHJAX_SCRIPT:
            path.unlink()


def _sphinx_build(src: Path, out: Path, doctrees: Path) -> list[str]:
    from sphinx.application import Sphinx
    from sphinx.util.docutils import docutils_namespace

    warnings = StringIO()
    with docutils_namespace(), catch_warnings():
        # the theme's and myst's use of Sphinx APIs due to change: nothing a reader can act on
        simplefilter("ignore", DeprecationWarning)
        simplefilter("ignore", PendingDeprecationWarning)
        app = Sphinx(str(src), str(src), str(out), str(doctrees), "html", status=None,
                     warning=warnings, freshenv=True)
        app.build()
    text = ANSI.sub("", warnings.getvalue()).replace(f"{src}/", "")
    return [line for line in text.splitlines() if line.strip()]


def _replace_folder(new: Path, out: Path) -> None:
    """Put the built book at `out`, replacing an earlier book there in one rename."""
    old = out.with_name(f".{out.name}.old{os.getpid()}")
    if out.exists():
        out.rename(old)
    new.rename(out)
    shutil.rmtree(old, ignore_errors=True)


def _check_out(out: Path, run_dir: Path) -> None:
    if out.exists() and not (out.is_dir() and (not any(out.iterdir()) or (out / ".buildinfo").is_file())):
        raise BookError(f"{out} exists and is not a book made by `ue book`; choose another --out, "
                        f"or remove that folder")
    if run_dir.resolve().is_relative_to(out.resolve()):
        raise BookError(f"--out {out} contains the run folder {run_dir}; choose another folder "
                        f"(the default is RUN_DIR/book)")


def build_book(run_dir: str | os.PathLike, out: str | os.PathLike | None = None) -> Book:
    """Build the book of `run_dir` into `out` (default RUN_DIR/book); return what was made."""
    start = time.perf_counter()
    run_dir = Path(run_dir)
    notebooks, run = executed_notebooks(run_dir), read_run(run_dir)
    out = Path(out) if out is not None else run_dir / "book"
    _check_out(out, run_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ue-book-") as tmp:
        src, built = Path(tmp) / "src", out.with_name(f".{out.name}.new{os.getpid()}")
        try:
            pages = stage(run_dir, notebooks, src, repository_root(), run)
            profile = run.get("profile", run_dir.name)
            (src / "conf.py").write_text(_conf_py(sphinx_config(f"ue_lib · the {profile} run")),
                                         encoding="utf-8")
            warnings = _sphinx_build(src, built, Path(tmp) / "doctrees")
            _trim_mathjax(built)
            if (built / "_sources").is_dir() and not any((built / "_sources").iterdir()):
                (built / "_sources").rmdir()
            (built / ".nojekyll").write_text("")
            _replace_folder(built, out)
        finally:
            shutil.rmtree(built, ignore_errors=True)
    return Book(out, pages, time.perf_counter() - start, warnings)
