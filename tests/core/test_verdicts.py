"""The generic verdict machinery (`ue_lib.verdicts`) on small hand-made results: formatting, the
beats rule with its ties, and the summary tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from helpers import DOMAINS, paired, results
from scipy import stats

from ue_lib import evaluate, verdicts
from ue_lib.verdicts import Rules


@pytest.mark.parametrize("x, plain, signed", [(-0.0001, "0.000", "+0.000"), (-0.0004, "0.000", "+0.000"),
                                              (1e-4, "0.000", "+0.000"), (0.0125, "0.013", "+0.013"),
                                              (-0.012, "-0.012", "-0.012"), (np.nan, "n/a", "n/a")])
def test_numbers_have_fixed_decimals_and_no_negative_zero(x, plain, signed):
    assert verdicts.num(x) == plain
    assert verdicts.signed(x) == signed


@pytest.mark.parametrize("x, text", [(0.0104, "+0.0104"), (-0.0096, "-0.0096"), (0.0125, "+0.013"),
                                     (0.0094, "+0.009"), (0.01, "+0.0100")])
def test_a_gain_next_to_its_threshold_gets_one_more_decimal(x, text):
    assert verdicts.signed_gain(x, 0.01) == text  # "+0.010 (win)" would read as no gain over 0.01


def test_mean_std_uses_the_sample_std_and_no_plus_minus_for_one_value():
    assert verdicts.mean_std([0.5, 0.6]) == "0.550 ± 0.071"  # ddof=1: 0.0707; ddof=0 would be 0.050
    assert verdicts.mean_std([0.5]) == "0.500"
    assert verdicts.mean_std([]) == "–"


def test_rules_are_validated():
    with pytest.raises(ValueError):
        Rules(confidence=1.0)
    with pytest.raises(ValueError):
        Rules(tie_tolerance=0.02, overfit_drop=0.01)


def test_a_one_seed_win_needs_more_than_min_gain():
    cmp = verdicts.compare(paired("specialist", "naive", {"A": [0.05], "B": [0.001], "C": [-0.02]}),
                         "specialist", "naive")
    assert list(cmp.outcome) == ["win", "tie", "loss"]
    assert list(cmp.win) == [True, False, False]
    assert not verdicts.beats(cmp)  # 1 of 3 domains
    won = paired("specialist", "naive", {"A": [0.05], "B": [0.02], "C": [0.0]})
    assert verdicts.beats(verdicts.compare(won, "specialist", "naive"))


def test_a_small_or_sign_changing_difference_is_not_a_win():
    cmp = verdicts.compare(paired("specialist", "naive", {"A": [0.002, 0.0, 0.001],  # mean +0.001
                                                        "B": [0.1, 0.1, -0.005]}),  # sign changes
                         "specialist", "naive")
    assert list(cmp.outcome) == ["tie", "mixed"]  # B: mean 0.065 > std 0.061, one seed negative
    assert cmp.loc["B", "positive"] == 2 and cmp.loc["B", "n"] == 3
    assert cmp.loc["B", "std"] == pytest.approx(np.std([0.1, 0.1, -0.005], ddof=1))
    assert not cmp.win.any()


def test_a_mean_difference_smaller_than_the_seed_spread_is_a_tie():
    diffs = {"A": [0.05, -0.01],   # mean 0.020 > min_gain, but std 0.042: a tie, not "mixed"
             "B": [0.03, 0.05],    # mean 0.040 > std 0.014: a win
             "C": [-0.03, -0.05],  # the mirror: a loss
             "D": [0.1, 0.1, -0.01]}  # mean 0.063 < std 0.0635: a tie
    cmp = verdicts.compare(paired("specialist", "naive", diffs), "specialist", "naive")
    assert list(cmp.outcome) == ["tie", "win", "loss", "tie"]
    assert list(cmp.win) == [False, True, False, False]
    # one seed has no spread: only min_gain decides
    one = verdicts.compare(paired("specialist", "naive", {"A": [0.05], "B": [0.005]}), "specialist", "naive")
    assert list(one.outcome) == ["win", "tie"]
    assert verdicts.beats_rule(Rules(), 2).endswith(
        "(a mean within ±0.010, or smaller in size than the std over seeds of the paired differences, "
        "is a tie)")
    assert verdicts.beats_rule(Rules(), 1).endswith("(a mean within ±0.010 is a tie; one seed has no spread)")


def test_more_than_three_seeds_use_the_one_sided_confidence_bound():
    steady = [0.05, 0.06, -0.001, 0.04, 0.05]  # one negative seed, but a clear mean gain
    noisy = [0.2, -0.1, 0.15, -0.05, 0.1]
    cmp = verdicts.compare(paired("distill:kl", "naive", {"A": steady, "B": noisy}), "distill:kl", "naive")
    for domain, d in (("A", steady), ("B", noisy)):
        d = np.asarray(d)
        lower = d.mean() - stats.t.ppf(0.95, 4) * d.std(ddof=1) / np.sqrt(5)
        assert cmp.loc[domain, "lower"] == pytest.approx(lower)
    assert list(cmp.outcome) == ["win", "tie"]  # B: mean 0.060 < std 0.130
    assert verdicts.beats_rule(Rules(), 5) == (
        "wins on a majority of domains: mean paired gain > 0.010 and the one-sided 95% t lower "
        "confidence bound of the mean gain > 0 (a mean within ±0.010, or smaller in size than the std "
        "over seeds of the paired differences, is a tie)")


def test_rows_are_paired_by_seed():
    res = results({"specialist": {"A": [0.6, 0.7]}, "naive": {"A": [0.5, 0.68]}})
    res = pd.concat([res, results({"naive": {"A": [0.0, 0.0, 0.1]}}).iloc[2:]])  # naive seed 2 only
    cmp = verdicts.compare(res, "specialist", "naive")
    assert cmp.loc["A", "n"] == 2 and cmp.loc["A", "diff"] == pytest.approx(0.06)
    with pytest.raises(KeyError):
        verdicts.compare(res, "specialist", "distill:kl")


def test_comparison_sentence_states_wins_differences_ties_and_the_verdict():
    res = paired("specialist", "naive", {"A": [0.05], "B": [0.004], "C": [-0.0001]})
    assert verdicts.comparison_sentence(res, "specialist", "naive", domains=DOMAINS) == (
        "specialist beat naive on 1 of 3 domains in recall@1 (mean paired difference over 1 seed: "
        "A +0.050 (win), B +0.004 (tie), C +0.000 (tie)). By the rule (wins on a majority of domains: "
        "mean paired gain > 0.010 and positive on every seed (a mean within ±0.010 is a tie; one seed "
        "has no spread)), that specialist beats naive is **not established** (nothing lost: 1 win, "
        "2 ties, 0 losses) on this seed.")
    two = paired("specialist", "naive", {"A": [0.05, 0.03], "B": [0.02, 0.04]})
    text = verdicts.comparison_sentence(two, "specialist", "naive")
    assert "over 2 seeds: A +0.040 ± 0.014 (win), B +0.030 ± 0.014 (win)" in text
    assert text.endswith("specialist **beats** naive.")
    lost = paired("specialist", "naive", {"A": [0.05, 0.03], "B": [-0.02, -0.04], "C": [-0.03, -0.05]})
    text = verdicts.comparison_sentence(lost, "specialist", "naive", rule=False)
    assert text.endswith("By the rule, specialist does **not** beat naive.")


def test_a_claim_lost_nowhere_is_not_established_and_one_seed_says_so():
    held = verdicts.compare(paired("a", "b", {"A": [0.05, 0.03], "B": [0.02, 0.04]}), "a", "b")
    assert verdicts.beats_verdict(held) == "holds (2 wins, 0 ties, 0 losses)"
    ties = verdicts.compare(paired("a", "b", {"A": [0.05, 0.03], "B": [0.0, 0.004], "C": [0.002, 0.0]}),
                            "a", "b")
    assert verdicts.beats_verdict(ties) == "not established (1 win, 2 ties, 0 losses)"
    lost = verdicts.compare(paired("a", "b", {"A": [0.05, 0.03], "B": [-0.02, -0.04], "C": [0.0, 0.0]}),
                            "a", "b")
    assert verdicts.beats_verdict(lost) == "does not hold (1 win, 1 tie, 1 loss)"
    one = verdicts.compare(paired("a", "b", {"A": [0.05], "B": [0.0]}), "a", "b")
    assert verdicts.beats_verdict(one) == "not established (1 win, 1 tie, 0 losses), on this seed"
    assert verdicts.counts_phrase({"win": 1, "tie": 0, "loss": 0, "mixed": 2}) == (
        "1 win, 0 ties, 0 losses, 2 mixed")


def test_summary_uses_the_sample_std_and_no_plus_minus_for_one_seed():
    res = results({"naive": {"A": [0.5, 0.6], "B": [0.4, 0.4]}, "distill:kl": {"A": [0.7], "B": [0.2]}})
    table = verdicts.summary(res)
    assert list(table.index) == ["naive", "distill:kl"] and list(table.columns) == ["A", "B"]
    assert table.loc["naive", "A"] == "0.550 ± 0.071"
    assert table.loc["naive", "B"] == "0.400 ± 0.000"
    assert table.loc["distill:kl", "A"] == "0.700"
    assert table.columns.name == "recall@1 (mean ± std over 1–2 seeds; n = 1: the mean alone)"


@pytest.mark.parametrize("x, digits, plain, signed", [
    (-1e-12, 3, "0.000", "+0.000"), (2.5e-7, 3, "0.000", "+0.000"), (-0.00049, 3, "0.000", "+0.000"),
    (-0.04999, 1, "0.0", "+0.0"), (-0.05001, 1, "-0.1", "-0.1"), (0.0015, 2, "0.00", "+0.00"),
    (1234567.891, 1, "1234567.9", "+1234567.9"), (np.inf, 3, "n/a", "n/a")])
def test_numbers_are_rounded_then_formatted_with_a_proper_sign(x, digits, plain, signed):
    assert verdicts.num(x, digits) == plain
    assert verdicts.signed(x, digits) == signed
    assert "e" not in plain and "e" not in signed


def test_chance_recall_at_1_is_the_chance_that_a_random_other_item_shares_the_class():
    assert evaluate.chance_recall_at_1([0, 0, 1, 1, 1, 2]) == 8 / 30  # (2*1 + 3*2 + 0) / (6*5)
    assert evaluate.chance_recall_at_1(["a", "a", "a"]) == 1.0
    assert evaluate.chance_recall_at_1([0, 1, 2]) == 0.0
    assert np.isnan(evaluate.chance_recall_at_1([0]))


@pytest.mark.parametrize("x, text", [(12.0, "12"), (300.0, "300"), (1.0, "1.000"), (0.7192, "0.719"),
                                     (-0.0125, "-0.013"), (0.0041, "0.004"), (6e-4, "0.0006"),
                                     (3e-5, "0.00003"), (2.922e-10, "0"), (6.5e-07, "0"), (0.0, "0"),
                                     (-0.0, "0"), (-4.252e-04, "-0.00043"), (float("nan"), "nan")])
def test_float_format_has_no_scientific_zeros(x, text):
    assert verdicts.float_format(x) == text


def test_outcome_and_interval_of_paired_differences():
    assert verdicts.outcome([0.03, 0.02, 0.04]) == "win"
    assert verdicts.outcome([-0.03, -0.02, -0.04]) == "loss"
    assert verdicts.outcome([0.005, 0.0, 0.01]) == "tie"
    assert verdicts.outcome([0.05, -0.01, 0.06]) == "tie"  # mean 0.033 < its std 0.038
    assert verdicts.outcome([0.08, -0.002, 0.08]) == "mixed"  # mean 0.053 > std 0.047, one seed below 0
    low, high = verdicts.interval([0.01, 0.02, 0.03])
    half = stats.t.ppf(0.975, 2) * 0.01 / np.sqrt(3)  # std 0.01 over 3 seeds
    assert (low, high) == pytest.approx((0.02 - half, 0.02 + half))
    assert np.isnan(verdicts.interval([0.1])[0])


def test_significant_digits_for_measured_times():
    from ue_lib.verdicts import mean_std, significant

    got = [significant(x) for x in (25.234, 1.242, 0.01234, 1234, 9.96, 0, -3.456, float("nan"))]
    assert got == ["25", "1.2", "0.012", "1200", "10", "0", "-3.5", "n/a"]
    assert significant(0.5) == "0.50" and significant(123.4, 3) == "123"
    assert mean_std([24.0, 26.5], 2) == "25 ± 1.8" and mean_std([24.0, 26.5]) == "25.250 ± 1.768"
