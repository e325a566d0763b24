"""Tests for ue_lib.samplers: PK batches, domain schedules and the multi-domain sampler."""

from collections import Counter

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from ue_lib.samplers import SCHEDULES, MultiDomainBatchSampler, PKSampler, domain_schedule


def balanced_labels(n_classes: int, per_class: int) -> np.ndarray:
    return np.repeat(np.arange(n_classes), per_class)


def assert_pk(batch: list[int], labels: np.ndarray, p: int, k: int) -> None:
    assert len(batch) == p * k
    counts = Counter(labels[batch].tolist())
    assert len(counts) == p
    assert set(counts.values()) == {k}


# ------------------------------------------------------------------------------- PKSampler


def test_pk_batches_are_class_balanced():
    labels = np.random.default_rng(0).integers(0, 20, size=500)
    s = PKSampler(labels, p=4, k=3, seed=1)
    assert (s.p, s.k, s.batch_size) == (4, 3, 12)
    batches = list(s)
    assert len(batches) == len(s) == 500 // 12
    for b in batches:
        assert all(isinstance(i, int) for i in b)
        assert_pk(b, labels, 4, 3)
        assert len(set(b)) == len(b)  # no class here has fewer than K images


def test_without_replacement_coverage():
    labels = balanced_labels(10, 6)  # 60 images; 4 classes x 3 -> 12 per batch
    s = PKSampler(labels, p=4, k=3, seed=3, batches_per_epoch=50)  # 600 draws = 10 per image
    counts = Counter(i for b in s for i in b)
    assert set(counts) == set(range(60))
    assert max(counts.values()) - min(counts.values()) <= 3
    class_counts = Counter(labels[i] for b in s for i in b[::3])
    assert max(class_counts.values()) - min(class_counts.values()) <= 2

    # Default epoch length: one pass over the data visits every image exactly once.
    s = PKSampler(balanced_labels(6, 4), p=3, k=2, seed=0)
    assert len(s) == 4
    assert sorted(i for b in s for i in b) == list(range(24))


def test_small_classes_sampled_with_replacement():
    labels = np.array([0, 0, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2])
    s = PKSampler(labels, p=3, k=4, seed=0, batches_per_epoch=5)
    for b in s:
        assert_pk(b, labels, 3, 4)
        small = [i for i in b if labels[i] == 0]
        assert set(small) == {0, 1}  # both images used, repeats fill the remaining slots
        assert len(set(b) - {0, 1}) == 8  # large classes: no repeats within a batch


def test_singleton_classes_excluded():
    labels = np.array([0, 0, 0, 1, 1, 1, 2, 3, 3, 3, 4])
    s = PKSampler(labels, p=2, k=2, seed=0, batches_per_epoch=30)
    assert s.num_classes == 3 and s.num_samples == 9
    used = {i for b in s for i in b}
    assert 6 not in used and 10 not in used
    assert set(s.class_indices) == {0, 1, 3}


def test_too_few_usable_classes():
    with pytest.raises(ValueError, match="at least 2 classes"):
        PKSampler([0, 0, 0, 1, 2, 3], p=2, k=2)
    with pytest.raises(ValueError, match="at least 2 classes"):
        PKSampler(["a", "b", "c"], p=2, k=2)


def test_p_larger_than_classes_adjusts_p_and_k():
    labels = balanced_labels(3, 10)
    s = PKSampler(labels, p=8, k=2, seed=0)
    assert (s.p, s.k, s.batch_size) == (3, 6, 18)
    assert (s.requested_p, s.requested_k) == (8, 2)
    assert s.batch_size >= 8 * 2
    for b in s:
        assert_pk(b, labels, 3, 6)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"labels": np.zeros((4, 2)), "p": 2, "k": 2}, "1-D"),
        ({"labels": [0, 0, 1, 1], "p": 0, "k": 2}, "p must be"),
        ({"labels": [0, 0, 1, 1], "p": 2, "k": 1}, "k must be"),
        ({"labels": [0, 0, 1, 1], "p": 2.0, "k": 2}, "p must be"),
        ({"labels": [0, 0, 1, 1], "p": True, "k": 2}, "p must be"),
        ({"labels": [0, 0, 1, 1], "p": 2, "k": 2, "seed": -1}, "seed must be"),
        ({"labels": [0, 0, 1, 1], "p": 2, "k": 2, "batches_per_epoch": 0}, "batches_per_epoch"),
    ],
)
def test_argument_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PKSampler(**kwargs)


def test_string_labels():
    labels = np.array(["cat", "dog", "cat", "dog", "eel", "eel"])
    for b in PKSampler(labels, p=2, k=2, seed=0, batches_per_epoch=4):
        assert_pk(b, labels, 2, 2)


def test_determinism_and_epochs():
    labels = np.random.default_rng(1).integers(0, 15, size=300)
    a, b = PKSampler(labels, 4, 4, seed=7), PKSampler(labels, 4, 4, seed=7)
    assert list(a) == list(b)
    a.set_epoch(1)
    epoch1 = list(a)
    assert epoch1 != list(b)
    b.set_epoch(1)
    assert epoch1 == list(b)
    assert list(PKSampler(labels, 4, 4, seed=8)) != list(PKSampler(labels, 4, 4, seed=7))
    # The per-epoch stream is independent of how many batches are requested (stable prefixes).
    long = list(a.batches(1, 3 * len(a)))
    assert long[: len(a)] == epoch1
    assert list(a.batches(1, 0)) == []


def test_no_global_rng_use():
    labels = np.random.default_rng(2).integers(0, 12, size=200)
    np.random.seed(0)
    torch.manual_seed(0)
    first = list(PKSampler(labels, 3, 4, seed=5))
    multi_first = list(
        MultiDomainBatchSampler({"a": labels, "b": labels[:50]}, 3, 4, "proportional")
    )
    np.random.seed(12345)
    torch.manual_seed(999)
    np.random.rand(17)
    assert list(PKSampler(labels, 3, 4, seed=5)) == first
    assert (
        list(MultiDomainBatchSampler({"a": labels, "b": labels[:50]}, 3, 4, "proportional"))
        == multi_first
    )


def test_dataloader_batch_sampler():
    labels = balanced_labels(8, 4)
    ds = TensorDataset(torch.arange(len(labels)), torch.as_tensor(labels))
    s = PKSampler(labels, p=4, k=2, seed=0)
    loader = DataLoader(ds, batch_sampler=s)
    assert len(loader) == len(s) == 4
    seen = []
    for idx, y in loader:
        assert idx.shape == (8,)
        assert_pk(idx.tolist(), labels, 4, 2)
        assert torch.equal(y, torch.as_tensor(labels)[idx])
        seen += idx.tolist()
    assert sorted(seen) == list(range(32))  # two class rounds cover every image once


# ------------------------------------------------------------------------------- schedules


def test_schedules_constant():
    assert SCHEDULES == ("round_robin", "proportional", "dynamic")


def test_round_robin_exact():
    assert domain_schedule({"a": 4, "b": 2, "c": 0}, "round_robin", 0, 0) == ["a", "b", "c"] * 2
    assert domain_schedule({"a": 2, "b": 3}, "round_robin", 0, 0) == ["a", "b"] * 3  # 2.5 -> 3
    assert domain_schedule({"x": 0, "y": 0}, "round_robin", 0, 0) == ["x", "y"]  # at least 1
    assert domain_schedule({"b": 1, "a": 1}, "round_robin", 0, 0) == ["b", "a"]  # dict order
    # Independent of seed and epoch.
    assert domain_schedule({"a": 5, "b": 1}, "round_robin", 3, 9) == ["a", "b"] * 3


def test_proportional_exact_counts():
    counts = {"a": 7, "b": 2, "c": 0}
    s0 = domain_schedule(counts, "proportional", 0, 0)
    assert Counter(s0) == {"a": 7, "b": 2, "c": 1}
    assert domain_schedule(counts, "proportional", 0, 0) == s0
    orders = {tuple(domain_schedule(counts, "proportional", 0, e)) for e in range(10)}
    assert len(orders) > 1  # shuffled differently per epoch
    assert all(Counter(o) == Counter(s0) for o in orders)


def test_schedule_errors():
    with pytest.raises(ValueError, match="round_robin, proportional, dynamic"):
        domain_schedule({"a": 1}, "fastest", 0, 0)
    with pytest.raises(ValueError, match="at least one domain"):
        domain_schedule({}, "round_robin", 0, 0)
    with pytest.raises(ValueError, match="batches_per_domain"):
        domain_schedule({"a": -1}, "proportional", 0, 0)
    with pytest.raises(ValueError, match="round_robin, proportional, dynamic"):
        MultiDomainBatchSampler({"a": [0, 0, 1, 1]}, 2, 2, schedule="nope")


# --------------------------------------------------------------------- MultiDomainBatchSampler


@pytest.fixture
def domains() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "omniglot": rng.integers(0, 30, size=400),
        "fashion": rng.integers(0, 10, size=120),
        "glyphs": balanced_labels(3, 3),  # tiny: 0 natural batches, P gets lowered to 3
    }


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_multi_domain_batches(domains, schedule):
    s = MultiDomainBatchSampler(domains, p=4, k=3, schedule=schedule, seed=1)
    assert s.batches_per_domain == {"omniglot": 33, "fashion": 10, "glyphs": 0}
    batches = list(s)
    assert len(batches) == len(s)
    for name, idx in batches:
        sampler = s.samplers[name]
        assert_pk(idx, domains[name], sampler.p, sampler.k)
        assert all(0 <= i < len(domains[name]) for i in idx)
    counts = Counter(name for name, _ in batches)
    if schedule == "round_robin":
        assert counts == {"omniglot": 14, "fashion": 14, "glyphs": 14}
        assert [name for name, _ in batches[:6]] == ["omniglot", "fashion", "glyphs"] * 2
    elif schedule == "proportional":
        assert counts == {"omniglot": 33, "fashion": 10, "glyphs": 1}
    else:  # dynamic without weights yet: the same 44 batches shared equally (+1 by remainder)
        assert sorted(counts.values()) == [14, 15, 15]


def test_multi_domain_determinism(domains):
    a = MultiDomainBatchSampler(domains, 4, 3, "proportional", seed=2)
    b = MultiDomainBatchSampler(domains, 4, 3, "proportional", seed=2)
    assert list(a) == list(b)
    a.set_epoch(3)
    assert list(a) != list(b)
    b.set_epoch(3)
    assert list(a) == list(b)
    # Domains are seeded distinctly: identical label arrays still give different streams.
    same = MultiDomainBatchSampler({"x": domains["fashion"], "y": domains["fashion"]}, 4, 3)
    xs = [idx for name, idx in same if name == "x"]
    ys = [idx for name, idx in same if name == "y"]
    assert len(xs) == len(ys) and xs != ys


def test_multi_domain_bad_domain_named():
    with pytest.raises(ValueError, match="domain 'bad'"):
        MultiDomainBatchSampler({"ok": [0, 0, 1, 1], "bad": [0, 1, 2]}, 2, 2)


# ----------------------------------------------------------------------------- dynamic schedule
from ue_lib.samplers import lag_weights  # noqa: E402


def test_dynamic_schedule_shares_batches_by_weight():
    counts = {"a": 6, "b": 3, "c": 1}  # 10 batches in all
    order = domain_schedule(counts, "dynamic", seed=0, epoch=0, weights={"a": 1, "b": 1, "c": 2})
    # one batch each, the other 7 shared 1:1:2 -> 2.75, 2.75, 4.5 -> largest remainders
    assert len(order) == 10
    assert {d: order.count(d) for d in counts} == {"a": 3, "b": 3, "c": 4}
    # without weights (before the first evaluation): equal shares
    even = domain_schedule(counts, "dynamic", seed=0, epoch=0)
    assert sorted(even.count(d) for d in counts) == [3, 3, 4]
    # a zero weight still leaves one batch
    starved = domain_schedule(counts, "dynamic", seed=0, epoch=0, weights={"a": 0, "b": 0, "c": 1})
    assert {d: starved.count(d) for d in counts} == {"a": 1, "b": 1, "c": 8}
    assert order != domain_schedule(counts, "dynamic", seed=0, epoch=1, weights={"a": 1, "b": 1, "c": 2})


def test_lag_weights():
    w = lag_weights({"a": 0.9, "b": 0.8}, {"a": 0.7, "b": 0.85}, floor=0.02)
    assert w == pytest.approx({"a": 0.22, "b": 0.02})


def test_multi_domain_sampler_follows_dynamic_weights():
    labels = {"a": np.repeat(np.arange(8), 8), "b": np.repeat(np.arange(8), 8)}
    s = MultiDomainBatchSampler(labels, p=4, k=4, schedule="dynamic", seed=0)
    assert len(s) == 8
    s.set_weights({"a": 1.0, "b": 0.0})
    assert [d for d, _ in s].count("a") == 7
    with pytest.raises(ValueError, match="unknown domain"):
        s.set_weights({"z": 1.0})


def test_a_fixed_number_of_batches_per_domain_equalises_budgets():
    """With batches_per_domain=N every domain gets N batches per epoch, whatever its size and
    whether it is trained alone (a specialist) or with the others (naive fusion, a student)."""
    labels = {"big": np.repeat(np.arange(40), 10), "small": np.repeat(np.arange(6), 3)}
    together = MultiDomainBatchSampler(labels, p=4, k=2, batches_per_domain=5)
    assert [d for d, _ in together].count("small") == 5 and len(together) == 10
    alone = MultiDomainBatchSampler({"small": labels["small"]}, p=4, k=2, batches_per_domain=5)
    assert len(alone) == 5
    natural = MultiDomainBatchSampler({"small": labels["small"]}, p=4, k=2)
    assert len(natural) == 2  # 18 images // 8 per batch
