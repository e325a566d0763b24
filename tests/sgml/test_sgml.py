"""SGML (notebook 07): the soft-binomial deviance (our reconstruction) and the attribute-multitask
objective."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from ue_lib.losses import (
    METRIC_LOSSES,
    BinomialDevianceLoss,
    SoftBinomialDevianceLoss,
    check_loss_params,
)


def sp(x: float) -> float:  # softplus
    return math.log1p(math.exp(x))


# Four unit vectors: cosines S01 .6, S02 0, S03 -.6, S12 .8, S13 .28, S23 .8; classes 0 0 1 1.
EMB = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0], [-0.6, 0.8]])
LABELS = torch.tensor([0, 0, 1, 1])
# attributes: g01 = 0, g02 = 1, g03 = g13 = g23 = 1/sqrt(2), g12 = 0
ATTRS = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
R = 1 / math.sqrt(2)


def test_form_weights_with_zero_weight_is_binomial_deviance_exactly() -> None:
    gen = torch.Generator().manual_seed(0)
    for _ in range(10):
        e = torch.randn(24, 8, generator=gen)
        y = torch.randint(0, 5, (24,), generator=gen)
        a = torch.rand(24, 6, generator=gen)
        for kw in ({}, {"alpha": 3.0, "beta": 0.3, "cost": 10.0}):
            assert torch.equal(SoftBinomialDevianceLoss(weight=0.0, form="weights", **kw)(e, y, a),
                               BinomialDevianceLoss(**kw)(e, y))


def test_form_weights_hand_computed() -> None:
    # alpha 2, beta .5, cost 1, weight 1: positives weighted 1 + (1 - g), negatives 1 + g;
    # each ordered pair appears twice, which cancels in the weighted means
    pos = (2 * sp(-2 * (0.6 - 0.5)) + (2 - R) * sp(-2 * (0.8 - 0.5))) / (2 + 2 - R)
    w_neg = {"02": 2.0, "03": 1 + R, "12": 1.0, "13": 1 + R}
    s_neg = {"02": 0.0, "03": -0.6, "12": 0.8, "13": 0.28}
    neg = sum(w_neg[k] * sp(2 * (s_neg[k] - 0.5)) for k in w_neg) / sum(w_neg.values())
    got = SoftBinomialDevianceLoss(alpha=2.0, beta=0.5, cost=1.0, weight=1.0)(EMB, LABELS, ATTRS)
    assert got.item() == pytest.approx(pos + neg, abs=1e-6)


def test_form_targets_hand_computed() -> None:
    # gamma .5: a negative pair's target is .5 + .5 g; weights uniform (weight unused)
    pos = (sp(-2 * (0.6 - 0.5)) + sp(-2 * (0.8 - 0.5))) / 2
    neg = (sp(2 * (0.0 - 1.0)) + sp(2 * (-0.6 - (0.5 + 0.5 * R))) + sp(2 * (0.8 - 0.5))
           + sp(2 * (0.28 - (0.5 + 0.5 * R)))) / 4
    for weight in (0.0, 3.0):
        got = SoftBinomialDevianceLoss(alpha=2.0, beta=0.5, cost=1.0, weight=weight, form="targets",
                                       gamma=0.5)(EMB, LABELS, ATTRS)
        assert got.item() == pytest.approx(pos + neg, abs=1e-6)


@pytest.mark.parametrize("form", ["weights", "targets"])
def test_no_gradient_reaches_the_attribute_probabilities(form: str) -> None:
    e = EMB.clone().requires_grad_(True)
    a = ATTRS.clone().requires_grad_(True)
    SoftBinomialDevianceLoss(weight=1.0, form=form, gamma=0.3)(e, LABELS, a).backward()
    assert a.grad is None
    assert e.grad is not None and e.grad.abs().sum() > 0


def test_errors_name_the_cause() -> None:
    with pytest.raises(ValueError, match="form must be one of weights, targets"):
        SoftBinomialDevianceLoss(form="soft")
    with pytest.raises(ValueError, match="weight must be >= 0"):
        SoftBinomialDevianceLoss(weight=-1.0)
    with pytest.raises(ValueError, match="attribute-multitask objective"):
        SoftBinomialDevianceLoss()(EMB, LABELS)
    with pytest.raises(ValueError, match=r"attribute_probs must be \(B, A\)"):
        SoftBinomialDevianceLoss()(EMB, LABELS, ATTRS[:3])


def test_registered_and_settable_like_any_metric_loss() -> None:
    assert METRIC_LOSSES["soft_binomial_deviance"] is SoftBinomialDevianceLoss
    check_loss_params({"soft_binomial_deviance": {"form": "targets", "gamma": 0.25}})
    with pytest.raises(ValueError, match="form must be one of"):
        check_loss_params({"soft_binomial_deviance": {"form": "x"}})
    assert np.isclose(SoftBinomialDevianceLoss.granularity(ATTRS)[2, 3].item(), R)


# ----------------------------------------------------------------------------- the objective

def attributed_blobs(seed: int = 0):
    """blob_domain with two attributes per item: the class's row parity (its "group") and
    whether its column is even."""
    from dataclasses import replace

    from helpers import blob_domain

    d = blob_domain("blobs", seed=seed)

    def attrs(split):
        row, col = np.divmod(split.labels, 4)
        return np.stack([row % 2, 1 - col % 2], 1).astype(np.float32)

    splits = {n: replace(s, attributes=attrs(s), groups=(s.labels // 4) % 2)
              for n, s in d.splits.items()}
    return replace(d, **splits, attribute_names=["odd row", "even column"],
                   group_names=["even rows", "odd rows"])


def test_attribute_multitask_trains_its_head_and_grades_the_pairs(tmp_path):
    from ue_lib.profiles import Profile
    from ue_lib.sgml.objectives import AttributeMultitask, specialist_objective
    from ue_lib.training import TrainJob, train
    from ue_lib.universal.objectives import Specialist

    base = Profile(embedding_dim=8, width=8, p=3, k=2, eval_batch_size=64, epochs_specialist=3)
    p = base.with_overrides({"metric_loss": "soft_binomial_deviance", "attribute_weight": 1.0,
                             "soft_binomial_deviance.form": "targets",
                             "soft_binomial_deviance.gamma": 0.25})
    objective = specialist_objective(p)
    assert isinstance(objective, AttributeMultitask)
    assert type(specialist_objective(base)) is Specialist  # no attribute weight: no head
    domains = {"blobs": attributed_blobs()}
    head_before = None

    class Watch(AttributeMultitask):
        def prepare(self, setup):
            nonlocal head_before
            super().prepare(setup)
            head_before = self.attribute_head.weight.detach().clone()

    watched = Watch(p)
    result = train(TrainJob(domains, watched, seed=0), out_dir=tmp_path, progress=False)
    assert not torch.equal(watched.attribute_head.weight.detach(), head_before)  # optimised
    assert result.config["objective"]["kind"] == "sgml"
    assert result.config["objective"]["attribute_weight"] == 1.0
    assert result.config["objective"]["loss_params"]["form"] == "targets"
    assert len(result.config["objective"]["attributes"]) == 16  # a digest of the targets
    losses = result.history[result.history.metric == "loss"].value.to_numpy()
    assert losses[-1] < losses[0]


def _setup(domains):
    from ue_lib.training import Setup

    return Setup(domains, 8, 12, torch.device("cpu"), 0, "recall@1", lambda *a: {})


def test_attribute_multitask_refuses_a_domain_without_attributes():
    from helpers import blob_domain

    from ue_lib.profiles import Profile
    from ue_lib.sgml.objectives import AttributeMultitask
    from ue_lib.training import TrainJob

    p = Profile(attribute_weight=1.0)
    with pytest.raises(ValueError, match="has no attributes"):
        TrainJob({"blobs": blob_domain()}, AttributeMultitask(p))
    with pytest.raises(ValueError, match="attribute_weight must be > 0"):
        TrainJob({"blobs": attributed_blobs()}, AttributeMultitask(Profile()))


def test_the_loss_sees_the_predicted_attributes_and_bce_reaches_the_head():
    from ue_lib.profiles import Profile
    from ue_lib.sgml.objectives import AttributeMultitask
    from ue_lib.training import Batch

    p = Profile(attribute_weight=0.5, metric_loss="soft_binomial_deviance")
    d = attributed_blobs()
    objective = AttributeMultitask(p)
    objective.check({"blobs": d})
    objective.prepare(_setup({"blobs": d}))
    idx = torch.arange(6)
    emb = torch.randn(6, 8, requires_grad=True)
    batch = Batch("blobs", idx, torch.zeros(6), torch.as_tensor(d.train.labels[:6]))
    loss = objective.loss(batch, emb)
    logits = objective.attribute_head(emb)
    probs = torch.sigmoid(logits)
    expected = (objective.metric(emb, batch.labels, probs) + 0.5 * torch.nn.functional
                .binary_cross_entropy_with_logits(logits, torch.as_tensor(d.train.attributes[:6])))
    assert torch.allclose(loss, expected)
    loss.backward()
    assert objective.attribute_head.weight.grad.abs().sum() > 0


# ----------------------------------------------------------------------------- settings

def test_ladder_settings_are_checked():
    from ue_lib.profiles import Profile

    p = Profile()
    assert list(p.sgml_ladder) == ["ms", "bd", "bd+attr", "sbd-a", "sbd-b"] and p.sgml_k_list() == [1, 5, 10]
    with pytest.raises(ValueError, match="sgml_teachers: unknown value 'sbd-c'"):
        p.with_overrides({"sgml_teachers": "bd,sbd-c"})
    with pytest.raises(ValueError, match="unknown parameter"):
        p.with_overrides({"sgml_ladder": {"x": {"soft_binomial_deviance.lambda": 1}}})
    with pytest.raises(ValueError, match="sgml_ks must be positive integers"):
        p.with_overrides({"sgml_ks": "0,5"})
    for settings in p.sgml_ladder.values():  # every rung is a valid profile
        p.with_overrides(settings)


# ----------------------------------------------------------------------------- report

def _rows(values: dict) -> pd.DataFrame:
    """values[(model, domain)] = per-seed values of ndcg@10."""
    return pd.DataFrame([{"notebook": "07", "model": m, "method": "specialist", "domain": d,
                          "split": "test", "seed": s, "epoch": 1, "metric": "ndcg@10", "value": v}
                         for (m, d), vs in values.items() for s, v in enumerate(vs)])


def test_ladder_verdicts_and_the_favoured_form():
    from ue_lib import verdicts

    rows = _rows({("bd", "a"): [0.50, 0.52, 0.51], ("bd", "b"): [0.60, 0.61, 0.59],
                  ("sbd-a", "a"): [0.55, 0.56, 0.57], ("sbd-a", "b"): [0.60, 0.615, 0.59],
                  ("sbd-b", "a"): [0.50, 0.50, 0.52], ("sbd-b", "b"): [0.55, 0.56, 0.54]})
    v = verdicts.verdicts_against(rows, "bd", ["ndcg@10"])
    got = {(r.model, r.domain): r.outcome for r in v.itertuples()}
    assert got == {("sbd-a", "a"): "win", ("sbd-a", "b"): "tie",
                   ("sbd-b", "a"): "tie", ("sbd-b", "b"): "loss"}
    assert v.set_index(["model", "domain"]).loc[("sbd-a", "a"), "diff"] == pytest.approx(0.05)
    text = verdicts.verdicts_sentence(v, "bd")
    assert "**sbd-a vs bd** — ndcg@10: 1 win(s), 0 loss(es), 1 tie(s) of 2 domains (a +0.050 (win))" in text
    assert verdicts.favoured(rows, "sbd-a", "sbd-b", ["ndcg@10"]) == "sbd-a"  # wins a and b: 2–0
    assert verdicts.favoured(rows, "bd", "sbd-b", ["ndcg@10"]) == "neither"  # a tie, b a win: 1–0
    assert verdicts.favoured(rows, "bd", "sbd-b", ["ndcg@10"], verdicts.Rules(favour_margin=1)) == "bd"
    assert verdicts.favoured(rows, "bd", "bd", ["ndcg@10"]) == "neither"
    assert verdicts.favoured_sentence(rows, "sbd-a", "sbd-b", ["ndcg@10"]) == (
        "sbd-a against sbd-b, domains won by each (ndcg@10 2–0 of 2; 2 against 0 in all): the "
        "numbers favour **sbd-a** (rule: 2 or more wins than the other).")
    table = verdicts.model_table(rows, ["ndcg@10"])
    # bd: per-seed means over domains .55, .565, .55 -> 0.555 ± 0.009
    assert table.loc["bd", "ndcg@10"] == "0.555 ± 0.009"
    assert list(table.index) == ["bd", "sbd-a", "sbd-b"]


def test_attribute_table_and_ladder_settings():
    from helpers import blob_domain

    from ue_lib.sgml import verdicts as sgml_verdicts

    t = sgml_verdicts.attribute_table({"blobs": attributed_blobs(), "plain": blob_domain("plain")})
    assert t.loc["blobs", "attributes"] == 2 and t.loc["blobs", "coarse groups"] == 2
    assert t.loc["blobs", "e.g."] == "odd row, even column"
    # training classes 0..5: odd row for 4, 5; even column for 0, 2, 4 -> (2 + 3) / 6 per image
    assert t.loc["blobs", "on per image"] == "0.8"
    assert t.loc["plain", "attributes"] == "–"
    s = sgml_verdicts.ladder_settings({"ms": {}, "bd": {"metric_loss": "binomial_deviance", "k": 4}})
    assert s == "- **ms**: the profile's own\n- **bd**: `metric_loss` = binomial_deviance, `k` = 4"


def test_granular_metrics_combine_both_evaluators():
    from ue_lib.evaluate import graded_metrics, retrieval_metrics
    from ue_lib.sgml.experiments import metrics_of as granular_metrics

    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 6)).astype(np.float32)
    y, g = np.repeat(np.arange(10), 4), np.repeat(np.arange(5), 8)
    got = granular_metrics(x, y, g, None, None, (1, 5))
    assert got == {**retrieval_metrics(x, y, (1, 5)), **graded_metrics(x, y, query_groups=g, ks=(1, 5))}
    q = np.zeros(40, bool)
    q[::4] = True
    qg = granular_metrics(x, y, g, None, q, (1,))
    assert qg["ndcg@1"] == graded_metrics(x[q], y[q], query_groups=g[q], gallery=x[~q],
                                           gallery_labels=y[~q], gallery_groups=g[~q], ks=(1,))["ndcg@1"]


@pytest.mark.usefixtures("data_root")
def test_a_run_without_attribute_domains_is_refused_by_name(tmp_path):
    from ue_lib.runfolder import RunFolder
    from ue_lib.sgml.models import attribute_domains
    from ue_lib.spec import RunSpec

    spec = RunSpec(profile="smoke", out_dir=str(tmp_path), domains="orl")
    with pytest.raises(ValueError, match=r"none of the domains \['orl'\] has attributes"):
        attribute_domains(RunFolder(spec, "07_semantic_granularity", progress=False))
