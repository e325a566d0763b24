"""Where a run departs from the paper, and what its own numbers point to: the computed closing
paragraphs of notebooks 02-04, the single-seed verdicts of notebook 03 against the same
comparisons over every seed (notebook 04), and the baselines before and after their tuning.

Every sentence is conditional on the numbers passed in: a mechanism is named only where the
run shows its sign (a domain that over-fitted under naive fusion, a teacher selected in its
first epochs, teachers of similar distance scales); an effect the run did not show is never
asserted. Thresholds are those of `ue_lib.verdicts.Rules`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from ..verdicts import Rules, beats_verdict, compare, num, signed
from .histories import PEAKED_EARLY, early_count, peak_epochs
from .verdicts import PAPER, with_labels

OTHER_LOSS = ("not a claim of the paper: the validation-best other loss of notebook 03, carried so "
              "that kl meets its strongest competitor")


def _listed(names) -> str:
    names = list(names)
    return ", ".join(names) if names else "none"


def _outcomes(cmp: pd.DataFrame) -> dict[str, list[str]]:
    return {k: list(cmp.index[cmp.outcome == k]) for k in ("win", "tie", "loss", "mixed")}


def _early(flags: Mapping[str, str], kind: str) -> list[str]:
    """The domains whose `kind` model ('specialist') is flagged as peaked early."""
    return [m.split(":", 1)[1] for m, f in flags.items()
            if m.startswith(kind + ":") and f.startswith(PEAKED_EARLY)]


# ---------------------------------------------------------------- notebook 02

def specialists_vs_paper(table: pd.DataFrame, naive_peaks: pd.DataFrame, flags: Mapping[str, str],
                         domains: Sequence[str] | None = None, metric: str = "recall@1",
                         rules: Rules = Rules()) -> str:
    """Notebook 02's closing paragraph: the paper's claim (specialists beat naive fusion on each
    domain), this run's outcome per domain, and, per group of domains, what notebook 01's curves
    of naive fusion (`naive_peaks`: `histories.peak_epochs`) and the models' flags
    (`histories.model_flags`) point to."""
    cmp = compare(with_labels(table), "specialist", "naive", metric, list(domains) if domains else None,
                  rules)
    won = _outcomes(cmp)
    status = naive_peaks.set_index("domain").status
    lines = [f"**The paper** finds naive fusion worse on each domain than that domain's specialist. "
             f"**This run**: {beats_verdict(cmp)}. The specialist wins on {_listed(won['win'])}, ties on "
             f"{_listed(won['tie'])} and loses on {_listed(won['loss'])}"
             + (f" (mixed across seeds: {_listed(won['mixed'])})" if won["mixed"] else "") + "."]
    over = [d for d in cmp.index if status.get(d) == "over-fits"]
    if over:
        held = [d for d in over if d in won["win"]]
        some = (f"of these the specialist wins only on {_listed(held)}" if held else
                "the specialist wins on none of them")
        lines.append(f"- Naive fusion over-fitted {_listed(over)} (notebook 01), the paper's mechanism: "
                     + (f"there the specialist wins ({_listed(held)}), as the mechanism predicts."
                        if len(held) == len(over) else
                        f"{some}; where it does not, stopping that domain at its own best epoch was "
                        f"not worth more than what the shared network gives it."))
    ceiling = [d for d in cmp.index if status.get(d) == "at ceiling" and d not in won["loss"]]
    if ceiling:
        lines.append(f"- {_listed(ceiling)}: at the ceiling under naive fusion (validation {metric} "
                     f"{num(rules.ceiling, 2)} or more from the first evaluation), so {metric} has "
                     f"little room to separate the models there (MAP@R, which asks for every image "
                     f"of the class first, still can: see the table).")
    calm = [d for d in won["tie"] + won["mixed"] if d not in over + ceiling]
    if calm:
        lines.append(f"- {_listed(calm)}: naive fusion levelled off or was still improving there, so one "
                     f"network and one stopping point cost these domains nothing the rule can see; a tie "
                     f"is what the paper's mechanism predicts for them.")
    lost = [d for d in won["loss"] if d not in over]
    if lost:
        lines.append(f"- {_listed(lost)}: naive fusion is *better* than the domain's own model. With a "
                     f"frozen trunk and a small head, what a domain gains from the other domains' batches "
                     f"in one network (more varied training pairs) outweighs what it loses by sharing: "
                     f"the opposite of the paper's premise, and a candidate, not established here.")
    early = _early(flags, "specialist")
    if early:
        lines.append(f"- Specialists selected in their first {rules.early_epoch} epochs: {_listed(early)}. "
                     f"Their numbers, and the soft targets they give the student in notebook 03, come "
                     f"from the start of training: a student trained longer on those targets can pass "
                     f"them.")
    return "\n".join(lines)


# ---------------------------------------------------------------- notebook 03

def early_peaks(naive_history: pd.DataFrame, student_history: pd.DataFrame, metric: str = "recall@1",
                rules: Rules = Rules()) -> str:
    """Notebook 03, the paper's mechanism: for each domain that over-fitted under naive fusion
    (`peak_epochs` status), where the student's validation curve peaks and whether it over-fits
    too, and the verdict: distillation removed the early peak where the student no longer
    over-fits there."""
    naive = peak_epochs(naive_history, metric, "val", rules).set_index("domain")
    student = peak_epochs(student_history, metric, "val", rules).set_index("domain")
    over = [d for d in naive.index if naive.status[d] == "over-fits" and d in student.index]
    if not over:
        return "No domain over-fitted under naive fusion in this run: there is no early peak to remove."
    parts = [f"{d}: naive fusion peaks at epoch {naive.peak_epoch[d]} and ends "
             f"{num(naive.drop_after_peak[d])} below it; the student peaks at epoch "
             f"{student.peak_epoch[d]} and ends {num(student.drop_after_peak[d])} below it "
             f"({student.status[d]})" for d in over]
    kept = [d for d in over if student.status[d] == "over-fits"]
    gone = [d for d in over if d not in kept]
    return ("Validation " + metric + " of the domains that over-fitted under naive fusion (drop: "
            f"more than {num(rules.overfit_drop)} below the peak by the last epoch). "
            + "; ".join(parts) + ". "
            + (f"The student no longer over-fits on {_listed(gone)}" if gone else
               "The student over-fits on every one of them")
            + (f"; it still does on {_listed(kept)}: distilling early-stopped teachers did not remove "
               f"that early peak" if kept and gone else
               ": distilling early-stopped teachers did not remove the early peaks" if kept else
               ": the teachers' soft targets removed the early peaks") + ".")


def distance_scales(teacher_distances: Mapping[str, np.ndarray]) -> pd.DataFrame:
    """Per domain, the median (the offset) and the spread (90th minus 10th percentile) of its
    teacher's pairwise squared distances ({domain: distances}, `neighbours.teacher_distances`)."""
    return pd.DataFrame([{"domain": d, "median": float(np.median(v)),
                          "spread": float(np.percentile(v, 90) - np.percentile(v, 10))}
                         for d, v in teacher_distances.items()])


def distillation_vs_paper(table: pd.DataFrame, methods: Sequence[str], scales: pd.DataFrame,
                          flags: Mapping[str, str], domains: Sequence[str] | None = None,
                          metric: str = "recall@1", rules: Rules = Rules()) -> str:
    """Notebook 03's closing paragraph: the paper's three claims about the distilled student
    (beats naive fusion, comes close to the specialists, kl beats the absolute losses), this
    run's verdicts, and what the numbers point to: teachers selected early (a student at or above
    its teachers), and how the teachers' distances differ in offset and in spread
    (`distance_scales`), which a softmax target ignores and does not ignore, respectively."""
    t = with_labels(table)
    doms = list(domains) if domains else None
    kl_naive = compare(t, "distill:kl", "naive", metric, doms, rules)
    gap = compare(t, "distill:kl", "specialist", metric, doms, rules)["diff"].mean()
    others = [m for m in methods if m != "kl" and f"distill:{m}" in set(t.model_name)]
    versus = {m: beats_verdict(compare(t, "distill:kl", f"distill:{m}", metric, doms, rules))
              for m in others}
    lines = [f"**The paper**: {PAPER['distilling the specialists beats naive fusion'][0]} "
             f"{PAPER['the distilled student comes close to the specialists'][0]} Matching the "
             f"teachers' distributions beats matching their absolute distances or embeddings.",
             f"**This run**: kl beats naive fusion: {beats_verdict(kl_naive)}. The kl student's mean gap "
             f"to the specialists is {signed(gap)}"
             + (" (it matches or exceeds them)" if gap >= 0 else "") + ". kl against "
             + "; ".join(f"{m}: {v}" for m, v in versus.items()) + "."]
    early = _early(flags, "specialist")
    if gap >= 0 and early:
        lines.append(f"- The student is at or above its teachers, and {len(early)} of them were "
                     f"selected in their first {rules.early_epoch} epochs ({_listed(early)}): their "
                     f"targets are early numbers, and the student, trained longer on them as soft "
                     f"targets while also seeing the other domains, can pass them.")
    elif gap >= 0:
        lines.append("- The student is at or above its teachers although no teacher was selected "
                     "early, so teachers stopped too soon do not explain it here; a candidate is what "
                     "one network gains from the other domains' batches (notebook 02 shows whether "
                     "naive fusion gains from them in this run).")
    ties = [m for m, v in versus.items() if not v.startswith("holds")]
    if len(scales):
        spread = float(scales.spread.max() / scales.spread.min())
        lines.append(f"- The teachers differ in offset (median distance {num(scales['median'].min())} "
                     f"to {num(scales['median'].max())}) and in spread (10th to 90th percentile "
                     f"{num(scales.spread.min())} to {num(scales.spread.max())}, {num(spread, 2)}x "
                     f"apart). The softmax of kl ignores an offset, distance-MSE does not; a "
                     f"difference of spread changes both targets (the worked example above)."
                     + (" Where kl did not beat a loss (" + ", ".join(ties) + "), these differences "
                        "were not enough to separate them." if ties else "")
                     + " Notebook 05 makes the spreads differ on purpose and measures the gap.")
    return "\n".join(lines)


# ---------------------------------------------------------------- notebook 04

def seed_flips(results: pd.DataFrame, base_seed: int, pairs: Sequence[tuple[str, str]],
               domains: Sequence[str] | None = None, metric: str = "recall@1",
               rules: Rules = Rules()) -> pd.DataFrame:
    """For each comparison (a beats b) of `pairs`: its verdict on `base_seed` alone (what
    notebook 03 said) and over every seed of `results`, and whether it changed."""
    t = with_labels(results)
    t = t[t.metric == metric]
    rows = []
    for a, b in pairs:
        if not {a, b} <= set(t.model_name):
            continue
        one = beats_verdict(compare(t[t.seed == base_seed], a, b, metric, domains, rules))
        one = one.removesuffix(", on this seed")  # the column says which seed
        every = beats_verdict(compare(t, a, b, metric, domains, rules))
        rows.append({"comparison": f"{a} beats {b}", f"seed {base_seed} alone": one,
                     "every seed": every, "changed": one.split(" (")[0] != every.split(" (")[0]})
    return pd.DataFrame(rows, columns=["comparison", f"seed {base_seed} alone", "every seed", "changed"])


def flips_sentence(flips: pd.DataFrame) -> str:
    """Which single-seed verdicts changed once every seed was compared."""
    changed = flips[flips.changed]
    if flips.empty:
        return "No comparison to repeat."
    if changed.empty:
        return ("Every verdict of one seed stands over all seeds: notebook 03's single-seed "
                "conclusions were not overturned.")
    base = flips.columns[1]
    return (f"{len(changed)} of {len(flips)} verdicts changed between {base} (notebook 03) and every "
            f"seed: " + "; ".join(f"{r.comparison}: {r[1].split(' (')[0]} → {r[2].split(' (')[0]}"
                                   for r in changed.itertuples(index=False)) + ". One seed is not "
            "enough to decide a comparison whose differences are as small as these.")


def fairness_sentence(before: pd.DataFrame, after: pd.DataFrame, epochs: pd.DataFrame,
                      domains: Sequence[str] | None = None, metric: str = "recall@1",
                      rules: Rules = Rules()) -> str:
    """Notebook 04: the same comparisons with the baselines as the profile trains them
    (`before`, `experiments.fairness` rows) and as tuned (`after`, the run's results), and the
    specialists' early selections (`epochs`) before and after: how much of each finding the
    tuning of the baselines changes."""
    b, a = with_labels(before), with_labels(after)
    doms = list(domains) if domains else None
    spec = epochs[epochs.model.str.startswith("specialist:")]
    lines = [f"- Specialists selected in their first {rules.early_epoch} epochs: "
             f"{early_count(spec, 'untuned', rules)} of {len(spec)} (specialist, seed) before the "
             f"tuning, {early_count(spec, 'tuned', rules)} after."]
    for x, y, what in (("specialist", "naive", "specialists beat naive fusion"),
                       ("distill:kl", "naive", "the kl student beats naive fusion"),
                       ("distill:kl", "specialist", "the kl student beats its teachers")):
        try:
            was, now = compare(b, x, y, metric, doms, rules), compare(a, x, y, metric, doms, rules)
        except KeyError:
            continue
        lines.append(f"- {what}: untuned baselines {beats_verdict(was)} (mean {signed(was['diff'].mean())}); "
                     f"tuned {beats_verdict(now)} (mean {signed(now['diff'].mean())}).")
    return "\n".join(lines)


def _pointers(verdict: pd.DataFrame, costs: Sequence[pd.DataFrame], results: pd.DataFrame | None,
              before: pd.DataFrame | None, metric: str, rules: Rules) -> list[str]:
    """The computed pointers of `final_vs_paper`: a mechanism present but cheap, the merged
    index, and what the baselines' tuning changed."""
    out, said = [], dict(zip(verdict.claim, verdict.verdict.astype(str)))
    mean_cost = float(np.mean([t.cost.mean() for t in costs])) if len(costs) else np.nan
    short = said.get("naive fusion falls short of the specialists", "")
    if said.get("one shared stopping point costs some domain", "").startswith("holds") \
            and not short.startswith("holds") and mean_cost <= rules.cost_tolerance:
        out.append(f"- Pointer: the shared stopping point costs *some* domain (the claim holds), but "
                   f"only {signed(mean_cost)} {metric} on average over the domains: the paper's "
                   f"mechanism is present but cheap here, which is why naive fusion does not fall "
                   f"short of the specialists.")
    if results is not None and "merged" in set(results.domain):
        merged = compare(with_labels(results), "distill:kl", "naive", metric, ["merged"], rules)
        if len(merged):
            r = merged.iloc[0]
            out.append(f"- Pointer: in the merged index (every domain's test images in one gallery, "
                       f"the universal model's real task) kl − naive fusion is {signed(r['diff'])} "
                       f"({r.outcome} by the rule).")
    if before is not None:
        for x, what in (("distill:kl", "the kl student beats naive fusion"),
                        ("specialist", "specialists beat naive fusion")):
            try:
                was = beats_verdict(compare(with_labels(before), x, "naive", metric, None, rules))
                now = beats_verdict(compare(with_labels(results), x, "naive", metric, None, rules))
            except (KeyError, TypeError):
                continue
            if was.split(" (")[0] != now.split(" (")[0]:
                out.append(f"- Pointer: \"{what}\" {was.split(' (')[0]} with the baselines "
                           f"untuned and {now.split(' (')[0]} with them tuned: part of the difference "
                           f"was an untuned baseline.")
    return out


def final_vs_paper(verdict: pd.DataFrame, flips: pd.DataFrame, flags: Mapping[str, str],
                   costs: Sequence[pd.DataFrame] = (), results: pd.DataFrame | None = None,
                   before: pd.DataFrame | None = None, metric: str = "recall@1",
                   rules: Rules = Rules()) -> str:
    """Notebook 04's closing paragraph: how many of the paper's claims hold here, each that does
    not beside the paper's words, the comparisons that are not claims of the paper, and the
    run's pointers: a mechanism present but cheap (`costs`: naive fusion's stopping costs per
    seed), the merged index (`results`), what the baselines' tuning changed (`before`:
    `experiments.fairness` rows), teachers selected early, and verdicts of one seed that did not
    survive every seed."""
    said = verdict.verdict.astype(str)
    held = said.str.startswith("holds")
    paper = verdict.claim.isin(PAPER)
    lines = [f"Of the paper's {int(paper.sum())} claims tested here, {int((held & paper).sum())} hold "
             f"in this run."]
    for r in verdict[~held & paper].to_dict("records"):
        lines.append(f"- *{r['claim']}* — the paper: {PAPER[r['claim']][0]} This run: {r['verdict']} "
                     f"({r['key number']}).")
    for r in verdict[~paper].to_dict("records"):
        lines.append(f"- *{r['claim']}* ({OTHER_LOSS}) This run: {r['verdict']} ({r['key number']}).")
    lines += _pointers(verdict, list(costs), results, before, metric, rules)
    early = [m for m, f in flags.items() if m.startswith("specialist:") and f.startswith(PEAKED_EARLY)]
    if early:
        lines.append(f"- Pointer: teachers selected early on some seeds ({_listed(early)}); a student "
                     f"trained longer on their soft targets can pass them, which is why \"close to the "
                     f"specialists\" can come out as \"matches or exceeds\".")
    changed = flips[flips.changed] if len(flips) else flips
    if len(changed):
        lines.append(f"- Pointer: {len(changed)} verdict(s) of notebook 03's single seed changed over "
                     f"all seeds ({_listed(changed.comparison)}): those differences are within the "
                     f"seeds' spread.")
    return "\n".join(lines)
