"""Figures: the fixed colours (every plot draws its models and domains in the `PALETTE` /
`DOMAIN_COLORS` colours: checked by replacing entries with sentinel colours and reading them back
from the drawn artists), the paired differences, the distance helpers and the diagram."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.colors import to_hex  # noqa: E402
from matplotlib.patches import FancyBboxPatch  # noqa: E402

from ue_lib import plots, report  # noqa: E402
from ue_lib.data import LOADERS, Domain, Split  # noqa: E402
from ue_lib.examples import kl_worked_example  # noqa: E402
from ue_lib.io import RESULT_COLUMNS  # noqa: E402
from ue_lib.losses import DISTILLATION_LOSSES  # noqa: E402
from ue_lib.profiles import Profile  # noqa: E402

SENTINEL = {"specialist": "#010101", "naive": "#020202", "teacher": "#030303",
            "distill:kl": "#040404", "distill:distance_mse": "#050505"}
DOMAIN_SENTINEL = {"x": "#0a0a0a", "y": "#0b0b0b", "domain A": "#0c0c0c", "domain B": "#0d0d0d"}


@pytest.fixture
def sentinels(monkeypatch):
    """PALETTE and DOMAIN_COLORS entries replaced by colours no default uses."""
    for name, color in SENTINEL.items():
        monkeypatch.setitem(plots.PALETTE, name, color)
    for name, color in DOMAIN_SENTINEL.items():
        monkeypatch.setitem(plots.DOMAIN_COLORS, name, color)
    monkeypatch.setattr(plots, "HIT", "#0e0e0e")
    monkeypatch.setattr(plots, "MISS", "#0f0f0f")
    yield
    plt.close("all")


def _hex(color) -> str:
    return to_hex(color, keep_alpha=False)


def _rows(values: dict) -> pd.DataFrame:
    """Result rows from {(model, method, domain, seed): value} (test split, recall@1)."""
    rows = [{"notebook": "t", "model": m, "method": meth, "domain": d, "split": "test",
             "metric": "recall@1", "value": v, "seed": s, "epoch": 1}
            for (m, meth, d, s), v in values.items()]
    return pd.DataFrame(rows, columns=RESULT_COLUMNS)


def _split(vectors, labels=None, features=None) -> Split:
    """Items whose images are the uint8 `vectors` (N, D) as (N, 1, 1, D) images."""
    images = np.asarray(vectors, dtype=np.uint8)[:, None, None, :]
    labels = np.arange(len(images)) if labels is None else labels
    return Split(images, labels, features=features)


def _domain(name: str, split: Split) -> Domain:
    return Domain(name, split, split, split, class_names=[str(c) for c in range(len(split))],
                  split_rule="test", provenance="test", license="none")


# ----------------------------------------------------------------------------- the palette

def test_palette_covers_every_model_label_with_fixed_hex_colours():
    expected = {"specialist", "naive", "teacher"} | {f"distill:{m}" for m in DISTILLATION_LOSSES}
    indexes = {"float", "pq", "opq", "opqn", "kl float", "kl pq", "kl opq"}  # notebook 06
    rungs = set(Profile().sgml_ladder)  # notebook 07: the ladder and the students of its teachers
    students = {"kl ← specialists"} | {f"kl ← {r}" for r in rungs - {"ms"}}
    guided = {f"student_{m}" for m in DISTILLATION_LOSSES}  # notebook 08, any guide
    conditions = set(report.CONDITIONS) | guided
    assert set(plots.PALETTE) == expected | indexes | rungs | students | conditions
    named = [plots.PALETTE[k] for k in report.CONDITIONS]  # drawn together in notebook 08
    assert len(set(named)) == len(named)
    assert all(len(c) == 7 and c.startswith("#") for c in plots.PALETTE.values())
    assert plots.PALETTE["teacher"] == plots.PALETTE["specialist"]
    others = [c for k, c in plots.PALETTE.items() if k in expected and k != "teacher"]
    assert len(set(others)) == len(others)  # the kl student shares its colour with no model
    index_colors = [plots.PALETTE[k] for k in indexes]  # drawn together in notebook 06 only
    assert len(set(index_colors)) == len(index_colors)


def test_model_color_names_the_unknown_label_and_the_known_ones():
    assert plots.model_color("distill:kl") == plots.PALETTE["distill:kl"]
    with pytest.raises(KeyError) as err:
        plots.model_color("distill:nope")
    message = str(err.value)
    assert "'distill:nope'" in message and "known labels: specialist, teacher, naive, distill:kl" in message


def test_domain_colours_are_fixed_distinct_and_fall_back_by_checksum():
    assert set(plots.DOMAIN_COLORS) == set(LOADERS)
    assert len(set(plots.DOMAIN_COLORS.values())) == len(plots.DOMAIN_COLORS)
    assert plots.domain_color("omniglot") == "#117733"
    # CRC-32 ("domain A") % 8 == 2: the same in every process, unlike hash()
    assert plots.domain_color("domain A") == plots._FALLBACK_COLORS[2] == "#AA3377"
    assert plots.domain_color("folder:/data/x") in plots._FALLBACK_COLORS


def test_fixed_rounds_before_formatting_and_signs_with_a_minus():
    assert [plots.fixed(v, sign=True) for v in (0.0123, -0.0041, -0.0004, 0.0, 0.0004)] == \
        ["+0.012", "−0.004", "0.000", "0.000", "0.000"]
    assert plots.fixed(-0.00049, 3) == "0.000"
    assert plots.fixed(0.587, 2) == "0.59"
    assert plots.fixed(float("nan")) == "n/a"


# ----------------------------------------------------------------------------- comparisons

def test_bars_colour_each_model_label_from_the_palette(sentinels):
    r = _rows({("specialist", "t", d, s): 0.5 for d in "xy" for s in (0, 1)}
              | {("naive", "t", d, s): 0.4 for d in "xy" for s in (0, 1)}
              | {("distill", "kl", d, s): 0.45 for d in "xy" for s in (0, 1)})
    ax = plots.bars(r).axes[0]
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
    d = plots.paired_differences(_pairs(), "naive")
    assert list(d.columns) == ["domain", "label", "mean", "std", "n"]
    assert list(zip(d.domain, d.label)) == [("x", "distill:kl"), ("x", "specialist"),
                                            ("y", "distill:kl"), ("y", "specialist")]
    # x: kl - naive = 0.05, 0.10; specialist - naive = -0.02, 0.00; y: one seed each
    np.testing.assert_allclose(d["mean"], [0.075, -0.01, -0.0004, 0.012], atol=1e-12)
    np.testing.assert_allclose(d["std"][:2], [np.sqrt(2 * 0.025 ** 2), np.sqrt(2 * 0.01 ** 2)])
    assert d["std"][2:].isna().all()
    assert list(d.n) == [2, 2, 1, 1]
    with pytest.raises(KeyError, match="'teacher'"):
        plots.paired_differences(_pairs(), "teacher")


def test_differences_draw_dots_intervals_and_signed_values_in_palette_colours(sentinels):
    ax = plots.differences(_pairs(), "naive").axes[0]
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
    ax = plots.learning_curves(h, selected_epoch=2).axes[0]
    drawn = {_hex(ln.get_color()) for ln in ax.lines if len(ln.get_xdata()) == 3}
    assert drawn == {"#0a0a0a", "#0b0b0b"}
    stars = [(_hex(ln.get_color()), ln.get_xdata()[0], ln.get_ydata()[0])
             for ln in ax.lines if ln.get_marker() == "*"]
    assert stars == [("#0a0a0a", 2, 0.5), ("#0b0b0b", 2, 0.6)]


def test_knob_plot_colours_domains_draws_references_and_no_bar_for_one_seed(sentinels):
    rows = [{"notebook": "t", "model": "distill", "method": "kl", "domain": d, "split": "test",
             "metric": "recall@1", "value": v, "seed": s, "epoch": 1, "kl.temperature": t}
            for d, base in (("x", 0.5), ("y", 0.7))
            for t, s, v in ((0.05, 0, base), (0.05, 1, base + 0.1), (0.2, 0, base - 0.2))]
    ax = plots.knob_plot(pd.DataFrame(rows), "kl.temperature",
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


# ----------------------------------------------------------------------------- embeddings

# (1, 0), (0, 1), (1, 1) and (1, 0.498) as uint8 images
CORNERS = [[255, 0], [0, 255], [255, 255], [255, 127]]


def test_pairwise_distances_of_normalised_embeddings_in_pair_order():
    d = plots.pairwise_distances(torch.nn.Flatten(), _split(CORNERS), np.array([0, 1, 2]))
    half = 2 - np.sqrt(2)  # (1, 0) vs (1, 1)/sqrt(2): 2 - 2 cos 45°
    np.testing.assert_allclose(d, [2.0, half, half], atol=1e-6)


def test_pairwise_distances_use_cached_features_for_a_feature_model():
    class OnFeatures(torch.nn.Flatten):
        takes_features = True

    features = np.array([[[[1.0, 0.0]]], [[[-1.0, 0.0]]], [[[0.0, 2.0]]]], dtype=np.float32)
    split = _split(CORNERS[:3], features=features)  # the images would give (2, 0.59, 0.59)
    np.testing.assert_allclose(plots.pairwise_distances(OnFeatures(), split, np.arange(3)),
                               [4.0, 2.0, 2.0], atol=1e-6)


def test_teacher_distance_histograms_colour_each_domain_and_state_its_median(sentinels):
    doms = {"x": _domain("x", _split(CORNERS[:3])), "y": _domain("y", _split(CORNERS))}
    fig = plots.teacher_distance_histograms({"x": torch.nn.Flatten(), "y": torch.nn.Flatten()}, doms)
    for ax, name in zip(fig.axes, "xy"):
        assert {_hex(p.get_facecolor()) for p in ax.patches} == {DOMAIN_SENTINEL[name]}
    # x: 2, 0.586, 0.586; y adds (1, 0.498): 0.210, 1.108, 0.104 -> median 0.586 and 0.586
    assert [ax.get_title(loc="left") for ax in fig.axes] == ["x: median 0.59 (3 pairs)",
                                                           "y: median 0.59 (6 pairs)"]
    assert fig.axes[0].get_xlim() == fig.axes[1].get_xlim()


def test_distance_scatter_colours_students_and_writes_spearman(sentinels):
    stretch = torch.nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        stretch.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 3.0]]))  # y three times longer
    fig = plots.distance_scatter({"x": torch.nn.Flatten()},
                                 {"kl": torch.nn.Flatten(),
                                  "distance_mse": torch.nn.Sequential(torch.nn.Flatten(), stretch)},
                                 {"x": _domain("x", _split(CORNERS))})
    kl_ax, mse_ax = fig.axes
    assert _hex(kl_ax.collections[0].get_facecolor()[0]) == "#040404"
    assert _hex(mse_ax.collections[0].get_facecolor()[0]) == "#050505"
    assert [t.get_text() for t in kl_ax.texts] == ["ρ = 1.00"]  # the same embedding
    # pairs 01 02 03 12 13 23: teacher ranks 6 3.5 2 3.5 5 1, stretched student's 6 5 4 2 3 1;
    # Pearson correlation of the ranks = 14 / sqrt(17 * 17.5) = 0.6377
    assert [t.get_text() for t in mse_ax.texts] == ["ρ = 0.64"]


def test_projection_colours_domains_and_carries_the_pca_caveat(sentinels):
    doms = {"x": _domain("x", _split(CORNERS)), "y": _domain("y", _split(CORNERS[::-1]))}
    fig = plots.projection(torch.nn.Flatten(), doms, per_domain=4)
    ax = fig.axes[0]
    colours = [_hex(c) for c in ax.collections[0].get_facecolors()]
    assert colours == ["#0a0a0a"] * 4 + ["#0b0b0b"] * 4
    assert any("not retrieval quality" in t.get_text() for t in fig.texts)


def test_retrieval_gallery_borders_are_the_hit_and_miss_colours(sentinels):
    labels = np.array([0, 0, 1, 1])
    fig = plots.retrieval_gallery(torch.nn.Flatten(), _domain("x", _split(CORNERS, labels)),
                                  n_queries=4, top=1)
    axes = np.array(fig.axes).reshape(4, 2)
    nearest = {0: 3, 1: 2, 2: 3, 3: 2}  # by cosine of (1,0), (0,1), (1,1), (1,0.5)
    for row in axes:
        query = row[0].images[0].get_array()
        q = next(i for i, c in enumerate(CORNERS) if np.array_equal(query[0], np.array(c)))
        expect = "#0e0e0e" if labels[nearest[q]] == labels[q] else "#0f0f0f"
        assert _hex(row[1].spines["left"].get_edgecolor()) == expect
        assert _hex(row[0].spines["left"].get_edgecolor()) == "#000000"


# ----------------------------------------------------------------------------- the method and the example

def test_method_diagram_has_its_labels_and_palette_colours(sentinels):
    fig = plots.method_diagram()
    text = " ".join(t.get_text() for ax in fig.axes for t in ax.texts)
    for part in ("domain A", "domain B", "domain C", "teacher A", "frozen specialist",
                 "universal student", "KL(p_T ‖ q_S)", "each anchor's", "naive fusion",
                 "all domains", "metric loss"):
        assert part in text
    edges = [_hex(p.get_edgecolor()) for ax in fig.axes for p in ax.patches
             if isinstance(p, FancyBboxPatch)]
    assert edges.count("#030303") == 3 and edges.count("#040404") == 2 and edges.count("#020202") == 2
    batches = edges[0:6:2]
    assert batches == [_hex(plots.domain_color(f"domain {n}")) for n in "ABC"] and len(set(batches)) == 3


def test_kl_example_figure_colours_teachers_by_domain_and_the_student_as_kl(sentinels):
    fig = plots.kl_example_figure(kl_worked_example())
    for ax in fig.axes:
        solid = [_hex(ln.get_color()) for ln in ax.lines if ln.get_linestyle() == "-"]
        dashed = [_hex(ln.get_color()) for ln in ax.lines if ln.get_linestyle() == "--"]
        assert solid == ["#0c0c0c", "#0d0d0d"] and dashed == ["#040404", "#040404"]
    np.testing.assert_allclose(fig.axes[0].lines[0].get_ydata(), [0.187384, 0.217987, 0.585786],
                               atol=1e-6)
    assert fig.axes[1].get_ylabel() == "softmax(−d / 0.05)"


def test_bits_plot_draws_each_index_in_its_palette_colour(monkeypatch):
    for name, color in {"float": "#111111", "pq": "#121212", "opqn": "#131313"}.items():
        monkeypatch.setitem(plots.PALETTE, name, color)
    rows = pd.DataFrame([{"notebook": "t", "model": m, "method": f"{b} bits", "domain": "orl seen",
                          "split": "test", "metric": metric, "value": 0.5 + 0.01 * b / 16 + 0.001 * s,
                          "seed": s, "epoch": 1}
                         for m in ("float", "pq", "opqn") for b in (16, 32) for s in (0, 1)
                         for metric in ("map@all", "recall@1")], columns=RESULT_COLUMNS)
    fig = plots.bits_plot(rows)
    ax = fig.axes[0]
    lines = {_hex(line.get_color()) for line in ax.get_lines()}
    assert {"#111111", "#121212", "#131313"} <= lines  # float as a dashed reference line
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["float", "pq", "opqn"]
    plt.close("all")


def test_codebook_figure_shows_orthonormal_codebooks():
    from ue_lib.quantize import dct_codebooks

    fig = plots.codebook_figure(dct_codebooks(8, 4, 3))
    gram = fig.axes[-1].get_images()[0].get_array()
    np.testing.assert_allclose(gram, np.eye(4), atol=1e-5)
    assert fig.axes[0].get_title() == "C_1 (8 x 4)"
    plt.close("all")


def test_object_figures():
    images = np.zeros((3, 3, 32, 32), np.uint8)
    boxes = [np.array([[1, 1, 10, 10]]), np.array([[0, 0, 5, 5], [6, 6, 20, 20]]), np.zeros((0, 4))]
    fig = plots.scenes_figure(images, boxes, [np.array([[2, 2, 9, 9]]), np.zeros((0, 4)),
                                               np.zeros((0, 4))], columns=2)
    rects = [len(ax.patches) for ax in fig.axes]
    assert rects == [2, 2, 0, 0]  # truth and detection boxes per scene; the spare axis is off
    plt.close(fig)
    crop = np.zeros((3, 8, 8), np.uint8)
    example = {"queries": [crop], "domains": ["glyphs"],
               "conditions": {"global": {"images": [[crop, crop]], "correct": [[True, False]]},
                              "student_kl": {"images": [[crop]], "correct": [[False]]}}}
    fig = plots.object_gallery(example)
    assert len(fig.axes) == 2 * 3
    borders = [ax.spines["top"].get_edgecolor() for ax in fig.axes[1:3]]
    assert matplotlib.colors.to_hex(borders[0]) == plots.HIT.lower()
    plt.close(fig)
    points = pd.DataFrame({"method": ["teacher_crop", "student_kl"], "ms": [30.0, 16.0],
                           "ms_std": [1.0, 0.5], "value": [0.27, 0.21], "value_std": [0.01, 0.02]})
    fig = plots.tradeoff_plot(points)
    assert [t.get_text() for t in fig.axes[0].texts] == ["teacher_crop", "student_kl"]
    plt.close(fig)
