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
    assert list(p.sgml_ladder) == ["multi-similarity", "binomial deviance", "+ attribute head",
                                   "soft BD: pair weights", "soft BD: soft targets"]
    assert p.sgml_k_list() == [1, 5, 10]
    assert p.methods("sgml_teachers") == ["binomial deviance", "auto"]
    with pytest.raises(ValueError, match="sgml_teachers: unknown value 'sbd-c'"):
        p.with_overrides({"sgml_teachers": "binomial deviance,sbd-c"})
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
    assert table.columns.name == "mean over 2 domains, (mean ± std over 3 seeds)"
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
    assert t.loc["blobs", "attributes on per image (mean)"] == "0.8"
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


# ----------------------------------------------------------------------------- where pairs land

def _pairs(similarity: dict) -> pd.DataFrame:
    """similarity[(rung, seed)] = (sharing negatives' similarities, other negatives', positives')."""
    rows = []
    for (rung, seed), (sharing, others, positives) in similarity.items():
        rows += [{"domain": "d", "seed": seed, "rung": rung, "g": 0.8, "same_class": False,
                  "similarity": v} for v in sharing]
        rows += [{"domain": "d", "seed": seed, "rung": rung, "g": 0.2, "same_class": False,
                  "similarity": v} for v in others]
        rows += [{"domain": "d", "seed": seed, "rung": rung, "g": 0.9, "same_class": True,
                  "similarity": v} for v in positives]
    return pd.DataFrame(rows)


BD, A, B = "binomial deviance", "soft BD: pair weights", "soft BD: soft targets"
# gaps (sharing minus others): bd .10 .12 .14; form B .30 .33 .36 (larger); form A .11 .12 .15
PAIRS = _pairs({(BD, 0): ([0.3, 0.5], [0.3], [0.9]), (BD, 1): ([0.42], [0.30], [0.9]),
                (BD, 2): ([0.44], [0.30], [0.1]),
                (B, 0): ([0.8], [0.5], [0.9]), (B, 1): ([0.83], [0.5], [0.9]),
                (B, 2): ([0.86], [0.5], [0.9]),
                (A, 0): ([0.41], [0.30], [0.9]), (A, 1): ([0.42], [0.30], [0.9]),
                (A, 2): ([0.45], [0.30], [0.9])})


def test_sharing_gaps_by_hand():
    from ue_lib.sgml.verdicts import sharing_gaps

    gaps = sharing_gaps(PAIRS).set_index(["rung", "seed"])
    # bd seed 0: sharing mean (0.3 + 0.5) / 2 = 0.4, others 0.3, gap 0.1; positives never count
    assert gaps.loc[(BD, 0)].tolist() == pytest.approx([0.4, 0.3, 0.1])
    assert gaps.gap.round(6).tolist() == [0.1, 0.12, 0.14, 0.3, 0.33, 0.36, 0.11, 0.12, 0.15]
    # a share that leaves no sharing negatives names the fix
    with pytest.raises(ValueError, match="choose another `share`"):
        sharing_gaps(PAIRS, share=0.9)


def test_gap_table_and_the_predictions_in_both_directions():
    from ue_lib.sgml.verdicts import gap_table, prediction_sentences, sharing_gaps

    table = gap_table(sharing_gaps(PAIRS))
    # form B - bd per seed: .20, .21, .22: mean .21, t interval .21 ± 4.303 * .01 / sqrt(3)
    half = 4.302653 * 0.01 / np.sqrt(3)
    assert table.loc[B, "vs_base"] == pytest.approx(0.21)
    assert table.loc[B, ["vs_low", "vs_high"]].tolist() == pytest.approx([0.21 - half, 0.21 + half])
    assert table.loc[B, "outcome"] == "win" and table.loc[B, "shift"] == pytest.approx(0.2)
    # form A - bd: .01, .00, .01: a tie (mean within 0.01)
    assert table.loc[A, "outcome"] == "tie" and table.loc[BD, "outcome"] == "–"
    text = prediction_sentences(table)
    assert "**soft BD: soft targets** was predicted to lift" in text
    assert "a difference of +0.210 [+0.185, +0.235]: **borne out**." in text
    assert "**soft BD: pair weights** was predicted to push" in text and "**not borne out** (tie" in text
    # form B's gap smaller than bd's: the prediction is contradicted
    flipped = PAIRS.assign(similarity=np.where((PAIRS.rung == B) & (PAIRS.g > 0.5), 0.5, PAIRS.similarity))
    assert "**contradicted**" in prediction_sentences(gap_table(sharing_gaps(flipped)))
    one = gap_table(sharing_gaps(PAIRS[PAIRS.seed == 0]))
    assert "on this seed" in prediction_sentences(one) and "[" not in prediction_sentences(one)


# ----------------------------------------------------------------------------- the answer

def _metric_rows(values: dict, metric: str = "coarse_recall@1") -> pd.DataFrame:
    return _rows(values).assign(metric=metric)


LADDER = {("multi-similarity", "a"): [0.62, 0.63, 0.61], ("multi-similarity", "b"): [0.70, 0.71, 0.72],
          (BD, "a"): [0.60, 0.61, 0.62], (BD, "b"): [0.70, 0.70, 0.71],
          (A, "a"): [0.60, 0.61, 0.615], (A, "b"): [0.70, 0.705, 0.71],
          (B, "a"): [0.61, 0.60, 0.62], (B, "b"): [0.69, 0.71, 0.70]}
STUDENTS = {("kl ← binomial deviance", "a"): [0.5, 0.5, 0.5], ("kl ← binomial deviance", "b"): [0.6] * 3,
            (f"kl ← {B}", "a"): [0.5, 0.505, 0.5], (f"kl ← {B}", "b"): [0.6] * 3}


def test_the_answer_is_not_established_when_every_graded_rung_ties():
    from ue_lib.sgml.verdicts import answer, best_rungs

    ladder, students = _metric_rows(LADDER), _metric_rows(STUDENTS)
    # per-seed means over domains: ms .66 .67 .665; bd .65 .655 .665 (ms - bd: .01 .015 0: tie)
    assert best_rungs(ladder, "coarse_recall@1") == ("multi-similarity", [BD, A, B])
    text = answer(ladder, students, [A, B], B, "coarse_recall@1")
    assert text.startswith("**Does grading help coarse retrieval?** **Not established**: no graded "
                           "rung beats binomial deviance, and none lost a domain to it on "
                           "coarse_recall@1 (soft BD: pair weights: not established (0 wins, 2 ties")
    # multi-similarity's mean 0.665 is the best; every other rung ties with it
    assert "Every rung ties with the best by the rule on coarse_recall@1 (means 0.655 to 0.665)." in text
    assert "Grading alone" not in text  # no + attribute head in this ladder
    assert text.endswith("kl ← soft BD: soft targets beats kl ← binomial deviance on coarse_recall@1: "
                         "not established (0 wins, 2 ties, 0 losses).")


def test_the_answer_is_yes_when_a_graded_rung_beats_the_baseline_and_no_when_it_loses():
    from ue_lib.sgml.verdicts import answer, best_rungs

    up = {**LADDER, (B, "a"): [0.65, 0.66, 0.68], (B, "b"): [0.75, 0.74, 0.73]}
    text = answer(_metric_rows(up), _metric_rows(STUDENTS), [A, B], B, "coarse_recall@1")
    assert "**Yes**: soft BD: soft targets beats binomial deviance on coarse_recall@1" in text
    assert "soft BD: soft targets: holds (2 wins, 0 ties, 0 losses)" in text
    assert best_rungs(_metric_rows(up), "coarse_recall@1") == (B, [])
    assert "The best rung on coarse_recall@1 is **soft BD: soft targets** (mean 0.702), ahead" in text
    head = {**up, ("+ attribute head", "a"): [0.64, 0.655, 0.67], ("+ attribute head", "b"): [0.74] * 3}
    text = answer(_metric_rows(head), _metric_rows(STUDENTS), [A, B], B, "coarse_recall@1")
    # soft targets - head: a +0.01 +0.005 +0.01 (tie), b +0.01 0 -0.01 (tie)
    assert ("Grading alone (against + attribute head, the same head without grading): soft BD: "
            "pair weights: does not hold (0 wins, 0 ties, 2 losses); soft BD: soft targets: not "
            "established (0 wins, 2 ties, 0 losses).") in text
    down = {**LADDER, (A, "a"): [0.55, 0.56, 0.57]}
    text = answer(_metric_rows(down), _metric_rows(STUDENTS), [A, B], B, "coarse_recall@1")
    assert "**No**: no graded rung beats binomial deviance, and soft BD: pair weights lost" in text
    assert "soft BD: pair weights: does not hold (0 wins, 1 tie, 1 loss)" in text
    assert "Did grading cost" not in text  # no fine (class-level) rows to say it with
    # the price of grading, on fine Recall@1: soft targets loses domain a (-0.03 on every seed)
    fine = {**LADDER, (B, "a"): [0.58, 0.57, 0.59]}
    both = pd.concat([_metric_rows(up), _metric_rows(fine, "recall@1")])
    text = answer(both, _metric_rows(STUDENTS), [A, B], B, "coarse_recall@1")
    assert ("**Did grading cost fine retrieval?** Against binomial deviance on recall@1: soft BD: "
            "pair weights: 0 wins, 2 ties, 0 losses; soft BD: soft targets: 0 wins, 1 tie, 1 loss. "
            "**Does the student inherit it?**") in text


def test_read_pairs_shows_the_gap_table_and_its_sentences():
    from ue_lib.sgml.verdicts import read_pairs

    shown, text = read_pairs(PAIRS)
    assert list(shown.index) == [BD, B, A]
    assert shown.loc[B].tolist() == ["+0.330 [+0.255, +0.405]", "+0.210 [+0.185, +0.235]", "win", "+0.200"]
    assert shown.loc[BD].tolist()[1:] == ["–", "–", "–"]
    assert text.count("\n- ") == 1  # one line per predicted form
