"""The interactive explorer of notebook 04 (`ue_lib.universal.explorer`): the neighbours it shows
are the evaluator's (hand-made embeddings with exact answers, the query left out, ties by item
index), hits and misses, the seeded random query, the widget's callbacks, the compressed index
(faiss's OPQ rotation and PQ codes), and, on the smoke run, the run's own recorded merged
Recall@1 recomputed from the neighbours the explorer shows."""

from __future__ import annotations

import faiss
import numpy as np
import pandas as pd
import pytest

from ue_lib.evaluate import (
    embed,
    merged_retrieval_metrics,
    model_inputs,
    nearest_neighbours,
    retrieval_metrics,
)
from ue_lib.universal import explorer as ex
from ue_lib.universal.explorer import COMPRESSED, MERGED, NAIVE, PER_DOMAIN, SPECIALIST, STUDENT


def _unit(degrees) -> np.ndarray:
    """Points on the unit circle at these angles: the cosine of two is that of their angle."""
    r = np.radians(np.asarray(degrees, dtype=float))
    return np.stack([np.cos(r), np.sin(r)], axis=1).astype(np.float32)


# domain a: five items; domain b: b0 and b1 are exact copies of a0 and a1 (ties across domains)
ANGLES = {"a": [0, 10, 20, 90, 100], "b": [0, 10, 95, 180]}
LABELS = {"a": [0, 0, 1, 1, 1], "b": [0, 0, 1, 1]}
NAIVE_X = {d: _unit(a) for d, a in ANGLES.items()}
STUDENT_X = {"a": _unit([0, 40, 80, 120, 160]), "b": _unit([200, 240, 280, 320])}
SPECIALIST_X = {"a": _unit([0, 30, 15, 90, 100]), "b": _unit([0, 50, 60, 180])}
IMAGES = {d: np.arange(len(a) * 16, dtype=np.uint8).reshape(len(a), 1, 4, 4) for d, a in ANGLES.items()}


def _explorer(seed: int = 0, **kwargs) -> ex.Explorer:
    return ex.Explorer(LABELS, {SPECIALIST: SPECIALIST_X, NAIVE: NAIVE_X, STUDENT: STUDENT_X},
                       IMAGES, seed=seed, **kwargs)


def _rows(table: pd.DataFrame, model: str, index: str) -> pd.DataFrame:
    return table[(table.model == model) & (table["index"] == index)]


def test_neighbours_by_hand_per_domain_and_merged():
    table = _explorer().view("a", 0, [NAIVE], k=3)
    per, merged = _rows(table, NAIVE, PER_DOMAIN), _rows(table, NAIVE, MERGED)
    # per-domain: a1 (10 degrees, class 0), a2 (20), a3 (90); the query a0 is left out
    assert per.item.tolist() == [1, 2, 3] and per.domain.tolist() == ["a"] * 3
    assert per.hit.tolist() == [True, False, False]
    assert per.score.round(6).tolist() == pytest.approx(np.cos(np.radians([10, 20, 90])).round(6))
    # merged: b0 is a0's copy (cosine 1) but of domain b: a miss although its label is 0; a1 and
    # b1 tie at 10 degrees and come in merged-index order (a1 is item 1, b1 item 6)
    assert list(zip(merged.domain, merged.item)) == [("b", 0), ("a", 1), ("b", 1)]
    assert merged.hit.tolist() == [False, True, False]
    assert merged.label.tolist() == [0, 0, 0] and merged["rank"].tolist() == [1, 2, 3]
    table = _explorer().view("b", 1, [NAIVE], k=4)  # b1 = a1's copy (10 degrees), class 0 of b
    assert _rows(table, NAIVE, PER_DOMAIN).item.tolist() == [0, 2, 3]  # clamped to the 3 others
    # a1 (its copy), then a0, a2 and b0, all 10 degrees away, tied: in index order 0, 2, 5
    merged = _rows(table, NAIVE, MERGED)
    assert list(zip(merged.domain, merged.item)) == [("a", 1), ("a", 0), ("a", 2), ("b", 0)]
    assert merged.hit.tolist() == [False, False, False, True]
    assert table.attrs == {"domain": "b", "query": 1, "label": 0, "k": 4, "models": [NAIVE]}


def test_the_neighbours_are_the_evaluators_ranking():
    e = _explorer()
    merged_x = {m: np.concatenate([x["a"], x["b"]]) for m, x in ((NAIVE, NAIVE_X), (STUDENT, STUDENT_X))}
    for domain, start in (("a", 0), ("b", 5)):
        for q in range(len(LABELS[domain])):
            table = e.view(domain, q, k=3)
            for model, x in ((SPECIALIST, SPECIALIST_X), (NAIVE, NAIVE_X), (STUDENT, STUDENT_X)):
                assert _rows(table, model, PER_DOMAIN).item.tolist() == \
                    nearest_neighbours(x[domain], 3, [q])[0].tolist()
            for model in (NAIVE, STUDENT):
                rows = _rows(table, model, MERGED)
                shown = [i + (5 if d == "b" else 0) for d, i in zip(rows.domain, rows.item)]
                assert shown == nearest_neighbours(merged_x[model], 3, [start + q])[0].tolist()
            assert _rows(table, SPECIALIST, MERGED).empty  # a specialist has no merged index
    # the top-1 hits the explorer shows are the metrics' Recall@1, per domain and merged
    for model, x in ((NAIVE, NAIVE_X), (STUDENT, STUDENT_X)):
        merged = merged_retrieval_metrics(x, LABELS, ks=(1,))
        for domain in ("a", "b"):
            top1 = {index: np.mean([_rows(e.view(domain, q, [model], 1), model, index).hit.iloc[0]
                                    for q in e.valid_queries(domain)]) for index in (PER_DOMAIN, MERGED)}
            assert top1[PER_DOMAIN] == retrieval_metrics(x[domain], LABELS[domain], (1,))["recall@1"]
            assert top1[MERGED] == merged[domain]["recall@1"]


def test_a_query_gallery_split_searches_its_gallery():
    e = _explorer(is_query={"a": [True, True, False, False, False]})
    rows = _rows(e.view("a", 0, [NAIVE], k=3), NAIVE, PER_DOMAIN)
    assert rows.item.tolist() == [2, 3, 4]  # a1 is a query, not in the gallery
    assert e.valid_queries("a").tolist() == []  # no gallery item has class 0
    assert e.valid_queries("b").tolist() == [0, 1, 2, 3]


def test_the_random_query_is_seeded():
    assert _explorer(seed=3).random_query("a", seed=7) == _explorer(seed=5).random_query("a", seed=7)
    one, two = _explorer(seed=3), _explorer(seed=3)
    draws = [one.random_query("a") for _ in range(6)]
    assert draws == [two.random_query("a") for _ in range(6)]
    assert set(draws) <= {0, 1, 2, 3, 4} and len(set(draws)) > 1
    with pytest.raises(ValueError, match="not an item of a's test split"):
        one.view("a", 5)
    with pytest.raises(ValueError, match="unknown domain 'c'"):
        one.view("c", 0)


def test_the_widgets_callbacks_update_the_table(capsys):
    e, twin = _explorer(seed=2), _explorer(seed=2)
    box = e.widget()
    c = e.controls
    assert box.children[-1] is e.output
    first = twin.random_query("a", seed=2)  # the widget opens on the seeded example's query
    assert (e.table.attrs["domain"], e.table.attrs["query"]) == ("a", first)
    c["domain"].value = "b"  # a new domain: a random query of it, the bound follows
    expected = twin.random_query("b")
    assert (e.table.attrs["domain"], e.table.attrs["query"], c["query"].max) == ("b", expected, 3)
    c["random"].click()
    expected = twin.random_query("b")
    assert e.table.attrs["query"] == expected == c["query"].value
    c["query"].value = 1
    pd.testing.assert_frame_equal(e.table, twin.view("b", 1))
    c["models"].value = (NAIVE,)
    c["k"].value = 2
    pd.testing.assert_frame_equal(e.table, twin.view("b", 1, [NAIVE], 2))
    assert ex.Explorer.summary(e.table) == "Hits in the top 2: naive fusion 1 (per-domain) / 0 (merged)."
    shown = e.output.outputs  # what the widget's Output holds: that line, then the drawing
    assert shown[0]["data"]["text/markdown"] == ex.Explorer.summary(e.table)
    assert shown[1]["data"]["image/png"] and len(shown) == 2


def test_the_figure_draws_each_model_in_both_indexes():
    e = _explorer()
    fig = e.figure(e.view("a", 0, [SPECIALIST, NAIVE], k=3))
    left, right = fig.subfigs
    assert [t.get_text() for ax in right.axes for t in ax.texts] == [ex.NO_MERGED]
    shown = [ax for ax in right.axes if ax.get_images()]
    assert len(shown) == 4  # the naive row: the query and 3 neighbours; the specialist: a note
    assert [ax.get_title() for ax in shown[1:]] == ["b 0\nmiss 1.00", "a 0\nhit 0.98", "b 0\nmiss 0.98"]
    edges = [tuple(np.round(ax.spines["top"].get_edgecolor(), 3)) for ax in shown[1:]]
    from matplotlib.colors import to_rgba

    from ue_lib.palette import HIT, MISS
    assert edges == [tuple(np.round(to_rgba(c), 3)) for c in (MISS, HIT, MISS)]
    assert len([ax for ax in left.axes if ax.get_images()]) == 8


def test_the_example_is_a_seeded_query_with_a_hit_and_a_miss():
    e = _explorer(seed=3)
    view = e.example()
    assert 0 < view.hit.sum() < len(view) and view.attrs["domain"] == "a"
    assert view.equals(_explorer(seed=3).example())  # the same every call and every explorer
    draws = np.random.default_rng(3).choice(e.valid_queries("a"), size=ex.EXAMPLE_TRIES)
    first = next(int(q) for q in draws if 0 < e.view("a", int(q)).hit.sum() < len(e.view("a", int(q))))
    assert view.attrs["query"] == first


def _clustered(n_classes: int, per: int, dim: int, seed: int, noise: float = 0.5
               ) -> tuple[np.ndarray, np.ndarray]:
    """`per` noisy copies of each of `n_classes` random centres."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_classes, dim))
    labels = np.repeat(np.arange(n_classes), per)
    return (centres[labels] + noise * rng.standard_normal((len(labels), dim))).astype(np.float32), labels


def test_the_compressed_index_is_faiss_pq_and_mostly_keeps_the_top_1():
    x, labels = _clustered(100, 2, 16, seed=0)  # pairs: each item's float top-1 is its twin
    train, _ = _clustered(100, 4, 16, seed=1)
    items = {"a": x[:100], "b": x[100:]}
    indexes = ex.compressed_indexes(train, items, seed=0)
    assert set(indexes) == {"a", "b", MERGED} and indexes[MERGED].ntotal == 200
    codes = faiss.downcast_index(indexes[MERGED].index)
    assert isinstance(codes, faiss.IndexPQ) and (codes.pq.M, codes.pq.nbits) == (8, 8)
    assert isinstance(faiss.downcast_VectorTransform(indexes[MERGED].chain.at(0)), faiss.OPQMatrix)
    e = ex.Explorer({"a": labels[:100], "b": labels[100:]}, {STUDENT: items}, compressed=indexes)
    assert e.models == [STUDENT, COMPRESSED]
    agree, scores_differ = [], []
    for domain in ("a", "b"):
        for q in range(100):
            float_, pq = (_rows(e.view(domain, q, [m], 3), m, MERGED) for m in (STUDENT, COMPRESSED))
            agree.append((float_.domain.iloc[0], float_.item.iloc[0]) == (pq.domain.iloc[0], pq.item.iloc[0]))
            scores_differ.append(not np.allclose(float_.score.iloc[0], pq.score.iloc[0], atol=1e-6))
    # measured: the compressed top-1 is the float top-1 for 191 of the 200 queries (95.5 %)
    assert np.mean(agree) == 0.955
    assert np.mean(scores_differ) > 0.9  # approximate scores: not the float cosines
    # the shown ranking is faiss's own search of the compressed index, the query left out
    q = ex.l2_normalise(x[:1])
    scores, found = indexes[MERGED].search(q, 4)
    pq = _rows(e.view("a", 0, [COMPRESSED], 3), COMPRESSED, MERGED)
    merged_ids = [i + (100 if d == "b" else 0) for d, i in zip(pq.domain, pq.item)]
    assert [i for i in found[0].tolist() if i != 0][:3] == merged_ids
    assert pq.score.tolist() == pytest.approx([s for s, i in zip(scores[0], found[0]) if i != 0][:3])


def test_the_compressed_index_is_the_same_for_the_same_seed():
    train, _ = _clustered(20, 10, 8, seed=2)
    fitted = [ex.compressed_index(train, seed=0) for _ in range(2)]  # (kept: faiss owns the parts)
    books = [faiss.vector_to_array(faiss.downcast_index(f.index).pq.centroids) for f in fitted]
    rotations = [faiss.vector_to_array(faiss.downcast_VectorTransform(f.chain.at(0)).A) for f in fitted]
    assert np.array_equal(*books) and np.array_equal(*rotations)


def test_the_explorer_of_the_smoke_run_shows_the_evaluators_neighbours(smoke_run):
    """Read only: the run folder is opened without `RunFolder.open` (which records settings)."""
    from ue_lib.runfolder import RunFolder
    from ue_lib.spec import RunSpec
    from ue_lib.universal import models

    spec = RunSpec(profile="smoke", out_dir=str(smoke_run))
    run = RunFolder(spec, "04_final_results", progress=False)
    e = ex.from_run(run, 0)
    assert e.models == list(ex.MODELS)
    domains = run.domains(0)
    naive = models.naive(run, 0).model
    merged_x = np.concatenate([embed(naive, model_inputs(naive, d.test)) for d in domains.values()])
    starts = dict(zip(domains, np.cumsum([0] + [len(d.test) for d in domains.values()])))
    name = list(domains)[1]
    q = e.random_query(name, seed=0)
    rows = _rows(e.view(name, q, [NAIVE], k=5), NAIVE, MERGED)
    shown = [starts[d] + i for d, i in zip(rows.domain, rows.item)]
    assert shown == nearest_neighbours(merged_x, 5, [starts[name] + q])[0].tolist()
    # the merged Recall@1 notebook 04 recorded for seed 0, from the top-1 hits the explorer shows
    results = pd.read_csv(smoke_run / "results" / "04_final_results.csv")
    for label, model, method in ((NAIVE, "naive", None), (STUDENT, "distill", "kl")):
        row = results[(results.model == model) & (results.domain == "merged") & (results.seed == 0)
                      & (results.metric == "recall@1") & ((results.method == method) if method else True)]
        hits = [e.neighbours(label, d, int(q), 1, MERGED).hit.iloc[0]
                for d in e.domains for q in e.valid_queries(d)]
        assert np.mean(hits) == pytest.approx(float(row.value.iloc[0]), abs=1e-12)


def test_a_missing_model_is_named_in_one_line():
    class Empty:  # a run folder holding no model (`RunFolder.missing` finds every one missing)
        seed, out_dir = 0, "runs/empty"

        def missing(self, function, items):
            return list(items)

    with pytest.raises(ValueError) as err:
        ex.from_run(Empty(), 1)
    message = str(err.value)
    assert "\n" not in message and message.startswith(
        "the run folder runs/empty has no specialists and no naive fusion and no kl student for seed 1")
    assert message.endswith("make them with `ue run --out runs/empty --only 04`")


def test_the_widget_is_shown_only_in_a_live_kernel(monkeypatch):
    from ue_lib import runfolder, runner
    from ue_lib.spec import HEADLESS_ENV

    made = []
    folder = runfolder.RunFolder.__new__(runfolder.RunFolder)  # `interactive` reads no state
    monkeypatch.delenv(HEADLESS_ENV, raising=False)
    folder.interactive(lambda: made.append("outside a kernel"))
    monkeypatch.setattr(runfolder, "in_kernel", lambda: True)
    with runner._data_root_for_kernels():  # what `ue run` gives its kernels
        assert runfolder.os.environ[HEADLESS_ENV] == "1"
        folder.interactive(lambda: made.append("under ue run"))
    assert HEADLESS_ENV not in runfolder.os.environ  # restored after the run
    folder.interactive(lambda: made.append("live"))
    assert made == ["live"]
