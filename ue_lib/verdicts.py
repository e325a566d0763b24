"""The verdict machinery: every sentence a notebook prints about a claim is built from that run's
results and the thresholds in `Rules`, never written in advance. Each paper's system decides its
own claims with these (`ue_lib.<system>.verdicts`).

Torch-free (numpy, pandas, scipy), so every rule is unit-tested on small hand-made tables.

* **A beats B** is judged on paired differences A - B (rows paired by seed and domain). A wins a
  domain when the mean difference over seeds exceeds [min_gain] AND the difference is positive
  on every seed (with more than [all_positive_max_seeds] seeds instead: the lower bound of the
  one-sided [confidence] Student-t confidence interval of the mean difference is above zero).
  B wins the domain by the mirror rule. A mean difference within [min_gain], or smaller in size
  than the seed spread (the sample std over seeds of the paired differences; one seed has no
  spread), is a tie, never a win or a loss; anything else is "mixed". A beats B when it wins
  more than half of the domains.
* **Favoured**: of two models, the numbers favour the one that wins at least [favour_margin]
  more (domain, metric) comparisons than the other; else neither.
* **Flagged** models (a mapping {model: reason}, e.g. collapsed runs) are named with their
  reason and not compared: no win or loss for or against them.
* Models are named by a table's ``model_name`` column when it has one, else by ``model``
  (:func:`model_names`).

Spreads are sample standard deviations (ddof=1); with one seed no "±" is shown. Numbers in
sentences have fixed decimals, never "-0.000" and never scientific notation. Comparisons with a
threshold ignore float rounding below 1e-9 (0.51 - 0.50 is not "more than 0.01").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

EPS = 1e-9  # float rounding: differences this small do not cross a threshold


@dataclass(frozen=True)
class Rules:
    """The thresholds behind every verdict (defaults in brackets):

    min_gain: a domain is won only when the mean paired gain exceeds it; smaller is a tie [0.01].
    confidence: level of the one-sided t confidence bound used with many seeds [0.95].
    all_positive_max_seeds: up to this many seeds a win needs a positive gain on every seed;
        with more, the confidence bound must be above zero [3].
    tie_tolerance: validation values this close to a domain's maximum are a tie [0.005].
    last_evals: "still improving" = reached its peak only within this many last evaluations [1].
    overfit_drop: over-fitting = last value more than this below the maximum [0.01].
    cost_tolerance: a stopping cost counts when above this [0.01].
    close_gap: the student is close when its mean gap to the specialists is above -close_gap [0.02].
    min_spread_evals: peaks disagree when this many evaluation intervals apart, unless a
        `min_spread` in epochs is given [2].
    budget_tolerance: the models' batches of a domain are equal when the largest is at most
        this fraction above the smallest [0.05].
    collapse_gain: a model collapsed when its mean validation Recall@1 at the selected epoch has
        come less than this fraction of the way from the chance Recall@1 to 1 [0.2] (a fixed
        multiple of chance would call a good model collapsed on a split of few classes).
    early_epoch: a healthy model peaked early when its selected epoch is at most this [2] ...
    early_min_epochs: ... in a run of at least this many epochs [10].
    ceiling: a validation curve whose maximum is at least this, reached at the first
        evaluation, is at its ceiling: it cannot show over-fitting or improvement [0.95].
    favour_margin: the numbers favour one of two models (`favoured`) when it wins at least this
        many more (domain, metric) comparisons than the other [2].
    """

    min_gain: float = 0.01
    confidence: float = 0.95
    all_positive_max_seeds: int = 3
    tie_tolerance: float = 0.005
    last_evals: int = 1
    overfit_drop: float = 0.01
    cost_tolerance: float = 0.01
    close_gap: float = 0.02
    min_spread_evals: int = 2
    budget_tolerance: float = 0.05
    collapse_gain: float = 0.2
    early_epoch: int = 2
    early_min_epochs: int = 10
    ceiling: float = 0.95
    favour_margin: int = 2

    def __post_init__(self):
        if not 0 < self.confidence < 1:
            raise ValueError(f"Rules.confidence must be in (0, 1), got {self.confidence}")
        if min(self.min_gain, self.tie_tolerance, self.overfit_drop, self.cost_tolerance,
               self.close_gap, self.budget_tolerance, self.collapse_gain, self.early_epoch) < 0:
            raise ValueError("Rules: tolerances, collapse_gain and early_epoch must be >= 0")
        if not 0 < self.ceiling <= 1:
            raise ValueError(f"Rules.ceiling must be in (0, 1], got {self.ceiling}")
        if min(self.last_evals, self.all_positive_max_seeds, self.early_min_epochs,
               self.favour_margin) < 1 \
                or self.min_spread_evals < 0:
            raise ValueError("Rules: last_evals, all_positive_max_seeds, early_min_epochs and "
                             "favour_margin must be >= 1, min_spread_evals >= 0")
        if self.tie_tolerance > self.overfit_drop:
            raise ValueError("Rules: tie_tolerance must not exceed overfit_drop (a drop within a "
                             "tie cannot be over-fitting)")


# ---------------------------------------------------------------- formatting

def rounded(x: float | None, digits: int) -> float | None:
    """`x` rounded to `digits` decimals, with -0.0 made 0.0; None for a missing or infinite value."""
    if x is None or not np.isfinite(x):
        return None
    return round(float(x), digits) + 0.0  # -0.0 + 0.0 == +0.0


def float_format(x: float) -> str:
    """How notebook tables show a float (``pd.set_option("display.float_format", ...)``): whole
    numbers of 2 or more without decimals (counts: 12, 300), 3 fixed decimals from 0.001 on (a
    score of 1 is "1.000", like its column), 2 significant digits in plain notation below (a
    learning rate 0.0006, 0.00003), and "0" for what is zero to a millionth; never scientific
    notation, "-0.000" or "nan" dressed as a number."""
    if not np.isfinite(x):
        return str(x)
    if abs(x) < 1e-6:
        return "0"
    if x == round(x) and abs(x) >= 2:
        return f"{x:.0f}"
    if abs(x) >= 0.001:
        return f"{x:.3f}"
    return np.format_float_positional(x, precision=2, unique=False, fractional=False, trim="-")


def num(x: float, digits: int = 3) -> str:
    """Fixed decimals (rounded first, so never '-0.000' nor scientific notation), 'n/a' for NaN."""
    r = rounded(x, digits)
    return "n/a" if r is None else f"{r:.{digits}f}"


def signed(x: float, digits: int = 3) -> str:
    """Fixed decimals with a sign, '+0.000' for anything that rounds to zero."""
    r = rounded(x, digits)
    return "n/a" if r is None else f"{r:+.{digits}f}"


def signed_gain(x: float, threshold: float, digits: int = 3) -> str:
    """`signed`, with one more decimal when `digits` would print the `threshold` a verdict
    compares `x` with ('+0.0104 (win)' over a 0.01 threshold, not '+0.010 (win)')."""
    r = rounded(x, digits)
    if r is not None and abs(abs(r) - threshold) < EPS:
        return signed(x, digits + 1)
    return signed(x, digits)


def pct(p: float) -> str:
    return f"{p * 100:.1f}".rstrip("0").rstrip(".") + "%"


def significant(x: float, digits: int = 2) -> str:
    """`x` to `digits` significant digits in plain notation, for measured times whose noise
    makes more digits false: 25.234 -> '25', 1.242 -> '1.2', 0.01234 -> '0.012', 1234 -> '1200';
    '0' for zero, 'n/a' for NaN."""
    if x is None or not np.isfinite(x):
        return "n/a"
    if x == 0:
        return "0"
    decimals = digits - 1 - int(np.floor(np.log10(abs(x))))
    r = round(float(x), decimals) + 0.0
    if r != 0 and int(np.floor(np.log10(abs(r)))) > int(np.floor(np.log10(abs(x)))):
        decimals -= 1  # rounding carried into a new digit (9.96 -> 10): one decimal fewer
    return f"{r:.{max(decimals, 0)}f}"


def mean_std(values, digits: int | None = None) -> str:
    """'mean ± std' (sample std) over the non-missing values; just 'mean' for one value. Fixed 3
    decimals, or with `digits` that many significant digits (`significant`)."""
    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v)]
    if len(v) == 0:
        return "–"
    fmt = num if digits is None else (lambda x: significant(x, digits))
    return fmt(v.mean()) if len(v) == 1 else f"{fmt(v.mean())} ± {fmt(v.std(ddof=1))}"


def seeds_phrase(counts) -> str:
    lo, hi = int(min(counts)), int(max(counts))
    n = str(hi) if lo == hi else f"{lo}–{hi}"
    return f"{n} seed" + ("" if hi == 1 else "s")


def of_seeds(k: int, n: int) -> str:
    return f"{k} of {n} seed" + ("" if n == 1 else "s")


def majority(flags: Sequence[bool]) -> bool:
    return len(flags) > 0 and sum(map(bool, flags)) > len(flags) / 2


def setting_label(v) -> str:
    """A swept value as a label: 'None' for None/NaN, '4' for 4, 4.0 and '4.0', else str(v)."""
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return "None"
    if isinstance(v, str):
        try:
            f = float(v)
        except ValueError:
            return v
        return setting_label(f) if np.isfinite(f) else v
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return str(int(v))
    return str(v)


def over_seeds(metric: str, counts) -> str:
    """A table header: 'recall@1 (mean ± std over 3 seeds)'; with one seed in some cell, where
    no std is shown: 'recall@1 (mean over 1 seed)' or '… over 1–3 seeds; n = 1: the mean alone'."""
    if not len(counts):
        return f"{metric} (mean ± std over 0 seeds)"
    lo, hi = int(min(counts)), int(max(counts))
    if hi == 1:
        return f"{metric} (mean over {seeds_phrase(counts)})"
    alone = "; n = 1: the mean alone)" if lo == 1 else ")"
    return f"{metric} (mean ± std over {seeds_phrase(counts)}" + alone


# ---------------------------------------------------------------- comparisons

def model_names(results: pd.DataFrame) -> pd.Series:
    """The name of each row's model: the table's ``model_name`` column when it has one (a
    system's own labels), else its ``model``."""
    return results["model_name"] if "model_name" in results else results["model"]


def summary(results: pd.DataFrame, metric: str = "recall@1") -> pd.DataFrame:
    """'mean ± std' over seeds (sample std; just the mean for one seed): one row per model (in
    recorded order), one column per domain."""
    r = results[results.metric == metric].assign(model_name=lambda d: model_names(d))
    g = r.groupby(["model_name", "domain"], sort=False).value
    table = g.agg(mean_std).unstack("domain").fillna("–")
    table = table.reindex(index=list(dict.fromkeys(r.model_name)),
                          columns=list(dict.fromkeys(r.domain)))
    return table.rename_axis(columns=over_seeds(metric, g.count()))


def _lower_bound(d: np.ndarray, confidence: float) -> float:
    """Lower end of the one-sided `confidence` t interval of the mean of `d` (NaN for n < 2)."""
    if len(d) < 2:
        return np.nan
    return float(d.mean() - stats.t.ppf(confidence, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d)))


def _consistent(d: np.ndarray, rules: Rules) -> bool:
    """Positive on every seed, or, with many seeds, a confidence bound above zero."""
    if len(d) <= rules.all_positive_max_seeds:
        return bool((d > 0).all())
    return bool(_lower_bound(d, rules.confidence) > 0)


def _is_tie(d: np.ndarray, rules: Rules) -> bool:
    """The mean paired difference is within min_gain, or smaller in size than the seed spread
    (the sample std of the differences; one seed has no spread)."""
    mean = abs(d.mean())
    return bool(mean <= rules.min_gain + EPS or (len(d) > 1 and mean < d.std(ddof=1) - EPS))


def _outcome(d: np.ndarray, rules: Rules) -> str:
    if _is_tie(d, rules):
        return "tie"
    if d.mean() > 0 and _consistent(d, rules):
        return "win"
    if d.mean() < 0 and _consistent(-d, rules):
        return "loss"
    return "mixed"


def outcome(differences, rules: Rules = Rules()) -> str:
    """"win", "loss", "tie" or "mixed" for paired differences a - b over seeds, by the rule of
    `compare` (one comparison: one domain, or one mean over domains)."""
    return _outcome(np.asarray(differences, dtype=float), rules)


def interval(differences, confidence: float = 0.95) -> tuple[float, float]:
    """The two-sided `confidence` Student-t interval of the mean of `differences` (NaN, NaN for
    fewer than two values)."""
    d = np.asarray(differences, dtype=float)
    if len(d) < 2:
        return np.nan, np.nan
    half = float(stats.t.ppf(0.5 + confidence / 2, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d)))
    return float(d.mean() - half), float(d.mean() + half)


def compare(results: pd.DataFrame, a: str, b: str, metric: str = "recall@1",
            domains: list[str] | None = None, rules: Rules = Rules(),
            flags: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Per domain (rows paired by seed; `domains` default: all but merged): mean of a and of b,
    `diff` (mean paired a - b), `n` seeds, `std` (of the differences), `lower` (one-sided
    confidence bound), `positive` (seeds with a > b), `outcome` (win/loss/tie/mixed for a, or
    "not compared" when a or b is in `flags`, {name: reason} of flagged models), `win`.
    Model names as in `model_names`; KeyError when a or b has no `metric` rows."""
    r = results[results.metric == metric].assign(model_name=lambda d: model_names(d))
    missing = [m for m in (a, b) if m not in set(r.model_name)]
    if missing:
        raise KeyError(f"no {metric} rows for {missing}; present: {sorted(set(r.model_name))}")
    if domains is None:
        domains = [d for d in dict.fromkeys(r.domain) if not str(d).startswith("merged")]
    wide = (r[r.model_name.isin([a, b])]
            .pivot_table(index=["domain", "seed"], columns="model_name", values="value", aggfunc="mean"))
    wide = wide.reindex(columns=[a, b]).dropna()
    rows, skip = [], not_compared(a, b, flags) is not None
    for domain in domains:
        if domain not in wide.index.get_level_values("domain"):
            continue
        w = wide.loc[domain]
        d = (w[a] - w[b]).to_numpy(float)
        rows.append({"domain": domain, a: w[a].mean(), b: w[b].mean(), "diff": d.mean(), "n": len(d),
                     "std": d.std(ddof=1) if len(d) > 1 else np.nan,
                     "lower": _lower_bound(d, rules.confidence), "positive": int((d > 0).sum()),
                     "outcome": "not compared" if skip else _outcome(d, rules)})
    columns = ["domain", a, b, "diff", "n", "std", "lower", "positive", "outcome"]
    out = pd.DataFrame(rows, columns=columns).set_index("domain")
    return out.assign(win=out.outcome == "win")


def not_compared(a: str, b: str, flags: Mapping[str, str] | None) -> str | None:
    """'distill:darkrank collapsed (best epoch 2 of 30): not compared with distill:kl' when a or
    b is flagged in `flags` ({name: reason}, e.g. collapsed runs), else None."""
    bad = [m for m in (a, b) if flags and m in flags]
    if not bad:
        return None
    other = [m for m in (a, b) if m not in bad]
    def said(m: str) -> str:
        reason = str(flags[m])
        return f"{m} {reason}" if reason.startswith("collapsed") else f"{m} collapsed ({reason})"

    return (" and ".join(said(m) for m in bad) + ": not compared"
            + (f" with {other[0]}" if other else ""))


def beats_rule(rules: Rules = Rules(), n_seeds: int = 1) -> str:
    """The beats rule in words, for `n_seeds` paired seeds."""
    return f"wins on a majority of domains: {win_rule(rules, n_seeds)}"


def win_rule(rules: Rules = Rules(), n_seeds: int = 1) -> str:
    """When one comparison (one domain, one setting) is a win, in words (`_outcome`)."""
    if n_seeds <= rules.all_positive_max_seeds:
        every = "positive on every seed"
    else:
        every = f"the one-sided {pct(rules.confidence)} t lower confidence bound of the mean gain > 0"
    tie = f"a mean within ±{num(rules.min_gain)}"
    tie = (f"{tie} is a tie; one seed has no spread" if n_seeds <= 1 else
           f"{tie}, or smaller in size than the std over seeds of the paired differences, is a tie")
    return f"mean paired gain > {num(rules.min_gain)} and {every} ({tie})"


def beats(cmp: pd.DataFrame) -> bool:
    """Whether a `compare` table's model a wins more than half of its domains."""
    return majority(list(cmp.win))


def wins_sentence(cmp: pd.DataFrame, a: str, b: str, metric: str = "recall@1",
                  flags: Mapping[str, str] | None = None, rules: Rules = Rules()) -> str:
    """'distill:kl beat naive on 2 of 3 domains in recall@1 (mean paired difference over 3 seeds:
    A +0.041 ± 0.010 (win), B +0.004 ± 0.002 (tie), C -0.030 ± 0.020 (loss))', or 'distill:kl
    collapsed (best epoch 2 of 30): not compared with naive' when a or b is in `flags`."""
    if (skip := not_compared(a, b, flags)) is not None:
        return skip
    if cmp.empty:
        return f"{a} and {b} have no paired {metric} results"
    parts = ", ".join(
        f"{d} {signed_gain(r['diff'], rules.min_gain)}" + (f" ± {num(r['std'])}" if r["n"] > 1 else "")
        + f" ({'mixed across seeds' if r['outcome'] == 'mixed' else r['outcome']})"
        for d, r in cmp.iterrows())
    return (f"{a} beat {b} on {int(cmp.win.sum())} of {len(cmp)} domains in {metric} "
            f"(mean paired difference over {seeds_phrase(cmp.n)}: {parts})")


HOLDS, NOT_ESTABLISHED, FAILS = "holds", "not established", "does not hold"


def outcome_counts(cmp: pd.DataFrame) -> dict[str, int]:
    """{'win': …, 'tie': …, 'loss': …, 'mixed': …}: the outcomes of a `compare` table."""
    counts = cmp.outcome.value_counts() if len(cmp) else pd.Series(dtype=int)
    return {k: int(counts.get(k, 0)) for k in ("win", "tie", "loss", "mixed")}


def counts_phrase(counts: Mapping[str, int]) -> str:
    """'2 wins, 3 ties, 0 losses' (and ', 1 mixed' when some domain is mixed across seeds)."""
    def n(k: int, one: str, many: str) -> str:
        return f"{k} {one if k == 1 else many}"

    return (f"{n(counts['win'], 'win', 'wins')}, {n(counts['tie'], 'tie', 'ties')}, "
            f"{n(counts['loss'], 'loss', 'losses')}"
            + (f", {counts['mixed']} mixed" if counts.get("mixed") else ""))


def status(held: bool, lost: bool) -> str:
    """A claim's status: "holds"; "does not hold" when the evidence goes against it; "not
    established" when it did not hold but nothing went against it (no loss)."""
    return HOLDS if held else FAILS if lost else NOT_ESTABLISHED


def beats_verdict(cmp: pd.DataFrame) -> str:
    """'holds (3 wins, 2 ties, 0 losses)', 'not established (2 wins, 3 ties, 0 losses)' or 'does
    not hold (1 win, 2 ties, 2 losses)' for "a beats b" (`beats`), with ', on this seed' when
    the comparison rests on one seed."""
    counts = outcome_counts(cmp)
    one = len(cmp) > 0 and int(cmp.n.max()) == 1
    return (f"{status(beats(cmp), counts['loss'] > 0)} ({counts_phrase(counts)})"
            + (", on this seed" if one else ""))


def comparison_sentence(results: pd.DataFrame, a: str, b: str, metric: str = "recall@1",
                        domains: list[str] | None = None, rules: Rules = Rules(),
                        flags: Mapping[str, str] | None = None, rule: bool = True) -> str:
    """One Markdown sentence: wins per domain with the paired differences, (with `rule`) the
    rule, and whether a beats b by it (the same rule `claims` uses): "beats", "it is not
    established that a beats b" (no domain lost) or "does not beat"; "on this seed" when one
    seed is compared. A collapsed model (in `flags`) is named and not compared."""
    if (skip := not_compared(a, b, flags)) is not None:
        return skip + "."
    cmp = compare(results, a, b, metric, domains, rules)
    counts = outcome_counts(cmp)
    said = {HOLDS: f"{a} **beats** {b}", NOT_ESTABLISHED: f"that {a} beats {b} is **not established** "
            f"(nothing lost: {counts_phrase(counts)})", FAILS: f"{a} does **not** beat {b}"}
    verdict = said[status(beats(cmp), counts["loss"] > 0)]
    one = " on this seed" if len(cmp) and int(cmp.n.max()) == 1 else ""
    by = f"By the rule ({beats_rule(rules, int(cmp.n.max()) if len(cmp) else 1)})" if rule else \
        "By the rule"
    return f"{wins_sentence(cmp, a, b, metric)}. {by}, {verdict}{one}."


def win_counts(rows: pd.DataFrame, a: str, b: str, metrics: Sequence[str], rules: Rules
                ) -> tuple[dict[str, int], list[str]]:
    wins, parts = {a: 0, b: 0}, []
    for metric in metrics:
        cmp = compare(rows, a, b, metric, rules=rules)
        wa, wb = int((cmp.outcome == "win").sum()), int((cmp.outcome == "loss").sum())
        wins[a], wins[b] = wins[a] + wa, wins[b] + wb
        parts.append(f"{metric} {wa}–{wb} of {len(cmp)}")
    return wins, parts


def favoured_of(wins: dict[str, int], a: str, b: str, rules: Rules) -> str:
    m = rules.favour_margin
    return a if wins[a] - wins[b] >= m else b if wins[b] - wins[a] >= m else "neither"


def favoured(rows: pd.DataFrame, a: str, b: str, metrics: Sequence[str],
             rules: Rules = Rules()) -> str:
    """Which of two models the numbers favour: the one that wins at least `rules.favour_margin`
    more (domain, metric) comparisons (each by the rule of `compare`) than the other, else
    "neither"."""
    return favoured_of(win_counts(rows, a, b, metrics, rules)[0], a, b, rules)


def favoured_sentence(rows: pd.DataFrame, a: str, b: str, metrics: Sequence[str],
                      rules: Rules = Rules()) -> str:
    """One Markdown sentence: which of `a` and `b` the numbers favour (`favoured`), with the
    per-metric wins behind it."""
    wins, parts = win_counts(rows, a, b, metrics, rules)
    choice = favoured_of(wins, a, b, rules)
    return (f"{a} against {b}, domains won by each ({', '.join(parts)}; {wins[a]} against "
            f"{wins[b]} in all): the numbers favour **{choice}** (rule: {rules.favour_margin} or "
            f"more wins than the other).")


def model_table(rows: pd.DataFrame, metrics: Sequence[str]) -> pd.DataFrame:
    """One row per `model` in recorded order, one column per metric:
    the mean over domains (merged excluded), as 'mean ± std' over seeds of that per-seed mean."""
    r = rows[rows.metric.isin(metrics) & ~rows.domain.astype(str).str.startswith("merged")]
    per_seed = r.groupby(["model", "metric", "seed"], sort=False).value.mean()
    table = per_seed.groupby(["model", "metric"], sort=False).agg(mean_std).unstack("metric")
    counts = per_seed.groupby(["model", "metric"], sort=False).count()
    table = table.reindex(index=list(dict.fromkeys(r.model)), columns=list(metrics)).fillna("–")
    n = r.domain.nunique()
    return table.rename_axis(columns=f"mean over {n} domain{'' if n == 1 else 's'}, "
                                     f"{over_seeds('', counts).strip()}")


def verdicts_against(rows: pd.DataFrame, baseline: str, metrics: Sequence[str],
                     models: Sequence[str] | None = None, rules: Rules = Rules()) -> pd.DataFrame:
    """Every model of `models` (default: all but `baseline`, in recorded order) against
    `baseline`, per metric and domain, paired by seed with the rule of `compare`: model,
    metric, domain, mean of each, diff, n, std, outcome."""
    models = [m for m in dict.fromkeys(rows.model) if m != baseline] if models is None else models
    out = []
    for model in models:
        for metric in metrics:
            if not {model, baseline} <= set(rows[rows.metric == metric].model):
                continue
            cmp = compare(rows, model, baseline, metric, rules=rules)
            out += [{"model": model, "metric": metric, "domain": d, "value": r[model],
                     "baseline": r[baseline], "diff": r["diff"], "n": r["n"], "std": r["std"],
                     "outcome": r["outcome"]} for d, r in cmp.iterrows()]
    return pd.DataFrame(out, columns=["model", "metric", "domain", "value", "baseline", "diff", "n",
                                      "std", "outcome"])


def verdicts_sentence(verdicts: pd.DataFrame, baseline: str, rules: Rules = Rules()) -> str:
    """Markdown: per model and metric, its wins, losses and ties against `baseline` over the
    domains (with the paired differences of the decided ones), and the rule."""
    if verdicts.empty:
        return f"No comparison with {baseline} ran."
    lines = []
    for model, part in verdicts.groupby("model", sort=False):
        bits = []
        for metric, m in part.groupby("metric", sort=False):
            c = m.outcome.value_counts()
            decided = ", ".join(f"{r.domain} {signed_gain(r['diff'], rules.min_gain)} ({r.outcome})"
                                for _, r in m[m.outcome.isin(["win", "loss", "mixed"])].iterrows())
            bits.append(f"{metric}: {c.get('win', 0)} win(s), {c.get('loss', 0)} loss(es), "
                        f"{c.get('tie', 0)} tie(s) of {len(m)} domains"
                        + (f" ({decided})" if decided else ""))
        lines.append(f"- **{model} vs {baseline}** — " + "; ".join(bits) + ".")
    lines.append(f"- Rule: a win is a {win_rule(rules, int(verdicts.n.max()))}; a loss the same "
                 f"the other way; anything else is a tie (or mixed across seeds).")
    return "\n".join(lines)
