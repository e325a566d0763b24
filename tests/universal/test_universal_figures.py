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
from ue_lib.universal.examples import kl_worked_example  # noqa: E402


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
    fig = universal_figures.teacher_distance_histograms(
        {"x": torch.nn.Flatten(), "y": torch.nn.Flatten()}, doms)
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


def test_kl_example_figure_colours_teachers_by_domain_and_the_student_as_kl(sentinels):
    fig = universal_figures.kl_example_figure(kl_worked_example())
    for ax in fig.axes:
        solid = [_hex(ln.get_color()) for ln in ax.lines if ln.get_linestyle() == "-"]
        dashed = [_hex(ln.get_color()) for ln in ax.lines if ln.get_linestyle() == "--"]
        assert solid == ["#0c0c0c", "#0d0d0d"] and dashed == ["#040404", "#040404"]
    np.testing.assert_allclose(fig.axes[0].lines[0].get_ydata(), [0.187384, 0.217987, 0.585786],
                               atol=1e-6)
    assert fig.axes[1].get_ylabel() == "softmax(−d / 0.05)"
