"""`ue run`'s bookkeeping (`ue_lib.runner`) on two tiny notebooks that papermill executes: a
notebook that finished is skipped on a rerun only while its results file is the one it wrote,
and results.csv never merges a damaged file."""

from __future__ import annotations

import json

import nbformat
import pytest

from ue_lib.io import RESULT_COLUMNS
from ue_lib.runner import RunError, _done_record, _run_notebooks, list_notebooks
from ue_lib.spec import RunSpec

ROWS = 6
WRITE_RESULTS = f"""\
import csv
from pathlib import Path

folder = Path(out_dir)
(folder / "ran").mkdir(exist_ok=True)
with open(folder / "ran" / notebook, "a") as fh:  # one x per execution
    fh.write("x")
(folder / "results").mkdir(exist_ok=True)
with open(folder / "results" / f"{{notebook}}.csv", "w", newline="") as fh:
    csv.writer(fh).writerows([{RESULT_COLUMNS!r}] + [[notebook, "m", "ms", "A", "test", "recall@1",
                                                     i / 10, 0, 1] for i in range({ROWS})])
"""


def fake_notebooks(folder):
    """Two numbered notebooks (01_a, 02_b): the run parameters, then a cell writing ROWS result
    rows to results/<notebook>.csv and counting its executions in ran/<notebook>."""
    folder.mkdir()
    for name in ("01_a", "02_b"):
        nb = nbformat.v4.new_notebook()
        parameters = nbformat.v4.new_code_cell("\n".join(
            f"{n} = {v!r}" for n, v in {**RunSpec().to_parameters(), "notebook": ""}.items()))
        parameters.metadata["tags"] = ["parameters"]
        nb.cells = [parameters, nbformat.v4.new_code_cell(WRITE_RESULTS)]
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                     "language": "python"}
        nbformat.write(nb, str(folder / f"{name}.ipynb"))
    return list_notebooks(folder)


def test_a_damaged_results_file_runs_its_notebook_again(tmp_path):
    books, out = fake_notebooks(tmp_path / "notebooks"), tmp_path / "run"
    spec, log = RunSpec("smoke", str(out)), []
    assert len(_run_notebooks(books, spec, books[0].parent, log.append)) == 2 * ROWS
    undamaged = (out / "results.csv").read_text()
    damaged = out / "results" / "01_a.csv"
    lines = damaged.read_text().splitlines(keepends=True)
    for damage, says in [
        (lambda: damaged.write_text("".join(lines[:1 + ROWS // 2])),
         f"[1/2] 01_a: its results file changed since it ran ({ROWS} rows recorded, {ROWS // 2} "
         f"found): running it again"),
        (lambda: damaged.write_text("".join(lines[:3] + ["a,b,c,d,e,f,g,h,i,j,k\n"] + lines[3:])),
         f"[1/2] 01_a: its results file {damaged} cannot be read (Error tokenizing data. C error: "
         f"Expected 9 fields in line 4, saw 11) since it ran: running it again"),
        (damaged.unlink, f"[1/2] 01_a: its results file {damaged} is missing ({ROWS} rows "
                         f"recorded): running it again"),
    ]:
        damage()
        log.clear()
        _run_notebooks(books, spec, books[0].parent, log.append)
        assert says in log and "[2/2] 02_b: already done, skipped" in log
        assert (out / "results.csv").read_text() == undamaged
    assert (out / "ran" / "01_a").read_text() == "xxxx" and (out / "ran" / "02_b").read_text() == "x"
    log.clear()
    _run_notebooks(books, spec, books[0].parent, log.append)  # nothing changed: nothing runs
    assert log[:2] == ["[1/2] 01_a: already done, skipped", "[2/2] 02_b: already done, skipped"]

    # a notebook that is not run this time (`--only 02`) is never merged damaged
    damaged.write_text("".join(lines[:2]))
    with pytest.raises(RunError, match=r"^01_a: its results file changed since it ran \(6 rows "
                                       r"recorded, 1 found\); run notebook 01_a again"):
        _run_notebooks(books[1:], spec, books[0].parent, log.append)
    assert (out / "results.csv").read_text() == undamaged


def test_a_marker_of_an_older_ue_lib_means_run_again(tmp_path):
    marker = tmp_path / ".01_a.done"
    marker.write_text("0123abcd" * 8)  # the old marker: the digest alone
    assert _done_record(marker, "0123abcd" * 8) is None
    record = {"digest": "d", "results": {"rows": 3, "sha256": "e"}}
    marker.write_text(json.dumps(record))
    assert _done_record(marker, "d") == record and _done_record(marker, "other") is None
    assert _done_record(tmp_path / "none", "d") is None
