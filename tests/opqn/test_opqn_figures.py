"""OPQN's figures (`ue_lib.opqn.figures`)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.colors import to_hex  # noqa: E402

from ue_lib import palette  # noqa: E402
from ue_lib.io import RESULT_COLUMNS  # noqa: E402
from ue_lib.opqn import figures as opqn_figures  # noqa: E402
from ue_lib.opqn.loss import dct_codebooks


def _hex(color) -> str:
    return to_hex(color, keep_alpha=False)


def test_bits_plot_draws_each_index_in_its_palette_colour(monkeypatch):
    for name, color in {"float": "#111111", "pq": "#121212", "opqn": "#131313"}.items():
        monkeypatch.setitem(palette.PALETTE, name, color)
    rows = pd.DataFrame([{"notebook": "t", "model": m, "method": f"{b} bits", "domain": "orl seen",
                          "split": "test", "metric": metric, "value": 0.5 + 0.01 * b / 16 + 0.001 * s,
                          "seed": s, "epoch": 1}
                         for m in ("float", "pq", "opqn") for b in (16, 32) for s in (0, 1)
                         for metric in ("map@all", "recall@1")], columns=RESULT_COLUMNS)
    fig = opqn_figures.bits_plot(rows)
    ax = fig.axes[0]
    lines = {_hex(line.get_color()) for line in ax.get_lines()}
    assert {"#111111", "#121212", "#131313"} <= lines
    # each budget's own float (each trains its own network): a dashed line through both budgets
    floats = [line for line in ax.get_lines() if _hex(line.get_color()) == "#111111"
              and line.get_linestyle() == "--"]
    assert len(floats) == 1 and np.allclose(floats[0].get_ydata(), [0.5105, 0.5205])
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["float", "pq", "opqn"]
    plt.close("all")


def test_codebook_figure_shows_orthonormal_codebooks():
    fig = opqn_figures.codebook_figure(dct_codebooks(8, 4, 3))
    gram = fig.axes[-1].get_images()[0].get_array()
    np.testing.assert_allclose(gram, np.eye(4), atol=1e-5)
    assert fig.axes[0].get_title() == "C_1 = Φ's first K columns\n(8 × 4)"
    assert fig.axes[1].get_title() == "C_2 = Φ C_1\n(8 × 4)"  # how each is made, as the text says
    plt.close("all")
