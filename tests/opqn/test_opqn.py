"""Compressed retrieval (issue 13): OPQN's codebooks, scores, loss and faiss search; the
whole-ranking metrics against brute force; the seen / unseen protocols."""

from __future__ import annotations

import math

import faiss
import numpy as np
import pandas as pd
import pytest
import torch
from helpers import blob_domain

from ue_lib.data import Domain, Split
from ue_lib.evaluate import index_ranking_metrics, ranking_metrics
from ue_lib.opqn.indexes import code_bytes, faiss_index, opqn_index
from ue_lib.opqn.loss import OPQNLoss, OrthonormalQuantizer, dct_codebooks, dct_matrix, random_codebooks
from ue_lib.opqn.objectives import OPQN, quantizer_of
from ue_lib.opqn.protocols import Protocol
from ue_lib.profiles import Profile, load_profile
from ue_lib.training import TrainJob, train

# ----------------------------------------------------------------------------- codebooks

def test_dct_matrix_is_the_formula():
    d = 6
    phi = dct_matrix(d).double().numpy()
    for j in range(d):
        for k in range(d):
            want = math.sqrt(2 / d) * math.cos(math.pi * (j + 0.5) * k / d) / (math.sqrt(2) if k == 0 else 1)
            assert phi[j, k] == pytest.approx(want, abs=1e-7)


def test_dct_codebooks_follow_the_recurrence_and_are_orthonormal():
    d, k, m = 8, 4, 5
    books = dct_codebooks(d, k, m).double()
    phi = dct_matrix(d).double()
    assert books.shape == (m, d, k)
    assert torch.allclose(books[0], phi[:, :k], atol=1e-6)
    for i in range(1, m):
        assert torch.allclose(books[i], phi @ books[i - 1], atol=1e-5)
    for i in range(m):
        assert torch.allclose(books[i].T @ books[i], torch.eye(k, dtype=torch.float64), atol=1e-5)
    rnd = random_codebooks(d, k, m, seed=3).double()
    for i in range(m):
        assert torch.allclose(rnd[i].T @ rnd[i], torch.eye(k, dtype=torch.float64), atol=1e-5)
    assert not torch.allclose(rnd[0], rnd[1])


def test_more_codewords_than_dimensions_is_refused():
    with pytest.raises(ValueError, match="k <= d"):
        dct_codebooks(4, 8, 2)
    with pytest.raises(ValueError, match="divides|split"):
        OrthonormalQuantizer(10, subspaces=4, codewords=2)
    with pytest.raises(ValueError, match="power of two"):
        OrthonormalQuantizer(12, subspaces=2, codewords=3)


# ----------------------------------------------------------------------------- scores and search

def _quantizer(dim=24, m=3, k=8, codebook="dct", seed=0) -> OrthonormalQuantizer:
    torch.manual_seed(seed)
    q = OrthonormalQuantizer(dim, m, k, codebook)
    with torch.no_grad():
        q.assign.mul_(8.0)  # sharper assignments than at initialisation
    return q.eval()


def test_sum_of_probabilities_equals_inner_product_with_decoded_codewords():
    q = _quantizer()
    rng = np.random.default_rng(0)
    queries, items = rng.normal(size=(7, 24)), rng.normal(size=(11, 24))
    codes = q.encode(items)
    assert codes.dtype == np.uint8 and codes.shape == (11, 3)
    direct = q.direct_scores(queries, codes)  # sum_m p_m[k_m]
    via_codewords = q.query_vectors(queries) @ q.decode(codes).T  # sum_m <s_m, c_{m,k_m}>
    np.testing.assert_allclose(direct, via_codewords, atol=1e-6)


@pytest.mark.parametrize("codebook", ["dct", "random"])
def test_faiss_opqn_search_returns_the_ranking_of_the_direct_formula(codebook):
    q = _quantizer(codebook=codebook, seed=1)
    rng = np.random.default_rng(1)
    queries, items = rng.normal(size=(20, 24)), rng.normal(size=(300, 24))
    index = opqn_index(q, items)
    assert code_bytes(index) == 2  # 3 subspaces x 3 bits = 9 bits -> 2 bytes
    scores, ids = index.search(q.query_vectors(queries).astype(np.float32), len(items))
    direct = q.direct_scores(queries, q.encode(items))
    for row in range(len(queries)):  # equal scores are ties of equal codes: compare the scores
        np.testing.assert_allclose(scores[row], direct[row, ids[row]], atol=1e-5)
        assert np.all(np.diff(direct[row, ids[row]]) <= 1e-5)  # the order is the formula's
        assert sorted(ids[row]) == list(range(len(items)))


def test_opqn_loss_against_a_hand_computed_value():
    # one subspace of d = 2, K = 2 codewords (the 2x2 DCT), two classes, sigma 1, mu 0.5
    loss = OPQNLoss(num_classes=2, embedding_dim=2, subspaces=1, codewords=2, margin=0.5,
                    scale=1.0, entropy_weight=0.1)
    with torch.no_grad():
        loss.quantizer.assign.copy_(torch.tensor([[[math.log(3), 0.0], [0.0, 0.0]]]))
        loss.prototypes.copy_(torch.tensor([[[1.0, 0.0], [0.0, 1.0]]]))
    x, y = torch.tensor([[2.0, 0.0]]), torch.tensor([0])
    # p = softmax([ln 3, 0]) = (3/4, 1/4); s = C p = (1/sqrt2, 1/(2 sqrt2)) ~ (2, 1)/sqrt5
    l_x = math.log(1 + math.exp(0 - (1 - 0.5)))  # cos to the prototypes (1, 0), margin on class 0
    cs0, cs1 = 2 / math.sqrt(5), 1 / math.sqrt(5)
    l_s = math.log(1 + math.exp(cs1 - (cs0 - 0.5)))
    entropy = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    want = 0.5 * (l_x + l_s) + 0.1 * entropy
    assert loss(x, y).item() == pytest.approx(want, abs=1e-6)
    loss.x_branch = False
    assert loss(x, y).item() == pytest.approx(l_s + 0.1 * entropy, abs=1e-6)


# ----------------------------------------------------------------------------- metrics

def _brute_force(sims: np.ndarray, q_labels, g_labels, ks, exclude_self=False):
    """Reference: per query, sort by (-similarity rounded to 1e-6 ties, index)."""
    out = {f"precision@{k}": [] for k in ks} | {f"recall@{k}": [] for k in ks} | {"map@all": []}
    for i, row in enumerate(sims):
        cand = [j for j in range(len(row)) if not (exclude_self and j == i)]
        order = sorted(cand, key=lambda j: (-round(float(row[j]), 6), j))
        rel = [g_labels[j] == q_labels[i] for j in order]
        if not any(rel):
            continue
        hits, ap = 0, 0.0
        for pos, r in enumerate(rel, 1):
            hits += r
            ap += r * hits / pos
        out["map@all"].append(ap / sum(rel))
        for k in ks:
            kk = min(k, len(rel))
            out[f"precision@{k}"].append(sum(rel[:kk]) / kk)
            out[f"recall@{k}"].append(float(any(rel[:kk])))
    return {key: float(np.mean(v)) for key, v in out.items()}


def test_ranking_metrics_by_hand_with_a_tie():
    q, qy = np.array([[1.0, 0.0]]), np.array([0])
    g = np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])  # items 0 and 1 tie at cos 1
    gy = np.array([1, 0, 0, 1])
    m = ranking_metrics(q, qy, g, gy, ks=(1, 2, 5))
    # ranking 0, 1, 2, 3 (the tie by index): relevance 0, 1, 1, 0; R = 2
    assert m["map@all"] == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert m["precision@1"] == 0 and m["precision@2"] == 0.5 and m["precision@5"] == 0.5
    assert m["recall@1"] == 0 and m["recall@2"] == 1


@pytest.mark.parametrize("seed", [0, 1])
def test_ranking_metrics_equal_brute_force(seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(60, 5)).astype(np.float32)
    x[10] = x[3] * 2  # exact ties (same direction)
    x[11] = x[3]
    y = rng.integers(0, 6, size=60)
    y[59] = 99  # a singleton: left out as a query, still a candidate
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    ks = (1, 5, 10)
    loo = ranking_metrics(x, y, ks=ks)
    ref = _brute_force(xn @ xn.T, y, y, ks, exclude_self=True)
    assert loo == pytest.approx(ref, abs=1e-9)
    qg = ranking_metrics(x[:20], y[:20], x[20:], y[20:], ks=ks)
    assert qg == pytest.approx(_brute_force(xn[:20] @ xn[20:].T, y[:20], y[20:], ks), abs=1e-9)


def test_an_ivf_index_that_misses_items_ranks_them_last():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 8)).astype(np.float32)
    y = rng.integers(0, 4, 200)
    index = faiss_index("ivfpq", x, x, subspaces=2, codewords=16, nlist=16, nprobe=1)
    m = index_ranking_metrics(index, x / np.linalg.norm(x, axis=1, keepdims=True), y, y,
                              self_rows=np.arange(200))
    assert 0 < m["map@all"] < 1 and set(m) == {"precision@1", "precision@5", "precision@10",
                                               "recall@1", "recall@5", "recall@10", "map@all"}


@pytest.mark.parametrize("kind", ["pq", "opq", "ivfpq"])
def test_faiss_baselines_code_size_and_quality(kind):
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(10, 16))
    x = (np.repeat(centers, 30, 0) + 0.05 * rng.normal(size=(300, 16))).astype(np.float32)
    y = np.repeat(np.arange(10), 30)
    index = faiss_index(kind, x, x, subspaces=4, codewords=16, nlist=8, nprobe=8)
    assert code_bytes(index) == 2 and index.ntotal == 300  # 4 x 4 bits
    m = index_ranking_metrics(index, x / np.linalg.norm(x, axis=1, keepdims=True), y, y,
                              self_rows=np.arange(300))
    assert m["recall@1"] > 0.95  # well-separated clusters survive 16-bit codes


# ----------------------------------------------------------------------------- protocols

def _faces(people=5, per=10) -> Domain:
    images = np.zeros((people * per, 1, 4, 4), np.uint8)
    labels = np.repeat(np.arange(people), per)
    images[:, 0, 0, 0] = np.arange(people * per)  # each image distinct
    cut = [labels < 3, labels == 3, labels == 4]
    return Domain("faces", *(Split(images[c], labels[c]) for c in cut), [str(p) for p in range(people)],
                  "class-disjoint", "synthetic", "none")


def test_seen_protocol_holds_out_queries_of_every_identity():
    d = Protocol("seen", queries_per_class=3, val_per_class=1).apply(_faces(), seed=0)
    ids = lambda s: set(s.images[:, 0, 0, 0].tolist())  # noqa: E731
    assert len(d.train) == 5 * 6 and sorted(np.bincount(d.train.labels)) == [6] * 5
    for split, per in ((d.val, 1), (d.test, 3)):
        q, g = split.is_query, ~split.is_query
        assert np.bincount(split.labels[q]).tolist() == [per] * 5  # every identity is queried
        assert ids(Split(split.images[g], split.labels[g])) == ids(d.train)  # gallery = train
        assert not ids(Split(split.images[q], split.labels[q])) & ids(d.train)
    assert not ids(Split(d.val.images[d.val.is_query], d.val.labels[d.val.is_query])) & \
        ids(Split(d.test.images[d.test.is_query], d.test.labels[d.test.is_query]))
    again = Protocol("seen").apply(_faces(), seed=0)
    assert np.array_equal(again.train.images, d.train.images)  # seeded


def test_unseen_protocol_is_the_class_disjoint_split():
    faces = _faces()
    d = Protocol("unseen").apply(faces)
    assert d is faces and not set(d.train.labels) & set(d.test.labels)
    with pytest.raises(ValueError, match="needs at least one more"):
        Protocol("seen", queries_per_class=8, val_per_class=2).apply(faces)


# ----------------------------------------------------------------------------- the objective

TINY = Profile(embedding_dim=8, width=8, p=3, k=2, eval_batch_size=64, epochs_quantize=3,
               loss_params={"opqn": {"subspaces": 2, "codewords": 4, "scale": 10.0}})


def test_opqn_trains_through_the_loop_and_keeps_its_quantizer(tmp_path):
    domains = {"a": blob_domain("a", seed=0)}
    result = train(TrainJob(domains, OPQN(TINY), seed=0), out_dir=tmp_path, progress=False)
    assert result.config["objective"]["kind"] == "opqn"
    q = quantizer_of(result)
    assert (q.subspaces, q.codewords, q.bits) == (2, 4, 4)
    # its rows score the selected epoch's codes: recomputed from the kept quantizer, they agree
    from ue_lib.evaluate import evaluate_domains
    from ue_lib.opqn.objectives import CodesEmbedder

    test = evaluate_domains(CodesEmbedder(result.model, q), domains, "test")["a"]
    final = result.final[result.final.split == "test"].set_index("metric").value
    assert final["recall@1"] == test["recall@1"] and final["map@r"] == test["map@r"]
    again = train(TrainJob(domains, OPQN(TINY), seed=0), out_dir=tmp_path, progress=False)
    assert again.loaded
    for key, value in quantizer_of(again).state_dict().items():
        assert torch.equal(value, q.state_dict()[key])  # the selected epoch's quantizer, saved


def test_quantizer_of_refuses_other_models(tmp_path):
    from ue_lib.universal.objectives import Specialist

    result = train(TrainJob({"a": blob_domain("a")}, Specialist(TINY.with_overrides(
        {"epochs_specialist": 1})), seed=0), progress=False)
    with pytest.raises(ValueError, match="not an OPQN model"):
        quantizer_of(result)


def test_profile_code_shapes_are_checked():
    p = Profile(quantize_dim=192, quantize_codes="4x16, 8x16")
    assert p.code_shapes() == [(4, 16), (8, 16)]
    for bad, why in (("5x16", "do not divide"), ("4x12", "power of two"), ("96x4", "power of two"),
                     ("4-16", "MxK")):
        with pytest.raises(ValueError, match=why):
            Profile(quantize_dim=192, quantize_codes=bad)
    assert Profile().quantize_experiment_list()[-1] == ("universal", "")
    folder = Profile(quantize_experiments="folder:/data/faces:seen,universal")
    assert folder.quantize_experiment_list() == [("folder:/data/faces", "seen"), ("universal", "")]
    paper = load_profile("paper")  # its codes fit its 512-d embedding; IVFPQ among the baselines
    assert paper.code_shapes() == [(2, 256), (4, 64), (8, 16), (8, 64)]
    assert paper.methods("quantize_baselines") == ["pq", "opq", "ivfpq"]
    with pytest.raises(ValueError, match="DOMAIN:seen"):
        Profile(quantize_experiments="orl:half")


def test_faiss_is_used_for_search():
    assert isinstance(opqn_index(_quantizer(), np.zeros((3, 24), np.float32)), faiss.IndexPQ)


# ----------------------------------------------------------------------------- conclusions

def _rows(values: dict, metric="recall@1", domain="orl seen") -> pd.DataFrame:
    """{(model, bits): [value per seed]} -> result rows."""
    return pd.DataFrame([{"notebook": "06", "model": m, "method": f"{b} bits", "domain": domain,
                          "split": "test", "metric": metric, "value": v, "seed": s, "epoch": 1}
                         for (m, b), vs in values.items() for s, v in enumerate(vs)])


def test_verdicts_bits_and_tables_from_hand_made_rows():
    from ue_lib.opqn import verdicts as opqn_verdicts

    rows = _rows({("float", 16): [0.90, 0.92, 0.94], ("float", 32): [0.90, 0.92, 0.94],
                  ("pq", 16): [0.70, 0.72, 0.74], ("pq", 32): [0.89, 0.915, 0.925],
                  ("opqn", 16): [0.80, 0.83, 0.84], ("opqn", 32): [0.90, 0.91, 0.935]})
    v = opqn_verdicts.index_verdicts(rows, "opqn", ("pq",), "recall@1")
    assert v.outcome.tolist() == ["win", "tie"]  # +0.103 on every seed; +0.005 is a tie
    assert v["diff"].round(4).tolist() == [0.1033, 0.005]
    needed = opqn_verdicts.bits_needed(rows, "opqn", "float", "recall@1", tolerance=0.01)
    assert needed.bits.tolist() == [32] and needed["drop"].round(4).tolist() == [0.005]
    assert opqn_verdicts.bits_needed(rows, "pq", "float", "recall@1", 0.005).bits.tolist() == [None]
    table = opqn_verdicts.index_table(rows, "recall@1")
    assert list(table.columns) == ["float", "pq", "opqn"]
    assert table.loc[("orl seen", "OPQN network", 16), "opqn"] == "0.823 ± 0.021"
    # the universal index: the kl student's indexes are rows of their own, not columns of "–"
    universal = pd.concat([rows.assign(domain="universal"), _rows(
        {("kl float", 16): [0.6, 0.6, 0.6], ("kl pq", 16): [0.5, 0.5, 0.5]}, "recall@1", "universal")])
    table = opqn_verdicts.index_table(universal, "recall@1")
    assert table.loc[("universal", "kl student", 16)].tolist() == ["0.600 ± 0.000", "0.500 ± 0.000", "–"]
    assert (table == "–").sum().sum() == 1 and table.index.names == ["experiment", "embedding", "bits"]
    text = opqn_verdicts.index_sentence(v, "opqn", "recall@1")
    assert "1 win(s), 0 loss(es), 1 tie(s)" in text and "positive on every seed" in text


def test_index_costs_use_each_index_own_bits():
    from ue_lib.opqn import verdicts as opqn_verdicts

    rows = pd.concat([_rows({("float", 16): [2048.0], ("opqn", 16): [16.0]}, "bits"),
                      _rows({("float", 16): [256.0], ("opqn", 16): [2.0]}, "bytes")])
    costs = opqn_verdicts.index_costs(rows)
    assert costs.loc[("float", 2048), "bytes per item"] == 256
    assert list(costs.columns) == ["bytes per item"]  # no search time on small databases


def test_benchmark_table_gives_measured_times_two_significant_digits():
    from ue_lib.opqn import verdicts as opqn_verdicts

    table = opqn_verdicts.benchmark_table([
        {"index": "float (IndexFlatIP)", "bits": 2048, "bytes": 256, "items": 1_000_000,
         "memory_mib": 244.140625, "ms_per_query": 25.234},
        {"index": "PQ / OPQN 4x16", "bits": 16, "bytes": 2, "items": 1_000_000,
         "memory_mib": 1.9073486328125, "ms_per_query": 0.0123456}])
    assert list(table.columns)[2] == "memory of 1,000,000 items (MiB)"  # 256 B × 10^6 = 244 MiB
    assert table.loc["float (IndexFlatIP)"].tolist() == [2048, 256, "240", "25"]
    assert table.loc["PQ / OPQN 4x16"].tolist() == [16, 2, "1.9", "0.012"]


def test_search_time_is_the_median_after_a_warm_up(monkeypatch):
    from ue_lib.opqn import indexes

    class Clock:  # a fake index whose searches take 5, 1, 2, 9, 3, 4 seconds (the first: warm-up)
        def __init__(self):
            self.times, self.now = iter([5, 1, 2, 9, 3, 4]), 0.0

        def search(self, queries, k):
            self.now += next(self.times)

    fake = Clock()
    monkeypatch.setattr(indexes.time, "perf_counter", lambda: fake.now)
    seconds = indexes.search_seconds_per_query(fake, np.zeros((2, 4)))
    assert seconds == 3 / 2  # median of 1, 2, 9, 3, 4 over 2 queries


def test_ablation_table_compares_each_change_with_the_defaults():
    from ue_lib.opqn import verdicts as opqn_verdicts

    rows = _rows({("opqn", 32): [0.50, 0.52, 0.54], ("opqn codebook=random", 32): [0.40, 0.43, 0.44],
                  ("opqn entropy_weight=0", 32): [0.505, 0.52, 0.545]}, "map@all")
    table = opqn_verdicts.ablation_table(rows, "map@all")
    assert table.outcome.tolist() == ["(the defaults)", "loss", "tie"]  # no NaN in the reference row
    assert table.loc["opqn"].isna().sum() == 0
    assert table.loc["opqn codebook=random", "diff"] == -0.097  # -0.0967, to 3 decimals
    tiny = _rows({("opqn", 32): [0.50, 0.52, 0.54], ("opqn x", 32): [0.50, 0.52, 0.53996]}, "map@all")
    assert opqn_verdicts.ablation_table(tiny, "map@all").loc["opqn x", "diff"] == 0.0  # never -0.000
    assert "opqn codebook=random loses to the defaults (-0.097)" in opqn_verdicts.ablation_sentence(table)


def test_post_hoc_indexes_do_not_depend_on_faiss_threads():
    """OPQ's rotation moves with the thread count unless fitted on FIT_THREADS (the reason:
    workers of RunFolder.map run on fewer threads than the notebook's own process)."""
    from ue_lib.opqn.indexes import faiss_index

    rng = np.random.default_rng(0)
    train_x, items = rng.normal(size=(2000, 32)), rng.normal(size=(300, 32))
    before = faiss.omp_get_max_threads()
    try:
        codes = {}
        for threads in (1, 2):
            faiss.omp_set_num_threads(threads)
            for kind in ("pq", "opq"):
                index = faiss_index(kind, train_x, items, 4, 16, seed=0)
                assert faiss.omp_get_max_threads() == threads  # restored after fitting
                codes[kind, threads] = faiss.vector_to_array(faiss.downcast_index(
                    index.index if kind == "opq" else index).codes)
    finally:
        faiss.omp_set_num_threads(before)
    for kind in ("pq", "opq"):
        assert np.array_equal(codes[kind, 1], codes[kind, 2]), kind


def test_the_pq_schematic_is_faiss_product_quantization_of_m_log2_k_bits():
    import matplotlib.pyplot as plt

    from ue_lib.opqn import figures as opqn_figures
    from ue_lib.opqn import indexes

    for m, k in ((4, 16), (2, 256), (8, 4)):
        ex = indexes.pq_example(16, m, k)
        assert ex["bits"] == m * np.log2(k) and len(ex["codes"]) == m
        assert ex["code_bytes"] == int(np.ceil(m * np.log2(k) / 8))
        # the nearest codeword per sub-vector, joined, is what faiss decodes the code to
        chosen = np.concatenate([ex["codebooks"][j, c] for j, c in enumerate(ex["codes"])])
        np.testing.assert_allclose(chosen, ex["decoded"], rtol=1e-6, atol=1e-6)
    fig = opqn_figures.pq_schematic(indexes.pq_example(16, 4, 16))
    assert "M log2 K = 4 × 4 = 16 bits (2 bytes)" in fig._suptitle.get_text()
    assert len(fig.axes) == 1 + 2 * 4  # the vector, and per sub-space its codebook and its code
    plt.close(fig)


def test_the_compressed_student_against_opqns_universal_network_in_both_directions():
    from ue_lib.opqn import verdicts as opqn_verdicts

    ahead = _rows({("kl opq", 16): [0.37, 0.36, 0.38], ("opqn", 16): [0.26, 0.27, 0.25],
                   ("kl opq", 32): [0.50, 0.52, 0.51], ("opqn", 32): [0.45, 0.46, 0.44]},
                  domain="universal")
    text = opqn_verdicts.student_verdict(ahead)
    assert "16 bits 0.370 against 0.260 (win), 32 bits 0.510 against 0.450 (win)" in text
    assert text.endswith("**holds**.")
    behind = ahead.assign(value=ahead.value.where(ahead.model != "opqn", ahead.value + 0.2))
    assert opqn_verdicts.student_verdict(behind).endswith("**does not hold**.")
    tied = _rows({("kl opq", 16): [0.37, 0.36, 0.38], ("opqn", 16): [0.365, 0.37, 0.375],
                  ("kl opq", 32): [0.50, 0.52, 0.51], ("opqn", 32): [0.45, 0.46, 0.44]},
                 domain="universal")  # a tie at 16 bits, a win at 32: 1 of 2 is no majority
    assert "(tie)" in opqn_verdicts.student_verdict(tied)
    assert opqn_verdicts.student_verdict(tied).endswith("**not established**.")
    assert opqn_verdicts.student_verdict(ahead[ahead.seed == 0]).endswith("**holds**, on this seed.")
    assert opqn_verdicts.student_verdict(ahead.assign(domain="orl seen")).startswith("No recall@1")


def test_the_bits_needed_table_names_the_largest_budget_when_none_suffices():
    from ue_lib.opqn import verdicts as opqn_verdicts

    rows = pd.concat([
        _rows({("float", 16): [0.90, 0.92], ("float", 48): [0.90, 0.92],
               ("opqn", 16): [0.80, 0.82], ("opqn", 48): [0.895, 0.915],
               ("pq", 16): [0.70, 0.72], ("pq", 48): [0.85, 0.87]}, domain="orl seen"),
        _rows({("float", 16): [0.5, 0.5], ("opqn", 16): [0.495, 0.5]}, domain="universal")])
    needed = opqn_verdicts.bits_budgets(rows)
    assert needed.largest.tolist() == [48, 16, 48]
    table = opqn_verdicts.bits_table(needed)
    assert table.loc[("orl seen", "OPQN network"), "opqn"] == "48 bits"  # drop 0.005 at 48, 0.1 at 16
    assert table.loc[("orl seen", "OPQN network"), "pq"] == "more than 48 (drop 0.050)"
    assert table.loc[("universal", "OPQN network")].tolist() == ["16 bits", "–"]
    kl = pd.concat([rows, _rows({("kl float", 16): [0.5, 0.5], ("kl pq", 16): [0.5, 0.49]},
                                domain="universal")])
    table = opqn_verdicts.bits_table(opqn_verdicts.bits_budgets(kl))
    assert table.loc[("universal", "kl student"), "pq"] == "16 bits"  # a row, not a "kl pq" column
    assert list(table.columns) == ["opqn", "pq"]


def test_the_answer_of_notebook_06_in_both_directions():
    from ue_lib.opqn import verdicts as opqn_verdicts

    base = {("float", 16): [0.5, 0.52, 0.51], ("float", 32): [0.5, 0.52, 0.51],
            ("pq", 16): [0.30, 0.31, 0.32], ("pq", 32): [0.40, 0.41, 0.42]}
    behind = pd.concat([_rows({**base, ("opqn", 16): [0.20, 0.21, 0.22], ("opqn", 32): [0.45, 0.46, 0.47]},
                              m, domain="universal") for m in ("recall@1", "map@all")])
    text = opqn_verdicts.answer(behind, ["pq"])
    assert ("No budget tried (up to 32 bits, 4 bytes) stays within 0.01 of float Recall@1; the "
            "highest at 32 bits is opqn's, 0.460 against its float 0.510.") in text
    assert ("against pq, map@all **does not hold** (1 win, 0 ties, 1 loss of 2), recall@1 **does "
            "not hold** (1 win, 0 ties, 1 loss of 2).") in text and "depends on" not in text
    # the highest compressed Recall@1 is not always the smallest drop from its own float
    student = pd.concat([behind, _rows({("kl float", 16): [0.7] * 3, ("kl float", 32): [0.7] * 3,
                                        ("kl pq", 16): [0.5] * 3, ("kl pq", 32): [0.52] * 3},
                                       domain="universal")])
    assert ("the highest at 32 bits is kl pq's, 0.520 against its float 0.700 (the smallest drop "
            "from its own float is opqn's, 0.050)") in opqn_verdicts.answer(student, ["pq"])
    ahead = pd.concat([_rows({**base, ("opqn", 16): [0.495, 0.52, 0.505], ("opqn", 32): [0.5, 0.52, 0.51]},
                             m, domain="universal") for m in ("recall@1", "map@all")])
    text = opqn_verdicts.answer(ahead, ["pq"])
    assert "Within 0.01 of float Recall@1: opqn from 16 bits (the others need more than 32)." in text
    assert "against pq, map@all **holds** (2 wins, 0 ties, 0 losses of 2)" in text
    # the metrics disagree: OPQN ahead in Recall@1, behind in mAP@all
    mixed = pd.concat([ahead[ahead.metric == "recall@1"], behind[behind.metric == "map@all"]])
    assert opqn_verdicts.answer(mixed, ["pq"]).endswith("The verdict depends on the baseline and "
                                                        "the metric.")


def test_the_ablations_run_below_the_ceiling_by_default():
    from ue_lib.profiles import load_profile

    assert load_profile("mini").ablation_experiment() == ("omniglot", "unseen")
    assert load_profile("mini", overrides={"quantize_ablation_on": "universal"}
                        ).ablation_experiment() == ("universal", "")
    # an experiment the profile does not run: the first one it does
    assert load_profile("paper").ablation_experiment() == ("cub", "unseen")


def test_the_shapes_line_names_each_embedding_and_its_codes():
    from ue_lib.opqn.verdicts import shapes_line
    from ue_lib.profiles import load_profile

    assert shapes_line(load_profile("mini")) == (
        "OPQN networks: 192-d floats (768 bytes), codes 4×16, 6×16, 8×16, 12×16 at 16, 24, 32, 48 "
        "bits. The kl student: 64-d (256 bytes), faiss codes 2×256, 4×64, 4×256, 8×64 at the same "
        "bits (at most 8 bits per sub-space).")
