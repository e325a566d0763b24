"""The main paper's claims, decided from a run's numbers by the rules of `ue_lib.verdicts` and
`ue_lib.universal.histories`: the claims of SPEC §1 (notebook 04: holds, not established or does
not hold, as a table with the details collapsed), the students against each other and naive
fusion (notebook 03), the controlled experiment and the ablations (notebook 05) and, for each
claim that did not hold, the run that would test its main explanation. What the numbers say
about the paper is written by `ue_lib.universal.departures`.

Model names: 'specialist', 'naive' and 'distill:<method>' (:func:`label`); a results table gets
them as its `model_name` column (:func:`with_labels`) before the generic comparisons see it.

* **Close to the specialists**: the mean over domains of the seed-mean gap (kl - specialist) is
  above -[close_gap].
* Claims measured per seed hold when true on more than half of the seeds; "not established"
  when true on some seed but not a majority, "does not hold" when true on none.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from ..io import RESULT_COLUMNS, result_rows, slug
from ..verdicts import (
    EPS,
    FAILS,
    HOLDS,
    NOT_ESTABLISHED,
    Rules,
    beats,
    beats_rule,
    beats_verdict,
    compare,
    comparison_sentence,
    interval,
    majority,
    mean_std,
    not_compared,
    num,
    of_seeds,
    outcome,
    over_seeds,
    pct,
    seeds_phrase,
    setting_label,
    signed,
    status,
    win_rule,
    wins_sentence,
)
from .histories import (
    PEAKED_EARLY,
    TRAIN_LONGER,
    budget_spans,
    collapsed_only,
    flagged,
    peak_spread,
    spread_threshold,
    start_phrase,
)


def label(results: pd.DataFrame) -> np.ndarray:
    """'specialist', 'naive', 'distill:kl', … — one name per model/method pair."""
    return np.where(results.model == "distill", "distill:" + results.method.astype(str),
                    results.model)


def with_labels(results: pd.DataFrame) -> pd.DataFrame:
    """`results` with the `model_name` column of :func:`label` (unchanged when it has one)."""
    return results if "model_name" in results else results.assign(model_name=label(results))


def _named(tables: Sequence[pd.DataFrame] | Mapping) -> list[tuple[str, pd.DataFrame]]:
    """Per-seed tables as (name, table): 'seed <key>' for a mapping, 'run <i>' for a list."""
    if isinstance(tables, Mapping):
        return [(f"seed {k}", t) for k, t in tables.items()]
    return [(f"run {i + 1}", t) for i, t in enumerate(tables)]


# ---------------------------------------------------------------- claims

FALLS_SHORT = "naive fusion falls short of the specialists"

PEAKS_DIFFER = "in naive fusion, domains peak at different epochs"

OVERFITS = "in naive fusion, some domains over-fit while others still improve"

STOP_COSTS = "one shared stopping point costs some domain"

DISTILL_BEATS = "distilling the specialists beats naive fusion"

CLOSE = "the distilled student comes close to the specialists"

KL_BEATS = "distribution distillation (kl) beats {}"

# each claim: the paper's statement in words (its tables are not available here) and the kinds
# of model it involves (the models a next run retrains)
PAPER: dict[str, tuple[str, tuple[str, ...]]] = {
    FALLS_SHORT: ("One model trained on all domains together (naive fusion) is worse on each "
                  "domain than that domain's specialist.", ("specialist", "naive")),
    PEAKS_DIFFER: ("In naive fusion the domains reach their best at different points of "
                   "training.", ("naive",)),
    OVERFITS: ("Naive fusion over-fits some domains while others still improve.", ("naive",)),
    STOP_COSTS: ("So one stopping point for all domains is a compromise: too late for some, "
                 "too early for others.", ("naive",)),
    DISTILL_BEATS: ("Distilling the specialists into one universal student beats naive "
                    "fusion.", ("distill", "naive")),
    CLOSE: ("The distilled student comes close to the specialists.", ("distill", "specialist")),
    KL_BEATS.format("distance_mse"): ("Matching the teachers' distributions of relative "
                                      "distances (KL) beats matching absolute distances.",
                                      ("distill",)),
    KL_BEATS.format("embedding_mse"): ("Matching the teachers' distributions of relative "
                                       "distances (KL) beats matching absolute targets (here: "
                                       "the embeddings themselves).", ("distill",)),
}


COLUMNS = ["claim", "verdict", "key number", "measured", "rule", "holds"]


def _row(claim: str, measured: str, rule: str, holds: bool, verdict: str | None = None,
         key: str = "") -> dict:
    """One claim: `verdict` ('holds (…)', 'not established (…)', 'does not hold (…)'; by default
    "holds" or "does not hold"), the `key number` behind it, what was `measured`, the `rule`."""
    return {"claim": claim, "verdict": verdict or status(holds, True), "key number": key,
            "measured": measured, "rule": rule, "holds": bool(holds)}


def _seeds_verdict(flags: Sequence[bool]) -> str:
    """A per-seed claim's verdict: 'holds on 2 of 3 seeds', 'not established (on 1 of 3
    seeds)', 'does not hold (on 0 of 3 seeds)'; one seed: '… on this seed'."""
    k, n = sum(map(bool, flags)), len(flags)
    where = "on this seed" if n == 1 else f"on {of_seeds(k, n)}"
    said = status(majority(flags), k == 0)
    return f"{said} {where}" if said == HOLDS or n == 1 else f"{said} ({where})"


def _mean_diff(cmp: pd.DataFrame) -> str:
    return f"mean paired difference {signed(cmp['diff'].mean())} over {len(cmp)} domains" if len(cmp) else ""


def _beats_claim(claim, results, a, b, metric, domains, rules, flags=None) -> dict:
    try:
        cmp = compare(results, a, b, metric, domains, rules, flags)
    except KeyError:
        return _row(claim, f"not measured: no {metric} rows for {a} and {b}", beats_rule(rules), False,
                    "not measured")
    rule = beats_rule(rules, int(cmp.n.max()) if len(cmp) else 1)
    if (skip := not_compared(a, b, flags)) is not None:
        return _row(claim, skip, rule, False, "not compared (collapsed)")
    return _row(claim, wins_sentence(cmp, a, b, metric, flags), rule, beats(cmp), beats_verdict(cmp),
                _mean_diff(cmp))


def _close_claim(results, metric, domains, rules, flags=None) -> dict:
    claim = CLOSE
    rule = (f"the mean over domains of the seed-mean gap (kl - specialist) > "
            f"{signed(-rules.close_gap)}")
    if (skip := not_compared("distill:kl", "specialist", flags)) is not None:
        return _row(claim, skip, rule, False, "not compared (collapsed)")
    try:
        cmp = compare(results, "distill:kl", "specialist", metric, domains, rules)
    except KeyError:
        return _row(claim, f"not measured: no {metric} rows for distill:kl and specialist", rule, False,
                    "not measured")
    gap = cmp["diff"].mean()
    measured = (f"mean gap to the specialists over {seeds_phrase(cmp.n)}: {signed(gap)} ("
                + ", ".join(f"{d}: {signed(v)}" for d, v in cmp["diff"].items()) + ")")
    held = len(cmp) > 0 and gap > -rules.close_gap + EPS
    above = held and gap >= -EPS
    one = ", on this seed" if len(cmp) and int(cmp.n.max()) == 1 else ""
    verdict = (f"holds: the student matches or exceeds the specialists{one}" if above else
               f"holds: within {num(rules.close_gap)} of the specialists{one}" if held else
               f"does not hold: more than {num(rules.close_gap)} below the specialists{one}")
    return _row(claim, measured, rule, held, verdict, f"mean gap {signed(gap)}")


def _spread_claim(named_peaks, metric, min_spread, rules) -> dict:
    parts, flags, spreads = [], [], []
    for name, t in named_peaks:
        spread = peak_spread(t)
        spreads.append(spread)
        flags.append(spread >= min_spread)
        parts.append(f"{name}: " + ", ".join(f"{r.domain} {r.peak_epoch}" for r in t.itertuples()
                                             if not getattr(r, "at_ceiling", False))
                     + f" (spread {spread})")
    return _row(PEAKS_DIFFER,
                f"validation {metric} peak epochs (domains at their ceiling left out), {'; '.join(parts)}: "
                f"a spread of at least {min_spread} epochs on {of_seeds(sum(flags), len(flags))}",
                f"peak = last validation epoch within {num(rules.tie_tolerance)} of the domain's maximum; "
                f"the peaks span at least {min_spread} epochs on a majority of seeds", majority(flags),
                _seeds_verdict(flags), "peak spread " + ", ".join(map(str, spreads)) + " epochs")


def _rising_while(t: pd.DataFrame, over) -> pd.DataFrame:
    """The domains (other than `over`) that had not yet reached their peak when `over` had
    clearly over-fitted: their first epoch within the tie tolerance of their maximum is later."""
    return t[(t.domain != over.domain) & (t.first_peak_epoch > over.overfit_epoch)]


def _overfit_claim(named_peaks, metric, rules) -> dict:
    parts, flags, over = [], [], {}
    for name, t in named_peaks:
        pairs = [(o, _rising_while(t, o)) for o in t[t.overfits].itertuples()]
        flags.append(any(len(r) for _, r in pairs))
        for o, _ in pairs:
            over.setdefault(o.domain, []).append(name)
        said = [f"{o.domain} fell below its peak (epoch {o.peak_epoch}) by epoch {int(o.overfit_epoch)} "
                f"({signed(-o.drop_after_peak)} by the end) while "
                + (", ".join(f"{r.domain} (first at its best at epoch {r.first_peak_epoch})"
                             for r in rising.itertuples())
                   or "no other domain") + " still improved" for o, rising in pairs]
        parts.append(f"{name}: " + ("; ".join(said) if said else "no domain over-fitted"))
    if named_peaks and all((t.still_improving | t.at_ceiling).all() for _, t in named_peaks):
        measured = ("every domain was still improving at its last evaluation on every seed: the run "
                    "was too short to test over-fitting")
    else:
        measured = f"validation {metric}, {'; '.join(parts)}: on {of_seeds(sum(flags), len(flags))}"
    rule = (f"a domain over-fits when it ends more than {num(rules.overfit_drop)} below its peak; "
            f"another still improves while it does when that one first comes within "
            f"{num(rules.tie_tolerance)} of its own maximum only after the first domain has fallen "
            f"more than {num(rules.overfit_drop)} below its peak; on a majority of seeds")
    key = ("over-fitted: " + "; ".join(f"{d} ({len(v)} of {len(flags)})" for d, v in over.items())
           if over else "no domain over-fitted")
    return _row(OVERFITS, measured, rule, majority(flags), _seeds_verdict(flags), key)


def _cost_claim(named_costs, metric, rules) -> dict:
    parts, flags, tops, means = [], [], [], []
    for name, t in named_costs:
        worst = t.loc[t.cost.idxmax()] if t.cost.notna().any() else None
        top = float(worst.cost) if worst is not None else np.nan
        tops.append(top)
        means.append(float(t.cost.mean()))
        flags.append(bool(top > rules.cost_tolerance + EPS))
        parts.append(f"{name}: largest {signed(top)}" + (f" ({worst.domain})" if worst is not None else "")
                     + f", mean {signed(t.cost.mean())}")
    key = (f"largest cost {signed(np.nanmean(tops))}, mean over domains {signed(np.nanmean(means))} "
           f"(means over seeds)" if tops else "")
    return _row(STOP_COSTS,
                f"test {metric} lost by stopping all domains at the selected epoch instead of each at "
                f"its own peak, {'; '.join(parts)}",
                f"the largest cost (test at the domain's own peak epoch - test at the shared epoch) > "
                f"{num(rules.cost_tolerance)} on a majority of seeds", majority(flags),
                _seeds_verdict(flags), key)


def _flag_notes(verdict: pd.DataFrame, flags: Mapping[str, str]) -> pd.DataFrame:
    """Each claim's `measured`, with the flags of the models it compares that are compared all the
    same (peaked early: `histories.flag`) named after it."""
    def notes(row) -> str:
        kinds = PAPER.get(row.claim, ("", ()))[1]
        named = [f"{m} {f}" for m, f in flags.items() if m.split(":")[0] in kinds
                 and f.startswith(PEAKED_EARLY) and (m.split(":")[0] != "distill" or m in row.measured)]
        return row.measured + (f". Flagged, compared all the same: {'; '.join(named)}" if named else "")

    return verdict.assign(measured=[notes(r) for r in verdict.itertuples()])


def without_collapsed(results: pd.DataFrame, flags: Mapping[str, str] | None) -> pd.DataFrame:
    """`results` (with labels) without the rows of a one-domain model flagged collapsed
    ('specialist:<domain>' in `collapsed_only(flags)`): its domain leaves that model's
    comparisons (a flag over seeds, `histories.flags_over_seeds`, removes every seed)."""
    results = with_labels(results)
    drop = [m.split(":", 1) for m in collapsed_only(flags) if m.startswith("specialist:")]
    keep = np.ones(len(results), dtype=bool)
    for kind, domain in drop:
        keep &= ~((results.model_name == kind) & (results.domain == domain)).to_numpy()
    return results[keep]


def claims(results: pd.DataFrame, peak_tables: Sequence[pd.DataFrame] | Mapping,
           cost_tables: Sequence[pd.DataFrame] | Mapping, domains: list[str] | None = None,
           metric: str = "recall@1", rules: Rules = Rules(), min_spread: int | None = None,
           flags: Mapping[str, str] | None = None) -> pd.DataFrame:
    """The claims of SPEC §1: columns `claim`, `verdict`, `key number`, `measured`, `rule`,
    `holds` (the verdict as a bool).

    `peak_tables` / `cost_tables`: `peak_epochs` / `stopping_cost` of the naive model, one per
    seed (a list, or a {seed: table} mapping to name the seeds), computed with the same `rules`.
    `min_spread` (epochs) defaults to `rules.min_spread_evals` evaluation intervals. `flags`
    ({label: flag}, `histories.model_flags`): a collapsed model is not compared (its claims do
    not hold; a collapsed specialist leaves its domain out, `without_collapsed`); the other flags
    are named beside the claims that compare their model."""
    results, flags = without_collapsed(results, flags), dict(flags or {})
    excluded = collapsed_only(flags)
    peaks, costs = _named(peak_tables), _named(cost_tables)
    need = spread_threshold(min_spread, [t.eval_interval.max() for _, t in peaks
                                          if "eval_interval" in t], rules)
    rows = [_beats_claim(FALLS_SHORT, results, "specialist", "naive", metric, domains, rules, excluded),
            _spread_claim(peaks, metric, need, rules),
            _overfit_claim(peaks, metric, rules),
            _cost_claim(costs, metric, rules),
            _beats_claim(DISTILL_BEATS, results, "distill:kl", "naive", metric, domains, rules, excluded),
            _close_claim(results, metric, domains, rules, excluded)]
    present = set(label(results[results.metric == metric]))
    for other in [m for m in dict.fromkeys(label(results)) if m.startswith("distill:")
                  and m != "distill:kl" and m in present]:
        rows.append(_beats_claim(KL_BEATS.format(other.split(":")[1]), results, "distill:kl",
                                 other, metric, domains, rules, excluded))
    return _flag_notes(pd.DataFrame(rows, columns=COLUMNS), flags)


def claims_sentence(verdict: pd.DataFrame) -> str:
    """'N of M claims hold, K not established, L do not hold.'"""
    said = [str(v).split(" (")[0].split(":")[0].split(" on ")[0] for v in verdict.verdict]
    counts = {k: sum(s == k for s in said) for k in (HOLDS, NOT_ESTABLISHED, FAILS)}
    other = len(said) - sum(counts.values())
    return (f"Of {len(verdict)} claims, {counts[HOLDS]} hold, {counts[NOT_ESTABLISHED]} are not "
            f"established (nothing went against them, but they did not clear the rule) and "
            f"{counts[FAILS]} do not hold" + (f"; {other} could not be measured" if other else "") + ".")


def claims_markdown(verdict: pd.DataFrame) -> str:
    """The claims as a Markdown table (claim | verdict | key number), then what was measured and
    each rule once, collapsed in an HTML <details> element."""
    def cell(text) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ")

    lines = ["| claim | verdict | key number |", "| --- | --- | --- |"]
    lines += [f"| {cell(r['claim'])} | {cell(r['verdict'])} | {cell(r['key number'])} |"
              for r in verdict.to_dict("records")]
    details = [f"<li><b>{r.claim}</b>: {r.measured}.</li>" for r in verdict.itertuples()]
    rules = [f"<li>{rule}</li>" for rule in dict.fromkeys(verdict.rule)]
    return ("\n".join(lines) + "\n\n<details><summary>What was measured, claim by claim, and the "
            "rules</summary>\n\n<ul>" + "".join(details) + "</ul>\n<p>Rules:</p><ul>" + "".join(rules)
            + "</ul>\n</details>")


def _against_naive(table, students, metric, domains, rules, flags) -> list[str]:
    """Each student against naive fusion, the reference (or why it cannot be)."""
    if "naive" not in set(label(table[table.metric == metric])):
        return [f"- Naive fusion (the reference): no naive {metric} rows in this table, so no "
                f"student is compared with it."]
    return ["- " + comparison_sentence(table, s, "naive", metric, domains, rules, flags, rule=False)
            for s in students]


def _merged_line(table, metric, flags) -> list[str]:
    merged = table[(table.domain == "merged") & (table.metric == metric)]
    if merged.empty:
        return []
    ranked = merged.assign(model_name=label(merged)).groupby("model_name", sort=False).value
    order = ranked.mean().sort_values(ascending=False, kind="stable").index
    return [f"- Merged index {metric}: " + ", ".join(
        f"{m} {mean_std(ranked.get_group(m))}" + (f" (collapsed: {flags[m]})" if m in flags else "")
        for m in order) + "."]


def distillation_summary(table: pd.DataFrame, methods: list[str], domains: list[str] | None = None,
                         metric: str = "recall@1", rules: Rules = Rules(),
                         flags: Mapping[str, str] | None = None) -> str:
    """Markdown for notebook 03: kl against each other loss and every student against naive
    fusion (the reference; the beats rule, stated once at the end), the kl student's gap to the
    specialists, and the ranking on the merged index. `flags` ({label: flag},
    `histories.model_flags`): a collapsed model is named with its reason and counted as neither a
    win nor a loss; the others are compared."""
    table = without_collapsed(table, flags)
    flags = collapsed_only(flags)
    students = [f"distill:{m}" for m in methods]
    lines = ["- " + comparison_sentence(table, "distill:kl", s, metric, domains, rules, flags, rule=False)
             for s in students if "kl" in methods and s != "distill:kl"]
    lines += _against_naive(table, students, metric, domains, rules, flags)
    if "kl" in methods:
        close = _close_claim(table, metric, domains, rules, flags)
        verdict = "" if "distill:kl" in flags else f"; {close['verdict']} ({close['rule']})"
        lines.append(f"- Gap of the `kl` student to the specialists: {close['measured']}{verdict}.")
    seeds = table[table.metric == metric].seed.nunique()
    lines += _merged_line(table, metric, flags)
    lines.append(f"- The rule behind every \"beats\" above: {beats_rule(rules, seeds)}"
                 + (". One seed: each verdict holds on this seed only; notebook 04 repeats them over "
                    "seeds." if seeds == 1 else "."))
    return "\n".join(lines)


# ---------------------------------------------------------------- ablations (notebook 05)

def _sweep(table: pd.DataFrame, knob: str, metric: str) -> pd.DataFrame:
    t = table[(table.metric == metric) & ~table.domain.astype(str).str.startswith("merged")]
    return t.assign(**{knob: t[knob].map(setting_label)})


def ablation_table(table: pd.DataFrame, knob: str, values: list, metric: str = "recall@1"
                   ) -> pd.DataFrame:
    """Per setting of `knob` (rows in the order of `values`): per domain 'mean ± std' over seeds
    (the mean alone for one seed) and, in 'all domains', the per-seed mean over domains
    summarised the same way; the header says over how many seeds."""
    t = _sweep(table, knob, metric)
    order = [setting_label(v) for v in values]
    shown = (t.groupby([knob, "domain"], sort=False).value.agg(mean_std).unstack("domain")
             .reindex(index=order, columns=list(dict.fromkeys(t.domain))))
    by_seed = t.groupby([knob, "seed"]).value.mean()
    shown["all domains"] = by_seed.groupby(level=knob).agg(mean_std).reindex(order)
    n = t.groupby([knob, "domain"]).seed.nunique()
    return shown.fillna("–").rename_axis(index=knob, columns=over_seeds(metric, n))


def _ablation_part(table: pd.DataFrame, knob: str, order: list[str], metric: str, rules: Rules
                   ) -> tuple[str, str | None] | None:
    """One metric's clause and its clearly best setting (None when the range is within
    min_gain); None without rows. Ties go to the earlier setting in `order`."""
    t = _sweep(table, knob, metric)
    if t.empty:
        return None
    order = order + [v for v in dict.fromkeys(t[knob]) if v not in order]
    average = t.groupby([knob, "seed"]).value.mean().groupby(level=knob).mean().reindex(order).dropna()
    best, worst = average.idxmax(), average.idxmin()
    per_domain = t.groupby(["domain", knob], sort=False).value.mean()
    best_per = {d: s.droplevel(0).reindex(order).idxmax() for d, s in per_domain.groupby(level=0, sort=False)}
    span = average.max() - average.min()
    clear = span > rules.min_gain + EPS
    text = (f"{metric} averaged over domains: " + (
        f"the best setting was {best} ({num(average[best])}) and the worst {worst} "
        f"({num(average[worst])}), a range of {num(span)}" if clear else
        f"from {num(average.min())} to {num(average.max())}, a range of {num(span)} (within "
        f"{num(rules.min_gain)}: no setting is clearly better)")
        + "; best per domain: " + ", ".join(f"{d} {v}" for d, v in best_per.items()) + ".")
    return text, best if clear else None


def _agreement(parts: dict[str, tuple[str, str | None]]) -> str:
    (m1, (_, b1)), (m2, (_, b2)) = parts.items()
    if b1 is None and b2 is None:
        return f"Neither {m1} nor {m2} separates the settings."
    if b1 is None or b2 is None:
        vague, sure = (m1, m2) if b1 is None else (m2, m1)
        return f"{vague} does not separate the settings: the best setting rests on {sure} alone."
    if b1 == b2:
        return f"{m1} and {m2} agree on the best setting ({b1})."
    return f"{m1} and {m2} **disagree** on the best setting ({m1}: {b1}, {m2}: {b2})."


def ablation_sentence(table: pd.DataFrame, knob: str, values: list, metric: str = "recall@1",
                      rules: Rules = Rules(), also: str | None = "map@r") -> str:
    """'**knob** (n seeds): <metric> averaged over domains, the best setting was … and the worst
    …, a range of …; best per domain: …. <also> … . Whether the two agree on the best setting'
    (a setting is best only when the range exceeds min_gain; ties go to the earlier setting in
    `values`)."""
    order = [setting_label(v) for v in values]
    parts = {m: part for m in dict.fromkeys([metric, also]) if m
             and (part := _ablation_part(table, knob, order, m, rules)) is not None}
    if metric not in parts:
        return f"**{knob}**: no {metric} results to compare."
    t = _sweep(table, knob, metric)
    text = f"**{knob}** ({seeds_phrase(t.groupby(knob).seed.nunique())}): " + " ".join(
        part[0] for part in parts.values())
    return text + (" " + _agreement(parts) if len(parts) == 2 else "")


def ablation_rows(table: pd.DataFrame, knob: str, notebook: str) -> pd.DataFrame:
    """The sweep's rows as result rows (`RESULT_COLUMNS`), method '<method>[<knob>=<setting>]'
    (e.g. 'kl[temperature=0.05]' for the knob 'kl.temperature': a parameter of the row's own loss
    is named without the loss), so notebook 05's results keep which setting each came from."""
    model = table["model"] if "model" in table else pd.Series("distill", index=table.index)
    method = (table["method"] if "method" in table else pd.Series("kl", index=table.index)).astype(str)
    rows = []
    for m, meth, r in zip(model, method, table.to_dict("records")):
        name = f"{meth}[{knob.removeprefix(meth + '.')}={setting_label(r[knob])}]"
        rows += result_rows({r["metric"]: r["value"]}, notebook=notebook, model=m, method=name,
                            domain=r["domain"], split=r["split"], seed=r["seed"], epoch=r["epoch"])
    return pd.DataFrame(rows, columns=RESULT_COLUMNS)


# ---------------------------------------------------------------- when does kl help (notebook 05)

def _gaps(rows: pd.DataFrame, competitor: str, metric: str) -> pd.DataFrame:
    """Per (factor, level, seed): the mean over domains of kl - `competitor`, paired by domain."""
    r = rows[(rows.metric == metric) & ~rows.domain.astype(str).str.startswith("merged")]
    wide = r.pivot_table(index=["factor", "level", "seed", "domain"], columns="method", values="value",
                         aggfunc="mean", sort=False)
    diff = (wide["kl"] - wide[competitor]).dropna()
    return diff.groupby(level=["factor", "level", "seed"], sort=False).mean().rename("gap").reset_index()


def _reference(levels: Mapping[str, dict]) -> str:
    """The level of a factor that is the run's own students ({}), else its first."""
    return next((name for name, overrides in levels.items() if not overrides), next(iter(levels)))


def conditions_table(rows: pd.DataFrame, conditions: Mapping[str, Mapping[str, dict]],
                     competitors: Sequence[str], metric: str = "recall@1",
                     rules: Rules = Rules()) -> pd.DataFrame:
    """Per factor, level and competitor of notebook 05's controlled experiment
    (`experiments.conditions` rows; `conditions`: the profile's `kl_conditions`): `gap`, the
    mean over seeds of the per-seed mean over domains of kl - competitor, its two-sided
    [confidence] t interval (`low`, `high`), `n` seeds and its `outcome` by the rule of
    `compare` (win: kl helps); then the `change` of that gap from the factor's reference level
    (the run's own students), paired by seed, with its interval and outcome (win: kl helps more
    at this level than at the reference)."""
    out = []
    for competitor in competitors:
        gaps = _gaps(rows, competitor, metric)
        for factor, levels in conditions.items():
            ref = gaps[(gaps.factor == factor) & (gaps.level == _reference(levels))].set_index("seed").gap
            for level in levels:
                g = gaps[(gaps.factor == factor) & (gaps.level == level)].set_index("seed").gap
                change = (g - ref).dropna()
                is_ref = level == _reference(levels)
                out.append({"factor": factor, "level": level, "competitor": competitor, "n": len(g),
                            "gap": g.mean(), **dict(zip(("low", "high"), interval(g, rules.confidence))),
                            "outcome": outcome(g, rules) if len(g) else "–", "reference": is_ref,
                            "change": np.nan if is_ref else change.mean(),
                            "change_outcome": "reference" if is_ref else
                            outcome(change, rules) if len(change) else "–"})
    return pd.DataFrame(out)


def conditions_view(table: pd.DataFrame) -> pd.DataFrame:
    """A `conditions_table` to read: one row per factor and level, one column per competitor,
    each cell 'gap [low, high] outcome' (the reference level marked)."""
    def cell(r) -> str:
        span = f" [{signed(r.low)}, {signed(r.high)}]" if np.isfinite(r.low) else ""
        return f"{signed(r.gap)}{span} {r.outcome}"

    shown = table.assign(cell=[cell(r) for r in table.itertuples()],
                         level=[f"{r.level} (the run's)" if r.reference else r.level
                                for r in table.itertuples()])
    view = shown.pivot_table(index=["factor", "level"], columns="competitor", values="cell",
                             aggfunc="first", sort=False)
    return view.rename(columns=lambda c: f"kl − {c}").rename_axis(columns="gap [95% interval] outcome")


def condition_result_rows(rows: pd.DataFrame, notebook: str) -> pd.DataFrame:
    """`experiments.conditions` rows as result rows (`RESULT_COLUMNS`), method
    '<method>[<factor>=<level>]', so a run's results keep which condition each came from."""
    out = []
    for r in rows.to_dict("records"):
        out += result_rows({r["metric"]: r["value"]}, notebook=notebook, model=r["model"],
                           method=f"{r['method']}[{r['factor']}={r['level']}]", domain=r["domain"],
                           split=r["split"], seed=r["seed"], epoch=r["epoch"])
    return pd.DataFrame(out, columns=RESULT_COLUMNS)


def _level_phrase(r) -> str:
    span = f" [{signed(r.low)}, {signed(r.high)}]" if np.isfinite(r.low) else ""
    said = {"win": "kl helps", "loss": "kl hurts", "tie": "a tie", "mixed": "mixed across seeds"}
    return f"{r.level} {signed(r.gap)}{span} ({said.get(r.outcome, r.outcome)})"


def conditions_summary(table: pd.DataFrame) -> str:
    """'**In short:** against distance_mse, kl helps at the run's own settings (+0.028); its lead
    shrinks at …; teacher heterogeneity changes nothing the rule can see. …' — per competitor,
    the reference gap and, per factor, the levels whose change is a win or a loss by the rule."""
    said = {"win": "kl helps", "loss": "kl loses", "tie": "a tie", "mixed": "mixed across seeds"}
    parts = []
    for competitor, t in table.groupby("competitor", sort=False):
        ref = t[t.reference].iloc[0]
        grow = [f"{r.level} ({r.factor})" for r in t[t.change_outcome == "win"].itertuples()]
        shrink = [f"{r.level} ({r.factor})" for r in t[t.change_outcome == "loss"].itertuples()]
        moved = set(t[t.change_outcome.isin(["win", "loss"])].factor)
        still = [f for f in dict.fromkeys(t.factor) if f not in moved]
        text = (f"against {competitor}, {said.get(ref.outcome, ref.outcome)} at the run's own settings "
                f"({signed(ref.gap)})")
        text += f"; kl's lead grows at {', '.join(grow)}" if grow else ""
        text += f"; it shrinks at {', '.join(shrink)}" if shrink else ""
        text += (f"; {' and '.join(still)} change{'s' if len(still) == 1 else ''} nothing the rule can "
                 f"see" if still else "")
        parts.append(text)
    return "- **In short:** " + ". ".join(p[0].upper() + p[1:] for p in parts) + "."


def conditions_sentence(table: pd.DataFrame, metric: str = "recall@1", rules: Rules = Rules()) -> str:
    """Markdown, one bullet per factor and competitor: the gap kl - competitor at each level
    with its interval and outcome, then what the factor does to the gap, decided by the rule on
    the change from the reference level: a level where kl gains more (or less) than at the
    reference, or "no level changes the gap" when every change is a tie. Then the rule once."""
    if table.empty:
        return "No condition ran."
    n = int(table.n.max())
    lines = [conditions_summary(table)]
    for (factor, competitor), t in table.groupby(["factor", "competitor"], sort=False):
        moved = t[t.change_outcome.isin(["win", "loss"])]
        verdict = ("; ".join(f"at {r.level} kl gains {'more' if r.change_outcome == 'win' else 'less'} "
                             f"than at {t[t.reference].level.iloc[0]} ({signed(r.change)})"
                             for r in moved.itertuples())
                   or "no level changes the gap by the rule (changes "
                   + ", ".join(signed(c) for c in t.change.dropna()) + ")")
        lines.append(f"- **{factor}**, kl − {competitor} ({metric}, mean over domains): "
                     + "; ".join(_level_phrase(r) for r in t.itertuples()) + f". So: {verdict}.")
    lines.append(f"- Intervals: two-sided {pct(rules.confidence)} t intervals over {seeds_phrase([n])}. "
                 f"A gap or a change is decided by the rule of every comparison here: "
                 f"{win_rule(rules, n)}.")
    return "\n".join(lines)


# ---------------------------------------------------------------- the paper, and what to run next

SWEEP_NOTEBOOK = "notebooks/03_absolute_vs_distribution_distillation.ipynb"

# notebook 05's standard knobs with the values a first sweep tries (names as `-p` takes them,
# `ue_lib.profiles.setting_path`; kl.*: `ue_lib.losses.DistributionDistillationLoss`, where
# neighbors None is the whole batch; domain_schedule: `ue_lib.samplers.SCHEDULES`)
STANDARD_KNOBS: dict[str, list] = {
    "kl.temperature": [0.02, 0.05, 0.2],
    "kl.neighbors": [None, 4, 16],
    "kl.direction": ["teacher_student", "student_teacher", "symmetric"],
    "metric_weight": [0.0, 0.5, 1.0],
    "domain_schedule": ["round_robin", "proportional", "dynamic"],
    "embedding_dim": [32, 64, 128],
}

RETRAINS_TEACHERS = ("embedding_dim",)  # knobs that change the specialists as well as the student


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def _cli(value) -> str:
    """A setting's value as `-p` reads it back (`ue_lib.profiles.parse_value`)."""
    return shlex.quote(value if isinstance(value, str) else repr(value))


def _p_args(settings: Mapping) -> str:
    return " ".join(f"-p {k} {_cli(v)}" for k, v in settings.items())


def _kinds(claim: str) -> tuple[str, ...]:
    return PAPER.get(claim, ("", ("specialist", "naive", "distill")))[1]


def _of_kinds(budget: pd.DataFrame | None, kinds) -> pd.DataFrame:
    if budget is None:
        return pd.DataFrame(columns=["model", "domain", "batches", "flag", "note"])
    return budget[budget.model.astype(str).str.split(":").str[0].isin(kinds)]


def _length(row, kinds, profile, budget) -> tuple[str, dict] | None:
    still = flagged(_of_kinds(budget, kinds), "flag", TRAIN_LONGER)
    short = "too short to test over-fitting" in row.measured
    if not still and not short:
        return None
    seen = ([f"{', '.join(still)} {'was' if len(still) == 1 else 'were'} selected at the last "
             f"epoch trained (still improving)"] if still else []) + (
        ["every domain of naive fusion was still improving at its last evaluation"] if short else [])
    return (f"the run may have been too short: {' and '.join(seen)}, so more epochs may change "
            f"the outcome"), {f"epochs_{k}": 2 * getattr(profile, f"epochs_{k}") for k in kinds}


def _budget(kinds, profile, budget, rules) -> tuple[str, dict] | None:
    if len(kinds) < 2:
        return None
    epochs = {k: getattr(profile, f"epochs_{k}") for k in kinds}
    seen = ([f"their epochs differ ({', '.join(f'{k} {e}' for k, e in epochs.items())})"]
            if len(set(epochs.values())) > 1 else [])
    if budget is not None:
        spans = budget_spans(_of_kinds(budget, kinds), rules)
        unequal = list(spans.index[~spans.equal])
        seen += [f"their batches of {', '.join(unequal)} differ by more than "
                 f"{pct(rules.budget_tolerance)}"] if unequal else []
    elif "specialist" in kinds and not profile.batches_per_domain:
        seen.append("with batches_per_domain 0 a specialist's epoch is its own domain's number of "
                    "batches, a universal model's the mean over domains")
    if not seen:
        return None
    top = max(epochs.values())
    return (f"these models did not get the same training budget: {'; '.join(seen)}",
            {f"epochs_{k}": top for k, e in epochs.items() if e != top})


def _regime(profile) -> tuple[str, dict]:
    if profile.weights:
        change = {"trainable_stages": 1 if profile.trainable_stages == 0 else 0}
    else:
        change = {} if profile.backbone == "small_cnn" else {"weights": "imagenet"}
    return (f"this run starts from {start_phrase(profile)}; another start (pretrained and fine-tuned, "
            f"frozen, or from scratch) may change the outcome"), change


def _similarity(kinds, profile) -> tuple[str, dict] | None:
    if "naive" not in kinds:
        return None
    return (f"the domains ({', '.join(profile.domain_names)}) may be similar enough for one model "
            f"to serve them all, which leaves naive fusion little to lose; only other domains "
            f"(`--domains`) test it"), {}


def _models_of_04(profile) -> dict[str, int]:
    """The models notebook 04 trains, per kind: per seed the specialists, naive fusion and the
    final students, plus the extra students of each method's tuning (`distill_tuning`, at the
    base seed only)."""
    seeds, methods = len(profile.seed_list("seeds")), len(profile.methods("final_methods"))
    points = int(np.prod([len(v) for v in getattr(profile, "distill_tuning", {}).values()]))
    return {"specialist": len(profile.domain_names) * seeds, "naive": seeds,
            "distill": methods * seeds + methods * (points - 1)}


def _expected_time(change: dict, profile, seconds: Mapping[str, float]) -> str:
    """Training time of notebook 04 with `change`, from this run's seconds per model."""
    if not all(k.startswith("epochs_") for k in change):
        return "not estimable from this run's times (the change alters the cost of every step)"
    total, terms = 0.0, []
    for kind, n in _models_of_04(profile).items():
        if not seconds.get(kind):
            return f"unknown: no measured training time of a {kind} model in this run"
        old = getattr(profile, f"epochs_{kind}")
        new = change.get(f"epochs_{kind}", old)
        total += n * seconds[kind] * new / old
        terms.append(f"{n} {kind} x {seconds[kind]:.1f} s" + (f" x {new}/{old} epochs" if new != old else ""))
    return (f"about {_duration(total)} of training for {len(profile.seed_list('seeds'))} seeds ("
            f"{' + '.join(terms)}; evaluation not included)")


def _command(change: dict, profile, run_overrides: Mapping) -> str:
    settings = {**{k: v for k, v in run_overrides.items() if k not in change}, **change}
    out = slug(f"{profile.name}-" + "-".join(f"{k}{v}" for k, v in change.items()))
    return f"ue run --profile {profile.name} --out runs/{out} --only 04 {_p_args(settings)}"


SHARED = ("regime", "domain similarity")  # candidates stated once for every claim they concern


def _next_run(row, profile, seconds, budget, run_overrides, rules, said_before: set) -> list[str]:
    kinds = _kinds(row.claim)
    found = {"length": _length(row, kinds, profile, budget), "budget": _budget(kinds, profile, budget, rules),
             "regime": _regime(profile), "domain similarity": _similarity(kinds, profile)}
    found = {k: v for k, v in found.items() if v is not None}
    own = [f"*{k}*: {text}" for k, (text, _) in found.items() if k not in SHARED]
    shared = [k for k in SHARED if k in found]
    said = str(getattr(row, "verdict", "did not hold")).split(" (")[0]
    lines = [f"- **{row.claim}** ({said}). " + ("; ".join(own) + ". " if own else "")
             + (f"Also: {' and '.join(shared)} (above)." if shared else "")]
    main = next(((k, change) for k, (_, change) in found.items() if change), None)
    if main is None:
        return lines + ["  - No single setting tests these candidates."]
    command = _command(main[1], profile, run_overrides)
    if command in said_before:
        return lines + [f"  - Main candidate: *{main[0]}*, tested by the same run as above."]
    said_before.add(command)
    return lines + [f"  - Main candidate: *{main[0]}*. Test it with `{command}` "
                    f"(expected time: {_expected_time(main[1], profile, seconds)})."]


def next_runs(verdict: pd.DataFrame, profile, seconds: Mapping[str, float],
              budget: pd.DataFrame | None = None, run_overrides: Mapping | None = None,
              rules: Rules = Rules()) -> str:
    """Markdown: for each claim of `claims` that did not hold, the candidate explanations this
    run points to -- length (a model still improving at its last epoch, from `budget`, a
    `budget_table`; or naive fusion too short to test over-fitting), budget (epochs or batches
    per domain differ between the models the claim compares), regime (`profile.weights`,
    `trainable_stages`) and domain similarity (these two, the same for every claim, are stated
    once, first) -- and one `ue run` command that tests the main one (the first with a command,
    in that order), with its expected training time from `seconds` ({kind: measured training
    seconds per model}, kinds specialist, naive, distill) scaled by the epochs ratio x the
    models notebook 04 trains (per seed, plus its tuning). `run_overrides` are this run's own
    `-p` settings, repeated in the command so that only the tested change differs."""
    failed = verdict[~verdict.holds.astype(bool)]
    if failed.empty:
        return "Every claim held: no next run is needed to explain a failure."
    naive = any("naive" in _kinds(c) for c in failed.claim)
    lines = [f"{len(failed)} of {len(verdict)} claims did not hold (or are not established). Candidate "
             f"explanations, not established by this run:",
             f"- *regime* (every claim): {_regime(profile)[0]}."]
    if naive:
        lines.append(f"- *domain similarity* (the claims about naive fusion): "
                     f"{_similarity(('naive',), profile)[0]}.")
    said_before: set[str] = set()
    for row in failed.itertuples():
        lines += _next_run(row, profile, seconds, budget, dict(run_overrides or {}), rules, said_before)
    return "\n".join(lines)


def ablation_plan(tables: Mapping[str, tuple[list, pd.DataFrame]], profile,
                  seconds: Mapping[str, float], base_seed: int = 0) -> str:
    """Markdown for notebook 05: which knobs and seeds ran (`tables`, {knob: (values, rows)} as
    `ue_lib.universal.experiments.ablations` returns them; no rows: the run's `base_seed`), and
    for each knob of `STANDARD_KNOBS` that did not, the `ue sweep` command over notebook 03 that
    runs it on the same seeds, with its expected time (values x seeds x the seconds of a point:
    the distilled student's training time measured in this run, ``seconds["distill"]``, times
    its tuning points)."""
    seconds_per_point = seconds.get("distill", float("nan"))
    grid_that_ran = {knob: values for knob, (values, _) in tables.items()}
    seeds = sorted({int(s) for _, t in tables.values() for s in t.seed.unique()}) or [int(base_seed)]
    ran = "; ".join(f"{k} ({', '.join(setting_label(v) for v in values)})"
                    for k, values in grid_that_ran.items()) or "no knob"
    n = f"{len(seeds)} seed" + ("" if len(seeds) == 1 else "s")
    lines = [f"- Ran: {ran}, on {n} ({', '.join(map(str, seeds))})"
             + (": one seed has no spread, so no setting can be told apart from seed noise"
                if len(seeds) == 1 else "") + "."]
    todo = {k: v for k, v in STANDARD_KNOBS.items() if k not in grid_that_ran}
    if not todo:
        return "\n".join(lines + ["- Every knob of the standard list ran."])
    # each point runs notebook 03 for the kl student alone, tuned like every student
    per_point = seconds_per_point * len(profile.tuning_points())
    points = len(profile.tuning_points())
    lines.append(f"- Not run yet; each sweep's expected time is its values x {n} x {per_point:.1f} s "
                 f"(one kl student's training time in this run, {seconds_per_point:.1f} s, x its "
                 f"{points} tuning point{'s' if points > 1 else ''}):")
    for knob, values in todo.items():
        cmd = (f"ue sweep {SWEEP_NOTEBOOK} --profile {profile.name} "
               f"--out runs/{slug(f'{profile.name}-sweep-{knob}')} --seeds {' '.join(map(str, seeds))} "
               f"-p distill_methods kl -p {knob} {' '.join(_cli(v) for v in values)}")
        more = "; it retrains the specialists too, so more" if knob in RETRAINS_TEACHERS else ""
        lines.append(f"  - `{knob}`: `{cmd}` ({len(values)} values x {n} x {per_point:.1f} s: "
                     f"about {_duration(len(values) * len(seeds) * per_point)}{more}).")
    return "\n".join(lines)
