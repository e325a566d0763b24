"""Tests for ue_lib.losses: hand-computed values, independent loop implementations, gradients."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F

from ue_lib.losses import (
    DISTILLATION_LOSSES,
    METRIC_LOSSES,
    BinomialDevianceLoss,
    DarkRankLoss,
    DistanceDistillationLoss,
    DistributionDistillationLoss,
    EmbeddingDistillationLoss,
    MultiSimilarityLoss,
    ProxyAnchorLoss,
    RKDAngleLoss,
    RKDDistanceLoss,
    TripletLoss,
    make_distillation_loss,
    make_metric_loss,
    squared_distances,
)

SQ2 = math.sqrt(2.0)


def _rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _unit(x: torch.Tensor) -> list[list[float]]:
    return F.normalize(x, dim=1).tolist()


def _sqdist(a: list[float], b: list[float]) -> float:
    return sum((u - v) ** 2 for u, v in zip(a, b))


def _softmax(v: list[float]) -> list[float]:
    m = max(v)
    e = [math.exp(x - m) for x in v]
    return [x / sum(e) for x in e]


def _smooth_l1(x: float) -> float:
    return 0.5 * x * x if abs(x) < 1 else abs(x) - 0.5


# 3 x 2 example shared by the hand-computed distillation values.
TEACHER3 = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]], dtype=torch.float64)
STUDENT3 = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]], dtype=torch.float64)


def _rotation(d: int, seed: int = 1) -> torch.Tensor:
    return torch.linalg.qr(_rand(d, d, seed=seed))[0]


# ----------------------------------------------------------------------------- helper
def test_squared_distances() -> None:
    x = _rand(6, 4)
    d = squared_distances(x)
    e = _unit(x)
    ref = torch.tensor([[_sqdist(a, b) for b in e] for a in e], dtype=torch.float64)
    assert torch.allclose(d, ref, atol=1e-12)
    assert (torch.diagonal(d) == 0).all() and (d >= 0).all()


# ----------------------------------------------------------------------------- KL
def test_kl_hand_computed() -> None:
    # Teacher distances: d(0,1)=2, d(0,2)=4, d(1,2)=2; student (normalised): 2-sqrt2, 2, 2-sqrt2.
    # Anchor 1 has p = q = (1/2, 1/2); anchors 0 and 2 are mirror images, so L = 2/3 KL_0.
    p = [1 / (1 + math.exp(-2)), math.exp(-2) / (1 + math.exp(-2))]
    q = [1 / (1 + math.exp(-SQ2)), math.exp(-SQ2) / (1 + math.exp(-SQ2))]
    kl_pq = sum(a * math.log(a / b) for a, b in zip(p, q))
    kl_qp = sum(b * math.log(b / a) for a, b in zip(p, q))
    assert 2 / 3 * kl_pq == pytest.approx(0.013910836995144721, rel=1e-12)
    for direction, expected in [("teacher_student", 2 / 3 * kl_pq),
                                ("student_teacher", 2 / 3 * kl_qp),
                                ("symmetric", (kl_pq + kl_qp) / 3)]:
        loss = DistributionDistillationLoss(temperature=1.0, direction=direction)
        assert loss(STUDENT3, TEACHER3).item() == pytest.approx(expected, rel=1e-10)


def _ref_kl(s: torch.Tensor, t: torch.Tensor, tau: float, k: int | None, direction: str,
            tie_lower_first: bool = True) -> float:
    s, t = _unit(s), _unit(t)
    b, total = len(s), 0.0
    for i in range(b):
        cands = [j for j in range(b) if j != i]
        if k is not None:
            sign = 1 if tie_lower_first else -1
            cands = sorted(cands, key=lambda j: (_sqdist(t[i], t[j]), sign * j))[: min(k, b - 1)]
        p = _softmax([-_sqdist(t[i], t[j]) / tau for j in cands])
        q = _softmax([-_sqdist(s[i], s[j]) / tau for j in cands])
        pq = sum(a * math.log(a / c) for a, c in zip(p, q))
        qp = sum(c * math.log(c / a) for a, c in zip(p, q))
        total += {"teacher_student": pq, "student_teacher": qp, "symmetric": 0.5 * (pq + qp)}[
            direction]
    return total / b


@pytest.mark.parametrize("direction", DistributionDistillationLoss.DIRECTIONS)
@pytest.mark.parametrize("k", [None, 1, 3, 50])
def test_kl_matches_loop_reference(direction: str, k: int | None) -> None:
    s, t = _rand(7, 5, seed=2), _rand(7, 3, seed=3)
    loss = DistributionDistillationLoss(temperature=0.5, neighbors=k, direction=direction)
    assert loss(s, t).item() == pytest.approx(_ref_kl(s, t, 0.5, k, direction), rel=1e-9, abs=1e-12)


def test_kl_neighbor_ties_lower_index() -> None:
    # Anchor 0 is at distance 2 from items 1, 2 and 4 (exact tie) and 4 from item 3: with k=2 the
    # neighbours must be {1, 2}. Exact integer coordinates make the ties exact in floating point.
    t = torch.tensor([[1, 0, 0], [0, 1, 0], [0, -1, 0], [-1, 0, 0], [0, 0, 1]], dtype=torch.float64)
    s = _rand(5, 4, seed=4)
    value = DistributionDistillationLoss(temperature=0.5, neighbors=2)(s, t).item()
    assert value == pytest.approx(_ref_kl(s, t, 0.5, 2, "teacher_student"), rel=1e-9)
    assert value != pytest.approx(_ref_kl(s, t, 0.5, 2, "teacher_student", False), rel=1e-3)


@pytest.mark.parametrize("direction", DistributionDistillationLoss.DIRECTIONS)
def test_kl_zero_when_equal_or_rotated(direction: str) -> None:
    t = _rand(9, 6, seed=5)
    for k in (None, 3):
        loss = DistributionDistillationLoss(neighbors=k, direction=direction)
        assert abs(loss(t.clone(), t).item()) < 1e-10
        assert abs(loss(t @ _rotation(6), t).item()) < 1e-8


def test_kl_gradients() -> None:
    s = _rand(8, 5, seed=6).float().requires_grad_()
    t = _rand(8, 3, seed=7).float().requires_grad_()
    DistributionDistillationLoss()(s, t).backward()
    assert s.grad is not None and torch.isfinite(s.grad).all() and s.grad.abs().sum() > 0
    assert t.grad is None


def test_kl_validation() -> None:
    for bad in (0.0, -1.0, True, float("nan"), "0.1"):
        with pytest.raises(ValueError, match="temperature"):
            DistributionDistillationLoss(temperature=bad)  # type: ignore[arg-type]
    for bad in (0, -2, 1.5, True):
        with pytest.raises(ValueError, match="neighbors"):
            DistributionDistillationLoss(neighbors=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="teacher_student.*student_teacher.*symmetric"):
        DistributionDistillationLoss(direction="forward")


# ----------------------------------------------------------------------------- MSE losses
def test_distance_mse_hand_computed_and_zero() -> None:
    # Differences d_S - d_T over unordered pairs: -sqrt2, -2, -sqrt2 -> squares 2, 4, 2.
    loss = DistanceDistillationLoss()
    assert loss(STUDENT3, TEACHER3).item() == pytest.approx(8 / 3, rel=1e-12)
    t = _rand(6, 4)
    assert loss(t.clone(), t).item() < 1e-20
    assert loss(t @ _rotation(4), t).item() < 1e-20


def test_embedding_mse_hand_computed_and_zero() -> None:
    # Per-row squared gaps of normalised rows: 0, 2 - sqrt2, 2.
    loss = EmbeddingDistillationLoss()
    assert loss(STUDENT3, TEACHER3).item() == pytest.approx((4 - SQ2) / 3, rel=1e-12)
    t = _rand(6, 4)
    assert loss(t.clone(), t).item() < 1e-20
    assert len(list(EmbeddingDistillationLoss(4, 4).parameters())) == 0


def test_embedding_mse_dim_mismatch_message() -> None:
    with pytest.raises(ValueError, match="pass student_dim and teacher_dim"):
        EmbeddingDistillationLoss()(_rand(4, 3), _rand(4, 5))
    with pytest.raises(ValueError, match="expected student dim 3"):
        EmbeddingDistillationLoss(3, 5)(_rand(4, 4).float(), _rand(4, 5).float())


def test_embedding_mse_projection_trains() -> None:
    torch.manual_seed(0)
    teacher = torch.randn(16, 5)
    student = torch.randn(16, 3)
    loss = EmbeddingDistillationLoss(student_dim=3, teacher_dim=5)
    assert loss.projection is not None and loss.projection.weight.shape == (5, 3)
    same = EmbeddingDistillationLoss(student_dim=3, teacher_dim=5)
    assert torch.equal(same.projection.weight, loss.projection.weight)  # seeded init
    opt = torch.optim.Adam(loss.parameters(), lr=0.05)
    first = loss(student, teacher).item()
    for _ in range(30):
        opt.zero_grad()
        value = loss(student, teacher)
        value.backward()
        opt.step()
    assert loss(student, teacher).item() < 0.8 * first


# ----------------------------------------------------------------------------- RKD
def _ref_rkd_distance(s: torch.Tensor, t: torch.Tensor) -> float:
    def dists(x: torch.Tensor) -> dict[tuple[int, int], float]:
        e = _unit(x)
        d = {(i, j): math.sqrt(_sqdist(e[i], e[j])) for i in range(len(e)) for j in range(len(e))
             if i != j}
        mean = sum(d.values()) / len(d)
        return {key: v / mean for key, v in d.items()}

    ds, dt = dists(s), dists(t)
    return sum(_smooth_l1(ds[key] - dt[key]) for key in ds) / len(ds)


def _ref_rkd_angle(s: torch.Tensor, t: torch.Tensor) -> float:
    def angles(x: torch.Tensor) -> dict[tuple[int, int, int], float]:
        e = _unit(x)
        out = {}
        for i in range(len(e)):
            for j in range(len(e)):
                for k in range(len(e)):
                    if i == j or k == j:
                        continue
                    u = [a - b for a, b in zip(e[i], e[j])]
                    v = [a - b for a, b in zip(e[k], e[j])]
                    nu, nv = math.sqrt(sum(a * a for a in u)), math.sqrt(sum(a * a for a in v))
                    out[i, j, k] = sum(a * b for a, b in zip(u, v)) / (nu * nv)
        return out

    a_s, a_t = angles(s), angles(t)
    return sum(_smooth_l1(a_s[key] - a_t[key]) for key in a_s) / len(a_s)


@pytest.mark.parametrize(("cls", "ref"), [(RKDDistanceLoss, _ref_rkd_distance),
                                          (RKDAngleLoss, _ref_rkd_angle)])
def test_rkd_matches_loop_reference_and_invariances(cls: type, ref: Callable[..., float]) -> None:
    s, t = _rand(6, 5, seed=8), _rand(6, 3, seed=9)
    loss = cls()
    assert loss(s, t).item() == pytest.approx(ref(s, t), rel=1e-9)
    # Embeddings are normalised inside, so the raw scale of the student is irrelevant.
    assert loss(5 * s, t).item() == pytest.approx(ref(s, t), rel=1e-9)
    assert loss(t.clone(), t).item() < 1e-20
    assert loss(t @ _rotation(3), t).item() < 1e-20


def test_rkd_distance_linear_branch() -> None:
    # A near-collapsed student has normalised distances far from the teacher's -> |x| > 1 terms.
    t = _rand(6, 3, seed=10)
    s = torch.cat([torch.ones(5, 3), -torch.ones(1, 3)]).double() + 1e-3 * _rand(6, 3, seed=11)
    assert RKDDistanceLoss()(s, t).item() == pytest.approx(_ref_rkd_distance(s, t), rel=1e-8)


# ----------------------------------------------------------------------------- DarkRank
def _ref_darkrank(s: torch.Tensor, t: torch.Tensor, alpha: float, beta: float) -> float:
    es, et = _unit(s), _unit(t)
    b, total = len(es), 0.0
    def score(e: list[list[float]], i: int, j: int) -> float:
        return -alpha * math.sqrt(_sqdist(e[i], e[j])) ** beta

    for i in range(b):
        others = sorted((j for j in range(b) if j != i), key=lambda j: (-score(et, i, j), j))
        ss = [score(es, i, j) for j in others]
        nll = -sum(ss[r] - math.log(sum(math.exp(x) for x in ss[r:])) for r in range(len(ss)))
        total += nll / (b - 1)
    return total / b


@pytest.mark.parametrize(("alpha", "beta"), [(3.0, 3.0), (5.0, 2.0), (2.0, 1.0)])
def test_darkrank_matches_loop_reference(alpha: float, beta: float) -> None:
    s, t = _rand(7, 4, seed=12), _rand(7, 6, seed=13)
    loss = DarkRankLoss(alpha=alpha, beta=beta)
    assert loss(s, t).item() == pytest.approx(_ref_darkrank(s, t, alpha, beta), rel=1e-9)


def test_darkrank_prefers_teacher_ranking() -> None:
    # Teacher at angles 0, 30, 90 deg: rankings 0:(1,2), 1:(0,2), 2:(1,0). Student at 0, 90, 30
    # reverses all three; a student equal to the teacher reproduces them.
    def circle(*deg: float) -> torch.Tensor:
        return torch.tensor([[math.cos(math.radians(a)), math.sin(math.radians(a))] for a in deg],
                            dtype=torch.float64)

    t = circle(0, 30, 90)
    loss = DarkRankLoss()
    assert loss(t.clone(), t).item() < loss(circle(0, 90, 30), t).item()
    t = _rand(10, 4, seed=14)
    shuffled = t[torch.randperm(10, generator=torch.Generator().manual_seed(0))]
    assert loss(t.clone(), t).item() < loss(shuffled, t).item()


# ----------------------------------------------------------------------------- all distillation
@pytest.mark.parametrize("name", sorted(DISTILLATION_LOSSES))
def test_distillation_gradients_flow_to_student_only(name: str) -> None:
    loss = make_distillation_loss(name, student_dim=6, teacher_dim=4)
    s = _rand(8, 6, seed=15).float().requires_grad_()
    t = _rand(8, 4, seed=16).float().requires_grad_()
    value = loss(s, t)
    assert value.dim() == 0 and torch.isfinite(value)
    value.backward()
    assert s.grad is not None and torch.isfinite(s.grad).all() and s.grad.abs().sum() > 0
    assert t.grad is None
    for p in loss.parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0


@pytest.mark.parametrize("name", sorted(DISTILLATION_LOSSES))
def test_distillation_input_errors(name: str) -> None:
    loss = make_distillation_loss(name)
    with pytest.raises(ValueError, match="batch sizes differ"):
        loss(_rand(4, 3), _rand(5, 3))
    with pytest.raises(ValueError, match="at least 2"):
        loss(_rand(1, 3), _rand(1, 3))
    if name != "darkrank":
        t = _rand(5, 3)
        assert abs(loss(t.clone(), t).item()) < 1e-10


def test_distillation_factory() -> None:
    with pytest.raises(ValueError, match="valid names.*darkrank.*kl"):
        make_distillation_loss("nope")
    kl = make_distillation_loss("kl", student_dim=3, teacher_dim=5, temperature=0.1)
    assert isinstance(kl, DistributionDistillationLoss) and kl.temperature == 0.1
    emb = make_distillation_loss("embedding_mse", student_dim=3, teacher_dim=5)
    assert isinstance(emb, EmbeddingDistillationLoss) and emb.projection is not None


# ----------------------------------------------------------------------------- metric losses
def _circle(*deg: float) -> torch.Tensor:
    return torch.tensor([[math.cos(math.radians(a)), math.sin(math.radians(a))] for a in deg],
                        dtype=torch.float64)


def _chord(a: float, b: float) -> float:
    return 2 * math.sin(math.radians(abs(a - b)) / 2)


def test_triplet_batch_hard_hand_computed() -> None:
    ang, m = (0, 60, 100, 180), 0.5
    d = [[_chord(a, b) for b in ang] for a in ang]
    # labels 0,0,1,1: (hardest positive, hardest negative) per anchor.
    terms = [(d[0][1], min(d[0][2], d[0][3])), (d[1][0], min(d[1][2], d[1][3])),
             (d[2][3], min(d[2][0], d[2][1])), (d[3][2], min(d[3][0], d[3][1]))]
    expected = sum(max(0.0, ap - an + m) for ap, an in terms) / 4
    loss = TripletLoss(margin=m)(_circle(*ang), torch.tensor([0, 0, 1, 1]))
    assert loss.item() == pytest.approx(expected, rel=1e-9)
    assert expected == pytest.approx((0.816 + 1.1016 + 0.0536) / 4, abs=1e-3)


def test_triplet_semi_hard_hand_computed() -> None:
    ang, m = (0, 60, 100, 180), 0.5
    d = [[_chord(a, b) for b in ang] for a in ang]
    # labels 0,1,0,1: pairs (0,2), (2,0), (1,3), (3,1).
    # (0,2): d=1.532, negatives 1.0 and 2.0 -> closest farther one is d03 = 2.0.
    # (2,0): d=1.532, negatives 0.684, 1.286 -> none farther -> largest negative d23 (fallback).
    # (1,3): d=1.732, negatives 1.0, 0.684 -> none farther -> largest negative d01 (fallback).
    # (3,1): d=1.732, negatives 2.0, 1.286 -> d30 = 2.0.
    terms = [(d[0][2], d[0][3]), (d[2][0], d[2][3]), (d[1][3], d[1][0]), (d[3][1], d[3][0])]
    expected = sum(max(0.0, ap - an + m) for ap, an in terms) / 4
    loss = TripletLoss(margin=m, mining="semi_hard")(_circle(*ang), torch.tensor([0, 1, 0, 1]))
    assert loss.item() == pytest.approx(expected, rel=1e-9)
    assert expected == pytest.approx((0.032 + 0.7465 + 1.232 + 0.232) / 4, abs=1e-3)


def test_triplet_no_valid_anchor_keeps_graph() -> None:
    x = _rand(4, 3).requires_grad_()
    for mining in TripletLoss.MININGS:
        value = TripletLoss(mining=mining)(x, torch.tensor([0, 0, 0, 0]))
        assert value.item() == 0.0 and value.requires_grad
        value = TripletLoss(mining=mining)(x, torch.tensor([0, 1, 2, 3]))
        assert value.item() == 0.0 and value.requires_grad
    with pytest.raises(ValueError, match="mining must be one of"):
        TripletLoss(mining="hard")


def test_multi_similarity_matches_loop_reference() -> None:
    x, labels = _rand(8, 4, seed=17), torch.tensor([0, 0, 1, 1, 2, 2, 2, 3])
    a, b, base, margin = 2.0, 50.0, 0.5, 0.1
    e = _unit(x)
    total = 0.0
    for i in range(8):
        sims = {j: sum(u * v for u, v in zip(e[i], e[j])) for j in range(8) if j != i}
        pos = [s for j, s in sims.items() if labels[j] == labels[i]]
        neg = [s for j, s in sims.items() if labels[j] != labels[i]]
        if not pos or not neg:
            continue
        pos_m = [s for s in pos if s - margin < max(neg)]
        neg_m = [s for s in neg if s + margin > min(pos)]
        if not pos_m or not neg_m:
            continue
        total += math.log(1 + sum(math.exp(-a * (s - base)) for s in pos_m)) / a
        total += math.log(1 + sum(math.exp(b * (s - base)) for s in neg_m)) / b
    assert MultiSimilarityLoss()(x, labels).item() == pytest.approx(total / 8, rel=1e-9)


def test_binomial_deviance_hand_computed() -> None:
    x, labels = _circle(0, 60, 180), torch.tensor([0, 0, 1])
    # cos: S01 = 0.5 (positive pair), S02 = -1, S12 = -0.5 (negatives).
    pos = math.log(1 + math.exp(-2 * (0.5 - 0.5)))
    neg = (math.log(1 + math.exp(50 * (-1 - 0.5))) + math.log(1 + math.exp(50 * (-0.5 - 0.5)))) / 2
    assert BinomialDevianceLoss()(x, labels).item() == pytest.approx(pos + neg, rel=1e-9)


def test_proxy_anchor_matches_formula_and_label_check() -> None:
    loss = ProxyAnchorLoss(num_classes=4, embedding_dim=3, seed=3)
    assert torch.equal(loss.proxies, ProxyAnchorLoss(4, 3, seed=3).proxies)
    assert not torch.equal(loss.proxies, ProxyAnchorLoss(4, 3, seed=4).proxies)
    x, labels = _rand(6, 3, seed=18).float(), torch.tensor([0, 0, 1, 1, 2, 2])
    cos = F.normalize(x, dim=1) @ F.normalize(loss.proxies.detach(), dim=1).t()
    pos_t = sum(math.log(1 + sum(math.exp(-32 * (cos[i, c].item() - 0.1))
                                  for i in range(6) if labels[i] == c)) for c in range(3)) / 3
    neg_t = sum(math.log(1 + sum(math.exp(32 * (cos[i, c].item() + 0.1))
                                  for i in range(6) if labels[i] != c)) for c in range(4)) / 4
    assert loss(x, labels).item() == pytest.approx(pos_t + neg_t, rel=1e-4)
    with pytest.raises(ValueError, match="label 4"):
        loss(x, torch.tensor([0, 0, 1, 1, 2, 4]))
    with pytest.raises(ValueError, match="label -1"):
        loss(x, torch.tensor([0, 0, 1, 1, 2, -1]))


def _clusters(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(3, 8, generator=g)
    labels = torch.arange(3).repeat_interleave(6)
    return centres[labels] + 0.5 * torch.randn(18, 8, generator=g), labels


@pytest.mark.parametrize("name", sorted(METRIC_LOSSES))
def test_metric_losses_decrease(name: str) -> None:
    x, labels = _clusters()
    torch.manual_seed(0)
    model = torch.nn.Linear(8, 4)
    shape = {"subspaces": 2, "codewords": 2} if name == "opqn" else {}  # 4 = 2 subspaces of 2
    loss = make_metric_loss(name, num_classes=3, embedding_dim=4, **shape)
    # a loss that grades pairs by attributes (SGML) gets fixed per-class attribute probabilities
    extra = (torch.eye(3)[labels] * 0.8 + 0.1,) if getattr(loss, "takes_attributes", False) else ()
    opt = torch.optim.Adam([*model.parameters(), *loss.parameters()], lr=0.05)
    first = loss(model(x), labels, *extra).item()
    assert first > 0
    for _ in range(50):
        opt.zero_grad()
        value = loss(model(x), labels, *extra)
        value.backward()
        opt.step()
    assert loss(model(x), labels, *extra).item() < 0.5 * first


def test_metric_factory_errors() -> None:
    with pytest.raises(ValueError, match="valid names.*binomial_deviance.*triplet_semi_hard"):
        make_metric_loss("contrastive")
    with pytest.raises(ValueError, match="num_classes and embedding_dim"):
        make_metric_loss("proxy_anchor", num_classes=3)
    semi = make_metric_loss("triplet_semi_hard", num_classes=3, margin=0.2)
    assert isinstance(semi, TripletLoss) and semi.mining == "semi_hard" and semi.margin == 0.2
    assert METRIC_LOSSES["triplet_batch_hard"]().mining == "batch_hard"
    with pytest.raises(ValueError, match="labels must have shape"):
        make_metric_loss("multi_similarity")(_rand(4, 3), torch.tensor([0, 1]))


def test_a_system_registers_its_own_loss_once_and_a_profile_finds_it():
    import subprocess
    import sys

    from ue_lib.losses import METRIC_LOSSES, MultiSimilarityLoss, register_metric_loss

    register_metric_loss("multi_similarity", MultiSimilarityLoss)  # the same factory again: fine
    with pytest.raises(ValueError, match="'multi_similarity' is registered already"):
        register_metric_loss("multi_similarity", TripletLoss)
    with pytest.raises(ValueError, match="'kl' is registered already"):
        register_metric_loss("kl", TripletLoss)
    assert METRIC_LOSSES["multi_similarity"] is MultiSimilarityLoss
    # a fresh process that never imported the loss's module: the profile imports it
    # (`LOSS_MODULES`) before it looks a loss parameter up
    code = ("import sys; from ue_lib.profiles import setting_path, Profile; "
            "assert 'ue_lib.opqn.loss' not in sys.modules; "
            "print(setting_path('opqn.codebook'), Profile().loss('opqn')['codebook'])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["('loss_params',", "'opqn',", "'codebook')", "dct"]
