"""The main paper's figures (`ue_lib.universal.figures`): the distance helpers, the gallery and the
projection of a model's embeddings, the method diagram and the worked example, each in the
palette's colours (sentinel colours read back from the drawn artists)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from conftest import DOMAIN_SENTINEL  # noqa: E402
from matplotlib.colors import to_hex  # noqa: E402
from matplotlib.patches import FancyBboxPatch  # noqa: E402

from ue_lib import palette  # noqa: E402
from ue_lib.data import Domain, Split  # noqa: E402
from ue_lib.universal import figures as universal_figures  # noqa: E402
from ue_lib.universal.examples import kl_shift_scale_example  # noqa: E402


def _hex(color) -> str:
    return to_hex(color, keep_alpha=False)


def _split(vectors, labels=None, features=None) -> Split:
    """Items whose images are the uint8 `vectors` (N, D) as (N, 1, 1, D) images."""
    images = np.asarray(vectors, dtype=np.uint8)[:, None, None, :]
    labels = np.arange(len(images)) if labels is None else labels
    return Split(images, labels, features=features)


def _domain(name: str, split: Split) -> Domain:
    return Domain(name, split, split, split, class_names=[str(c) for c in range(len(split))],
                  split_rule="test", provenance="test", license="none")


# (1, 0), (0, 1), (1, 1) and (1, 0.498) as uint8 images
CORNERS = [[255, 0], [0, 255], [255, 255], [255, 127]]


def test_pairwise_distances_of_normalised_embeddings_in_pair_order():
    d = universal_figures.pairwise_distances(torch.nn.Flatten(), _split(CORNERS), np.array([0, 1, 2]))
    half = 2 - np.sqrt(2)  # (1, 0) vs (1, 1)/sqrt(2): 2 - 2 cos 45°
    np.testing.assert_allclose(d, [2.0, half, half], atol=1e-6)


def test_pairwise_distances_use_cached_features_for_a_feature_model():
    class OnFeatures(torch.nn.Flatten):
        takes_features = True

    features = np.array([[[[1.0, 0.0]]], [[[-1.0, 0.0]]], [[[0.0, 2.0]]]], dtype=np.float32)
    split = _split(CORNERS[:3], features=features)  # the images would give (2, 0.59, 0.59)
    np.testing.assert_allclose(universal_figures.pairwise_distances(OnFeatures(), split, np.arange(3)),
                               [4.0, 2.0, 2.0], atol=1e-6)


def test_teacher_distance_histograms_colour_each_domain_and_state_its_median(sentinels):
    doms = {"x": _domain("x", _split(CORNERS[:3])), "y": _domain("y", _split(CORNERS))}
    from ue_lib.universal.neighbours import teacher_distances

    fig = universal_figures.teacher_distance_histograms(
        teacher_distances({"x": torch.nn.Flatten(), "y": torch.nn.Flatten()}, doms))
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
    fig = universal_figures.distance_scatter({"x": torch.nn.Flatten()},
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
    fig = universal_figures.projection(torch.nn.Flatten(), doms, per_domain=4)
    ax = fig.axes[0]
    colours = [_hex(c) for c in ax.collections[0].get_facecolors()]
    assert colours == ["#0a0a0a"] * 4 + ["#0b0b0b"] * 4
    assert any("not retrieval quality" in t.get_text() for t in fig.texts)


def test_retrieval_gallery_borders_are_the_hit_and_miss_colours(sentinels):
    labels = np.array([0, 0, 1, 1])
    fig = universal_figures.gallery(torch.nn.Flatten(), _domain("x", _split(CORNERS, labels)),
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
    fig = universal_figures.method_diagram()
    text = " ".join(t.get_text() for ax in fig.axes for t in ax.texts)
    for part in ("domain A", "domain B", "domain C", "teacher A", "frozen specialist",
                 "universal student", "KL(p_T ‖ q_S)", "each anchor's", "naive fusion",
                 "all domains", "metric loss"):
        assert part in text
    edges = [_hex(p.get_edgecolor()) for ax in fig.axes for p in ax.patches
             if isinstance(p, FancyBboxPatch)]
    assert edges.count("#030303") == 3 and edges.count("#040404") == 2 and edges.count("#020202") == 2
    batches = edges[0:6:2]
    assert batches == [_hex(palette.domain_color(f"domain {n}")) for n in "ABC"] and len(set(batches)) == 3


def test_kl_example_figure_draws_a_shift_and_a_scale_with_their_losses(sentinels):
    fig = universal_figures.kl_example_figure(*kl_shift_scale_example())
    ax_d, ax_p = fig.axes
    assert [_hex(ln.get_color()) for ln in ax_d.lines] == ["#030303", palette.OKABE_ITO["orange"].lower(),
                                                           palette.OKABE_ITO["reddish purple"].lower()]
    assert [ln.get_linestyle() for ln in ax_d.lines] == ["-", "--", "--"]
    np.testing.assert_allclose([ln.get_ydata() for ln in ax_d.lines],
                               [[0.125, 0.1875, 0.25, 0.375], [0.375, 0.4375, 0.5, 0.625],
                                [0.25, 0.375, 0.5, 0.75]])
    heights = np.array([p.get_height() for p in ax_p.patches]).reshape(3, 4)  # p_A, shift, scale
    np.testing.assert_allclose(heights[1], heights[0], atol=1e-12)  # the shift's bars are A's
    assert np.abs(heights[2] - heights[0]).max() > 0.1  # the scale's are not
    labels = [t.get_text() for t in ax_p.get_legend().get_texts()]
    assert labels == ["p_A (teacher A)", "p_B, d_B = d_A + 0.25:\nKL 0.000, distance-MSE 0.0625",
                      "p_B, d_B = 2 × d_A:\nKL 0.201, distance-MSE 0.0635"]
    assert ax_p.get_ylabel() == "softmax(−d / 0.05)"


# ------------------------------------------------------------------ models side by side, temperature

# domain x lives in dimensions 0-1, domain y in 2-3 (classes 0, 0, 1, 1 in each). `_mixer` adds
# y's dimensions onto x's: in its plane x sits at 0°, 4.5°, 90°, 85.5° and y at 1.1°, 8.9°, 88.9°,
# 81.1°, so every item's nearest neighbour is an item of the other domain; the identity keeps the
# domains orthogonal, so every item's nearest is its class partner.
MIX = {"x": [[255, 0, 0, 0], [255, 20, 0, 0], [0, 255, 0, 0], [20, 255, 0, 0]],
       "y": [[0, 0, 255, 5], [0, 0, 255, 40], [0, 0, 5, 255], [0, 0, 40, 255]]}
MIXER_NEAREST = {"x0": "y0", "x1": "y0", "x2": "y2", "x3": "y2",
                 "y0": "x0", "y1": "x1", "y2": "x2", "y3": "x3"}
IDENTITY_NEAREST = {"x0": "x1", "x1": "x0", "x2": "x3", "x3": "x2",
                    "y0": "y1", "y1": "y0", "y2": "y3", "y3": "y2"}


def _mixer() -> torch.nn.Module:
    lin = torch.nn.Linear(4, 2, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.0, 1.0]]))
    return torch.nn.Sequential(torch.nn.Flatten(), lin)


def _two_domains() -> dict[str, Domain]:
    return {name: _domain(name, _split(v, np.array([0, 0, 1, 1]))) for name, v in MIX.items()}


def _item(ax) -> str:
    """The item ('x0' ... 'y3') whose image `ax` shows."""
    row = tuple(int(v) for v in np.asarray(ax.images[0].get_array())[0])
    return next(f"{name}{i}" for name, v in MIX.items() for i, r in enumerate(v) if tuple(r) == row)


def test_merged_gallery_asks_each_model_the_same_queries_and_misses_other_domains(sentinels):
    fig = universal_figures.merged_gallery({"naive": _mixer(), "distill:kl": torch.nn.Flatten()},
                                           _two_domains(), n_queries=4, top=1)
    rows = np.array(fig.axes).reshape(8, 2)
    naive, kl = rows[:4], rows[4:]
    assert [_item(r[0]) for r in naive] == [_item(r[0]) for r in kl]
    assert [r[0].get_title() for r in naive] == ["query: x", "query: y", "query: x", "query: y"]
    assert [_hex(r[0].title.get_color()) for r in naive] == ["#0a0a0a", "#0b0b0b"] * 2
    assert {_hex(r[0].yaxis.label.get_color()) for r in naive} == {"#020202"}
    assert {_hex(r[0].yaxis.label.get_color()) for r in kl} == {"#040404"}
    for block, nearest, border in ((naive, MIXER_NEAREST, "#0f0f0f"), (kl, IDENTITY_NEAREST, "#0e0e0e")):
        for query, hit in block:
            assert _item(hit) == nearest[_item(query)]
            assert _hex(hit.spines["left"].get_edgecolor()) == border  # MISS for the mixer
            assert hit.get_title() == _item(hit)[0]
            assert _hex(hit.title.get_color()) == DOMAIN_SENTINEL[hit.get_title()]


def test_merged_gallery_queries_take_turns_over_domains_and_can_be_hit():
    labels = np.array([0, 0, 1, 2, 3, 3, 4, 4])  # items 2 and 3: singletons, never queries
    domain_ids = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    q = universal_figures._spread_queries(labels, domain_ids, 10, seed=0)
    assert list(domain_ids[q]) == [0, 1, 0, 1, 1, 1] and set(q) == {0, 1, 4, 5, 6, 7}
    assert list(universal_figures._spread_queries(labels, domain_ids, 3, seed=0)) == list(q[:3])


def test_projections_share_items_orientation_and_axes(sentinels):
    doms = _two_domains()
    fig = universal_figures.projections({"naive": torch.nn.Flatten(), "distill:kl": torch.nn.Flatten()},
                                        doms, per_domain=3, seed=1)
    a, b = fig.axes
    np.testing.assert_allclose(a.collections[0].get_offsets(), b.collections[0].get_offsets())
    single = universal_figures.projection(torch.nn.Flatten(), doms, per_domain=3, seed=1)
    np.testing.assert_allclose(single.axes[0].collections[0].get_offsets(), a.collections[0].get_offsets())
    assert [_hex(c) for c in a.collections[0].get_facecolors()] == ["#0a0a0a"] * 3 + ["#0b0b0b"] * 3
    assert [_hex(ax.title.get_color()) for ax in fig.axes] == ["#020202", "#040404"]
    assert all(ax.get_title().endswith("% of variance") for ax in fig.axes)
    assert any("not retrieval quality" in t.get_text() for t in fig.texts)
    mixed = universal_figures.projections({"naive": _mixer(), "distill:kl": torch.nn.Flatten()}, doms)
    a, b = mixed.axes
    assert a.get_xlim() == b.get_xlim() and a.get_ylim() == b.get_ylim()
    for ax in mixed.axes:  # both panels' points inside the shared limits
        xy = ax.collections[0].get_offsets()
        assert xy[:, 0].min() >= a.get_xlim()[0] and xy[:, 0].max() <= a.get_xlim()[1]
        assert xy[:, 1].min() >= a.get_ylim()[0] and xy[:, 1].max() <= a.get_ylim()[1]
    assert [t.get_text() for t in b.get_legend().get_texts()] == ["x", "y"]


def test_softmax_panel_draws_the_losses_distributions_of_one_real_anchor(sentinels):
    from ue_lib.universal import temperature

    dom = _domain("x", _split(CORNERS, np.array([0, 0, 1, 1])))
    fig = universal_figures.softmax_panel(torch.nn.Flatten(), dom, temperatures=(0.05, 1.0), p=2, k=2,
                                          seed=3)
    emb, labels = temperature.anchor_batch(torch.nn.Flatten(), dom.test, 2, 2, seed=3)
    unit = emb.numpy() / np.linalg.norm(emb.numpy(), axis=1, keepdims=True)
    d = 2 - 2 * unit[1:] @ unit[0]
    order = np.argsort(d, kind="stable")
    ax_d, ax_p = fig.axes
    np.testing.assert_allclose(ax_d.collections[0].get_offsets()[:, 1], d[order], atol=1e-6)
    same = labels[1:][order] == labels[0]
    assert [_hex(c) for c in ax_d.collections[0].get_facecolors()] == \
        ["#0e0e0e" if s else _hex(palette.OKABE_ITO["grey"]) for s in same]
    curves = [ln for ln in ax_p.lines if ln.get_marker() == "o"]
    for ln, tau in zip(curves, (0.05, 1.0)):
        w = np.exp(-d[order] / tau)
        np.testing.assert_allclose(ln.get_ydata(), w / w.sum(), atol=1e-5)
    (marks,) = [ln for ln in ax_p.lines if ln.get_marker() == "^"]
    assert list(marks.get_xdata()) == list(np.flatnonzero(same) + 1)
    assert _hex(marks.get_color()) == "#0e0e0e"
    w = np.exp(-np.sort(d) / 1.0)
    legend = [t.get_text() for t in ax_p.get_legend().get_texts()]
    assert legend[1] == f"τ = 1: nearest 1 carries {palette.fixed(w[0] / w.sum(), 2)}, nearest 3 1.00"



def test_conditions_figure_draws_each_gap_with_its_interval():
    import pandas as pd

    table = pd.DataFrame({"factor": ["capacity"] * 2, "level": ["as profiled", "linear head"],
                          "competitor": ["distance_mse"] * 2, "gap": [0.0, 0.04], "low": [-0.01, 0.02],
                          "high": [0.01, 0.06], "reference": [True, False]})
    fig = universal_figures.conditions_figure(table)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["as profiled\n(the run's)", "linear head"]
    line = ax.lines[0]  # the points
    assert np.allclose(line.get_ydata(), [0.0, 0.04])
    bars = [c for c in ax.collections if len(c.get_segments()) == 2][0]
    assert np.allclose([s[:, 1] for s in bars.get_segments()], [[-0.01, 0.01], [0.02, 0.06]])
    assert _hex(line.get_color()) == _hex(palette.model_color("distill:distance_mse"))
