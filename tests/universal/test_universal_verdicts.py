"""The main paper's claims (`ue_lib.universal.verdicts`), on small hand-made histories and results:
for each claim a case where it holds and one where it does not."""

from __future__ import annotations

import shlex
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from helpers import (
    DOMAINS,
    FLAT,
    OVERFIT,
    RISING,
    claim,
    cost_table,
    full_results,
    paired,
    peak_table,
    results,
    run_claims,
    trained,
)
from scipy import stats

from ue_lib import verdicts
from ue_lib.io import RESULT_COLUMNS
from ue_lib.universal import histories
from ue_lib.universal import verdicts as uv  # the main paper's verdicts
from ue_lib.verdicts import Rules

BEATS_CLAIMS = [("naive fusion falls short of the specialists", "specialist", "naive"),
                ("distilling the specialists beats naive fusion", "distill:kl", "naive"),
                ("distribution distillation (kl) beats distance_mse", "distill:kl", "distill:distance_mse"),
                ("distribution distillation (kl) beats embedding_mse", "distill:kl",
                 "distill:embedding_mse")]


def summary03(**kw) -> list[str]:
    res = full_results()
    merged = results({"distill:kl": {"merged": [0.7]}, "distill:distance_mse": {"merged": [0.72]},
                      "naive": {"merged": [0.6]}})
    res = pd.concat([res, merged], ignore_index=True)
    if kw.pop("without_naive", False):
        res = res[res.model != "naive"]
    return uv.distillation_summary(res, ["kl", "distance_mse"], DOMAINS, **kw).splitlines()


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


def with_map(table: pd.DataFrame, by_setting: dict) -> pd.DataFrame:
    """`table` with its map@r values set per setting (same value for every domain and seed)."""
    m = table.metric == "map@r"
    return table.assign(value=np.where(m, table.temperature.map(by_setting), table.value))


NAIVE = trained({"A": [10, 10, 10, 10], "B": [10, 10, 10, 10]}, best=4)


def profile(**changes) -> SimpleNamespace:
    """The parts of a Profile that `next_runs` and `ablation_plan` read (mini-like)."""
    base = dict(name="mini", weights="imagenet", trainable_stages=0, backbone="efficientnet_lite0",
                image_size=64, epochs_specialist=30, epochs_naive=30, epochs_distill=30,
                batches_per_domain=10, domain_names=["A", "B", "C"], seed_list=lambda which: [0, 1, 2],
                methods=lambda which="distill_methods": ["kl", "distance_mse"],
                tuning_points=lambda: [{"lr": 2e-3}, {"lr": 6e-4}])
    return SimpleNamespace(**{**base, **changes})


SECONDS = {"naive": 21.4, "specialist": 3.1, "distill": 12.0}


def failing(*texts: str) -> pd.DataFrame:
    verdict = run_claims()
    failed = verdict.claim.isin(texts)
    return verdict.assign(holds=~failed, verdict=np.where(failed, "does not hold", verdict.verdict))


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
                            "(-0.100 by the end) while B (first at its best at epoch 8) still improved: on "
                            "1 of 1 seed")
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
    assert row.holds and row.measured.endswith("run 1: largest +0.020 (A), mean +0.010")
    assert row.verdict == "holds on this seed"
    assert row["key number"] == "largest cost +0.020, mean over domains +0.010 (means over seeds)"
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
    assert row.verdict == "holds: within 0.020 of the specialists, on this seed"
    above = full_results(distill_kl={"A": [0.62], "B": [0.6], "C": [0.61]})  # gap +0.010
    row = claim(run_claims(above), text)
    assert row.verdict == "holds: the student matches or exceeds the specialists, on this seed"
    assert row["key number"] == "mean gap +0.010"
    far = full_results(distill_kl={"A": [0.58], "B": [0.57], "C": [0.575]})  # gap -0.025
    assert not claim(run_claims(far), text).holds
    assert claim(run_claims(far), text).verdict.startswith("does not hold: more than 0.020 below")
    assert claim(run_claims(far, rules=Rules(close_gap=0.03)), text).holds


def test_claims_table_and_sentence():
    verdict = run_claims()
    assert list(verdict.columns) == ["claim", "verdict", "key number", "measured", "rule", "holds"]
    assert verdict.holds.dtype == bool
    assert list(verdict.holds) == [True, True, True, True, True, True, True]
    changed = verdict.assign(verdict=["holds (3 wins, 0 ties, 0 losses)", "not established (on 1 of 3 seeds)",
                                      "does not hold (on 0 of 3 seeds)"] + ["holds"] * 3 + ["not measured"])
    assert uv.claims_sentence(changed) == (
        "Of 7 claims, 4 hold, 1 are not established (nothing went against them, but they did not clear "
        "the rule) and 1 do not hold; 1 could not be measured.")
    text = " ".join(verdict.measured) + " ".join(verdict.rule) + " ".join(verdict["key number"])
    assert "-0.000" not in text and "e-0" not in text
    md = uv.claims_markdown(verdict)
    assert md.splitlines()[:2] == ["| claim | verdict | key number |", "| --- | --- | --- |"]
    assert len(md.split("<details>")[0].strip().splitlines()) == 2 + len(verdict)
    assert md.count("<li>") == len(verdict) + verdict.rule.nunique()  # each rule once
    assert md.rstrip().endswith("</details>")


def test_claims_name_early_teachers_and_keep_comparing_them():
    flags = {"specialist:A": "peaked early: selected at epoch 1 of 30",
             "distill:distance_mse": "collapsed: near chance (…)"}
    verdict = run_claims(flags=flags).set_index("claim")
    short = verdict.loc["naive fusion falls short of the specialists"]
    assert short.holds and short.measured.endswith(
        "Flagged, compared all the same: specialist:A peaked early: selected at epoch 1 of 30")
    mse = verdict.loc["distribution distillation (kl) beats distance_mse"]
    assert not mse.holds and mse.verdict == "not compared (collapsed)"


def test_beats_claims_say_not_established_when_nothing_was_lost():
    text = "distribution distillation (kl) beats distance_mse"
    # kl 0.59 on every domain: 2 ties and a win
    ties = full_results(distill_distance_mse={"A": [0.585], "B": [0.585], "C": [0.5]})
    row = claim(run_claims(ties), text)
    assert not row.holds
    assert row.verdict == "not established (1 win, 2 ties, 0 losses), on this seed"


def test_distillation_summary_compares_every_student_with_naive_fusion():
    lines = summary03()
    assert lines == [
        "- distill:kl beat distill:distance_mse on 3 of 3 domains in recall@1 (mean paired difference over "
        "1 seed: A +0.040 (win), B +0.040 (win), C +0.040 (win)). By the rule, distill:kl **beats** "
        "distill:distance_mse on this seed.",
        "- distill:kl beat naive on 3 of 3 domains in recall@1 (mean paired difference over 1 seed: "
        "A +0.090 (win), B +0.090 (win), C +0.090 (win)). By the rule, distill:kl **beats** naive on this "
        "seed.",
        "- distill:distance_mse beat naive on 3 of 3 domains in recall@1 (mean paired difference over "
        "1 seed: A +0.050 (win), B +0.050 (win), C +0.050 (win)). By the rule, distill:distance_mse "
        "**beats** naive on this seed.",
        "- Gap of the `kl` student to the specialists: mean gap to the specialists over 1 seed: -0.010 "
        "(A: -0.010, B: -0.010, C: -0.010); holds: within 0.020 of the specialists, on this seed (the mean "
        "over domains of the seed-mean gap (kl - specialist) > -0.020).",
        "- Merged index recall@1: distill:distance_mse 0.720, distill:kl 0.700, naive 0.600.",
        "- The rule behind every \"beats\" above: wins on a majority of domains: mean paired gain > 0.010 "
        "and positive on every seed (a mean within ±0.010 is a tie; one seed has no spread). One seed: "
        "each verdict holds on this seed only; notebook 04 repeats them over seeds."]
    assert summary03(without_naive=True)[1] == (
        "- Naive fusion (the reference): no naive recall@1 rows in this table, so no student is compared "
        "with it.")


def test_a_collapsed_student_is_named_and_not_compared():
    flags = {"distill:distance_mse": "collapsed: near chance (mean val recall@1 0.031, chance 0.020)",
             "distill:kl": "peaked early: selected at epoch 2 of 30"}
    lines = summary03(flags=flags)
    said = "distill:distance_mse collapsed: near chance (mean val recall@1 0.031, chance 0.020)"
    assert lines[0] == f"- {said}: not compared with distill:kl."
    assert lines[2] == f"- {said}: not compared with naive."
    assert lines[1].endswith("distill:kl **beats** naive on this seed.")  # peaked early: compared
    assert lines[4].startswith("- Merged index recall@1: distill:distance_mse 0.720 (collapsed: ")
    kl = summary03(flags={"distill:kl": "collapsed: near chance (mean val recall@1 0.031, chance 0.020)"})
    assert kl[3] == ("- Gap of the `kl` student to the specialists: distill:kl collapsed: near chance (mean "
                     "val recall@1 0.031, chance 0.020): not compared with specialist.")
    # neither a win nor a loss: not in the comparison table's wins, and the claims do not hold
    res = paired("distill:kl", "distill:darkrank", {"A": [0.3], "B": [-0.3]})
    flags = {"distill:darkrank": "collapsed: near chance"}
    cmp = verdicts.compare(res, "distill:kl", "distill:darkrank", flags=flags)
    assert list(cmp.outcome) == ["not compared"] * 2 and not cmp.win.any() and not verdicts.beats(cmp)
    assert list(verdicts.compare(res, "distill:kl", "distill:darkrank").outcome) == ["win", "loss"]
    text = "distilling the specialists beats naive fusion"
    row = claim(run_claims(flags={"distill:kl": "collapsed: near chance"}), text)
    assert not row.holds and row.measured == "distill:kl collapsed: near chance: not compared with naive"
    assert claim(run_claims(), text).holds


def test_ablation_table_orders_settings_and_shows_sample_std():
    table = uv.ablation_table(sweep_table("temperature", SETTINGS), "temperature", [0.02, 0.05, 0.2])
    assert list(table.index) == ["0.02", "0.05", "0.2"]
    assert list(table.columns) == ["A", "B", "all domains"]
    assert table.loc["0.02", "A"] == "0.610 ± 0.014"
    assert table.loc["0.05", "all domains"] == "0.505 ± 0.007"  # per-seed means 0.50, 0.51
    assert table.columns.name == "recall@1 (mean ± std over 2 seeds)"
    one = uv.ablation_table(sweep_table("temperature", SETTINGS, seeds=1), "temperature",
                                [0.02, 0.05, 0.2])
    assert table.shape == one.shape and not one.apply(lambda c: c.str.contains("±")).any().any()
    assert one.loc["0.2", "B"] == "0.400"
    assert one.columns.name == "recall@1 (mean over 1 seed)"
    # one setting with one seed, the others with two: the header says so
    mixed = sweep_table("temperature", SETTINGS)
    mixed = mixed[~((mixed.temperature == 0.2) & (mixed.seed == 1))]
    t = uv.ablation_table(mixed, "temperature", [0.02, 0.05, 0.2])
    assert t.loc["0.2", "A"] == "0.500" and t.loc["0.02", "A"] == "0.610 ± 0.014"
    assert t.columns.name == "recall@1 (mean ± std over 1–2 seeds; n = 1: the mean alone)"


def test_ablation_sentence_reports_recall_and_map_and_whether_they_agree():
    t = sweep_table("temperature", SETTINGS)  # map@r 0.1 for every setting
    assert uv.ablation_sentence(t, "temperature", [0.02, 0.05, 0.2]) == (
        "**temperature** (2 seeds): recall@1 averaged over domains: the best setting was 0.05 (0.505) "
        "and the worst 0.2 (0.455), a range of 0.050; best per domain: A 0.02, B 0.05. map@r averaged "
        "over domains: from 0.100 to 0.100, a range of 0.000 (within 0.010: no setting is clearly "
        "better); best per domain: A 0.02, B 0.02. map@r does not separate the settings: the best "
        "setting rests on recall@1 alone.")
    agree = uv.ablation_sentence(with_map(t, {0.02: 0.2, 0.05: 0.3, 0.2: 0.1}), "temperature",
                                     [0.02, 0.05, 0.2])
    assert agree.endswith("recall@1 and map@r agree on the best setting (0.05).")
    disagree = uv.ablation_sentence(with_map(t, {0.02: 0.3, 0.05: 0.2, 0.2: 0.1}), "temperature",
                                        [0.02, 0.05, 0.2])
    assert disagree.endswith("recall@1 and map@r **disagree** on the best setting (recall@1: 0.05, "
                             "map@r: 0.02).")
    close = {0.2: {"A": [0.5, 0.5]}, 0.02: {"A": [0.505, 0.505]}}
    assert uv.ablation_sentence(sweep_table("temperature", close, seeds=1), "temperature", [0.02, 0.2]
                                    ).endswith("Neither recall@1 nor map@r separates the settings.")
    assert "no recall@1 results" in uv.ablation_sentence(t.iloc[:0], "temperature", [0.02])
    only = uv.ablation_sentence(t[t.metric == "recall@1"], "temperature", [0.02, 0.05, 0.2])
    assert only.endswith("best per domain: A 0.02, B 0.05.") and "map@r" not in only


def test_ablation_rows():
    t = sweep_table("neighbors", {None: {"A": [0.5]}, 4.0: {"A": [0.6]}}, seeds=1)
    t["neighbors"] = t["neighbors"].astype(float)  # as read back from a CSV: NaN and 4.0
    rows = uv.ablation_rows(t, "neighbors", "05_ablations")
    assert list(rows.columns) == RESULT_COLUMNS
    assert set(rows.method) == {"kl[neighbors=None]", "kl[neighbors=4]"}
    assert (rows.notebook == "05_ablations").all() and len(rows) == len(t)
    assert rows.value.tolist() == t.value.tolist()
    labels = uv.ablation_rows(sweep_table("temperature", SETTINGS), "temperature", "05").method
    assert list(dict.fromkeys(labels)) == ["kl[temperature=0.2]", "kl[temperature=0.02]",
                                           "kl[temperature=0.05]"]


def test_next_runs_when_every_claim_held():
    assert uv.next_runs(run_claims(), profile(), SECONDS) == (
        "Every claim held: no next run is needed to explain a failure.")


def test_next_runs_tests_a_still_improving_model_with_more_epochs():
    student = trained({"A": [10] * 4, "B": [10] * 4}, best=2)
    budget = histories.budget_table({"naive": NAIVE, "distill:kl": student})
    text = uv.next_runs(failing("distilling the specialists beats naive fusion"), profile(), SECONDS,
                            budget)
    assert text.splitlines() == [
        "1 of 7 claims did not hold (or are not established). Candidate explanations, not established by "
        "this run:",
        "- *regime* (every claim): this run starts from an ImageNet-pretrained efficientnet_lite0 at 64 px; "
        "the whole trunk is frozen and only the head trains; another start (pretrained and fine-tuned, "
        "frozen, or from scratch) may change the outcome.",
        "- *domain similarity* (the claims about naive fusion): the domains (A, B, C) may be similar enough "
        "for one model to serve them all, which leaves naive fusion little to lose; only other domains "
        "(`--domains`) test it.",
        "- **distilling the specialists beats naive fusion** (does not hold). *length*: the run may have "
        "been too short: naive was selected at the last epoch trained (still improving), so more epochs "
        "may change the outcome. Also: regime and domain similarity (above).",
        "  - Main candidate: *length*. Test it with `ue run --profile mini --out "
        "runs/mini-epochs_distill60-epochs_naive60 --only 04 -p epochs_distill 60 -p epochs_naive 60` "
        "(expected time: about 5.0 min of training for 3 seeds (9 specialist x 3.1 s + 3 naive x 21.4 s x "
        "60/30 epochs + 6 distill x 12.0 s x 60/30 epochs; evaluation not included))."]
    # 9*3.1 + 3*21.4*2 + 6*12*2 = 27.9 + 128.4 + 144 = 300.3 s; the tuning adds students:
    tuned = uv.next_runs(failing("distilling the specialists beats naive fusion"),
                             profile(distill_tuning={"lr": [2e-3, 6e-4], "kl.temperature": [0.05, 0.1]}),
                             SECONDS, budget)
    assert "+ 12 distill x 12.0 s x 60/30 epochs" in tuned  # 2 methods x 3 seeds + 2 x (4 - 1) points


def test_next_runs_command_is_valid_ue_run_syntax_and_keeps_the_runs_own_settings():
    from ue_lib.cli import _overrides, build_parser

    verdict = run_claims(peaks=[peak_table({"A": RISING, "B": RISING})])  # naive fusion: too short
    verdict = verdict[verdict.claim == "in naive fusion, some domains over-fit while others still improve"]
    text = uv.next_runs(verdict, profile(), SECONDS,
                            run_overrides={"kl.temperature": 0.1, "epochs_naive": 30})
    assert ("*length*: the run may have been too short: every domain of naive fusion was still improving "
            "at its last evaluation, so more epochs may change the outcome.") in text
    command = text.split("`ue run ")[1].split("`")[0]
    args = build_parser().parse_args(["run", *shlex.split(command)])
    assert (args.profile, args.out, args.only) == ("mini", "runs/mini-epochs_naive60", ["04"])
    assert _overrides(args.p) == {"kl.temperature": 0.1, "epochs_naive": 60}
    # no sign that the run was too short: no length candidate, the regime is the main one
    other = uv.next_runs(failing("in naive fusion, some domains over-fit while others still improve"),
                             profile(), SECONDS)
    assert "*length*" not in other and "Main candidate: *regime*" in other


def test_next_runs_budget_regime_and_unknown_times():
    text = uv.next_runs(failing("distilling the specialists beats naive fusion"),
                            profile(epochs_naive=20), SECONDS)
    assert ("*budget*: these models did not get the same training budget: their epochs differ "
            "(distill 30, naive 20).") in text
    # 27.9 + 3*21.4*30/20 + 2*3*12 = 196.2 s
    assert "-p epochs_naive 30` (expected time: about 3.3 min" in text
    kl = uv.next_runs(failing("distribution distillation (kl) beats distance_mse"), profile(), SECONDS)
    assert "*budget*" not in kl and "*domain similarity*" not in kl  # one kind of model, no naive fusion
    assert "Also: regime (above)." in kl
    assert kl.endswith("Test it with `ue run --profile mini --out runs/mini-trainable_stages1 --only 04 "
                       "-p trainable_stages 1` (expected time: not estimable from this run's times (the "
                       "change alters the cost of every step)).")
    scratch = profile(weights=None, backbone="small_cnn", trainable_stages=-1, image_size=32)
    assert uv.next_runs(failing("distribution distillation (kl) beats distance_mse"), scratch,
                            SECONDS).endswith("  - No single setting tests these candidates.")
    loaded = uv.next_runs(failing("in naive fusion, some domains over-fit while others still improve"),
                              profile(), {"naive": 0.0}, histories.budget_table({"naive": NAIVE}))
    assert loaded.endswith("(expected time: unknown: no measured training time of a specialist model in this "
                           "run).")


def plan(grid: dict, prof, seconds: float, seeds: list[int]) -> str:
    """`ablation_plan` of tables that ran `grid` ({knob: values}) on `seeds`."""
    tables = {knob: (values, pd.DataFrame({"seed": seeds})) for knob, values in grid.items()}
    return uv.ablation_plan(tables, prof, {"distill": seconds}, seeds[0])


def test_ablation_plan_names_what_ran_and_the_commands_for_the_rest():
    text = plan({"kl.temperature": [0.02, 0.05, 0.2]}, profile(), 20.0, [0])
    lines = text.splitlines()
    assert lines[0] == ("- Ran: kl.temperature (0.02, 0.05, 0.2), on 1 seed (0): one seed has no spread, so "
                        "no setting can be told apart from seed noise.")
    assert lines[1] == ("- Not run yet; each sweep's expected time is its values x 1 seed x 40.0 s (one kl "
                        "student's training time in this run, 20.0 s, x its 2 tuning points):")
    assert lines[2] == ("  - `kl.neighbors`: `ue sweep notebooks/03_absolute_vs_distribution_distillation"
                        ".ipynb --profile mini --out runs/mini-sweep-kl.neighbors --seeds 0 "
                        "-p distill_methods kl -p kl.neighbors "
                        "None 4 16` (3 values x 1 seed x 40.0 s: about 2.0 min).")
    knobs = [line.split("`")[1] for line in lines[2:]]
    assert knobs == [k for k in uv.STANDARD_KNOBS if k != "kl.temperature"]
    assert lines[-1].endswith("about 2.0 min; it retrains the specialists too, so more).")
    done = plan(dict(uv.STANDARD_KNOBS), profile(), 20.0, [0, 1])
    assert done.splitlines()[1] == "- Every knob of the standard list ran." and "seed noise" not in done


def test_ablation_plan_commands_are_valid_sweeps_of_valid_settings():
    from ue_lib.cli import build_parser
    from ue_lib.profiles import Profile, parse_value

    text = plan({"lr": [1e-3]}, profile(), 10.0, [0, 1])  # a knob off the standard list
    commands = [line.split("`")[3] for line in text.splitlines()[2:]]
    assert len(commands) == len(uv.STANDARD_KNOBS)
    for command, (knob, values) in zip(commands, uv.STANDARD_KNOBS.items()):
        args = build_parser().parse_args(shlex.split(command)[1:])
        assert args.command == "sweep" and args.seeds == [0, 1] and args.profile == "mini"
        (_, methods), (name, *given) = args.p
        assert methods == "kl"
        assert name == knob and [parse_value(v) for v in given] == values
        for value in values:  # each value is a valid setting of the engine
            Profile().with_overrides({knob: value})


CONDITIONS = {"capacity": {"as profiled": {}, "linear head": {"head_hidden": 0}}}


def condition_rows(gaps: dict[str, list[float]], base: float = 0.6) -> pd.DataFrame:
    """kl and distance_mse rows per level and seed on domains A and B: distance_mse at `base`,
    kl at `base` + the level's gap of that seed (the same on both domains)."""
    rows = []
    for level, per_seed in gaps.items():
        for seed, gap in enumerate(per_seed):
            for domain in ("A", "B"):
                for method, value in (("kl", base + gap), ("distance_mse", base)):
                    rows.append({"model": "distill", "method": method, "domain": domain, "split": "test",
                                 "seed": seed, "metric": "recall@1", "value": value,
                                 "factor": "capacity", "level": level})
    return pd.DataFrame(rows)


def test_conditions_table_decides_each_level_and_its_change_from_the_reference():
    rows = condition_rows({"as profiled": [0.0, 0.005, -0.005], "linear head": [0.03, 0.04, 0.05]})
    t = uv.conditions_table(rows, CONDITIONS, ["distance_mse"]).set_index("level")
    ref, lin = t.loc["as profiled"], t.loc["linear head"]
    assert ref.reference and ref.outcome == "tie" and ref.gap == pytest.approx(0.0)
    assert lin.gap == pytest.approx(0.04) and lin.outcome == "win" and lin.n == 3
    half = stats.t.ppf(0.975, 2) * 0.01 / np.sqrt(3)
    assert (lin.low, lin.high) == pytest.approx((0.04 - half, 0.04 + half))
    assert lin.change == pytest.approx(0.04) and lin.change_outcome == "win"
    text = uv.conditions_sentence(t.reset_index())
    assert text.splitlines()[0] == ("- **In short:** Against distance_mse, a tie at the run's own settings "
                                    "(+0.000); kl's lead grows at linear head (capacity).")
    text = "\n".join(text.splitlines()[1:])
    assert text.startswith("- **capacity**, kl − distance_mse (recall@1, mean over domains): as profiled "
                           "+0.000 [-0.012, +0.012] (a tie); linear head +0.040 [+0.015, +0.065] (kl helps). "
                           "So: at linear head kl gains more than at as profiled (+0.040).")
    assert "two-sided 95% t intervals over 3 seeds" in text
    flat = uv.conditions_table(condition_rows({"as profiled": [0.0, 0.005, -0.005],
                                               "linear head": [0.0, 0.004, -0.003]}), CONDITIONS,
                               ["distance_mse"])
    assert "So: no level changes the gap by the rule (changes +0.000)" in uv.conditions_sentence(flat)
    assert uv.conditions_summary(flat).endswith("; capacity changes nothing the rule can see.")


def test_a_kl_only_setting_leaves_the_competitors_student_as_it_is():
    from ue_lib.profiles import load_profile
    from ue_lib.universal import experiments

    p = load_profile("mini")
    both = {"kl.temperature": 0.2, "head_hidden": 0}
    assert experiments._own(p, "distance_mse", both) == {"head_hidden": 0}
    assert experiments._own(p, "kl", {"kl.temperature": 0.2}) == {"kl.temperature": 0.2}
    assert set(p.kl_conditions) == {"student capacity", "teacher heterogeneity", "kl temperature"}
    with pytest.raises(ValueError, match=r"kl_conditions\['x'\]\['y'\]: seeds is a 'universal' setting"):
        load_profile("mini", overrides={"kl_conditions": {"x": {"y": {"seeds": "0"}}}})
    with pytest.raises(ValueError, match=r"kl_conditions\['x'\]\['y'\]: .*teacher_rescale must be in"):
        load_profile("mini", overrides={"kl_conditions": {"x": {"y": {"teacher_rescale": 1.5}}}})


def test_conditions_view_and_result_rows():
    rows = condition_rows({"as profiled": [0.0, 0.005, -0.005], "linear head": [0.03, 0.04, 0.05]})
    view = uv.conditions_view(uv.conditions_table(rows, CONDITIONS, ["distance_mse"]))
    assert list(view.columns) == ["kl − distance_mse"]
    ref = ("capacity", "as profiled (the run's)")
    assert view.loc[ref, "kl − distance_mse"] == "+0.000 [-0.012, +0.012] tie"
    assert view.loc[("capacity", "linear head"), "kl − distance_mse"] == "+0.040 [+0.015, +0.065] win"
    result = uv.condition_result_rows(rows.assign(epoch=5), "05_ablations")
    assert set(result.method) == {"kl[capacity=as profiled]", "distance_mse[capacity=as profiled]",
                                  "kl[capacity=linear head]", "distance_mse[capacity=linear head]"}
    assert len(result) == len(rows) and (result.notebook == "05_ablations").all()


def test_a_collapsed_specialist_leaves_its_domain_out_of_the_comparisons():
    flags = {"specialist:A": "collapsed on 1 of 2 seeds (seed 1: near chance …)"}
    short = claim(run_claims(flags=flags), "naive fusion falls short of the specialists")
    assert "over 1 seed: B +0.100 (win), C +0.100 (win)" in short.measured and "A " not in short.measured
    kept = uv.without_collapsed(full_results(), flags)
    assert not ((kept.model_name == "specialist") & (kept.domain == "A")).any()
    assert ((kept.model_name == "naive") & (kept.domain == "A")).any()
