"""SGML's verdicts (notebook 07): what each domain declares (attributes, coarse groups), each
rung's settings in words; the ladder and the students are compared with the generic rules of
`ue_lib.verdicts` (`model_table`, `verdicts_against`, `verdicts_sentence`, `favoured_sentence`),
which name models by the rows' `model` (the rung, or "kl ← <rung>")."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from ..verdicts import (
    FAILS,
    HOLDS,
    NOT_ESTABLISHED,
    Rules,
    beats,
    beats_verdict,
    compare,
    counts_phrase,
    interval,
    num,
    outcome,
    outcome_counts,
    setting_label,
    signed,
    status,
)
from .settings import ATTRIBUTE_HEAD, BINOMIAL_DEVIANCE, PAIR_WEIGHTS, SOFT_TARGETS


def attribute_table(domains: Mapping) -> pd.DataFrame:
    """Notebook 07: what each domain declares (`Domain.attribute_names`, `Domain.group_names`):
    the number of attributes and coarse groups, a few names of each, and the mean number of
    attributes an image has on (training split); "–" where a domain has none."""
    rows = []
    for name, d in domains.items():
        a = d.train.attributes
        rows.append({"domain": name, "attributes": len(d.attribute_names) or "–",
                     "e.g.": ", ".join(d.attribute_names[:4]) or "–",
                     "attributes on per image (mean)":
                         "–" if a is None else num(float((a >= 0.5).sum(1).mean()), 1),
                     "coarse groups": len(d.group_names) or "–",
                     "groups, e.g.": ", ".join(d.group_names[:4]) or "–"})
    return pd.DataFrame(rows).set_index("domain")


def ladder_settings(ladder: Mapping[str, Mapping]) -> str:
    """Notebook 07, Markdown: each rung of `Profile.sgml_ladder` with the settings its
    specialists change ("the profile's own" for none)."""
    return "\n".join(f"- **{rung}**: " + (", ".join(f"`{k}` = {setting_label(v)}" for k, v in s.items())
                                          or "the profile's own")
                     for rung, s in ladder.items())


# --------------------------------------------------------------- where the pairs land

# what notebook 07 predicts of each graded form, for the gap of `sharing_gaps` against binomial
# deviance's: form B raises the target of negatives that share attributes (a larger gap); form A
# weights those negatives more, pushing them apart harder (a smaller gap)
PREDICTIONS = {SOFT_TARGETS: ("larger", "lift the negatives that share attributes above the others"),
               PAIR_WEIGHTS: ("smaller", "push the negatives that share attributes apart harder")}


def sharing_gaps(pairs: pd.DataFrame, share: float = 0.5) -> pd.DataFrame:
    """Per rung and seed of `ue_lib.sgml.experiments.pairs`, over its negative pairs (different
    classes): the mean learned similarity of those whose attributes are shared (g >= `share`),
    of the others, and `gap` = the first minus the second. Columns rung, seed, sharing, others,
    gap; rungs in recorded order. ValueError when a rung and seed lacks either kind of pair."""
    neg = pairs[~pairs.same_class].assign(shared=lambda d: d.g >= share)
    means = (neg.groupby(["rung", "seed", "shared"], sort=False).similarity.mean()
             .unstack("shared").reindex(columns=[True, False]))
    if means.isna().any().any():
        raise ValueError(f"some rung and seed has no negative pairs with g >= {share} or none "
                         f"below it; choose another `share`")
    out = means.rename(columns={True: "sharing", False: "others"}).reset_index()
    out.columns.name = None
    return out.assign(gap=out.sharing - out.others)[["rung", "seed", "sharing", "others", "gap"]]


def gap_table(gaps: pd.DataFrame, base: str = BINOMIAL_DEVIANCE, rules: Rules = Rules()
              ) -> pd.DataFrame:
    """`sharing_gaps` per rung: the mean gap over seeds and its 95% t interval (`gap_low`,
    `gap_high`); against `base`'s, paired by seed, the mean difference of the gaps (`vs_base`)
    with its interval and `outcome` (`ue_lib.verdicts.outcome`: "win" = a larger gap than
    base's), and `shift`, the mean paired difference of the other negatives' similarity (how
    far the rung moved the unrelated negatives). Indexed by rung."""
    wide = gaps.pivot_table(index="seed", columns="rung", values=["gap", "others"])
    rows = []
    for rung in dict.fromkeys(gaps.rung):
        g, d = wide["gap"][rung], wide["gap"][rung] - wide["gap"][base]
        rows.append({"rung": rung, "gap": g.mean(), "gap_low": interval(g)[0],
                     "gap_high": interval(g)[1], "vs_base": d.mean(), "vs_low": interval(d)[0],
                     "vs_high": interval(d)[1], "outcome": "–" if rung == base else outcome(d, rules),
                     "shift": (wide["others"][rung] - wide["others"][base]).mean(), "n": len(g)})
    return pd.DataFrame(rows).set_index("rung")


def _range(low: float, high: float) -> str:
    return "" if np.isnan(low) else f" [{signed(low)}, {signed(high)}]"


def prediction_sentences(table: pd.DataFrame, base: str = BINOMIAL_DEVIANCE,
                         predictions: Mapping[str, tuple[str, str]] = PREDICTIONS) -> str:
    """Markdown, one line per predicted form of `gap_table`: what it was predicted to do, its
    gap against `base`'s (95% t intervals over seeds) and whether the prediction is borne out
    by the rule of `ue_lib.verdicts.outcome` ("on this seed" for one seed)."""
    lines = []
    for rung, (direction, what) in predictions.items():
        if rung not in table.index or base not in table.index:
            continue
        r, b = table.loc[rung], table.loc[base]
        wanted = "win" if direction == "larger" else "loss"
        against = "loss" if wanted == "win" else "win"
        verdict = ("**borne out**" if r.outcome == wanted else "**contradicted**"
                   if r.outcome == against else f"**not borne out** ({r.outcome} by the rule)")
        one = ", on this seed" if r.n == 1 else ""
        lines.append(
            f"- **{rung}** was predicted to {what} (a {direction} gap than {base}'s). Its gap "
            f"(sharing negatives minus the others) is {signed(r.gap)}{_range(r.gap_low, r.gap_high)}"
            f" against {signed(b.gap)}: a difference of {signed(r.vs_base)}"
            f"{_range(r.vs_low, r.vs_high)}: {verdict}{one}. Its unrelated negatives moved by "
            f"{signed(r['shift'])} against {base}'s.")
    return "\n".join(lines)


# --------------------------------------------------------------- the notebook's answer

def best_rungs(rows: pd.DataFrame, metric: str, rules: Rules = Rules()) -> tuple[str, list[str]]:
    """The model of `rows` with the highest mean `metric` over domains (merged excluded) and
    seeds, and the others tied with it: those it does not beat by the rule of
    `ue_lib.verdicts.outcome` over the per-seed means over domains."""
    r = rows[(rows.metric == metric) & ~rows.domain.astype(str).str.startswith("merged")]
    per_seed = r.pivot_table(index="seed", columns="model", values="value", aggfunc="mean")
    order = list(dict.fromkeys(r.model))
    best = max(order, key=lambda m: (per_seed[m].mean(), -order.index(m)))
    tied = [m for m in order if m != best
            and outcome(per_seed[best] - per_seed[m], rules) != "win"]
    return best, tied


def _best_phrase(rows: pd.DataFrame, metric: str, rules: Rules) -> str:
    best, tied = best_rungs(rows, metric, rules)
    r = rows[(rows.metric == metric) & ~rows.domain.astype(str).str.startswith("merged")]
    means = r.groupby("model", sort=False).value.mean()
    if len(tied) == len(means) - 1 and tied:
        return (f"Every rung ties with the best by the rule on {metric} (means {num(means.min())} "
                f"to {num(means.max())}).")
    return (f"The best rung on {metric} is **{best}** (mean {num(means[best])})"
            + (f", tied by the rule with {', '.join(tied)}." if tied
               else ", ahead of every other by the rule."))


def answer(ladder: pd.DataFrame, students: pd.DataFrame, graded, teacher: str,
           metric: str, base: str = BINOMIAL_DEVIANCE, head: str = ATTRIBUTE_HEAD,
           rules: Rules = Rules(), fine: str = "recall@1") -> str:
    """Notebook 07's question in one plain answer (Markdown): does grading help coarse
    retrieval? Each `graded` rung against `base` on `metric` over the domains (the beats rule
    of `ue_lib.verdicts.beats`); "yes" when one beats it, "no" when one lost a domain and none
    beat it, else "not established"; then grading alone (each graded rung against `head`, the
    attribute head without grading, when the ladder has it), the best rung (`best_rungs`), what
    grading cost on the `fine` metric (`_price`), and whether the kl student of `teacher`'s
    specialists beats the student of `base`'s."""
    cmps = {r: compare(ladder, r, base, metric, rules=rules) for r in graded}
    held = [r for r, c in cmps.items() if beats(c)]
    lost = [r for r, c in cmps.items() if outcome_counts(c)["loss"]]
    found = status(bool(held), bool(lost))
    lead = {HOLDS: f"**Yes**: {' and '.join(held)} {'beat' if len(held) > 1 else 'beats'} {base}",
            NOT_ESTABLISHED: f"**Not established**: no graded rung beats {base}, and none lost a "
                             f"domain to it",
            FAILS: f"**No**: no graded rung beats {base}, and {' and '.join(lost)} lost "
                   f"domains to it"}[found]
    each = "; ".join(f"{r}: {beats_verdict(c)}" for r, c in cmps.items())
    alone = ""
    if head in set(ladder.model):
        alone = (f" Grading alone (against {head}, the same head without grading): " + "; ".join(
            f"{r}: {beats_verdict(compare(ladder, r, head, metric, rules=rules))}" for r in graded)
            + ".")
    student = f"kl ← {teacher}"
    passed = beats_verdict(compare(students, student, f"kl ← {base}", metric, rules=rules))
    return (f"**Does grading help coarse retrieval?** {lead} on {metric} ({each}).{alone} "
            f"{_best_phrase(ladder, metric, rules)}{_price(ladder, graded, base, fine, rules)} "
            f"**Does the student inherit it?** {student} beats kl ← {base} on {metric}: {passed}.")


def _price(ladder: pd.DataFrame, graded, base: str, fine: str, rules: Rules) -> str:
    """' **Did it cost fine retrieval?** …': each graded rung against `base` on the `fine`
    metric (class-level Recall@1), the price the takeaways expect of soft targets; '' when the
    ladder has no `fine` rows."""
    r = ladder[ladder.metric == fine]
    cmps = {g: compare(r, g, base, fine, rules=rules) for g in graded if {g, base} <= set(r.model)}
    if not cmps:
        return ""
    return (f" **Did grading cost fine retrieval?** Against {base} on {fine}: " + "; ".join(
        f"{g}: {counts_phrase(outcome_counts(c))}" for g, c in cmps.items()) + ".")


def read_pairs(pairs: pd.DataFrame, base: str = BINOMIAL_DEVIANCE, share: float = 0.5,
               rules: Rules = Rules()) -> tuple[pd.DataFrame, str]:
    """The pairs figure read against its predictions: `gap_table` of `sharing_gaps` (rounded
    for display: gap and difference to `base` with their intervals, the outcome by the rule,
    the shift of the unrelated negatives) and `prediction_sentences`."""
    table = gap_table(sharing_gaps(pairs, share), base, rules)
    shown = pd.DataFrame({
        f"gap (g ≥ {num(share, 1)} minus the rest)": [signed(r.gap) + _range(r.gap_low, r.gap_high)
                                                      for r in table.itertuples()],
        f"minus {base}'s gap": ["–" if rung == base else signed(r.vs_base) + _range(r.vs_low, r.vs_high)
                                for rung, r in zip(table.index, table.itertuples())],
        "outcome": table.outcome,
        "unrelated negatives moved": ["–" if rung == base else signed(s)
                                      for rung, s in zip(table.index, table["shift"])]},
        index=table.index)
    return shown, prediction_sentences(table, base)
