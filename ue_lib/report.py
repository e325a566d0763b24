"""Numbers behind the notebooks' conclusions: every sentence a notebook prints about a claim is
built here, from that run's results and the thresholds in `Rules`, never written in advance.

Torch-free (numpy, pandas, scipy), so every rule is unit-tested on small synthetic tables
(`tests/test_report.py`).

The rules (every threshold is a field of `Rules`, named in brackets):

* **Ties and peaks.** Validation values within [tie_tolerance] of a domain's maximum are a tie;
  the domain's *peak epoch* is the LAST tied epoch (a curve that reaches its ceiling at epochs 6,
  14 and 16 peaks at 16).
* **Over-fitting.** A domain over-fits when its value at the last evaluation is more than
  [overfit_drop] below its maximum.
* **Still improving.** A domain still improves when its last evaluation is tied with its maximum
  and the evaluation [last_evals] before it was not: it reached its peak only in the last
  [last_evals] evaluation(s). A curve that peaked early and stayed flat (within the tie band) is
  neither over-fitting nor still improving.
* **Peaks disagree** when they span at least `min_spread` epochs (by default [min_spread_evals]
  evaluation intervals).
* **Stopping cost** of a domain: the test metric at its own peak validation epoch minus the test
  metric at the one epoch selected for all domains; it counts when above [cost_tolerance].
* **A beats B** is judged on paired differences A - B (rows paired by seed and domain). A wins a
  domain when the mean difference over seeds exceeds [min_gain] AND the difference is positive
  on every seed (with more than [all_positive_max_seeds] seeds instead: the lower bound of the
  one-sided [confidence] Student-t confidence interval of the mean difference is above zero).
  B wins the domain by the mirror rule; a mean difference within [min_gain] is a tie; anything
  else is "mixed". The claim holds when A wins more than half of the domains.
* **Close to the specialists**: the mean over domains of the seed-mean gap (kl - specialist) is
  above -[close_gap].
* Claims measured per seed hold when true on more than half of the seeds.

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

from .io import RESULT_COLUMNS

_EPS = 1e-9  # float rounding: differences this small do not cross a threshold


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

    def __post_init__(self):
        if not 0 < self.confidence < 1:
            raise ValueError(f"Rules.confidence must be in (0, 1), got {self.confidence}")
        if min(self.min_gain, self.tie_tolerance, self.overfit_drop, self.cost_tolerance,
               self.close_gap) < 0:
            raise ValueError("Rules: tolerances must be >= 0")
        if self.last_evals < 1 or self.min_spread_evals < 0 or self.all_positive_max_seeds < 1:
            raise ValueError("Rules: last_evals and all_positive_max_seeds must be >= 1, "
                             "min_spread_evals >= 0")
        if self.tie_tolerance > self.overfit_drop:
            raise ValueError("Rules: tie_tolerance must not exceed overfit_drop (a drop within a "
                             "tie cannot be over-fitting)")


# ---------------------------------------------------------------- formatting

def _num(x: float, digits: int = 3) -> str:
    """Fixed decimals, no '-0.000', 'n/a' for NaN."""
    if x is None or not np.isfinite(x):
        return "n/a"
    s = f"{x:.{digits}f}"
    return s[1:] if s.startswith("-") and float(s) == 0 else s


def _signed(x: float, digits: int = 3) -> str:
    """Fixed decimals with a sign, '+0.000' for anything that rounds to zero."""
    s = _num(x, digits)
    return s if s == "n/a" or s.startswith("-") else "+" + s


def _pct(p: float) -> str:
    return f"{p * 100:.1f}".rstrip("0").rstrip(".") + "%"


def _mean_std(values) -> str:
    """'mean ± std' (sample std) over the non-missing values; just 'mean' for one value."""
    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v)]
    if len(v) == 0:
        return "–"
    return _num(v.mean()) if len(v) == 1 else f"{_num(v.mean())} ± {_num(v.std(ddof=1))}"


def _seeds(counts) -> str:
    lo, hi = int(min(counts)), int(max(counts))
    n = str(hi) if lo == hi else f"{lo}–{hi}"
    return f"{n} seed" + ("" if hi == 1 else "s")


def _of_seeds(k: int, n: int) -> str:
    return f"{k} of {n} seed" + ("" if n == 1 else "s")


def _improving_rule(rules: Rules) -> str:
    k = rules.last_evals
    before = "the one before it" if k == 1 else f"the one {k} evaluations before"
    return (f"still improves when its last evaluation is within {_num(rules.tie_tolerance)} of its maximum "
            f"and {before} was not")


def _majority(flags: Sequence[bool]) -> bool:
    return len(flags) > 0 and sum(map(bool, flags)) > len(flags) / 2


def _named(tables: Sequence[pd.DataFrame] | Mapping) -> list[tuple[str, pd.DataFrame]]:
    """Per-seed tables as (name, table): 'seed <key>' for a mapping, 'run <i>' for a list."""
    if isinstance(tables, Mapping):
        return [(f"seed {k}", t) for k, t in tables.items()]
    return [(f"run {i + 1}", t) for i, t in enumerate(tables)]


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


# ---------------------------------------------------------------- the regime (notebook 01)

def regime_summary(profile, sizes: pd.DataFrame) -> str:
    """Notebook 01: this run's regime in words, from its settings and domain sizes (`sizes`:
    `Domain.summary()` rows). Says how the network starts, what trains, and how often each
    domain's training images are revisited per epoch -- the reason small domains over-fit first."""
    t = sizes.set_index("domain").train_images.astype(int)
    batch = profile.p * profile.k
    if profile.weights:
        frozen = ("the whole trunk is frozen and only the head trains" if profile.trainable_stages == 0
                  else f"all but its last {profile.trainable_stages} stage(s) are frozen"
                  if profile.trainable_stages > 0 else "all of it is fine-tuned")
        start = (f"an ImageNet-pretrained {profile.backbone} at {profile.image_size} px; {frozen}"
                 + (" (the frozen part's outputs are computed once and cached)"
                    if profile.trainable_stages >= 0 and profile.cache_features else ""))
    else:
        start = f"a {profile.backbone} trained from scratch at {profile.image_size} px"
    natural = {d: int(n) // batch for d, n in t.items()}
    # naive fusion's batches per domain per epoch (round robin: the mean natural count)
    per_epoch = profile.batches_per_domain or max(1, int(np.floor(np.mean(list(natural.values())) + 0.5)))
    passes = {d: per_epoch * batch / t[d] for d in t.index}
    big, small = t.idxmax(), t.idxmin()
    lines = [f"- **Start:** {start}.",
             f"- **Domains:** {len(t)}, from {small} ({t[small]} training images) to {big} "
             f"({t[big]}): {_num(t[big] / t[small], 1)}x apart.",
             "- **Budget:** " + (f"every model sees {profile.batches_per_domain} batches of {batch} "
                                 f"images of each domain per epoch"
                                 if profile.batches_per_domain else
                                 f"a specialist's epoch is its domain's own number of batches (size / "
                                 f"{batch}); in naive fusion the domains take turns, {per_epoch} "
                                 f"batches each")
             + "; in naive fusion each domain's training images are seen per epoch: "
             + ", ".join(f"{d} {_num(v, 1)}x" for d, v in sorted(passes.items(), key=lambda kv: -kv[1]))
             + "."]
    if passes[small] > 1.5 * passes[big]:
        lines.append(f"- So in naive fusion {small} is revisited {_num(passes[small] / passes[big], 0)}x "
                     f"as often as {big}: a small domain can be memorised while a large one still "
                     f"has new images to learn from.")
    return "\n".join(lines)


# ---------------------------------------------------------------- learning curves

def _curve(epochs: np.ndarray, values: np.ndarray, rules: Rules) -> dict:
    """Peak, over-fitting and still-improving of one sorted curve (see the module docstring)."""
    top = values.max()
    tied = values >= top - rules.tie_tolerance - _EPS
    k = rules.last_evals
    still = bool(tied[-1] and (len(values) <= k or not tied[-1 - k]))
    drop = top - values[-1]
    overfits = bool(drop > rules.overfit_drop + _EPS)
    peak_at = int(np.flatnonzero(tied)[-1])
    below = np.flatnonzero(values[peak_at:] < top - rules.overfit_drop - _EPS)
    gaps = np.diff(epochs)
    return {"peak_epoch": int(epochs[peak_at]), "first_peak_epoch": int(epochs[tied][0]),
            "peak": float(top), "last_epoch": int(epochs[-1]), "last": float(values[-1]),
            "drop_after_peak": float(drop), "overfits": overfits, "still_improving": still,
            # first evaluation after the peak that is more than overfit_drop below it (or None)
            "overfit_epoch": int(epochs[peak_at + below[0]]) if overfits and len(below) else None,
            "status": "over-fits" if overfits else "still improving" if still else "levelled off",
            "eval_interval": int(pd.Series(gaps).mode().min()) if len(gaps) else 1}


def peak_epochs(history: pd.DataFrame, metric: str = "recall@1", split: str = "val",
                rules: Rules = Rules()) -> pd.DataFrame:
    """Per domain (in recorded order): `peak_epoch` (last epoch tied with the maximum),
    `first_peak_epoch`, `peak` (the maximum), `last_epoch`, `last`, `drop_after_peak`,
    `overfits`, `still_improving`, `status` and `eval_interval` (epochs between evaluations)."""
    h = history[(history.metric == metric) & (history.split == split)].dropna(subset=["value"])
    rows = []
    for domain, g in h.groupby("domain", sort=False):
        g = g.sort_values("epoch")
        rows.append({"domain": domain, **_curve(g.epoch.to_numpy(), g.value.to_numpy(float), rules)})
    return pd.DataFrame(rows)


def stopping_cost(history: pd.DataFrame, selected_epoch: int, metric: str = "recall@1",
                  rules: Rules = Rules()) -> pd.DataFrame:
    """What one shared stopping point costs each domain: test `metric` at the domain's own peak
    validation epoch (tie rule) minus test `metric` at the epoch selected for all domains."""
    peaks = peak_epochs(history, metric, "val", rules)
    test = history[(history.metric == metric) & (history.split == "test")]
    at = test.groupby(["domain", "epoch"]).value.mean()
    rows = []
    for r in peaks.itertuples():
        own = at.get((r.domain, r.peak_epoch), np.nan)
        shared = at.get((r.domain, selected_epoch), np.nan)
        rows.append({"domain": r.domain, "own_best_epoch": r.peak_epoch,
                     "selected_epoch": selected_epoch, "test_at_own_best": own,
                     "test_at_selected": shared, "cost": own - shared})
    return pd.DataFrame(rows, columns=["domain", "own_best_epoch", "selected_epoch",
                                       "test_at_own_best", "test_at_selected", "cost"])


def _spread_threshold(min_spread: int | None, intervals, rules: Rules) -> int:
    if min_spread is not None:
        return int(min_spread)
    return rules.min_spread_evals * max([int(i) for i in intervals] or [1])


def _listed(t: pd.DataFrame) -> str:
    return ", ".join(t.domain) if len(t) else "none"


def _status_lines(peaks: pd.DataFrame, metric: str, rules: Rules) -> list[str]:
    spread = int(peaks.peak_epoch.max() - peaks.peak_epoch.min())
    over = peaks[peaks.overfits]
    rising = peaks[peaks.still_improving]
    flat = peaks[~peaks.overfits & ~peaks.still_improving]
    drops = ", ".join(f"{r.domain} ({_signed(-r.drop_after_peak)})" for r in over.itertuples())
    return [
        f"- Validation {metric} peaked at epoch "
        + ", ".join(f"{r.domain} {r.peak_epoch}" for r in peaks.itertuples())
        + f" (the last epoch within {_num(rules.tie_tolerance)} of each domain's maximum): "
        f"a spread of {spread} epochs over {len(peaks)} domains.",
        f"- Over-fitted (last evaluation more than {_num(rules.overfit_drop)} below the peak): "
        f"{drops or 'none'}. Still improving at the last evaluation: {_listed(rising)}. "
        f"Levelled off: {_listed(flat)}.",
    ]


def naive_fusion_verdict(history: pd.DataFrame, selected_epoch: int, metric: str = "recall@1",
                         rules: Rules = Rules(), min_spread: int | None = None) -> str:
    """Markdown for notebook 01 (one naive model): bullets on where each domain peaked, which
    over-fitted or still improve, what the shared stopping point cost, then one verdict derived
    from those same numbers. `min_spread` (epochs) defaults to `rules.min_spread_evals`
    evaluation intervals."""
    peaks = peak_epochs(history, metric, "val", rules)
    cost = stopping_cost(history, selected_epoch, metric, rules)
    spread = int(peaks.peak_epoch.max() - peaks.peak_epoch.min())
    need = _spread_threshold(min_spread, peaks.eval_interval, rules)
    worst = cost.loc[cost.cost.idxmax()] if cost.cost.notna().any() else None
    top = float(worst.cost) if worst is not None else np.nan
    lines = _status_lines(peaks, metric, rules) + [
        f"- Stopping all domains at epoch {selected_epoch} cost on average {_signed(cost.cost.mean())} "
        f"test {metric} against each domain's own peak epoch; the largest cost was {_signed(top)}"
        + (f" ({worst.domain})." if worst is not None else ".")]
    costly = bool(top > rules.cost_tolerance + _EPS)
    price = f"up to {_num(top)} test {metric} (more than {_num(rules.cost_tolerance)})"
    cheap = f"at most {_signed(top)} test {metric} (not more than {_num(rules.cost_tolerance)})"
    apart = f"{spread} epochs apart, " + ("at least" if spread >= need else "fewer than")
    span = f"peaks {apart} the {need} that count as different"
    if peaks.still_improving.all():
        verdict = ("Every domain was still improving at its last evaluation: this run was too "
                   "short to test over-fitting" + (f", and the selected epoch {selected_epoch} "
                                                    f"still cost {price}." if costly else "."))
    elif spread >= need and costly:
        verdict = (f"In this run the domains did **not** agree on when to stop ({span}), "
                   f"and one shared stopping point cost {price}.")
    elif spread >= need:
        verdict = (f"In this run the domains peaked at different epochs ({span}), but one shared "
                   f"stopping point cost {cheap}: the disagreement is visible, its price is **not**.")
    elif costly:
        verdict = (f"In this run the domains peaked close together ({span}), yet stopping all of "
                   f"them at epoch {selected_epoch} cost {price}: the selected epoch, not a "
                   f"disagreement between domains, is what costs here.")
    else:
        verdict = (f"In this run the domains peaked together ({span}) and one shared stopping "
                   f"point cost {cheap}: one stopping point suited them all.")
    return "\n".join(lines) + "\n\n" + verdict


# ---------------------------------------------------------------- comparisons

def label(results: pd.DataFrame) -> np.ndarray:
    """'specialist', 'naive', 'distill:kl', … — one name per model/method pair."""
    return np.where(results.model == "distill", "distill:" + results.method.astype(str),
                    results.model)


def summary(results: pd.DataFrame, metric: str = "recall@1") -> pd.DataFrame:
    """'mean ± std' over seeds (sample std; just the mean for one seed): one row per model (in
    recorded order), one column per domain."""
    r = results[results.metric == metric].assign(model_name=lambda d: label(d))
    g = r.groupby(["model_name", "domain"], sort=False).value
    table = g.agg(_mean_std).unstack("domain").fillna("–")
    table = table.reindex(index=list(dict.fromkeys(r.model_name)),
                          columns=list(dict.fromkeys(r.domain)))
    return table.rename_axis(columns=f"{metric} (mean ± std over {_seeds(g.count())})")


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


def _outcome(d: np.ndarray, rules: Rules) -> str:
    if d.mean() > rules.min_gain + _EPS and _consistent(d, rules):
        return "win"
    if -d.mean() > rules.min_gain + _EPS and _consistent(-d, rules):
        return "loss"
    return "tie" if abs(d.mean()) <= rules.min_gain + _EPS else "mixed"


def compare(results: pd.DataFrame, a: str, b: str, metric: str = "recall@1",
            domains: list[str] | None = None, rules: Rules = Rules()) -> pd.DataFrame:
    """Per domain (rows paired by seed; `domains` default: all but merged): mean of a and of b,
    `diff` (mean paired a - b), `n` seeds, `std` (of the differences), `lower` (one-sided
    confidence bound), `positive` (seeds with a > b), `outcome` (win/loss/tie/mixed for a), `win`.
    Model names as in `label`; KeyError when a or b has no `metric` rows."""
    r = results[results.metric == metric].assign(model_name=lambda d: label(d))
    missing = [m for m in (a, b) if m not in set(r.model_name)]
    if missing:
        raise KeyError(f"no {metric} rows for {missing}; present: {sorted(set(r.model_name))}")
    if domains is None:
        domains = [d for d in dict.fromkeys(r.domain) if not str(d).startswith("merged")]
    wide = (r[r.model_name.isin([a, b])]
            .pivot_table(index=["domain", "seed"], columns="model_name", values="value", aggfunc="mean"))
    wide = wide.reindex(columns=[a, b]).dropna()
    rows = []
    for domain in domains:
        if domain not in wide.index.get_level_values("domain"):
            continue
        w = wide.loc[domain]
        d = (w[a] - w[b]).to_numpy(float)
        rows.append({"domain": domain, a: w[a].mean(), b: w[b].mean(), "diff": d.mean(), "n": len(d),
                     "std": d.std(ddof=1) if len(d) > 1 else np.nan,
                     "lower": _lower_bound(d, rules.confidence), "positive": int((d > 0).sum()),
                     "outcome": _outcome(d, rules)})
    columns = ["domain", a, b, "diff", "n", "std", "lower", "positive", "outcome"]
    out = pd.DataFrame(rows, columns=columns).set_index("domain")
    return out.assign(win=out.outcome == "win")


def beats_rule(rules: Rules = Rules(), n_seeds: int = 1) -> str:
    """The beats rule in words, for `n_seeds` paired seeds."""
    if n_seeds <= rules.all_positive_max_seeds:
        every = "positive on every seed"
    else:
        every = f"the one-sided {_pct(rules.confidence)} t lower confidence bound of the mean gain > 0"
    return (f"wins on a majority of domains: mean paired gain > {_num(rules.min_gain)} and {every} "
            f"(a mean within ±{_num(rules.min_gain)} is a tie)")


def beats(cmp: pd.DataFrame) -> bool:
    """Whether a `compare` table's model a wins more than half of its domains."""
    return _majority(list(cmp.win))


def wins_sentence(cmp: pd.DataFrame, a: str, b: str, metric: str = "recall@1") -> str:
    """'distill:kl beat naive on 2 of 3 domains in recall@1 (mean paired difference over 3 seeds:
    A +0.041 ± 0.010 (win), B +0.004 ± 0.002 (tie), C -0.030 ± 0.020 (loss))'."""
    if cmp.empty:
        return f"{a} and {b} have no paired {metric} results"
    parts = ", ".join(
        f"{d} {_signed(r['diff'])}" + (f" ± {_num(r['std'])}" if r["n"] > 1 else "")
        + f" ({'mixed across seeds' if r['outcome'] == 'mixed' else r['outcome']})"
        for d, r in cmp.iterrows())
    return (f"{a} beat {b} on {int(cmp.win.sum())} of {len(cmp)} domains in {metric} "
            f"(mean paired difference over {_seeds(cmp.n)}: {parts})")


def comparison_sentence(results: pd.DataFrame, a: str, b: str, metric: str = "recall@1",
                        domains: list[str] | None = None, rules: Rules = Rules()) -> str:
    """One Markdown sentence: wins per domain with the paired differences, the rule, and
    whether a beats b by it (the same rule `claims` uses)."""
    cmp = compare(results, a, b, metric, domains, rules)
    held = beats(cmp)
    rule = beats_rule(rules, int(cmp.n.max()) if len(cmp) else 1)
    return (f"{wins_sentence(cmp, a, b, metric)}. By the rule ({rule}), {a} "
            + ("**beats**" if held else "does **not** beat") + f" {b}.")


# ---------------------------------------------------------------- claims

def _row(claim: str, measured: str, rule: str, holds: bool) -> dict:
    return {"claim": claim, "measured": measured, "rule": rule, "holds": bool(holds)}


def _beats_claim(claim, results, a, b, metric, domains, rules) -> dict:
    try:
        cmp = compare(results, a, b, metric, domains, rules)
    except KeyError:
        return _row(claim, f"not measured: no {metric} rows for {a} and {b}", beats_rule(rules), False)
    rule = beats_rule(rules, int(cmp.n.max()) if len(cmp) else 1)
    return _row(claim, wins_sentence(cmp, a, b, metric), rule, beats(cmp))


def _close_claim(results, metric, domains, rules) -> dict:
    claim = "the distilled student comes close to the specialists"
    rule = (f"the mean over domains of the seed-mean gap (kl - specialist) > "
            f"{_signed(-rules.close_gap)}")
    try:
        cmp = compare(results, "distill:kl", "specialist", metric, domains, rules)
    except KeyError:
        return _row(claim, f"not measured: no {metric} rows for distill:kl and specialist", rule, False)
    gap = cmp["diff"].mean()
    measured = (f"mean gap to the specialists over {_seeds(cmp.n)}: {_signed(gap)} ("
                + ", ".join(f"{d}: {_signed(v)}" for d, v in cmp["diff"].items()) + ")")
    return _row(claim, measured, rule, len(cmp) > 0 and gap > -rules.close_gap + _EPS)


def _spread_claim(named_peaks, metric, min_spread, rules) -> dict:
    parts, flags = [], []
    for name, t in named_peaks:
        spread = int(t.peak_epoch.max() - t.peak_epoch.min())
        flags.append(spread >= min_spread)
        parts.append(f"{name}: " + ", ".join(f"{r.domain} {r.peak_epoch}" for r in t.itertuples())
                     + f" (spread {spread})")
    return _row("in naive fusion, domains peak at different epochs",
                f"validation {metric} peak epochs, {'; '.join(parts)}: a spread of at least "
                f"{min_spread} epochs on {_of_seeds(sum(flags), len(flags))}",
                f"peak = last validation epoch within {_num(rules.tie_tolerance)} of the domain's maximum; "
                f"the peaks span at least {min_spread} epochs on a majority of seeds", _majority(flags))


def _rising_while(t: pd.DataFrame, over) -> pd.DataFrame:
    """The domains (other than `over`) that had not yet reached their peak when `over` had
    clearly over-fitted: their first epoch within the tie tolerance of their maximum is later."""
    return t[(t.domain != over.domain) & (t.first_peak_epoch > over.overfit_epoch)]


def _overfit_claim(named_peaks, metric, rules) -> dict:
    parts, flags = [], []
    for name, t in named_peaks:
        pairs = [(o, _rising_while(t, o)) for o in t[t.overfits].itertuples()]
        flags.append(any(len(r) for _, r in pairs))
        said = [f"{o.domain} fell below its peak (epoch {o.peak_epoch}) by epoch {int(o.overfit_epoch)} "
                f"({_signed(-o.drop_after_peak)} by the end) while "
                + (", ".join(f"{r.domain} (peak {r.first_peak_epoch})" for r in rising.itertuples())
                   or "no other domain") + " still improved" for o, rising in pairs]
        parts.append(f"{name}: " + ("; ".join(said) if said else "no domain over-fitted"))
    if named_peaks and all(t.still_improving.all() for _, t in named_peaks):
        measured = ("every domain was still improving at its last evaluation on every seed: the run "
                    "was too short to test over-fitting")
    else:
        measured = f"validation {metric}, {'; '.join(parts)}: on {_of_seeds(sum(flags), len(flags))}"
    rule = (f"a domain over-fits when it ends more than {_num(rules.overfit_drop)} below its peak; "
            f"another still improves while it does when that one first comes within "
            f"{_num(rules.tie_tolerance)} of its own maximum only after the first domain has fallen "
            f"more than {_num(rules.overfit_drop)} below its peak; on a majority of seeds")
    return _row("in naive fusion, some domains over-fit while others still improve", measured, rule,
                _majority(flags))


def _cost_claim(named_costs, metric, rules) -> dict:
    parts, flags = [], []
    for name, t in named_costs:
        worst = t.loc[t.cost.idxmax()] if t.cost.notna().any() else None
        top = float(worst.cost) if worst is not None else np.nan
        flags.append(bool(top > rules.cost_tolerance + _EPS))
        parts.append(f"{name}: {_signed(top)}" + (f" ({worst.domain})" if worst is not None else ""))
    return _row("one shared stopping point costs some domain",
                f"largest test {metric} lost by stopping all domains at the selected epoch instead of "
                f"each at its own peak, {'; '.join(parts)}",
                f"the largest cost (test at the domain's own peak epoch - test at the shared epoch) > "
                f"{_num(rules.cost_tolerance)} on a majority of seeds", _majority(flags))


def claims(results: pd.DataFrame, peak_tables: Sequence[pd.DataFrame] | Mapping,
           cost_tables: Sequence[pd.DataFrame] | Mapping, domains: list[str] | None = None,
           metric: str = "recall@1", rules: Rules = Rules(), min_spread: int | None = None
           ) -> pd.DataFrame:
    """The claims of SPEC §1: columns `claim`, `measured`, `rule`, `holds`.

    `peak_tables` / `cost_tables`: `peak_epochs` / `stopping_cost` of the naive model, one per
    seed (a list, or a {seed: table} mapping to name the seeds), computed with the same `rules`.
    `min_spread` (epochs) defaults to `rules.min_spread_evals` evaluation intervals."""
    peaks, costs = _named(peak_tables), _named(cost_tables)
    need = _spread_threshold(min_spread, [t.eval_interval.max() for _, t in peaks
                                          if "eval_interval" in t], rules)
    rows = [_beats_claim("naive fusion falls short of the specialists", results, "specialist", "naive",
                         metric, domains, rules),
            _spread_claim(peaks, metric, need, rules),
            _overfit_claim(peaks, metric, rules),
            _cost_claim(costs, metric, rules),
            _beats_claim("distilling the specialists beats naive fusion", results, "distill:kl", "naive",
                         metric, domains, rules),
            _close_claim(results, metric, domains, rules)]
    present = set(label(results[results.metric == metric]))
    for absolute in ("distill:distance_mse", "distill:embedding_mse"):
        if absolute in present:
            rows.append(_beats_claim(f"distribution distillation (kl) beats {absolute.split(':')[1]}",
                                     results, "distill:kl", absolute, metric, domains, rules))
    return pd.DataFrame(rows, columns=["claim", "measured", "rule", "holds"])


def claims_sentence(verdict: pd.DataFrame) -> str:
    """'N of M claims held: <claim> (held); <claim> (did not hold); …'."""
    held = int(verdict.holds.sum())
    return (f"{held} of {len(verdict)} claims held: "
            + "; ".join(f"{r.claim} ({'held' if r.holds else 'did not hold'})"
                        for r in verdict.itertuples()) + ".")


def distillation_summary(table: pd.DataFrame, methods: list[str], domains: list[str] | None = None,
                         metric: str = "recall@1", rules: Rules = Rules()) -> str:
    """Markdown for notebook 03: kl against each other loss (the beats rule), the kl student's
    gap to the specialists, and the ranking on the merged index."""
    lines = []
    if "kl" in methods:
        for other in [m for m in methods if m != "kl"]:
            lines.append("- " + comparison_sentence(table, "distill:kl", f"distill:{other}", metric,
                                                    domains, rules))
        close = _close_claim(table, metric, domains, rules)
        lines.append(f"- Gap of the `kl` student to the specialists: {close['measured']}; "
                     + ("close" if close["holds"] else "**not** close")
                     + f" by the rule ({close['rule']}).")
    merged = table[(table.domain == "merged") & (table.metric == metric)]
    if len(merged):
        ranked = merged.assign(model_name=label(merged)).groupby("model_name", sort=False).value
        order = ranked.mean().sort_values(ascending=False, kind="stable").index
        lines.append(f"- Merged index {metric}: "
                     + ", ".join(f"{m} {_mean_std(ranked.get_group(m))}" for m in order) + ".")
    return "\n".join(lines)


# ---------------------------------------------------------------- ablations (notebook 05)

def _sweep(table: pd.DataFrame, knob: str, metric: str) -> pd.DataFrame:
    t = table[(table.metric == metric) & ~table.domain.astype(str).str.startswith("merged")]
    return t.assign(**{knob: t[knob].map(setting_label)})


def ablation_table(table: pd.DataFrame, knob: str, values: list, metric: str = "recall@1"
                   ) -> pd.DataFrame:
    """Per setting of `knob` (rows in the order of `values`): per domain 'mean ± std' over seeds
    and, in 'all domains', the per-seed mean over domains summarised the same way."""
    t = _sweep(table, knob, metric)
    order = [setting_label(v) for v in values]
    shown = (t.groupby([knob, "domain"], sort=False).value.agg(_mean_std).unstack("domain")
             .reindex(index=order, columns=list(dict.fromkeys(t.domain))))
    by_seed = t.groupby([knob, "seed"]).value.mean()
    shown["all domains"] = by_seed.groupby(level=knob).agg(_mean_std).reindex(order)
    n = t.groupby([knob, "domain"]).seed.nunique()
    return shown.fillna("–").rename_axis(index=knob, columns=f"{metric} (mean ± std over "
                                         f"{_seeds(n) if len(n) else '0 seeds'})")


def ablation_sentence(table: pd.DataFrame, knob: str, values: list, metric: str = "recall@1",
                      rules: Rules = Rules()) -> str:
    """'**knob** (metric, n seeds): averaged over domains, the best setting was … and the worst …,
    a range of …; best per domain: …' (ties go to the earlier setting in `values`)."""
    t = _sweep(table, knob, metric)
    if t.empty:
        return f"**{knob}**: no {metric} results to compare."
    order = [setting_label(v) for v in values]
    order += [v for v in dict.fromkeys(t[knob]) if v not in order]
    average = t.groupby([knob, "seed"]).value.mean().groupby(level=knob).mean().reindex(order).dropna()
    best, worst = average.idxmax(), average.idxmin()
    per_domain = t.groupby(["domain", knob], sort=False).value.mean()
    best_per = {d: s.droplevel(0).reindex(order).idxmax() for d, s in per_domain.groupby(level=0, sort=False)}
    span = average.max() - average.min()
    text = (f"**{knob}** ({metric}, {_seeds(t.groupby(knob).seed.nunique())}): averaged over domains, "
            f"the best setting was {best} ({_num(average[best])}) and the worst {worst} "
            f"({_num(average[worst])}), a range of {_num(span)}")
    if span <= rules.min_gain + _EPS:
        text += f" (within {_num(rules.min_gain)}: no setting is clearly better)"
    return text + "; best per domain: " + ", ".join(f"{d} {v}" for d, v in best_per.items()) + "."


def ablation_rows(table: pd.DataFrame, knob: str, notebook: str) -> pd.DataFrame:
    """The sweep's rows as result rows (`RESULT_COLUMNS`), method '<method>[<knob>=<setting>]'
    (e.g. 'kl[temperature=0.05]' for the knob 'kl.temperature': a parameter of the row's own loss
    is named without the loss), so notebook 05's results keep which setting each came from."""
    model = table["model"] if "model" in table else pd.Series("distill", index=table.index)
    method = (table["method"] if "method" in table else pd.Series("kl", index=table.index)).astype(str)
    names = [f"{m}[{knob.removeprefix(m + '.')}={setting_label(v)}]" for m, v in zip(method, table[knob])]
    out = pd.DataFrame({"notebook": notebook, "model": model, "method": names,
                        **{c: table[c] for c in RESULT_COLUMNS[3:]}}, index=table.index)
    return out[RESULT_COLUMNS].reset_index(drop=True)
