"""`ue book`: its pieces on hand-made inputs, and the built smoke book in a real browser
(Debian's headless Chromium, driven by selenium, over a local http.server)."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import threading
import urllib.error
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from ue_lib import book
from ue_lib.cli import main

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
LOCAL = ("data:", "blob:", "about:", "chrome:", "devtools:")


# --------------------------------------------------------------------------- the book's pieces

def _notebook(cells: list[dict]) -> dict:
    cells = [{**cell, "id": f"c{i}"} for i, cell in enumerate(cells)]
    return {"cells": cells, "nbformat": 4, "nbformat_minor": 5,
            "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                         "language_info": {"name": "python", "pygments_lexer": "ipython3"}}}


def _md(text: str) -> dict:
    return {"cell_type": "markdown", "metadata": {}, "source": text}


def _code(count, outputs=()) -> dict:
    return {"cell_type": "code", "metadata": {}, "source": "x", "execution_count": count,
            "outputs": list(outputs)}


def _write(path: Path, nb: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(nb))
    return path


def test_only_executed_notebooks_are_in_the_book(tmp_path):
    _write(tmp_path / "notebooks" / "02_ran.ipynb", _notebook([_md("# B"), _code(1)]))
    _write(tmp_path / "notebooks" / "01_ran.ipynb", _notebook([_md("# A"), _code(3)]))
    _write(tmp_path / "notebooks" / "03_not_run.ipynb", _notebook([_md("# C"), _code(None)]))
    _write(tmp_path / "notebooks" / "02_a.ipynb", _notebook([_md("# A2"), _code(2)]))
    (tmp_path / "notebooks" / "README.ipynb").write_text("{}")  # not numbered: not a notebook of the run
    found = book.executed_notebooks(tmp_path)  # in `ue run`'s order, each read once
    assert [p.name for p in found] == ["01_ran.ipynb", "02_a.ipynb", "02_ran.ipynb"]
    assert found[tmp_path / "notebooks" / "02_a.ipynb"]["cells"][0]["source"] == "# A2"


def test_the_run_page_lists_profile_commit_times_parameters_versions_settings():
    run = {"profile": "smoke", "parameters": {"profile": "smoke", "seed": 0, "overrides": {}},
           "resolved_profile": {"lr": 0.002, "loss_params": {"kl": {"temperature": 0.05}}},
           "versions": {"python": "3.11.7", "torch": "2.14.1"}, "git_commit": "abc123",
           "seconds": {"01_a": 20.64, "02_b": 70.0}}
    links = {"01_a": "notebooks/01_a.ipynb"}
    assert book.run_page(run, links.get) == "\n".join([
        "# The run: profile `smoke`", "",
        "Code at git commit `abc123`.", "",
        "## Time per notebook", "", "| notebook | time |", "| --- | --- |",
        "| [01_a](notebooks/01_a.ipynb) | 20.6 s |",
        "| 02_b | 1 min 10 s |",
        "| **all** | **1 min 31 s** |", "",
        "## Parameters", "", "| name | value |", "| --- | --- |",
        "| `profile` | smoke |", "| `seed` | 0 |", "| `overrides` | {} |", "",
        "## Versions", "", "| name | value |", "| --- | --- |",
        "| `python` | 3.11.7 |", "| `torch` | 2.14.1 |", "",
        "## Profile settings", "", "| name | value |", "| --- | --- |",
        "| `lr` | 0.002 |", '| `loss_params` | {"kl": {"temperature": 0.05}} |', ""])


def test_the_readme_introduction_is_its_title_lead_and_first_section():
    readme = ("# Title\n\nLead paragraph.\n\n## The idea\n\n1. one\n\n```bash\n## not a heading\n```\n"
              "\n## Two commands\n\nmake demo\n\n## Licence\n")
    assert book.introduction(readme) == ("# Title\n\nLead paragraph.\n\n## The idea\n\n1. one\n\n"
                                         "```bash\n## not a heading\n```\n")


def test_the_project_readme_has_an_introduction_and_no_more_than_200_lines():
    from conftest import REPO

    readme = (REPO / "README.md").read_text()
    intro = book.introduction(readme)
    assert intro.startswith("# ue_lib") and "## The idea in five lines" in intro
    assert "make demo" not in intro and len(readme.splitlines()) <= 200


def test_the_glossary_page_is_cut_from_the_executed_notebook(tmp_path):
    nb = _notebook([_md("# 01 · First\n\nIntro."), _code(1),
                    _md("## Glossary\nThe words.\n\n| term | meaning |\n| --- | --- |\n| a | b |"),
                    _md("More words."), _md("## The road map\nNot glossary."), _code(2)])
    paths = [_write(tmp_path / "00_none.ipynb", _notebook([_md("# Zero")])),
             _write(tmp_path / "01_first.ipynb", nb)]
    notebooks = {p: json.loads(p.read_text()) for p in paths}
    page = book.glossary_page(notebooks, lambda p: f"notebooks/{p.name}")
    assert page == ("# Glossary\n\n*From [01 · First](notebooks/01_first.ipynb), as executed in this "
                    "run.*\n\nThe words.\n\n| term | meaning |\n| --- | --- |\n| a | b |\n\nMore words.\n")
    assert book.glossary_page({paths[0]: notebooks[paths[0]]}, str) is None


def test_remote_images_become_links_so_the_book_loads_nothing_from_outside():
    text = ("[![Open In Colab](https://colab.example/badge.svg)](https://colab.example/nb) and "
            '<img src="https://x.example/a.png" alt="a badge"> and ![local](figures/a.png)')
    assert book.offline_markdown(text) == ("[Open In Colab](https://colab.example/nb) and a badge "
                                           "and ![local](figures/a.png)")


def test_links_to_repository_files_work_in_the_book(tmp_path):
    repo, src = tmp_path / "repo", tmp_path / "src"
    (repo / "binder").mkdir(parents=True)
    (repo / "binder" / "apt.txt").write_text("openclipart-svg\n")
    (src / "docs").mkdir(parents=True)
    (src / "docs" / "other.md").write_text("# Other\n")
    text = ("[a](other.md#part) [b](../README.md#the-notebooks) [c](../binder/apt.txt) "
            "[d](../binder/gone.txt) [`tests/`](../tests/) [e](#here) [f](https://x.example/g.md)")
    assert book.local_links(text, "docs/page.md", repo, src) == (
        "[a](other.md#part) [b](../index.md) [c](../binder/apt.txt) d (`binder/gone.txt`) "
        "`tests/` [e](#here) [f](https://x.example/g.md)")
    assert (src / "binder" / "apt.txt").read_text() == "openclipart-svg\n"  # a download in the book
    assert book.local_links("[n](notebooks/01_a.ipynb)", "index.md", None, src) == \
        "n (`notebooks/01_a.ipynb`)"


def test_figure_files_no_notebook_shows_get_a_page(tmp_path):
    shown, unshown = b"\x89PNG shown", b"\x89PNG not shown"
    for name, data in (("a_shown.png", shown), ("b_unshown.png", unshown)):
        (tmp_path / "figures" / "01_first").mkdir(parents=True, exist_ok=True)
        (tmp_path / "figures" / "01_first" / name).write_bytes(data)
    out = {"output_type": "display_data", "metadata": {},
           "data": {"image/png": base64.b64encode(shown).decode()}}
    nb = _write(tmp_path / "notebooks" / "01_first.ipynb", _notebook([_code(1, [out])]))
    assert book.extra_figures(tmp_path, {nb: json.loads(nb.read_text())}) == \
        [tmp_path / "figures" / "01_first" / "b_unshown.png"]


def test_docs_pages_follow_the_readme_reading_list_then_its_links():
    docs = [Path("docs") / n for n in ("a.md", "b.md", "c.md", "d.md")]
    readme = ("see [c](docs/c.md#part), then [a](docs/a.md), [c again](docs/c.md), [x](docs/x.md)\n"
              "| page | what |\n| --- | --- |\n| [d](docs/d.md) | d |\n| [x](docs/x.md) | x |\n")
    assert [p.name for p in book.docs_order(readme, docs)] == ["d.md", "c.md", "a.md", "b.md"]


def test_ue_book_errors_a_user_can_cause_are_one_line(tmp_path, capsys):
    assert main(["book", str(tmp_path / "nowhere")]) == 2
    assert capsys.readouterr().err == (f"ue book: error: {tmp_path / 'nowhere'} is not a folder; "
                                       f"give a run folder made by `ue run --out`\n")
    assert main(["book", str(tmp_path)]) == 2
    assert capsys.readouterr().err == (f"ue book: error: {tmp_path} is not a run folder (no "
                                       f"run.json, no notebooks/); give the folder `ue run --out` wrote\n")
    (tmp_path / "run.json").write_text("{}")
    _write(tmp_path / "notebooks" / "01_a.ipynb", _notebook([_code(None)]))
    assert main(["book", str(tmp_path), "--out", str(tmp_path / "site")]) == 2
    assert capsys.readouterr().err == (f"ue book: error: {tmp_path / 'notebooks'} holds no executed "
                                       f"notebook; run them first: ue run --out {tmp_path}\n")
    assert not (tmp_path / "site").exists()
    _write(tmp_path / "notebooks" / "01_a.ipynb", _notebook([_code(1)]))
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "mine.txt").write_text("keep me")
    assert main(["book", str(tmp_path), "--out", str(tmp_path / "site")]) == 2
    assert capsys.readouterr().err == (f"ue book: error: {tmp_path / 'site'} exists and is not a book "
                                       f"made by `ue book`; choose another --out, or remove that folder\n")
    assert (tmp_path / "site" / "mine.txt").read_text() == "keep me"
    (tmp_path / "run.json").write_text("{garbled")
    assert main(["book", str(tmp_path), "--out", str(tmp_path / "book")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"ue book: error: {tmp_path / 'run.json'} is not readable (") and \
        err.endswith(f"); run `ue run --out {tmp_path}` again to rewrite it, or move it aside\n")
    assert err.count("\n") == 1


def test_ue_book_builds_a_hand_made_run_quietly_and_rebuilds_over_its_own_book(tmp_path, capsys,
                                                                               monkeypatch):
    run, repo = tmp_path / "run", tmp_path / "repo"
    (repo / "docs").mkdir(parents=True)
    (repo / "README.md").write_text("# Project\n\nLead.\n\n## Idea\n\nIt.\n\n## Usage section\n\n"
                                    "[guide](docs/guide.md)\n")
    (repo / "docs" / "guide.md").write_text("# Guide\n\nSee [the code](../code.py) and [run](../run.md).\n")
    (repo / "code.py").write_text("print(1)\n")
    monkeypatch.setattr(book, "repository_root", lambda: repo)
    png = {"output_type": "display_data", "metadata": {},
           "data": {"image/png": base64.b64encode(_tiny_png()).decode(), "text/plain": "<Figure>"}}
    _write(run / "notebooks" / "01_first.ipynb", _notebook([
        _md("# 01 · First\n\nWith $x^2$."), _code(1, [png]), _md("## Glossary\n| a | b |\n| - | - |")]))
    _write(run / "notebooks" / "02_second.ipynb", _notebook([_md("# 02 · Second"), _code(1)]))
    (run / "figures" / "02_second").mkdir(parents=True)
    (run / "figures" / "02_second" / "unshown.png").write_bytes(_tiny_png((0, 0, 255)))
    (run / "run.json").write_text(json.dumps({"profile": "smoke", "seconds": {"01_first": 1.0}}))
    for _ in range(2):  # the second build replaces the first
        assert main(["book", str(run)]) == 0
        out = capsys.readouterr()
        assert re.fullmatch(rf"book: {re.escape(str(run / 'book' / 'index.html'))} \(7 pages, "
                            rf"[0-9.]+ s\)\n", out.out) and out.err == ""
    site = run / "book"
    assert (site / ".nojekyll").is_file() and not list(run.glob(".book*"))  # no half-made book left
    assert [p.name for p in sorted(site.glob("*.html"))] == [
        "figures.html", "genindex.html", "glossary.html", "index.html", "run.html", "search.html"]
    assert "unshown.png" in (site / "figures.html").read_text()
    assert 'href="../_downloads/' in (site / "docs" / "guide.html").read_text()
    front = (site / "index.html").read_text()
    assert "Lead." in front and "Usage section" not in front  # the introduction only
    assert "1.0 s" in (site / "run.html").read_text()
    assert "mathjax/tex-chtml.js" in (site / "notebooks" / "01_first.html").read_text()
    assert not re.search(r"(src|href)=\"https?://", "".join(p.read_text() for p in site.rglob("*.html")))


def test_ue_help_lists_book_and_ctrl_c_in_it_is_one_line(tmp_path, capsys, monkeypatch):
    with pytest.raises(SystemExit):
        main(["--help"])
    assert re.search(r"^ +book +\S", capsys.readouterr().out, re.M)  # the subcommand's own line

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("ue_lib.cli.build_book", interrupted)
    assert main(["book", str(tmp_path)]) == 130
    assert capsys.readouterr().err == "ue book: error: interrupted; run the same command again to resume\n"


# --------------------------------------------------------------------------- the browser check

def _need_browser() -> None:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.is_file()]
    if missing:
        reason = (f"the book's browser test needs Debian's chromium and chromium-driver: "
                  f"{', '.join(missing)} not found (apt-get install chromium chromium-driver; "
                  f".ci/run installs them)")
        if os.environ.get("CI"):
            pytest.fail(reason)  # CI must run it
        pytest.skip(reason)


class _Handler(SimpleHTTPRequestHandler):
    def log_request(self, code="-", size="-"):
        self.server.requests.append((self.path, int(code)))

    def log_message(self, *args):  # quiet
        pass

    def end_headers(self):  # no conditional requests (304): every visit is served, with 200
        self.send_header("Cache-Control", "no-store")
        super().end_headers()


@contextmanager
def serve(folder: Path):
    """Serve `folder` on 127.0.0.1 (an ephemeral port, in a thread); yield the server, whose
    `requests` lists every request's (path, status)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Handler, directory=str(folder)))
    server.requests = []
    server.base = f"http://127.0.0.1:{server.server_address[1]}/"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


@contextmanager
def chromium(profile_dir: Path, monkeypatch):
    """Debian's headless Chromium under its own chromedriver: selenium-manager is never run
    (it would download a driver), and the browser does no background networking."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.selenium_manager import SeleniumManager

    def no_download(*args, **kwargs):
        raise AssertionError("selenium-manager was called: it may download a browser or driver")

    monkeypatch.setattr(SeleniumManager, "binary_paths", no_download)
    monkeypatch.setenv("SE_OFFLINE", "true")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1280,1000", f"--user-data-dir={profile_dir}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


@dataclass
class SiteCheck:
    pages: list[str] = field(default_factory=list)
    links: set[str] = field(default_factory=set)
    images: int = 0
    problems: list[str] = field(default_factory=list)


IMAGES_JS = ("return Array.from(document.images).map(i => [i.getAttribute('src'), i.complete, "
             "i.naturalWidth]);")
LINKS_JS = "return Array.from(document.querySelectorAll('a[href]')).map(a => a.href);"


def _status(server, path: str) -> int | None:
    codes = [code for p, code in server.requests if p.split("?")[0].split("#")[0] == path]
    return codes[-1] if codes else None


def _visit(driver, server, url: str, check: SiteCheck) -> None:
    page = url[len(server.base):] or "index.html"
    driver.get(url)
    check.pages.append(page)
    status = _status(server, "/" + page)
    if status != 200 or "Error response" in driver.title:
        check.problems.append(f"page {page}: status {status}, title {driver.title!r}")
        return
    for src, complete, width in driver.execute_script(IMAGES_JS):
        check.images += 1
        if not (complete and width > 0):
            check.problems.append(f"{page}: image {src} did not load")
    check.links.update(h for h in driver.execute_script(LINKS_JS) if h.startswith(server.base))


def _check_links(server, check: SiteCheck) -> None:
    """Every internal link resolves (its page is served, with status 200) and its #anchor is
    an id on that page."""
    texts = {}
    for link in sorted(check.links):
        target, _, anchor = link.partition("#")
        if target not in texts:
            try:
                with urllib.request.urlopen(target, timeout=30) as response:
                    texts[target] = response.read().decode("utf-8", "replace")
            except urllib.error.HTTPError as exc:
                texts[target] = None
                check.problems.append(f"link {target[len(server.base):]}: status {exc.code}")
        if anchor and texts[target] is not None and not re.search(
                rf"\b(id|name)=[\"']{re.escape(anchor)}[\"']", texts[target]):
            check.problems.append(f"link {link[len(server.base):]}: no #{anchor} on that page")


def _outside_requests(driver, server) -> list[str]:
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message.get("method") == "Network.requestWillBeSent":
            url = message["params"]["request"]["url"]
            if not url.startswith(server.base) and not url.startswith(LOCAL):
                urls.append(url)
    return urls


def check_site(driver, server, screenshot: Path | None = None) -> SiteCheck:
    """Open the front page, follow every link of the table of contents (`.bd-docs-nav`), check
    each page loaded (status 200, not an error page), every <img> on it loaded, every internal
    link resolves and no request left the site; screenshot the first notebook page with a
    figure, scrolled to that figure."""
    check = SiteCheck()
    _visit(driver, server, server.base + "index.html", check)
    toc = list(dict.fromkeys(a.get_attribute("href").partition("#")[0] for a in
                             driver.find_elements("css selector", ".bd-docs-nav a[href]")))
    for url in toc:
        if url[len(server.base):] in check.pages:  # the front page is in the TOC too
            continue
        _visit(driver, server, url, check)
        figure = driver.find_elements("css selector", "div.cell_output img")
        if screenshot is not None and figure and not screenshot.exists():
            driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", figure[0])
            driver.save_screenshot(str(screenshot))
    check.problems += [f"request outside the book: {u}" for u in _outside_requests(driver, server)]
    _check_links(server, check)
    check.problems += [f"{path}: status {code}" for path, code in server.requests  # the rest
                       if code >= 400 and path != "/favicon.ico"  # the browser's own guess
                       and not any(path.lstrip("/") in p for p in check.problems)]
    return check


def _tiny_png(color=(200, 30, 30)) -> bytes:
    from io import BytesIO

    from PIL import Image

    buf = BytesIO()
    Image.new("RGB", (4, 3), color).save(buf, format="PNG")
    return buf.getvalue()


def _png(path: Path) -> None:
    path.write_bytes(_tiny_png())


def test_the_browser_check_fails_on_a_missing_image_a_broken_link_and_a_missing_page(tmp_path, monkeypatch):
    _need_browser()
    site = tmp_path / "site"
    site.mkdir()
    nav = ('<nav class="bd-docs-nav"><a href="a.html">A</a> <a href="b.html">B</a> '
           '<a href="c.html">C</a></nav>')
    (site / "index.html").write_text(f"<html><head><title>Home</title></head><body>{nav}</body></html>")
    (site / "a.html").write_text('<html><body><h1 id="top">A</h1><img src="ok.png">'
                                 '<a href="missing.html">x</a> <a href="b.html#top">y</a></body></html>')
    (site / "b.html").write_text('<html><body><img src="gone.png"></body></html>')
    _png(site / "ok.png")
    with serve(site) as server, chromium(tmp_path / "profile", monkeypatch) as driver:
        check = check_site(driver, server)
    assert check.pages == ["index.html", "a.html", "b.html", "c.html"]
    assert check.images == 2
    assert sorted(check.problems) == sorted([
        "page c.html: status 404, title 'Error response'",
        "b.html: image gone.png did not load",
        "link missing.html: status 404",
        "link c.html: status 404",
        "link b.html#top: no #top on that page"])


def test_the_smoke_book_in_a_real_browser(smoke_run, tmp_path, monkeypatch, capsys):
    _need_browser()
    built = book.build_book(smoke_run, tmp_path / "book")
    assert (tmp_path / "book" / ".nojekyll").is_file()
    assert (tmp_path / "book" / "_static" / "mathjax" / book.MATHJAX_SCRIPT).is_file()
    shot = tmp_path / "book.png"
    with serve(tmp_path / "book") as server, chromium(tmp_path / "profile", monkeypatch) as driver:
        check = check_site(driver, server, screenshot=shot)
    figures = len(list((smoke_run / "figures").glob("*/*.png")))
    with capsys.disabled():
        print(f"\nbook in Chromium: {len(check.pages)} pages, {len(check.links)} internal links, "
              f"{check.images} images checked; built in {built.seconds:.1f} s; screenshot {shot}")
    assert check.problems == []
    notebooks = sorted(p.stem for p in (smoke_run / "notebooks").glob("[0-9]*.ipynb"))
    assert [p for p in check.pages if p.startswith("notebooks/")] == \
        [f"notebooks/{n}.html" for n in notebooks]
    assert {"glossary.html", "run.html", "docs/book.html"} <= set(check.pages)
    assert check.images >= figures > 0
    assert shot.is_file() and shot.stat().st_size > 10_000
    if os.environ.get("UE_BOOK_SCREENSHOT"):
        shutil.copyfile(shot, os.environ["UE_BOOK_SCREENSHOT"])
