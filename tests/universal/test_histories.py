"""What the training histories say (`ue_lib.universal.histories`), on small hand-made histories:
peaks, over-fitting, stopping costs, budgets and collapsed runs."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from helpers import FLAT, OVERFIT, RISING, claim, history, peak_table, run_claims, trained

from ue_lib.universal import histories
from ue_lib.verdicts import Rules


def verdict01(val, test, selected):
    return histories.naive_fusion_verdict(history(val, test), selected)


CASES01 = {
    "disagree and costly": ({"A": OVERFIT, "B": RISING}, {"A": OVERFIT, "B": RISING}, 8,
                            "did **not** agree on when to stop"),
    "disagree and cheap": ({"A": [0.6, 0.59, 0.58, 0.58], "B": RISING}, {"A": FLAT, "B": RISING}, 8,
                           "its price is **not**"),
    "agree but costly": ({"A": [0.3, 0.5, 0.5, 0.5], "B": [0.3, 0.5, 0.5, 0.5]},
                         {"A": [0.3, 0.4, 0.45, 0.5], "B": FLAT}, 4,
                         "the selected epoch, not a disagreement"),
    "agree and cheap": ({"A": [0.3, 0.5, 0.5, 0.5], "B": [0.3, 0.5, 0.5, 0.5]}, {"A": FLAT, "B": FLAT}, 4,
                        "one stopping point suited them all"),
    "too short": ({"A": RISING, "B": RISING}, {"A": RISING, "B": RISING}, 8,
                  "too short to test over-fitting"),
}


CEILING = [0.90, 0.95, 0.9981, 0.99, 0.98, 0.985, 0.9981, 0.9981]  # 0.9981 at epochs 6, 14 and 16


NAIVE = trained({"A": [10, 10, 10, 10], "B": [10, 10, 10, 10]}, best=4)


def _val_history(value: float, epochs: int = 10) -> pd.DataFrame:
    return pd.DataFrame([{"epoch": e, "domain": "blobs", "split": "val", "metric": "recall@1",
                          "value": value} for e in range(1, epochs + 1)])


def test_peak_is_the_last_epoch_tied_with_the_maximum():
    # the ceiling 0.5 is reached at epochs 6, 14 and 16 (0.497 is within 0.005)
    t = peak_table({"A": [0.1, 0.3, 0.5, 0.45, 0.4, 0.42, 0.5, 0.497]})
    r = t.iloc[0]
    assert (r.peak_epoch, r.first_peak_epoch, r.last_epoch, r.eval_interval) == (16, 6, 16, 2)
    assert r.peak == 0.5 and r.drop_after_peak == pytest.approx(0.003)
    assert not r.overfits and not r.still_improving and r.status == "levelled off"
    # just outside the tie band, the peak is the last value at the ceiling itself
    assert peak_table({"A": [0.1, 0.3, 0.5, 0.45, 0.4, 0.42, 0.5, 0.494]}).peak_epoch[0] == 14
    assert peak_table({"A": [0.5, 0.5, 0.5]}, Rules(tie_tolerance=0.0)).peak_epoch[0] == 6


def test_still_improving_overfitting_and_flat_are_distinct():
    t = peak_table({"rising": RISING, "overfit": OVERFIT, "flat": FLAT, "back": [0.5, 0.3, 0.5],
                    "tiny_drop": [0.5, 0.5, 0.492]})
    assert list(t.status) == ["still improving", "over-fits", "levelled off", "still improving",
                              "levelled off"]
    assert list(t.peak_epoch) == [8, 2, 8, 6, 4]
    # 0.51 - 0.50 is 0.010000000000000009 in floats: not "more than 0.01"
    assert not peak_table({"A": [0.51, 0.50]}).overfits[0]


def test_last_evals_widens_still_improving():
    curves = {"A": [0.1, 0.5, 0.5]}
    assert not peak_table(curves).still_improving[0]
    assert peak_table(curves, Rules(last_evals=2)).still_improving[0]


def test_stopping_cost_uses_the_tie_rule_peak():
    h = history({"A": [0.3, 0.5, 0.5, 0.5], "B": RISING},
                {"A": [0.3, 0.4, 0.45, 0.52], "B": [0.1, 0.2, 0.3, 0.4]})
    c = histories.stopping_cost(h, 4).set_index("domain")
    assert c.loc["A", "own_best_epoch"] == 8  # not 4, the first epoch at 0.5
    assert c.loc["A", "cost"] == pytest.approx(0.12)
    assert c.loc["B", "cost"] == pytest.approx(0.2)
    assert list(c.columns) == ["own_best_epoch", "selected_epoch", "test_at_own_best", "test_at_selected",
                               "cost"]


@pytest.mark.parametrize("case", list(CASES01))
def test_naive_fusion_verdict_agrees_with_its_own_lines(case):
    val, test, selected, expected = CASES01[case]
    text = verdict01(val, test, selected)
    lines, verdict = text.split("\n\n")
    assert expected in verdict
    cost = histories.stopping_cost(history(val, test), selected).cost.max()
    if cost > 0.01:
        assert "peaked together" not in verdict and "cost up to" in verdict
    else:
        assert "cost up to" not in verdict
    assert "-0.000" not in text and "e-0" not in text
    assert len(lines.splitlines()) == 3 and all(line.startswith("- ") for line in lines.splitlines())


def test_naive_fusion_verdict_lines():
    text = verdict01({"A": OVERFIT, "B": RISING, "C": FLAT}, {"A": OVERFIT, "B": RISING, "C": FLAT}, 8)
    assert text.splitlines()[:3] == [
        "- Validation recall@1 peaked at epoch A 2, B 8, C 8 (the last epoch within 0.005 of each domain's "
        "maximum): a spread of 6 epochs over 3 domains.",
        "- Over-fitted (last evaluation more than 0.010 below the peak): A (-0.100). Still improving at the "
        "last evaluation: B. Levelled off: C.",
        "- Stopping all domains at epoch 8 cost on average +0.033 test recall@1 against each domain's own "
        "peak epoch; the largest cost was +0.100 (A)."]
    assert text.endswith("(peaks 6 epochs apart, at least the 4 that count as different), and one shared "
                         "stopping point cost up to 0.100 test recall@1, on average +0.033 over the domains "
                         "(more than 0.010 counts).")
    # an explicit min_spread in epochs replaces the default of two evaluation intervals
    assert "fewer than the 8 that count" in histories.naive_fusion_verdict(
        history({"A": OVERFIT, "B": RISING}, {"A": OVERFIT, "B": RISING}), 8, min_spread=8)


def test_regime_summary_states_start_sizes_and_how_often_each_domain_is_revisited():
    from types import SimpleNamespace

    sizes = pd.DataFrame([{"domain": "orl", "train_images": 160}, {"domain": "glyphs", "train_images": 1920}])
    pretrained = SimpleNamespace(backbone="efficientnet_lite0", weights="imagenet", image_size=64,
                                 trainable_stages=0, cache_features=True, p=16, k=4, batches_per_domain=10)
    text = histories.regime_summary(pretrained, sizes)
    assert "ImageNet-pretrained efficientnet_lite0 at 64 px; the whole trunk is frozen" in text
    assert "from orl (160 training images) to glyphs (1920): 12.0x apart" in text
    assert "orl 4.0x, glyphs 0.3x" in text and "orl is revisited 12x as often as glyphs" in text
    scratch = SimpleNamespace(backbone="small_cnn", weights=None, image_size=32, trainable_stages=-1,
                              cache_features=True, p=16, k=4, batches_per_domain=0)
    text = histories.regime_summary(scratch, sizes)
    assert "small_cnn trained from scratch" in text and "take turns, 16 batches each" in text


def test_a_ceiling_reached_several_times_peaks_at_its_last_epoch():
    t = peak_table({"A": CEILING, "B": [0.5, 0.6, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5]}).set_index("domain")
    assert (t.loc["A", "peak_epoch"], t.loc["A", "first_peak_epoch"]) == (16, 6)
    assert t.loc["A", "status"] == "levelled off" and t.loc["B", "peak_epoch"] == 4
    text = verdict01({"A": CEILING, "B": [0.5, 0.6, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5]},
                     {"A": CEILING, "B": FLAT * 2}, 16)
    assert text.startswith("- Validation recall@1 peaked at epoch A 16, B 4 (the last epoch within 0.005 "
                           "of each domain's maximum): a spread of 12 epochs over 2 domains.")
    row = claim(run_claims(peaks=[t.reset_index()]), "in naive fusion, domains peak at different epochs")
    assert row.holds and "A 16, B 4 (spread 12)" in row.measured
    # 0.9930 is just outside the tie band of 0.9981: the peak moves back to epoch 14
    assert peak_table({"A": CEILING[:-1] + [0.9930]}).peak_epoch[0] == 14


def test_a_domain_at_its_ceiling_from_the_first_evaluation_is_not_over_fitting():
    # glyphs and ORL in mini: 0.99 from epoch 1, then small dips; clip art truly over-fits
    t = peak_table({"orl": [0.99, 0.97, 0.975, 0.97], "clip": [0.5, 0.6, 0.55, 0.5],
                    "rising": [0.3, 0.4, 0.5, 0.6]}).set_index("domain")
    assert t.loc["orl", "status"] == "at ceiling" and not t.loc["orl", "overfits"]
    assert t.loc["clip", "status"] == "over-fits"
    assert histories.peak_spread(t.reset_index()) == 4  # clip 4, rising 8: orl is not counted
    below = peak_table({"orl": [0.94, 0.92, 0.93, 0.92]}).set_index("domain")  # under the 0.95 ceiling
    assert below.loc["orl", "status"] == "over-fits"
    text = verdict01({"orl": [0.99, 0.97, 0.975, 0.97], "clip": [0.5, 0.6, 0.55, 0.5]},
                     {"orl": FLAT, "clip": FLAT}, 4)
    assert "at their ceiling from the first evaluation (maximum 0.95 or more), so not counted: orl." in text
    assert "Over-fitted (last evaluation more than 0.010 below the peak): clip (-0.100)" in text


def test_naive_fusion_verdict_says_when_the_run_was_too_short():
    rising = verdict01({"A": RISING, "B": RISING}, {"A": RISING, "B": RISING}, 8).split("\n\n")[1]
    assert rising == ("Every domain was still improving at its last evaluation (a domain still improves "
                      "when its last evaluation is within 0.005 of its maximum and the one before it was "
                      "not): this run was too short to test over-fitting.")
    levelled = verdict01({"A": RISING, "B": FLAT}, {"A": RISING, "B": FLAT}, 8).split("\n\n")[1]
    assert "too short" not in levelled


def test_still_improving_is_selected_at_the_last_epoch():
    assert histories.still_improving(NAIVE.history, 4)
    assert not histories.still_improving(NAIVE.history, 3)


def test_budget_table_sums_the_batches_of_each_domain():
    table = histories.budget_table({"naive": NAIVE, "specialist:A": trained({"A": [12, 12, 12, 12]}, best=2)})
    expected = pd.DataFrame({"model": ["naive", "naive", "specialist:A"], "domain": ["A", "B", "A"],
                             "epochs": [4, 4, 4], "selected_epoch": [4, 4, 2], "batches": [40.0, 40.0, 48.0],
                             "batches_to_selected": [40.0, 40.0, 24.0],
                             "flag": ["still improving: train longer"] * 2 + [""], "note": [""] * 3})
    pd.testing.assert_frame_equal(table, expected)
    assert histories.budget_sentence(table) == (
        "The budgets differ: batches of each domain are **not** equal across models (within 5%) on A "
        "(naive 40, specialist:A 48). Selected at their last epoch (still improving: train longer): naive.")
    old = histories.budget_table({"naive": trained({"A": [10, 10]}, best=1, record_batches=False)})
    assert np.isnan(old.batches[0]) and np.isnan(old.batches_to_selected[0])
    assert old.note[0] == "batches not recorded for every epoch (trained before they were)"
    assert histories.budget_sentence(old) == ("No domain has the batch counts of two models to compare. Not "
                                           "recorded for naive. No model is flagged (collapsed, peaked "
                                              "early or still improving).")


def test_budgets_are_equal_within_the_tolerance():
    near = histories.budget_table({"naive": NAIVE, "specialist:A": trained({"A": [10, 10, 10, 12]}, best=2)})
    assert histories.budget_sentence(near).startswith(  # 40 vs 42: 4.8% apart
        "Every model saw the same number of batches of each domain (within 5%): A 42.")
    assert "**not** equal" in histories.budget_sentence(near, Rules(budget_tolerance=0.04))


def test_collapsed_only_near_chance():
    h = history({"A": [0.03, 0.05, 0.04], "B": [0.02, 0.04, 0.03]}, every=1)  # epoch 2: mean 0.045
    holds = histories.flag(h, 2, 3, {"A": 0.02, "B": 0.03})  # 0.02 of the 0.975 from chance to 1
    assert holds == "collapsed: near chance (mean val recall@1 0.045, chance 0.025)"
    assert histories.flag(h, 2, 3) is None  # no chance level given: never "collapsed"
    # near chance outranks an early selection
    assert histories.flag(h, 2, 30, {"A": 0.03, "B": 0.03}).startswith("collapsed: near chance")
    # a split of few classes has a high chance level: 0.690 against 0.366 is half-way to 1, healthy
    # (the review's clip art specialist, which twice chance would have called collapsed)
    clip = history({"clip": [0.69, 0.60]}, every=1)
    assert histories.flag(clip, 1, 2, {"clip": 0.366}) is None
    edge = history({"x": [0.5, 0.4]}, every=1)  # exactly a fifth of the way from 0.375: not collapsed
    assert histories.flag(edge, 1, 2, {"x": 0.375}) is None
    assert histories.flag(edge, 1, 2, {"x": 0.376}).startswith("collapsed")


def test_a_healthy_model_selected_early_peaked_early_it_did_not_collapse():
    h = _val_history(0.854, epochs=30)  # the embedding_mse student of the review: high, at epoch 2
    assert histories.flag(h, 2, 30, {"blobs": 0.05}) == "peaked early: selected at epoch 2 of 30"
    assert histories.flag(h, 1, 30) == "peaked early: selected at epoch 1 of 30"  # a teacher
    assert histories.flag(h, 3, 30) is None  # after epoch 2: not early
    assert histories.flag(h, 1, 9) is None  # fewer than 10 epochs: selecting early is no sign
    assert histories.flag(h, 2, 30, rules=Rules(early_epoch=1)) is None


def test_still_improving_flag_is_a_selection_at_the_last_epoch():
    h = _val_history(0.6, epochs=10)
    assert histories.flag(h, 10, 10) == "still improving: train longer"
    assert histories.flag(h, 9, 10) is None


def test_model_flags_use_the_chance_of_each_domains_validation_labels():
    from helpers import blob_domain

    domains = {"blobs": blob_domain(n_classes=14)}  # val: 3 classes x 6 -> chance 90/306
    models = {"distill:good": SimpleNamespace(history=_val_history(0.9), best_epoch=5),
              "distill:chance": SimpleNamespace(history=_val_history(0.35), best_epoch=5),
              "specialist:blobs": SimpleNamespace(history=_val_history(0.9), best_epoch=1),
              "distill:early": SimpleNamespace(history=_val_history(0.9), best_epoch=2)}
    flags = histories.model_flags(models, domains)
    assert flags == {"distill:chance": "collapsed: near chance (mean val recall@1 0.350, chance 0.294)",
                     "specialist:blobs": "peaked early: selected at epoch 1 of 10",
                     "distill:early": "peaked early: selected at epoch 2 of 10"}
    assert histories.collapsed_only(flags) == {"distill:chance": flags["distill:chance"]}


def test_tuning_table_stacks_the_methods_points():
    a = SimpleNamespace(method="kl", table=pd.DataFrame({"lr": [2e-3, 6e-4], "chosen": [True, False]}))
    b = SimpleNamespace(method="darkrank", table=pd.DataFrame({"lr": [2e-3, 6e-4],
                                                                "chosen": [False, True]}))
    t = histories.tuning_table([a, b])
    assert list(t.index) == ["kl", "kl", "darkrank", "darkrank"]
    assert t.chosen.tolist() == [True, False, False, True]


def test_gallery_sentence_gives_classes_and_chance_per_split():
    from helpers import blob_domain

    text = histories.gallery_sentence({"blobs": blob_domain(n_classes=14)})
    # val: classes 6..8 (18 items) -> 3*30/(18*17); test: classes 9..13 (30 items) -> 5*30/(30*29)
    assert "blobs: validation 3 classes (chance Recall@1 0.294), test 5 (chance 0.172)" in text
    assert "not a sign of over-fitting" in text


def test_budget_table_marks_collapsed_models():
    models = {"distill:kl": SimpleNamespace(history=_val_history(0.9), best_epoch=10),
              "distill:darkrank": SimpleNamespace(history=_val_history(0.1), best_epoch=2)}
    t = histories.budget_table(models, flags={"distill:darkrank": "collapsed: near chance (…)"})
    assert t.flag.tolist() == [histories.TRAIN_LONGER, "collapsed: near chance (…)"]
    # without flags the table flags what needs no chance level: early and late selections
    t = histories.budget_table({"specialist:orl": SimpleNamespace(history=_val_history(0.9), best_epoch=1)})
    assert t.flag.tolist() == ["peaked early: selected at epoch 1 of 10"]
    assert "Peaked early (selected at epoch 2 or before" in histories.flags_sentence(t)
    view = histories.budget_view(histories.budget_table(models))
    assert list(view.index) == ["distill:kl", "distill:darkrank"]
    assert list(view.columns) == ["epochs", "selected", "batches", "flag"]
    assert view.batches.tolist() == ["not recorded"] * 2  # these histories have no batch rows
    mixed = histories.budget_view(histories.budget_table(
        {"naive": NAIVE, "specialist:A": trained({"A": [12, 12, 12, 12]}, best=2),
         "odd": trained({"A": [10, 10, 10, 10], "B": [5, 5, 5, 5]}, best=2)}))
    assert mixed.batches.tolist() == ["40 of each", "48 of A", "A 40, B 20"]


def test_notebook_01s_stars_sit_at_its_tables_peak_epochs():
    """Notebook 01 draws the stars at `peak_epochs`' peak_epoch; with or without that mapping
    (the figure's own fallback uses the same tie rule) they sit at the table's epochs, not at the
    first maximum (the review's clip art: first maximum at 1, table 3)."""
    import matplotlib

    matplotlib.use("Agg")
    from ue_lib import figures

    h = history({"clip": [0.8, 0.78, 0.797, 0.6], "orl": CEILING[:4], "omni": RISING}, every=1)
    table = histories.peak_epochs(h)
    assert dict(zip(table.domain, table.peak_epoch)) == {"clip": 3, "orl": 3, "omni": 4}
    for peaks in (dict(zip(table.domain, table.peak_epoch)), None):
        ax = figures.learning_curves(h, splits=("val",), peaks=peaks).axes[0]
        stars = [ln for ln in ax.lines if ln.get_marker() == "*"]
        assert sorted(int(ln.get_xdata()[0]) for ln in stars) == sorted(table.peak_epoch)
