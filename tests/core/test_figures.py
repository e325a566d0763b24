"""Generic figures and the palette (`ue_lib.figures`, `ue_lib.palette`): every plot draws its models
and domains in the palette's colours (checked by replacing entries with sentinel colours and
reading them back from the drawn artists), and the paired differences."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.colors import to_hex  # noqa: E402

from ue_lib import figures, palette  # noqa: E402
from ue_lib.data import LOADERS  # noqa: E402
from ue_lib.io import RESULT_COLUMNS  # noqa: E402
from ue_lib.losses import DISTILLATION_LOSSES  # noqa: E402
from ue_lib.objects.settings import CONDITIONS, condition_name  # noqa: E402
from ue_lib.profiles import Profile  # noqa: E402


def _hex(color) -> str:
    return to_hex(color, keep_alpha=False)


def _rows(values: dict) -> pd.DataFrame:
    """Result rows from {(model, method, domain, seed): value} (test split, recall@1), named
    'distill:<method>' for the distilled students (their `model_name`)."""
    rows = [{"notebook": "t", "model": m, "method": meth, "domain": d, "split": "test",
             "metric": "recall@1", "value": v, "seed": s, "epoch": 1,
             "model_name": f"{m}:{meth}" if m == "distill" else m}
            for (m, meth, d, s), v in values.items()]
    return pd.DataFrame(rows, columns=RESULT_COLUMNS + ["model_name"])


# ----------------------------------------------------------------------------- the palette

def test_palette_covers_every_model_label_with_fixed_hex_colours():
    expected = {"specialist", "naive", "teacher"} | {f"distill:{m}" for m in DISTILLATION_LOSSES}
    indexes = {"float", "pq", "opq", "ivfpq", "opqn",  # notebook 06
               "kl float", "kl pq", "kl opq", "kl ivfpq"}
    rungs = set(Profile().sgml_ladder)  # notebook 07: the ladder and the students of its teachers
    students = {"kl ← specialists"} | {f"kl ← {r}" for r in rungs - {"multi-similarity"}}
    guided = {condition_name(f"student_{m}") for m in DISTILLATION_LOSSES}  # notebook 08, any guide
    conditions = set(CONDITIONS.values()) | guided
    explorer = ("specialist", "naive", "distill:kl", "kl compressed")  # notebook 04's explorer
    assert set(palette.PALETTE) == expected | indexes | rungs | students | conditions | set(explorer)
    assert len({palette.PALETTE[k] for k in explorer}) == len(explorer)  # drawn together there
    named = [palette.PALETTE[k] for k in CONDITIONS.values()]  # drawn together in notebook 08
    assert len(set(named)) == len(named)
    assert all(len(c) == 7 and c.startswith("#") for c in palette.PALETTE.values())
    assert palette.PALETTE["teacher"] == palette.PALETTE["specialist"]
    others = [c for k, c in palette.PALETTE.items() if k in expected and k != "teacher"]
    assert len(set(others)) == len(others)  # the kl student shares its colour with no model
    index_colors = [palette.PALETTE[k] for k in indexes]  # drawn together in notebook 06 only
    assert len(set(index_colors)) == len(index_colors)


def test_model_color_names_the_unknown_label_and_the_known_ones():
    assert palette.model_color("distill:kl") == palette.PALETTE["distill:kl"]
    with pytest.raises(KeyError) as err:
        palette.model_color("distill:nope")
    message = str(err.value)
    assert "'distill:nope'" in message and "known labels: specialist, teacher, naive, distill:kl" in message


def test_domain_colours_are_fixed_distinct_and_fall_back_by_checksum():
    assert set(palette.DOMAIN_COLORS) == set(LOADERS)
    assert len(set(palette.DOMAIN_COLORS.values())) == len(palette.DOMAIN_COLORS)
    assert palette.domain_color("omniglot") == "#117733"
    # CRC-32 ("domain A") % 8 == 2: the same in every process, unlike hash()
    assert palette.domain_color("domain A") == palette._FALLBACK_COLORS[2] == "#AA3377"
    assert palette.domain_color("folder:/data/x") in palette._FALLBACK_COLORS


def test_fixed_rounds_before_formatting_and_signs_with_a_minus():
    assert [palette.fixed(v, sign=True) for v in (0.0123, -0.0041, -0.0004, 0.0, 0.0004)] == \
        ["+0.012", "−0.004", "0.000", "0.000", "0.000"]
    assert palette.fixed(-0.00049, 3) == "0.000"
    assert palette.fixed(0.587, 2) == "0.59"
    assert palette.fixed(float("nan")) == "n/a"


# ----------------------------------------------------------------------------- comparisons

def test_bars_colour_each_model_label_from_the_palette(sentinels):
    r = _rows({("specialist", "t", d, s): 0.5 for d in "xy" for s in (0, 1)}
              | {("naive", "t", d, s): 0.4 for d in "xy" for s in (0, 1)}
              | {("distill", "kl", d, s): 0.45 for d in "xy" for s in (0, 1)})
    ax = figures.bars(r).axes[0]
    colours = [{_hex(p.get_facecolor()) for p in c.patches} for c in ax.containers]
    assert colours == [{"#010101"}, {"#020202"}, {"#040404"}]


def _pairs() -> pd.DataFrame:
    """naive and two other models on domains x (2 seeds) and y (1 seed; kl also on an unpaired
    seed 5)."""
    return _rows({("naive", "t", "x", 0): 0.50, ("naive", "t", "x", 1): 0.60,
                  ("distill", "kl", "x", 0): 0.55, ("distill", "kl", "x", 1): 0.70,
                  ("specialist", "t", "x", 0): 0.48, ("specialist", "t", "x", 1): 0.60,
                  ("naive", "t", "y", 0): 0.30, ("distill", "kl", "y", 0): 0.2996,
                  ("distill", "kl", "y", 5): 0.90, ("specialist", "t", "y", 0): 0.312})


def test_paired_differences_pair_on_domain_and_seed():
    d = figures.paired_differences(_pairs(), "naive")
    assert list(d.columns) == ["domain", "label", "mean", "std", "n"]
    assert list(zip(d.domain, d.label)) == [("x", "distill:kl"), ("x", "specialist"),
                                            ("y", "distill:kl"), ("y", "specialist")]
    # x: kl - naive = 0.05, 0.10; specialist - naive = -0.02, 0.00; y: one seed each
    np.testing.assert_allclose(d["mean"], [0.075, -0.01, -0.0004, 0.012], atol=1e-12)
    np.testing.assert_allclose(d["std"][:2], [np.sqrt(2 * 0.025 ** 2), np.sqrt(2 * 0.01 ** 2)])
    assert d["std"][2:].isna().all()
    assert list(d.n) == [2, 2, 1, 1]
    with pytest.raises(KeyError, match="'teacher'"):
        figures.paired_differences(_pairs(), "teacher")


def test_differences_draw_dots_intervals_and_signed_values_in_palette_colours(sentinels):
    ax = figures.differences(_pairs(), "naive").axes[0]
    zero = [ln for ln in ax.lines if list(ln.get_xdata()) == [0, 0]]
    assert [_hex(ln.get_color()) for ln in zero] == ["#020202"]
    dots = {_hex(ln.get_color()): list(ln.get_xdata()) for ln in ax.lines if ln.get_marker() == "o"}
    np.testing.assert_allclose(dots["#040404"], [0.075, -0.0004])
    np.testing.assert_allclose(dots["#010101"], [-0.01, 0.012])
    bars = [(_hex(c.get_color()[0]), c.get_segments()) for c in ax.collections]
    assert [b[0] for b in bars] == ["#040404", "#010101"]  # one bar each: y has a single seed
    (kl_bar,) = bars[0][1]
    np.testing.assert_allclose(kl_bar[:, 0], [0.075 - np.sqrt(2) * 0.025, 0.075 + np.sqrt(2) * 0.025])
    assert sorted(t.get_text() for t in ax.texts) == sorted(["+0.075", "0.000", "−0.010", "+0.012"])
    lo, hi = ax.get_xlim()
    assert lo < -0.01 and hi > 0.075 + np.sqrt(2) * 0.025 and hi - lo < 0.2  # zoomed, not [-1, 1]


# ----------------------------------------------------------------------------- curves and sweeps

def test_learning_curves_colour_domains_and_their_stars(sentinels):
    h = pd.DataFrame([{"domain": d, "split": sp, "metric": "recall@1", "epoch": e,
                       "value": v + (0.1 if d == "y" else 0)}
                      for d in "xy" for sp in ("val", "test") for e, v in ((1, 0.2), (2, 0.5), (3, 0.4))])
    ax = figures.learning_curves(h, selected_epoch=2).axes[0]
    drawn = {_hex(ln.get_color()) for ln in ax.lines if len(ln.get_xdata()) == 3}
    assert drawn == {"#0a0a0a", "#0b0b0b"}
    stars = [(_hex(ln.get_color()), ln.get_xdata()[0], ln.get_ydata()[0])
             for ln in ax.lines if ln.get_marker() == "*"]
    assert stars == [("#0a0a0a", 2, 0.5), ("#0b0b0b", 2, 0.6)]


def _curves(values: dict, splits=("val", "test"), offset: float = 0.0) -> pd.DataFrame:
    """A history from {domain: [value at epoch 1, 2, ...]} (the test split 0.1 lower)."""
    return pd.DataFrame([{"domain": d, "split": sp, "metric": "recall@1", "epoch": e,
                          "value": v + offset - (0.1 if sp == "test" else 0)}
                         for d, vs in values.items() for sp in splits
                         for e, v in enumerate(vs, start=1)])


def _stars(ax) -> list:
    return [(_hex(ln.get_color()), ln.get_xdata()[0], ln.get_ydata()[0])
            for ln in ax.lines if ln.get_marker() == "*"]


def test_learning_curve_stars_sit_at_the_given_peaks_and_splits_differ_in_style(sentinels):
    h = _curves({"x": [0.5, 0.498, 0.4], "y": [0.3, 0.6, 0.55]})
    ax = figures.learning_curves(h, peaks={"x": 3, "y": 2}).axes[0]
    assert _stars(ax) == [("#0a0a0a", 3, 0.4), ("#0b0b0b", 2, 0.6)]
    curves = {(_hex(ln.get_color()), ln.get_linestyle()): ln for ln in ax.lines
              if len(ln.get_xdata()) == 3}
    assert set(curves) == {("#0a0a0a", "-"), ("#0a0a0a", "--"), ("#0b0b0b", "-"), ("#0b0b0b", "--")}
    val, test = curves["#0a0a0a", "-"], curves["#0a0a0a", "--"]
    np.testing.assert_allclose(test.get_ydata(), [0.4, 0.398, 0.3])
    assert val.get_marker() == "o" and test.get_marker() in (None, "None", "")
    assert test.get_linewidth() < val.get_linewidth() and test.get_alpha() < val.get_alpha()
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend[:4] == ["x", "y", "validation", "test"] and "validation peak (given)" in legend
    assert ax.get_legend().get_title().get_text() == "colour: domain; line: split"
    with pytest.raises(ValueError, match="peak epoch 7 of 'x'"):
        figures.learning_curves(h, peaks={"x": 7, "y": 2})


def test_learning_curve_stars_default_to_the_last_epoch_tied_with_the_maximum(sentinels):
    # x: 0.498 at epoch 2 is within 0.005 of the maximum 0.5 (epoch 1): the peak is epoch 2, the
    # tables' rule, not the first maximum; with a tolerance of 0.001 it is epoch 1
    h = _curves({"x": [0.5, 0.498, 0.4], "y": [0.3, 0.6, 0.55]})
    assert _stars(figures.learning_curves(h).axes[0]) == [("#0a0a0a", 2, 0.498), ("#0b0b0b", 2, 0.6)]
    assert _stars(figures.learning_curves(h, tolerance=0.001).axes[0])[0] == ("#0a0a0a", 1, 0.5)
    assert figures.last_tied_epoch(pd.Series([0.5, 0.498, 0.4], index=[2, 4, 6])) == 4
    only_test = figures.learning_curves(h, splits=("test",)).axes[0]
    assert _stars(only_test) == [] and {ln.get_linestyle() for ln in only_test.lines} == {"--"}


def test_curves_by_domain_draw_each_model_per_domain_with_its_selected_epoch(sentinels):
    naive = _curves({"x": [0.5, 0.4, 0.3], "y": [0.2, 0.3, 0.35]})
    kl = _curves({"x": [0.45, 0.5, 0.5], "y": [0.25, 0.35, 0.4]})
    fig = figures.curves_by_domain({"naive": naive, "distill:kl": kl},
                                   selected={"naive": 1, "distill:kl": 3})
    x_ax, y_ax = fig.axes
    assert [ax.get_title() for ax in fig.axes] == ["x", "y"]
    assert [_hex(ax.title.get_color()) for ax in fig.axes] == ["#0a0a0a", "#0b0b0b"]
    lines = {_hex(ln.get_color()): list(ln.get_ydata()) for ln in y_ax.lines if ln.get_marker() == "o"}
    assert lines == {"#020202": [0.2, 0.3, 0.35], "#040404": [0.25, 0.35, 0.4]}
    diamonds = [(_hex(ln.get_color()), ln.get_xdata()[0], ln.get_ydata()[0])
                for ln in x_ax.lines if ln.get_marker() == "D"]
    assert diamonds == [("#020202", 1, 0.5), ("#040404", 3, 0.5)]
    assert x_ax.get_ylim() == y_ax.get_ylim()
    lo, hi = x_ax.get_ylim()  # validation values only, padded by 5 % of their range
    assert lo == pytest.approx(0.2 - 0.015) and hi == pytest.approx(0.5 + 0.015)
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["naive", "distill:kl", "selected epoch"]


def test_curves_by_domain_wrap_after_five_panels_and_refuse_an_empty_metric(sentinels):
    h = _curves({f"d{i}": [0.1, 0.2] for i in range(7)}, splits=("val",))
    fig = figures.curves_by_domain({"naive": h})
    assert len(fig.axes) == 10 and sum(ax.axison for ax in fig.axes) == 7
    with pytest.raises(ValueError, match="no val map@r"):
        figures.curves_by_domain({"naive": h}, metric="map@r")


def test_pca_2d_orients_components_by_the_first_rows():
    x = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 0.5], [0.0, -0.5]])
    xy, explained = figures.pca_2d(x)
    assert explained == pytest.approx(1.0)
    np.testing.assert_allclose(np.abs(xy), [[1, 0], [1, 0], [0, 0.5], [0, 0.5]], atol=1e-12)
    assert xy[0, 0] > 0
    z = np.random.default_rng(0).standard_normal((20, 5))
    zy, _ = figures.pca_2d(z)
    assert (zy[0] > 0).all()
    np.testing.assert_allclose(figures.pca_2d(-z)[0], zy, atol=1e-10)  # whatever SVD's signs
    assert (figures.pca_2d(z, first=10)[0][:10].mean(0) > 0).all()


def test_knob_plot_colours_domains_draws_references_and_no_bar_for_one_seed(sentinels):
    rows = [{"notebook": "t", "model": "distill", "method": "kl", "domain": d, "split": "test",
             "metric": "recall@1", "value": v, "seed": s, "epoch": 1, "kl.temperature": t}
            for d, base in (("x", 0.5), ("y", 0.7))
            for t, s, v in ((0.05, 0, base), (0.05, 1, base + 0.1), (0.2, 0, base - 0.2))]
    ax = figures.knob_plot(pd.DataFrame(rows), "kl.temperature",
                         references={"naive": 0.45, "specialist": 0.65}).axes[0]
    means = {_hex(ln.get_color()): list(ln.get_ydata()) for ln in ax.lines if ln.get_marker() == "o"}
    np.testing.assert_allclose(means["#0a0a0a"], [0.55, 0.3])
    np.testing.assert_allclose(means["#0b0b0b"], [0.75, 0.5])
    refs = {_hex(ln.get_color()): ln.get_ydata()[0] for ln in ax.lines if ln.get_linestyle() == "--"}
    assert refs == {"#020202": 0.45, "#010101": 0.65}
    assert "naive (0.450)" in [t.get_text() for t in ax.get_legend().get_texts()]
    # one bar per domain: at 0.05 (two seeds), none at 0.2 (one seed)
    segments = [(_hex(c.get_color()[0]), c.get_segments()) for c in ax.collections]
    assert [(col, len(seg)) for col, seg in segments] == [("#0a0a0a", 1), ("#0b0b0b", 1)]
    np.testing.assert_allclose(segments[0][1][0][:, 1], [0.55 - 0.1 / np.sqrt(2), 0.55 + 0.1 / np.sqrt(2)])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0.05", "0.2"]


def test_a_label_registered_with_another_colour_is_refused(monkeypatch):
    monkeypatch.setattr(palette, "PALETTE", dict(palette.PALETTE))
    palette.register_colors({"naive": palette.PALETTE["naive"], "new model": "#123456"})
    assert palette.model_color("new model") == "#123456"
    with pytest.raises(ValueError, match="model labels with two colours: {'naive'"):
        palette.register_colors({"naive": "#000001"})
