"""Result rows, atomic writes and sweep folders (`ue_lib.io`)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from ue_lib.io import RESULT_COLUMNS, read_sweep, result_rows


def test_result_rows_make_one_full_row_per_metric():
    rows = result_rows({"recall@1": 0.5, "map@r": 0.25}, notebook="01_x", model="naive",
                       method="ms", domain="glyphs", seed=2, epoch=7)
    assert rows == [
        {"notebook": "01_x", "model": "naive", "method": "ms", "domain": "glyphs", "split": "test",
         "metric": "recall@1", "value": 0.5, "seed": 2, "epoch": 7},
        {"notebook": "01_x", "model": "naive", "method": "ms", "domain": "glyphs", "split": "test",
         "metric": "map@r", "value": 0.25, "seed": 2, "epoch": 7}]
    assert list(rows[0]) == RESULT_COLUMNS
    assert result_rows({"recall@1_curve": 0.1}, notebook="n", model="m", method="k", domain="d",
                       seed=0, epoch=3, split="val")[0]["split"] == "val"
    assert result_rows({}, notebook="n", model="m", method="k", domain="d", seed=0, epoch=0) == []


def test_read_sweep_returns_the_grid_and_table_or_names_the_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"sweep.csv not found: run `ue sweep"):
        read_sweep(tmp_path)
    (tmp_path / "sweep.json").write_text(json.dumps({"params": {"kl.temperature": [0.05, 0.1]}}))
    pd.DataFrame({"seed": [0, 1], "value": [0.5, 0.6]}).to_csv(tmp_path / "sweep.csv", index=False)
    grid, table = read_sweep(tmp_path)
    assert grid == {"kl.temperature": [0.05, 0.1]} and table.value.tolist() == [0.5, 0.6]
