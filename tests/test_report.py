"""The rules behind every conclusion the notebooks print (`ue_lib.report`), on small hand-made
histories and results: for each claim a case where it holds and one where it does not."""

from __future__ import annotations

import shlex
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from ue_lib import report
from ue_lib.io import RESULT_COLUMNS
from ue_lib.report import Rules

DOMAINS = ["A", "B", "C"]


# ---------------------------------------------------------------- builders

def history(val: dict[str, list[float]], test: dict[str, list[float]] | None = None,
            every: int = 2, metric: str = "recall@1") -> pd.DataFrame:
    """A learning-curve history: per domain the values at epochs every, 2*every, …"""
    rows = []
    for split, curves in (("val", val), ("test", test or {})):
        for domain, values in curves.items():
            rows += [{"epoch": every * (i + 1), "domain": domain, "split": split, "metric": metric,
                      "value": v} for i, v in enumerate(values)]
    return pd.DataFrame(rows, columns=["epoch", "domain", "split", "metric", "value"])


def results(spec: dict[str, dict[str, list[float]]], metric: str = "recall@1",
            notebook: str = "04_final_results") -> pd.DataFrame:
    """Result rows from {model name: {domain: [value per seed 0, 1, …]}}; 'distill:kl' is the
    distill model with method kl."""
    rows = []
    for name, per_domain in spec.items():
        model, _, method = name.partition(":")
        for domain, values in per_domain.items():
            rows += [{"notebook": notebook, "model": model, "method": method or "multi_similarity",
                      "domain": domain, "split": "test", "metric": metric, "value": v, "seed": s,
                      "epoch": 4} for s, v in enumerate(values)]
    return pd.DataFrame(rows, columns=RESULT_COLUMNS)


def paired(a: str, b: str, diffs: dict[str, list[float]], base: float = 0.5) -> pd.DataFrame:
    """Results where a - b equals `diffs` per domain and seed."""
    return results({a: {d: [base + x for x in v] for d, v in diffs.items()},
                    b: {d: [base] * len(v) for d, v in diffs.items()}})


def peak_table(curves: dict[str, list[float]], rules: Rules | None = None) -> pd.DataFrame:
    return report.peak_epochs(history(curves), rules=rules or Rules())


def cost_table(costs: dict[str, float]) -> pd.DataFrame:
    return pd.DataFrame({"domain": list(costs), "cost": list(costs.values())})


RISING = [0.1, 0.2, 0.3, 0.4]
OVERFIT = [0.6, 0.5, 0.5, 0.5]
FLAT = [0.5, 0.5, 0.5, 0.5]


def claim(verdict: pd.DataFrame, text: str) -> pd.Series:
    rows = verdict[verdict.claim == text]
    assert len(rows) == 1, list(verdict.claim)
    return rows.iloc[0]


def full_results(**diffs: dict[str, list[float]]) -> pd.DataFrame:
    """specialist, naive, distill:kl, distill:distance_mse on DOMAINS with one seed; keyword
    arguments replace the per-domain values of a model (named with '_' for ':')."""
    spec = {"specialist": {d: [0.60] for d in DOMAINS}, "naive": {d: [0.50] for d in DOMAINS},
            "distill:kl": {d: [0.59] for d in DOMAINS}, "distill:distance_mse": {d: [0.55] for d in DOMAINS}}
    for name, values in diffs.items():
        spec[name.replace("_", ":", 1) if name.startswith("distill") else name] = values
    return results(spec)


def run_claims(res: pd.DataFrame | None = None, peaks=None, costs=None, **kw) -> pd.DataFrame:
    peaks = peaks if peaks is not None else [peak_table({"A": OVERFIT, "B": RISING, "C": FLAT})]
    costs = costs if costs is not None else [cost_table({"A": 0.05, "B": 0.0, "C": 0.0})]
    return report.claims(full_results() if res is None else res, peaks, costs, DOMAINS, **kw)


# ---------------------------------------------------------------- formatting

@pytest.mark.parametrize("x, plain, signed", [(-0.0001, "0.000", "+0.000"), (-0.0004, "0.000", "+0.000"),
                                              (1e-4, "0.000", "+0.000"), (0.0125, "0.013", "+0.013"),
                                              (-0.012, "-0.012", "-0.012"), (np.nan, "n/a", "n/a")])
def test_numbers_have_fixed_decimals_and_no_negative_zero(x, plain, signed):
    assert report._num(x) == plain
    assert report._signed(x) == signed


def test_mean_std_uses_the_sample_std_and_no_plus_minus_for_one_value():
    assert report._mean_std([0.5, 0.6]) == "0.550 ± 0.071"  # ddof=1: 0.0707; ddof=0 would be 0.050
    assert report._mean_std([0.5]) == "0.500"
    assert report._mean_std([]) == "–"


def test_rules_are_validated():
    with pytest.raises(ValueError):
        Rules(confidence=1.0)
    with pytest.raises(ValueError):
        Rules(tie_tolerance=0.02, overfit_drop=0.01)


# ---------------------------------------------------------------- peaks, over-fitting, cost

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
    c = report.stopping_cost(h, 4).set_index("domain")
    assert c.loc["A", "own_best_epoch"] == 8  # not 4, the first epoch at 0.5
    assert c.loc["A", "cost"] == pytest.approx(0.12)
    assert c.loc["B", "cost"] == pytest.approx(0.2)
    assert list(c.columns) == ["own_best_epoch", "selected_epoch", "test_at_own_best", "test_at_selected",
                               "cost"]


# ---------------------------------------------------------------- the beats rule

def test_a_one_seed_win_needs_more_than_min_gain():
    cmp = report.compare(paired("specialist", "naive", {"A": [0.05], "B": [0.001], "C": [-0.02]}),
                         "specialist", "naive")
    assert list(cmp.outcome) == ["win", "tie", "loss"]
    assert list(cmp.win) == [True, False, False]
    assert not report.beats(cmp)  # 1 of 3 domains
    assert report.beats(report.compare(paired("specialist", "naive", {"A": [0.05], "B": [0.02], "C": [0.0]}),
                                       "specialist", "naive"))


def test_a_small_or_sign_changing_difference_is_not_a_win():
    cmp = report.compare(paired("specialist", "naive", {"A": [0.002, 0.0, 0.001],  # mean +0.001
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
    cmp = report.compare(paired("specialist", "naive", diffs), "specialist", "naive")
    assert list(cmp.outcome) == ["tie", "win", "loss", "tie"]
    assert list(cmp.win) == [False, True, False, False]
    # one seed has no spread: only min_gain decides
    one = report.compare(paired("specialist", "naive", {"A": [0.05], "B": [0.005]}), "specialist", "naive")
    assert list(one.outcome) == ["win", "tie"]
    assert report.beats_rule(Rules(), 2).endswith(
        "(a mean within ±0.010, or smaller in size than the std over seeds of the paired differences, "
        "is a tie)")
    assert report.beats_rule(Rules(), 1).endswith("(a mean within ±0.010 is a tie; one seed has no spread)")


def test_more_than_three_seeds_use_the_one_sided_confidence_bound():
    steady = [0.05, 0.06, -0.001, 0.04, 0.05]  # one negative seed, but a clear mean gain
    noisy = [0.2, -0.1, 0.15, -0.05, 0.1]
    cmp = report.compare(paired("distill:kl", "naive", {"A": steady, "B": noisy}), "distill:kl", "naive")
    for domain, d in (("A", steady), ("B", noisy)):
        d = np.asarray(d)
        lower = d.mean() - stats.t.ppf(0.95, 4) * d.std(ddof=1) / np.sqrt(5)
        assert cmp.loc[domain, "lower"] == pytest.approx(lower)
    assert list(cmp.outcome) == ["win", "tie"]  # B: mean 0.060 < std 0.130
    assert report.beats_rule(Rules(), 5) == (
        "wins on a majority of domains: mean paired gain > 0.010 and the one-sided 95% t lower "
        "confidence bound of the mean gain > 0 (a mean within ±0.010, or smaller in size than the std "
        "over seeds of the paired differences, is a tie)")


def test_rows_are_paired_by_seed():
    res = results({"specialist": {"A": [0.6, 0.7]}, "naive": {"A": [0.5, 0.68]}})
    res = pd.concat([res, results({"naive": {"A": [0.0, 0.0, 0.1]}}).iloc[2:]])  # naive seed 2 only
    cmp = report.compare(res, "specialist", "naive")
    assert cmp.loc["A", "n"] == 2 and cmp.loc["A", "diff"] == pytest.approx(0.06)
    with pytest.raises(KeyError):
        report.compare(res, "specialist", "distill:kl")


def test_comparison_sentence_states_wins_differences_ties_and_the_verdict():
    res = paired("specialist", "naive", {"A": [0.05], "B": [0.004], "C": [-0.0001]})
    assert report.comparison_sentence(res, "specialist", "naive", domains=DOMAINS) == (
        "specialist beat naive on 1 of 3 domains in recall@1 (mean paired difference over 1 seed: "
        "A +0.050 (win), B +0.004 (tie), C +0.000 (tie)). By the rule (wins on a majority of domains: "
        "mean paired gain > 0.010 and positive on every seed (a mean within ±0.010 is a tie; one seed "
        "has no spread)), specialist does **not** beat naive.")
    two = paired("specialist", "naive", {"A": [0.05, 0.03], "B": [0.02, 0.04]})
    text = report.comparison_sentence(two, "specialist", "naive")
    assert "over 2 seeds: A +0.040 ± 0.014 (win), B +0.030 ± 0.014 (win)" in text
    assert text.endswith("specialist **beats** naive.")


# ---------------------------------------------------------------- claims

BEATS_CLAIMS = [("naive fusion falls short of the specialists", "specialist", "naive"),
                ("distilling the specialists beats naive fusion", "distill:kl", "naive"),
                ("distribution distillation (kl) beats distance_mse", "distill:kl", "distill:distance_mse"),
                ("distribution distillation (kl) beats embedding_mse", "distill:kl",
                 "distill:embedding_mse")]


@pytest.mark.parametrize("text, a, b", BEATS_CLAIMS)
def test_beats_claims_hold_on_a_majority_of_won_domains(text, a, b):
    base = {"specialist": 0.6, "naive": 0.5, "distill:kl": 0.58, "distill:distance_mse": 0.55,
            "distill:embedding_mse": 0.54}

    def run(diffs):
        spec = {m: {d: [v, v] for d in DOMAINS} for m, v in base.items()}
        spec[a] = {d: [spec[b][d][s] + diffs[i][s] for s in range(2)] for i, d in enumerate(DOMAINS)}
        return claim(run_claims(results(spec)), text)

    held = run([[0.03, 0.02], [0.05, 0.04], [-0.1, -0.1]])  # wins A and B
    assert held.holds and "2 of 3 domains" in held.measured
    assert held.rule == ("wins on a majority of domains: mean paired gain > 0.010 and positive on every "
                         "seed (a mean within ±0.010, or smaller in size than the std over seeds of the "
                         "paired differences, is a tie)")
    assert not run([[0.03, 0.02], [0.001, 0.001], [0.1, -0.01]]).holds  # a tie and a sign change
    assert not run([[0.03, 0.02], [0.002, 0.0], [-0.1, -0.1]]).holds


def test_absolute_method_claims_only_when_measured():
    claims = set(run_claims().claim)
    assert "distribution distillation (kl) beats distance_mse" in claims
    assert "distribution distillation (kl) beats embedding_mse" not in claims


def test_a_missing_model_is_reported_as_not_measured():
    res = full_results()
    row = claim(run_claims(res[res.model != "distill"]), "distilling the specialists beats naive fusion")
    assert not row.holds and row.measured.startswith("not measured")


def test_peaks_at_different_epochs():
    spread = "in naive fusion, domains peak at different epochs"
    apart = [peak_table({"A": OVERFIT, "B": [0.1, 0.5, 0.3, 0.2]})]  # peaks 2 and 4
    row = claim(run_claims(peaks=apart, min_spread=2), spread)
    assert row.holds and "run 1: A 2, B 4 (spread 2)" in row.measured
    assert not claim(run_claims(peaks=apart), spread).holds  # default: 2 evaluations of 2 epochs
    wide = {0: peak_table({"A": OVERFIT, "B": RISING}), 1: apart[0], 2: peak_table({"A": OVERFIT, "B": FLAT})}
    row = claim(run_claims(peaks=wide, costs=[cost_table({"A": 0.0})] * 3), spread)
    assert row.holds and "on 2 of 3 seeds" in row.measured and "seed 2: A 2, B 8 (spread 6)" in row.measured
    assert row.rule == ("peak = last validation epoch within 0.005 of the domain's maximum; the peaks span "
                        "at least 4 epochs on a majority of seeds")


def test_some_domains_overfit_while_others_still_improve():
    text = "in naive fusion, some domains over-fit while others still improve"
    row = claim(run_claims(peaks=[peak_table({"A": OVERFIT, "B": RISING})]), text)
    assert row.holds
    assert row.measured == ("validation recall@1, run 1: A fell below its peak (epoch 2) by epoch 4 "
                            "(-0.100 by the end) while B (peak 8) still improved: on 1 of 1 seed")
    # B stopped rising before A fell: not "while"
    early = peak_table({"A": [0.5, 0.6, 0.6, 0.45], "B": [0.3, 0.4, 0.4, 0.4]})
    assert not claim(run_claims(peaks=[early]), text).holds


def test_a_flat_domain_is_not_still_improving():
    # the known defect: both peak at epoch 2, A drops 0.05, B stays flat -> does not hold
    t = peak_table({"A": [0.5, 0.45, 0.45], "B": [0.5, 0.5, 0.5]})
    row = claim(run_claims(peaks=[t]), "in naive fusion, some domains over-fit while others still improve")
    assert not row.holds and "while no other domain still improved" in row.measured


def test_overfit_claim_needs_a_majority_of_seeds_and_says_when_the_run_was_too_short():
    text = "in naive fusion, some domains over-fit while others still improve"
    good, bad = peak_table({"A": OVERFIT, "B": RISING}), peak_table({"A": OVERFIT, "B": FLAT})
    assert not claim(run_claims(peaks=[good, bad]), text).holds
    assert claim(run_claims(peaks=[good, bad, good]), text).holds
    short = claim(run_claims(peaks=[peak_table({"A": RISING, "B": RISING})] * 2), text)
    assert not short.holds and "too short to test over-fitting" in short.measured


def test_shared_stopping_point_cost():
    text = "one shared stopping point costs some domain"
    row = claim(run_claims(costs=[cost_table({"A": 0.02, "B": -0.0001})]), text)
    assert row.holds and row.measured.endswith("run 1: +0.020 (A)")
    assert not claim(run_claims(costs=[cost_table({"A": 0.01, "B": 0.0})]), text).holds  # not > 0.01
    costs = [cost_table({"A": 0.05}), cost_table({"A": 0.0}), cost_table({"A": 0.0})]
    assert not claim(run_claims(costs=costs), text).holds
    costs[1] = cost_table({"A": 0.001})
    assert claim(run_claims(costs=costs, rules=Rules(cost_tolerance=0.0)), text).holds


def test_the_student_comes_close_to_the_specialists():
    text = "the distilled student comes close to the specialists"
    near = full_results(distill_kl={"A": [0.59], "B": [0.58], "C": [0.585]})  # gap -0.015
    row = claim(run_claims(near), text)
    assert row.holds and row.measured.startswith("mean gap to the specialists over 1 seed: -0.015")
    assert row.rule == "the mean over domains of the seed-mean gap (kl - specialist) > -0.020"
    far = full_results(distill_kl={"A": [0.58], "B": [0.57], "C": [0.575]})  # gap -0.025
    assert not claim(run_claims(far), text).holds
    assert claim(run_claims(far, rules=Rules(close_gap=0.03)), text).holds


def test_claims_table_and_sentence():
    verdict = run_claims()
    assert list(verdict.columns) == ["claim", "measured", "rule", "holds"]
    assert verdict.holds.dtype == bool
    assert list(verdict.holds) == [True, True, True, True, True, True, True]
    sentence = report.claims_sentence(verdict.assign(holds=[True] + [False] * 6))
    assert sentence.startswith("1 of 7 claims held: naive fusion falls short of the specialists (held); "
                               "in naive fusion, domains peak at different epochs (did not hold);")
    text = " ".join(verdict.measured) + " ".join(verdict.rule)
    assert "-0.000" not in text and "e-0" not in text


# ---------------------------------------------------------------- notebook 01's verdict

def verdict01(val, test, selected):
    return report.naive_fusion_verdict(history(val, test), selected)


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


@pytest.mark.parametrize("case", list(CASES01))
def test_naive_fusion_verdict_agrees_with_its_own_lines(case):
    val, test, selected, expected = CASES01[case]
    text = verdict01(val, test, selected)
    lines, verdict = text.split("\n\n")
    assert expected in verdict
    cost = report.stopping_cost(history(val, test), selected).cost.max()
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
    assert "fewer than the 8 that count" in report.naive_fusion_verdict(
        history({"A": OVERFIT, "B": RISING}, {"A": OVERFIT, "B": RISING}), 8, min_spread=8)


# ---------------------------------------------------------------- notebook 03

def summary03(**kw) -> list[str]:
    res = full_results()
    merged = results({"distill:kl": {"merged": [0.7]}, "distill:distance_mse": {"merged": [0.72]},
                      "naive": {"merged": [0.6]}})
    res = pd.concat([res, merged], ignore_index=True)
    if kw.pop("without_naive", False):
        res = res[res.model != "naive"]
    return report.distillation_summary(res, ["kl", "distance_mse"], DOMAINS, **kw).splitlines()


RULE1 = ("By the rule (wins on a majority of domains: mean paired gain > 0.010 and positive on every seed "
         "(a mean within ±0.010 is a tie; one seed has no spread))")


def test_distillation_summary_compares_every_student_with_naive_fusion():
    lines = summary03()
    assert lines == [
        "- distill:kl beat distill:distance_mse on 3 of 3 domains in recall@1 (mean paired difference over "
        f"1 seed: A +0.040 (win), B +0.040 (win), C +0.040 (win)). {RULE1}, distill:kl **beats** "
        "distill:distance_mse.",
        "- distill:kl beat naive on 3 of 3 domains in recall@1 (mean paired difference over 1 seed: "
        f"A +0.090 (win), B +0.090 (win), C +0.090 (win)). {RULE1}, distill:kl **beats** naive.",
        "- distill:distance_mse beat naive on 3 of 3 domains in recall@1 (mean paired difference over "
        f"1 seed: A +0.050 (win), B +0.050 (win), C +0.050 (win)). {RULE1}, distill:distance_mse "
        "**beats** naive.",
        "- Gap of the `kl` student to the specialists: mean gap to the specialists over 1 seed: -0.010 "
        "(A: -0.010, B: -0.010, C: -0.010); close by the rule (the mean over domains of the seed-mean "
        "gap (kl - specialist) > -0.020).",
        "- Merged index recall@1: distill:distance_mse 0.720, distill:kl 0.700, naive 0.600."]
    assert summary03(without_naive=True)[1] == (
        "- Naive fusion (the reference): no naive recall@1 rows in this table, so no student is compared "
        "with it.")


def test_a_collapsed_student_is_named_and_not_compared():
    lines = summary03(flags={"distill:distance_mse": "best epoch 2 of 30"})
    assert lines[0] == "- distill:distance_mse collapsed (best epoch 2 of 30): not compared with distill:kl."
    assert lines[2] == "- distill:distance_mse collapsed (best epoch 2 of 30): not compared with naive."
    assert lines[1].endswith("distill:kl **beats** naive.")  # the others are still compared
    assert lines[4] == ("- Merged index recall@1: distill:distance_mse 0.720 (collapsed: best epoch 2 of "
                        "30), distill:kl 0.700, naive 0.600.")
    kl = summary03(flags={"distill:kl": "near chance: mean val recall@1 0.031 vs chance 0.020"})
    assert kl[3] == ("- Gap of the `kl` student to the specialists: distill:kl collapsed (near chance: mean "
                     "val recall@1 0.031 vs chance 0.020): not compared with specialist.")
    # neither a win nor a loss: not in the comparison table's wins, and the claims do not hold
    res = paired("distill:kl", "distill:darkrank", {"A": [0.3], "B": [-0.3]})
    flags = {"distill:darkrank": "best epoch 2 of 30"}
    cmp = report.compare(res, "distill:kl", "distill:darkrank", flags=flags)
    assert list(cmp.outcome) == ["not compared"] * 2 and not cmp.win.any() and not report.beats(cmp)
    assert report.wins_sentence(cmp, "distill:kl", "distill:darkrank", flags=flags) == (
        "distill:darkrank collapsed (best epoch 2 of 30): not compared with distill:kl")
    assert list(report.compare(res, "distill:kl", "distill:darkrank").outcome) == ["win", "loss"]
    text = "distilling the specialists beats naive fusion"
    row = claim(run_claims(flags={"distill:kl": "best epoch 2 of 30"}), text)
    assert not row.holds and row.measured == ("distill:kl collapsed (best epoch 2 of 30): not compared "
                                              "with naive")
    assert claim(run_claims(), text).holds


# ---------------------------------------------------------------- notebook 05

def sweep_table(knob: str, settings: dict, seeds: int = 2) -> pd.DataFrame:
    """kl student rows: settings {value: {domain: [value per seed]}}, plus a map@r and a merged row."""
    rows = []
    for setting, per_domain in settings.items():
        for domain, values in per_domain.items():
            for s, v in enumerate(values[:seeds]):
                base = {"notebook": "03", "model": "distill", "method": "kl", "domain": domain,
                        "split": "test", "seed": s, "epoch": 6, knob: setting}
                rows += [{**base, "metric": "recall@1", "value": v},
                         {**base, "metric": "map@r", "value": 0.1}]
        rows.append({**base, "domain": "merged", "metric": "recall@1", "value": 0.9})
    return pd.DataFrame(rows)


SETTINGS = {0.2: {"A": [0.50, 0.52], "B": [0.40, 0.40]}, 0.02: {"A": [0.60, 0.62], "B": [0.30, 0.34]},
            0.05: {"A": [0.55, 0.55], "B": [0.45, 0.47]}}


def test_ablation_table_orders_settings_and_shows_sample_std():
    table = report.ablation_table(sweep_table("temperature", SETTINGS), "temperature", [0.02, 0.05, 0.2])
    assert list(table.index) == ["0.02", "0.05", "0.2"]
    assert list(table.columns) == ["A", "B", "all domains"]
    assert table.loc["0.02", "A"] == "0.610 ± 0.014"
    assert table.loc["0.05", "all domains"] == "0.505 ± 0.007"  # per-seed means 0.50, 0.51
    assert table.columns.name == "recall@1 (mean ± std over 2 seeds)"
    one = report.ablation_table(sweep_table("temperature", SETTINGS, seeds=1), "temperature",
                                [0.02, 0.05, 0.2])
    assert table.shape == one.shape and not one.apply(lambda c: c.str.contains("±")).any().any()
    assert one.loc["0.2", "B"] == "0.400"
    assert one.columns.name == "recall@1 (mean over 1 seed)"
    # one setting with one seed, the others with two: the header says so
    mixed = sweep_table("temperature", SETTINGS)
    mixed = mixed[~((mixed.temperature == 0.2) & (mixed.seed == 1))]
    t = report.ablation_table(mixed, "temperature", [0.02, 0.05, 0.2])
    assert t.loc["0.2", "A"] == "0.500" and t.loc["0.02", "A"] == "0.610 ± 0.014"
    assert t.columns.name == "recall@1 (mean ± std over 1–2 seeds; n = 1: the mean alone)"


def with_map(table: pd.DataFrame, by_setting: dict) -> pd.DataFrame:
    """`table` with its map@r values set per setting (same value for every domain and seed)."""
    m = table.metric == "map@r"
    return table.assign(value=np.where(m, table.temperature.map(by_setting), table.value))


def test_ablation_sentence_reports_recall_and_map_and_whether_they_agree():
    t = sweep_table("temperature", SETTINGS)  # map@r 0.1 for every setting
    assert report.ablation_sentence(t, "temperature", [0.02, 0.05, 0.2]) == (
        "**temperature** (2 seeds): recall@1 averaged over domains: the best setting was 0.05 (0.505) "
        "and the worst 0.2 (0.455), a range of 0.050; best per domain: A 0.02, B 0.05. map@r averaged "
        "over domains: from 0.100 to 0.100, a range of 0.000 (within 0.010: no setting is clearly "
        "better); best per domain: A 0.02, B 0.02. map@r does not separate the settings: the best "
        "setting rests on recall@1 alone.")
    agree = report.ablation_sentence(with_map(t, {0.02: 0.2, 0.05: 0.3, 0.2: 0.1}), "temperature",
                                     [0.02, 0.05, 0.2])
    assert agree.endswith("recall@1 and map@r agree on the best setting (0.05).")
    disagree = report.ablation_sentence(with_map(t, {0.02: 0.3, 0.05: 0.2, 0.2: 0.1}), "temperature",
                                        [0.02, 0.05, 0.2])
    assert disagree.endswith("recall@1 and map@r **disagree** on the best setting (recall@1: 0.05, "
                             "map@r: 0.02).")
    close = {0.2: {"A": [0.5, 0.5]}, 0.02: {"A": [0.505, 0.505]}}
    assert report.ablation_sentence(sweep_table("temperature", close, seeds=1), "temperature", [0.02, 0.2]
                                    ).endswith("Neither recall@1 nor map@r separates the settings.")
    assert "no recall@1 results" in report.ablation_sentence(t.iloc[:0], "temperature", [0.02])
    only = report.ablation_sentence(t[t.metric == "recall@1"], "temperature", [0.02, 0.05, 0.2])
    assert only.endswith("best per domain: A 0.02, B 0.05.") and "map@r" not in only


def test_ablation_rows():
    t = sweep_table("neighbors", {None: {"A": [0.5]}, 4.0: {"A": [0.6]}}, seeds=1)
    t["neighbors"] = t["neighbors"].astype(float)  # as read back from a CSV: NaN and 4.0
    rows = report.ablation_rows(t, "neighbors", "05_ablations")
    assert list(rows.columns) == RESULT_COLUMNS
    assert set(rows.method) == {"kl[neighbors=None]", "kl[neighbors=4]"}
    assert (rows.notebook == "05_ablations").all() and len(rows) == len(t)
    assert rows.value.tolist() == t.value.tolist()
    labels = report.ablation_rows(sweep_table("temperature", SETTINGS), "temperature", "05").method
    assert list(dict.fromkeys(labels)) == ["kl[temperature=0.2]", "kl[temperature=0.02]",
                                           "kl[temperature=0.05]"]


# ---------------------------------------------------------------- notebook 04's summary

def test_summary_uses_the_sample_std_and_no_plus_minus_for_one_seed():
    res = results({"naive": {"A": [0.5, 0.6], "B": [0.4, 0.4]}, "distill:kl": {"A": [0.7], "B": [0.2]}})
    table = report.summary(res)
    assert list(table.index) == ["naive", "distill:kl"] and list(table.columns) == ["A", "B"]
    assert table.loc["naive", "A"] == "0.550 ± 0.071"
    assert table.loc["naive", "B"] == "0.400 ± 0.000"
    assert table.loc["distill:kl", "A"] == "0.700"
    assert table.columns.name == "recall@1 (mean ± std over 1–2 seeds; n = 1: the mean alone)"


def test_regime_summary_states_start_sizes_and_how_often_each_domain_is_revisited():
    from types import SimpleNamespace

    sizes = pd.DataFrame([{"domain": "orl", "train_images": 160}, {"domain": "glyphs", "train_images": 1920}])
    pretrained = SimpleNamespace(backbone="efficientnet_lite0", weights="imagenet", image_size=64,
                                 trainable_stages=0, cache_features=True, p=16, k=4, batches_per_domain=10)
    text = report.regime_summary(pretrained, sizes)
    assert "ImageNet-pretrained efficientnet_lite0 at 64 px; the whole trunk is frozen" in text
    assert "from orl (160 training images) to glyphs (1920): 12.0x apart" in text
    assert "orl 4.0x, glyphs 0.3x" in text and "orl is revisited 12x as often as glyphs" in text
    scratch = SimpleNamespace(backbone="small_cnn", weights=None, image_size=32, trainable_stages=-1,
                              cache_features=True, p=16, k=4, batches_per_domain=0)
    text = report.regime_summary(scratch, sizes)
    assert "small_cnn trained from scratch" in text and "take turns, 16 batches each" in text


# ---------------------------------------------------------------- formatting: rounded first

@pytest.mark.parametrize("x, digits, plain, signed", [
    (-1e-12, 3, "0.000", "+0.000"), (2.5e-7, 3, "0.000", "+0.000"), (-0.00049, 3, "0.000", "+0.000"),
    (-0.04999, 1, "0.0", "+0.0"), (-0.05001, 1, "-0.1", "-0.1"), (0.0015, 2, "0.00", "+0.00"),
    (1234567.891, 1, "1234567.9", "+1234567.9"), (np.inf, 3, "n/a", "n/a")])
def test_numbers_are_rounded_then_formatted_with_a_proper_sign(x, digits, plain, signed):
    assert report._num(x, digits) == plain
    assert report._signed(x, digits) == signed
    assert "e" not in plain and "e" not in signed


# ---------------------------------------------------------------- peaks and ties (notebook 01)

CEILING = [0.90, 0.95, 0.9981, 0.99, 0.98, 0.985, 0.9981, 0.9981]  # 0.9981 at epochs 6, 14 and 16


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


# ---------------------------------------------------------------- budgets (notebooks 01-04)

def trained(batches: dict[str, list[int]], best: int, record_batches: bool = True) -> SimpleNamespace:
    """A TrainResult-like model: per domain and epoch 1, 2, … its loss, its batches and val recall@1."""
    rows = []
    for domain, counts in batches.items():
        for epoch, n in enumerate(counts, 1):
            at = {"epoch": epoch, "domain": domain}
            rows += [{**at, "split": "train", "metric": "loss", "value": 1 / epoch},
                     {**at, "split": "val", "metric": "recall@1", "value": 0.1}]
            if record_batches:
                rows.append({**at, "split": "train", "metric": "batches", "value": float(n)})
    return SimpleNamespace(history=pd.DataFrame(rows), best_epoch=best)


NAIVE = trained({"A": [10, 10, 10, 10], "B": [10, 10, 10, 10]}, best=4)


def test_still_improving_is_selected_at_the_last_epoch():
    assert report.still_improving(NAIVE.history, 4)
    assert not report.still_improving(NAIVE.history, 3)


def test_budget_table_sums_the_batches_of_each_domain():
    table = report.budget_table({"naive": NAIVE, "specialist:A": trained({"A": [12, 12, 12, 12]}, best=2)})
    expected = pd.DataFrame({"model": ["naive", "naive", "specialist:A"], "domain": ["A", "B", "A"],
                             "epochs": [4, 4, 4], "selected_epoch": [4, 4, 2], "batches": [40.0, 40.0, 48.0],
                             "batches_to_selected": [40.0, 40.0, 24.0],
                             "flag": ["still improving: train longer"] * 2 + [""], "note": [""] * 3})
    pd.testing.assert_frame_equal(table, expected)
    assert report.budget_sentence(table) == (
        "The budgets differ: batches of each domain are **not** equal across models (within 5%) on A "
        "(naive 40, specialist:A 48). Selected at their last epoch (still improving: train longer): naive.")
    old = report.budget_table({"naive": trained({"A": [10, 10]}, best=1, record_batches=False)})
    assert np.isnan(old.batches[0]) and np.isnan(old.batches_to_selected[0])
    assert old.note[0] == "batches not recorded for every epoch (trained before they were)"
    assert report.budget_sentence(old) == ("No domain has the batch counts of two models to compare. Not "
                                           "recorded for naive. No model was selected at its last epoch.")


def test_budgets_are_equal_within_the_tolerance():
    near = report.budget_table({"naive": NAIVE, "specialist:A": trained({"A": [10, 10, 10, 12]}, best=2)})
    assert report.budget_sentence(near).startswith(  # 40 vs 42: 4.8% apart
        "Every model saw the same number of batches of each domain (within 5%): A 42.")
    assert "**not** equal" in report.budget_sentence(near, Rules(budget_tolerance=0.04))


# ---------------------------------------------------------------- collapsed runs

def test_chance_recall_at_1_is_the_chance_that_a_random_other_item_shares_the_class():
    assert report.chance_recall_at_1([0, 0, 1, 1, 1, 2]) == 8 / 30  # (2*1 + 3*2 + 0) / (6*5)
    assert report.chance_recall_at_1(["a", "a", "a"]) == 1.0
    assert report.chance_recall_at_1([0, 1, 2]) == 0.0
    assert np.isnan(report.chance_recall_at_1([0]))


def test_collapsed_near_chance_or_selected_early():
    h = history({"A": [0.03, 0.05, 0.04], "B": [0.02, 0.04, 0.03]}, every=1)  # epoch 2: mean 0.045
    assert report.collapsed(h, 2, 3, {"A": 0.02, "B": 0.03}) == ("near chance: mean val recall@1 0.045 vs "
                                                                 "chance 0.025")  # 0.045 < 2 x 0.025
    assert report.collapsed(h, 2, 3, {"A": 0.02, "B": 0.02}) is None  # 0.045 > 2 x 0.020
    assert report.collapsed(h, 2, 3) is None  # no chance given, a short run
    assert report.collapsed(h, 2, 30) == "best epoch 2 of 30"
    assert report.collapsed(h, 3, 30) is None
    assert report.collapsed(h, 1, 9) is None  # fewer than 10 epochs: selecting early is no sign
    assert report.collapsed(h, 2, 30, {"A": 0.03, "B": 0.03}) == ("near chance: mean val recall@1 0.045 vs "
                                                                  "chance 0.030; best epoch 2 of 30")
    assert report.collapsed(h, 2, 30, rules=Rules(collapse_epoch=1)) is None


# ---------------------------------------------------------------- the paper, and the next run

def profile(**changes) -> SimpleNamespace:
    """The parts of a Profile that `next_runs` and `ablation_plan` read (mini-like)."""
    base = dict(name="mini", weights="imagenet", trainable_stages=0, backbone="efficientnet_lite0",
                image_size=64, epochs_specialist=30, epochs_naive=30, epochs_distill=30,
                batches_per_domain=10, domain_names=["A", "B", "C"], seed_list=lambda: [0, 1, 2],
                methods=lambda which="distill_methods": ["kl", "distance_mse"],
                tuning_points=lambda: [{"lr": 2e-3}, {"lr": 6e-4}])
    return SimpleNamespace(**{**base, **changes})


SECONDS = {"naive": 21.4, "specialist": 3.1, "distill": 12.0}


def failing(*texts: str) -> pd.DataFrame:
    verdict = run_claims()
    return verdict.assign(holds=~verdict.claim.isin(texts))


def test_next_runs_when_every_claim_held():
    assert report.next_runs(run_claims(), profile(), SECONDS) == (
        "Every claim held: no next run is needed to explain a failure.")


def test_next_runs_tests_a_still_improving_model_with_more_epochs():
    student = trained({"A": [10] * 4, "B": [10] * 4}, best=2)
    budget = report.budget_table({"naive": NAIVE, "distill:kl": student})
    text = report.next_runs(failing("distilling the specialists beats naive fusion"), profile(), SECONDS,
                            budget)
    assert text.splitlines() == [
        "1 of 7 claims did not hold.",
        "- **distilling the specialists beats naive fusion** did not hold. Candidate explanations "
        "(candidates, not established by this run):",
        "  - *length*: the run may have been too short: naive was selected at the last epoch trained (still "
        "improving), so more epochs may change the outcome.",
        "  - *regime*: this run starts from an ImageNet-pretrained efficientnet_lite0 at 64 px; the whole "
        "trunk is frozen and only the head trains; another start (pretrained and fine-tuned, frozen, or from "
        "scratch) may change the outcome.",
        "  - *domain similarity*: the domains (A, B, C) may be similar enough for one model to serve them "
        "all, which leaves naive fusion little to lose; only other domains (`--domains`) test it.",
        "  - Main candidate: *length*. Test it with `ue run --profile mini --out "
        "runs/mini-epochs_distill60-epochs_naive60 --only 04 -p epochs_distill 60 -p epochs_naive 60` "
        "(expected: about 5.0 min of training for 3 seeds (9 specialist x 3.1 s + 3 naive x 21.4 s x "
        "60/30 epochs + 6 distill x 12.0 s x 60/30 epochs; evaluation not included))."]
    # 9*3.1 + 3*21.4*2 + 6*12*2 = 27.9 + 128.4 + 144 = 300.3 s; the tuning adds students:
    tuned = report.next_runs(failing("distilling the specialists beats naive fusion"),
                             profile(distill_tuning={"lr": [2e-3, 6e-4], "kl.temperature": [0.05, 0.1]}),
                             SECONDS, budget)
    assert "+ 12 distill x 12.0 s x 60/30 epochs" in tuned  # 2 methods x 3 seeds + 2 x (4 - 1) points


def test_next_runs_command_is_valid_ue_run_syntax_and_keeps_the_runs_own_settings():
    from ue_lib.cli import _overrides, build_parser

    verdict = run_claims(peaks=[peak_table({"A": RISING, "B": RISING})])  # naive fusion: too short
    verdict = verdict[verdict.claim == "in naive fusion, some domains over-fit while others still improve"]
    text = report.next_runs(verdict, profile(), SECONDS,
                            run_overrides={"kl.temperature": 0.1, "epochs_naive": 30})
    assert ("  - *length*: the run may have been too short: every domain of naive fusion was still improving "
            "at its last evaluation, so more epochs may change the outcome.") in text.splitlines()
    command = text.split("`ue run ")[1].split("`")[0]
    args = build_parser().parse_args(["run", *shlex.split(command)])
    assert (args.profile, args.out, args.only) == ("mini", "runs/mini-epochs_naive60", ["04"])
    assert _overrides(args.p) == {"kl.temperature": 0.1, "epochs_naive": 60}
    # no sign that the run was too short: no length candidate, the regime is the main one
    other = report.next_runs(failing("in naive fusion, some domains over-fit while others still improve"),
                             profile(), SECONDS)
    assert "*length*" not in other and "Main candidate: *regime*" in other


def test_next_runs_budget_regime_and_unknown_times():
    text = report.next_runs(failing("distilling the specialists beats naive fusion"),
                            profile(epochs_naive=20), SECONDS)
    assert ("  - *budget*: these models did not get the same training budget: their epochs differ "
            "(distill 30, naive 20).") in text.splitlines()
    assert "-p epochs_naive 30` (expected: about 3.3 min" in text  # 27.9 + 3*21.4*30/20 + 2*3*12 = 196.2 s
    kl = report.next_runs(failing("distribution distillation (kl) beats distance_mse"), profile(), SECONDS)
    assert "*budget*" not in kl and "*domain similarity*" not in kl  # one kind of model, no naive fusion
    assert kl.endswith("Test it with `ue run --profile mini --out runs/mini-trainable_stages1 --only 04 "
                       "-p trainable_stages 1` (expected: not estimable from this run's times (the change "
                       "alters the cost of every step)).")
    scratch = profile(weights=None, backbone="small_cnn", trainable_stages=-1, image_size=32)
    assert report.next_runs(failing("distribution distillation (kl) beats distance_mse"), scratch,
                            SECONDS).endswith("  - No single setting tests these candidates.")
    loaded = report.next_runs(failing("in naive fusion, some domains over-fit while others still improve"),
                              profile(), {"naive": 0.0}, report.budget_table({"naive": NAIVE}))
    assert loaded.endswith("(expected: unknown: no measured training time of a specialist model in this "
                           "run).")


def test_paper_comparison():
    table = report.paper_comparison(failing("distilling the specialists beats naive fusion"))
    assert list(table.columns) == ["claim", "the paper (in words)", "this run"]
    row = table.set_index("claim").loc["distilling the specialists beats naive fusion"]
    assert row["the paper (in words)"] == ("Distilling the specialists into one universal student beats "
                                          "naive fusion.")
    assert row["this run"].startswith("did not hold: distill:kl beat naive on 3 of 3 domains")
    assert table["this run"].str.startswith("held: ").sum() == 6
    assert table.set_index("claim").loc["distribution distillation (kl) beats distance_mse",
                                        "the paper (in words)"].endswith("beats matching absolute distances.")
    assert report.paper_comparison(pd.DataFrame([{"claim": "x", "measured": "m", "rule": "r", "holds": True}])
                                   ).iloc[0].tolist() == ["x", "(not a claim of the paper)", "held: m"]


# ---------------------------------------------------------------- notebook 05: the plan

def test_ablation_plan_names_what_ran_and_the_commands_for_the_rest():
    text = report.ablation_plan({"kl.temperature": [0.02, 0.05, 0.2]}, profile(), 20.0, [0])
    lines = text.splitlines()
    assert lines[0] == ("- Ran: kl.temperature (0.02, 0.05, 0.2), on 1 seed (0): one seed has no spread, so "
                        "no setting can be told apart from seed noise.")
    assert lines[1] == ("- Not run yet (expected time: values x 1 seed x 40.0 s per point, the kl student's "
                        "training time measured in this run x its 2 tuning point(s)):")
    assert lines[2] == ("  - `kl.neighbors`: `ue sweep notebooks/03_absolute_vs_distribution_distillation"
                        ".ipynb --profile mini --out runs/mini-sweep-kl.neighbors --seeds 0 "
                        "-p distill_methods kl -p kl.neighbors "
                        "None 4 16` (3 values x 1 seed x 40.0 s: about 2.0 min).")
    knobs = [line.split("`")[1] for line in lines[2:]]
    assert knobs == [k for k in report.STANDARD_KNOBS if k != "kl.temperature"]
    assert lines[-1].endswith("about 2.0 min; it retrains the specialists too, so more).")
    done = report.ablation_plan(dict(report.STANDARD_KNOBS), profile(), 20.0, [0, 1])
    assert done.splitlines()[1] == "- Every knob of the standard list ran." and "seed noise" not in done


def test_ablation_plan_commands_are_valid_sweeps_of_valid_settings():
    from ue_lib.cli import build_parser
    from ue_lib.profiles import Profile, parse_value

    text = report.ablation_plan({}, profile(), 10.0, [0, 1])
    commands = [line.split("`")[3] for line in text.splitlines()[2:]]
    assert len(commands) == len(report.STANDARD_KNOBS)
    for command, (knob, values) in zip(commands, report.STANDARD_KNOBS.items()):
        args = build_parser().parse_args(shlex.split(command)[1:])
        assert args.command == "sweep" and args.seeds == [0, 1] and args.profile == "mini"
        (_, methods), (name, *given) = args.p
        assert methods == "kl"
        assert name == knob and [parse_value(v) for v in given] == values
        for value in values:  # each value is a valid setting of the engine
            Profile().with_overrides({knob: value})


# ---------------------------------------------------------------- flags, tuning and galleries

def _val_history(value: float, epochs: int = 10) -> pd.DataFrame:
    return pd.DataFrame([{"epoch": e, "domain": "blobs", "split": "val", "metric": "recall@1",
                          "value": value} for e in range(1, epochs + 1)])


def test_collapse_flags_use_the_chance_of_each_domains_validation_labels():
    from helpers import blob_domain

    domains = {"blobs": blob_domain(n_classes=14)}  # val: 3 classes x 6 -> chance 90/306
    models = {"distill:good": SimpleNamespace(history=_val_history(0.9), best_epoch=5),
              "distill:chance": SimpleNamespace(history=_val_history(0.5), best_epoch=5),
              "distill:early": SimpleNamespace(history=_val_history(0.9), best_epoch=2)}
    flags = report.collapse_flags(models, domains)
    assert flags == {"distill:chance": "near chance: mean val recall@1 0.500 vs chance 0.294",
                     "distill:early": "best epoch 2 of 10"}


def test_tuning_table_stacks_the_methods_points():
    a = SimpleNamespace(method="kl", table=pd.DataFrame({"lr": [2e-3, 6e-4], "chosen": [True, False]}))
    b = SimpleNamespace(method="darkrank", table=pd.DataFrame({"lr": [2e-3, 6e-4],
                                                                "chosen": [False, True]}))
    t = report.tuning_table([a, b])
    assert list(t.index) == ["kl", "kl", "darkrank", "darkrank"]
    assert t.chosen.tolist() == [True, False, False, True]


def test_gallery_sentence_gives_classes_and_chance_per_split():
    from helpers import blob_domain

    text = report.gallery_sentence({"blobs": blob_domain(n_classes=14)})
    # val: classes 6..8 (18 items) -> 3*30/(18*17); test: classes 9..13 (30 items) -> 5*30/(30*29)
    assert "blobs: validation 3 classes (chance Recall@1 0.294), test 5 (chance 0.172)" in text
    assert "not a sign of over-fitting" in text


def test_budget_table_marks_collapsed_models():
    models = {"distill:kl": SimpleNamespace(history=_val_history(0.9), best_epoch=10),
              "distill:darkrank": SimpleNamespace(history=_val_history(0.1), best_epoch=2)}
    t = report.budget_table(models, flags={"distill:darkrank": "best epoch 2 of 10"})
    assert t.flag.tolist() == [report.TRAIN_LONGER, "collapsed: best epoch 2 of 10"]


@pytest.mark.parametrize("x, text", [(12.0, "12"), (0.7192, "0.719"), (-0.0125, "-0.013"),
                                     (6e-4, "0.0006"), (2.922e-10, "2.9e-10"), (0.0, "0"),
                                     (-0.0, "0"), (-4.252e-04, "-0.00043"), (float("nan"), "nan")])
def test_float_format_has_no_scientific_zeros(x, text):
    assert report.float_format(x) == text
