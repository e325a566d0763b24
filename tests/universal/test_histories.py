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
                         "stopping point cost up to 0.100 test recall@1 (more than 0.010).")
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
                                           "recorded for naive. No model was selected at its last epoch.")


def test_budgets_are_equal_within_the_tolerance():
    near = histories.budget_table({"naive": NAIVE, "specialist:A": trained({"A": [10, 10, 10, 12]}, best=2)})
    assert histories.budget_sentence(near).startswith(  # 40 vs 42: 4.8% apart
        "Every model saw the same number of batches of each domain (within 5%): A 42.")
    assert "**not** equal" in histories.budget_sentence(near, Rules(budget_tolerance=0.04))


def test_collapsed_near_chance_or_selected_early():
    h = history({"A": [0.03, 0.05, 0.04], "B": [0.02, 0.04, 0.03]}, every=1)  # epoch 2: mean 0.045
    assert histories.collapsed(h, 2, 3, {"A": 0.02, "B": 0.03}) == ("near chance: mean val recall@1 0.045 vs "
                                                                 "chance 0.025")  # 0.045 < 2 x 0.025
    assert histories.collapsed(h, 2, 3, {"A": 0.02, "B": 0.02}) is None  # 0.045 > 2 x 0.020
    assert histories.collapsed(h, 2, 3) is None  # no chance given, a short run
    assert histories.collapsed(h, 2, 30) == "best epoch 2 of 30"
    assert histories.collapsed(h, 3, 30) is None
    assert histories.collapsed(h, 1, 9) is None  # fewer than 10 epochs: selecting early is no sign
    assert histories.collapsed(h, 2, 30, {"A": 0.03, "B": 0.03}) == (
        "near chance: mean val recall@1 0.045 vs chance 0.030; best epoch 2 of 30")
    assert histories.collapsed(h, 2, 30, rules=Rules(collapse_epoch=1)) is None


def test_collapse_flags_use_the_chance_of_each_domains_validation_labels():
    from helpers import blob_domain

    domains = {"blobs": blob_domain(n_classes=14)}  # val: 3 classes x 6 -> chance 90/306
    models = {"distill:good": SimpleNamespace(history=_val_history(0.9), best_epoch=5),
              "distill:chance": SimpleNamespace(history=_val_history(0.5), best_epoch=5),
              "distill:early": SimpleNamespace(history=_val_history(0.9), best_epoch=2)}
    flags = histories.collapse_flags(models, domains)
    assert flags == {"distill:chance": "near chance: mean val recall@1 0.500 vs chance 0.294",
                     "distill:early": "best epoch 2 of 10"}


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
    t = histories.budget_table(models, flags={"distill:darkrank": "best epoch 2 of 10"})
    assert t.flag.tolist() == [histories.TRAIN_LONGER, "collapsed: best epoch 2 of 10"]
