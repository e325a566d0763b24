"""`ue profile`'s table: where each notebook's time goes and its compute floor, from hand-made
process records (the smoke run's own profile is checked in test_notebooks.py)."""

from __future__ import annotations

import json

import pytest

from ue_lib import profile_report
from ue_lib.timing import CATEGORIES


def _record(folder, tag, pid, seconds, flops):
    (folder / f"{tag}.{pid}.json").write_text(json.dumps(
        {"tag": tag, "pid": pid, "wall": 10.0, "waiting": 0.0, "seconds": seconds, "flops": flops}))


def test_the_table_sums_a_notebooks_processes_and_sets_its_flops_against_the_rate(tmp_path):
    _record(tmp_path, "06_x", 1, {"evaluation": 4.0, "training: backward": 1.0}, {"training": 3e9})
    _record(tmp_path, "06_x", 2, {"evaluation": 2.0}, {"evaluation": 1e9, "data": 2e9})
    _record(tmp_path, "07_y", 3, {"figures": 1.5}, {})
    (tmp_path / "broken.9.json").write_text("{")  # a half-written file is skipped
    processes = profile_report.read_profiles(tmp_path)
    assert len(processes) == 3
    rate = {"best_per_core": 50.0, "cores": 2, "machine": 100.0}
    table = profile_report.where_the_time_goes(processes, {"06_x": 20.0, "07_y": 3.0}, rate)
    six = table.iloc[0]
    assert six["processes"] == 2 and six["evaluation"] == 6.0 and six["training: backward"] == 1.0
    assert six["GFLOP"] == 6.0 and six["floor s"] == pytest.approx(0.06)
    assert six["wall / floor"] == pytest.approx(20.0 / 0.06)
    seven = table.iloc[1]
    assert seven["figures"] == 1.5 and seven["floor s"] == 0.0
    text = profile_report.markdown(table, rate)
    assert "| 06_x | 20 | 2 |" in text and "333×" in text and "50.0 GFLOP/s per core × 2 cores" in text
    assert all(c in text for c in CATEGORIES)


def test_the_gemm_rate_is_measured_at_each_size():
    rate = profile_report.gemm_rate(sizes=((8, 8, 8), (16, 16, 16)), seconds=0.01)
    assert set(rate["per_size"]) == {"8x8x8", "16x16x16"}
    assert rate["machine"] == rate["best_per_core"] * rate["cores"] > 0
