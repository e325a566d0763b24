"""Notebook 03's cell tagged `inline-losses` writes the kl, distance-MSE and embedding-MSE losses
out in a few lines of plain torch: run it here, with a stand-in profile, and check that its
losses are the library's (`ue_lib.losses`), on its own toy batch and on other batches."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from ue_lib.losses import make_distillation_loss

NOTEBOOK = (Path(__file__).resolve().parents[2] / "notebooks"
            / "03_absolute_vs_distribution_distillation.ipynb")
TAG = "inline-losses"


class _Profile:
    """Stands in for the notebook's `P` (the run's profile): only the kl settings are read."""

    @staticmethod
    def loss(name: str) -> dict:
        assert name == "kl"
        return {"temperature": 0.05, "neighbors": None, "direction": "teacher_student"}


@pytest.fixture(scope="module")
def cell() -> dict:
    """The namespace after running the tagged cell, with what it displayed under `shown`."""
    cells = [c for c in json.loads(NOTEBOOK.read_text(encoding="utf-8"))["cells"]
             if TAG in c.get("metadata", {}).get("tags", [])]
    assert len(cells) == 1 and cells[0]["cell_type"] == "code", f"one code cell tagged {TAG!r}"
    shown: list = []
    ns = {"P": _Profile(), "display": shown.append, "shown": shown}
    exec(compile("".join(cells[0]["source"]), f"{NOTEBOOK.name}[{TAG}]", "exec"), ns)
    return ns


def _library(s: torch.Tensor, t: torch.Tensor, tau: float) -> dict[str, float]:
    return {"kl": make_distillation_loss("kl", temperature=tau)(s, t).item(),
            "distance_mse": make_distillation_loss("distance_mse")(s, t).item(),
            "embedding_mse": make_distillation_loss("embedding_mse")(s, t).item()}


def test_the_cell_uses_the_profiles_temperature_and_a_toy_batch(cell):
    assert cell["tau"] == 0.05
    assert cell["toy_s"].shape == cell["toy_t"].shape == (6, 4)


def test_the_inline_losses_are_the_librarys_on_the_toy_batch(cell):
    expected = _library(cell["toy_s"], cell["toy_t"], 0.05)
    assert set(cell["inline"]) == set(expected) == set(cell["library"])
    for name, value in expected.items():
        assert cell["inline"][name] == pytest.approx(value, abs=1e-6)
        assert cell["library"][name] == pytest.approx(value, abs=1e-6)
    assert 0 < cell["inline"]["kl"] and 0 < cell["inline"]["distance_mse"]


def test_the_cell_shows_both_values_without_scientific_notation(cell):
    (table,) = cell["shown"]
    assert isinstance(table, pd.DataFrame)
    assert list(table["loss"]) == ["kl", "distance_mse", "embedding_mse"]
    text = table.to_string()
    assert "e-" not in text and "e+" not in text
    assert list(table["inline"]) == list(table["ue_lib.losses"])  # equal at the digits shown


@pytest.mark.parametrize("seed, b, dim, tau", [(1, 8, 4, 0.05), (2, 5, 4, 0.2), (3, 12, 16, 0.01)])
def test_the_inline_functions_are_the_librarys_on_other_batches(cell, seed, b, dim, tau):
    g = torch.Generator().manual_seed(seed)
    s, t = torch.randn(b, dim, generator=g), torch.randn(b, dim, generator=g)
    inline = {"kl": cell["kl_loss"](s, t, tau).item(), "distance_mse": cell["distance_mse"](s, t).item(),
              "embedding_mse": cell["embedding_mse"](s, t).item()}
    for name, value in _library(s, t, tau).items():
        assert inline[name] == pytest.approx(value, abs=1e-6), name
