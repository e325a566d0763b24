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
  B wins the domain by the mirror rule. A mean difference within [min_gain], or smaller in size
  than the seed spread (the sample std over seeds of the paired differences; one seed has no
  spread), is a tie, never a win or a loss; anything else is "mixed". The claim holds when A
  wins more than half of the domains.
* **Collapsed** models (`collapsed`: mean validation Recall@1 below [collapse_ratio] x chance, or
  selected at epoch <= [collapse_epoch] of a run of at least [collapse_min_epochs]) are named
  with their reason and not compared: no win or loss for or against them.
* **Budgets** (`budget_table`): the batches of a domain are equal across models when the
  largest is at most [budget_tolerance] above the smallest; a model selected at the last epoch
  it trained is still improving ("train longer").
* **Close to the specialists**: the mean over domains of the seed-mean gap (kl - specialist) is
  above -[close_gap].
* Claims measured per seed hold when true on more than half of the seeds.

Spreads are sample standard deviations (ddof=1); with one seed no "±" is shown. Numbers in
sentences have fixed decimals, never "-0.000" and never scientific notation. Comparisons with a
threshold ignore float rounding below 1e-9 (0.51 - 0.50 is not "more than 0.01").
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from .io import RESULT_COLUMNS, slug

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
    budget_tolerance: the models' batches of a domain are equal when the largest is at most
        this fraction above the smallest [0.05].
    collapse_ratio: a model collapsed when its mean validation Recall@1 at the selected epoch is
        below this multiple of the chance Recall@1 [2.0] ...
    collapse_epoch: ... or when its selected epoch is at most this [2] ...
    collapse_min_epochs: ... in a run of at least this many epochs [10].
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
    collapse_ratio: float = 2.0
    collapse_epoch: int = 2
    collapse_min_epochs: int = 10
    favour_margin: int = 2

    def __post_init__(self):
        if not 0 < self.confidence < 1:
            raise ValueError(f"Rules.confidence must be in (0, 1), got {self.confidence}")
        if min(self.min_gain, self.tie_tolerance, self.overfit_drop, self.cost_tolerance,
               self.close_gap, self.budget_tolerance, self.collapse_ratio, self.collapse_epoch) < 0:
            raise ValueError("Rules: tolerances, collapse_ratio and collapse_epoch must be >= 0")
        if min(self.last_evals, self.all_positive_max_seeds, self.collapse_min_epochs,
               self.favour_margin) < 1 \
                or self.min_spread_evals < 0:
            raise ValueError("Rules: last_evals, all_positive_max_seeds, collapse_min_epochs and "
                             "favour_margin must be >= 1, min_spread_evals >= 0")
        if self.tie_tolerance > self.overfit_drop:
            raise ValueError("Rules: tie_tolerance must not exceed overfit_drop (a drop within a "
                             "tie cannot be over-fitting)")


# ---------------------------------------------------------------- formatting

def _rounded(x: float | None, digits: int) -> float | None:
    """`x` rounded to `digits` decimals, with -0.0 made 0.0; None for a missing or infinite value."""
    if x is None or not np.isfinite(x):
        return None
    return round(float(x), digits) + 0.0  # -0.0 + 0.0 == +0.0


def float_format(x: float) -> str:
    """How notebook tables show a float (``pd.set_option("display.float_format", ...)``): whole
    numbers without decimals, 3 fixed decimals from 0.01 on, and 2 significant digits below
    (a learning rate 0.0006, a probability 2.9e-10), never "-0.000" or "0.000e+00"."""
    if not np.isfinite(x):
        return str(x)
    if x == round(x) and abs(x) >= 1:
        return f"{x:.0f}"
    if abs(x) >= 0.01:
        return f"{x:.3f}"
    return "0" if x == 0 else f"{x:.2g}"


def _num(x: float, digits: int = 3) -> str:
    """Fixed decimals (rounded first, so never '-0.000' nor scientific notation), 'n/a' for NaN."""
    r = _rounded(x, digits)
    return "n/a" if r is None else f"{r:.{digits}f}"


def _signed(x: float, digits: int = 3) -> str:
    """Fixed decimals with a sign, '+0.000' for anything that rounds to zero."""
    r = _rounded(x, digits)
    return "n/a" if r is None else f"{r:+.{digits}f}"


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

def _start(profile) -> str:
    """How the network starts and what trains, e.g. 'an ImageNet-pretrained efficientnet_lite0 at
    64 px; the whole trunk is frozen and only the head trains'."""
    if not profile.weights:
        return f"a {profile.backbone} trained from scratch at {profile.image_size} px"
    frozen = ("the whole trunk is frozen and only the head trains" if profile.trainable_stages == 0
              else f"all but its last {profile.trainable_stages} stage(s) are frozen"
              if profile.trainable_stages > 0 else "all of it is fine-tuned")
    return f"an ImageNet-pretrained {profile.backbone} at {profile.image_size} px; {frozen}"


def regime_summary(profile, sizes: pd.DataFrame) -> str:
    """Notebook 01: this run's regime in words, from its settings and domain sizes (`sizes`:
    `Domain.summary()` rows). Says how the network starts, what trains, and how often each
    domain's training images are revisited per epoch -- the reason small domains over-fit first."""
    t = sizes.set_index("domain").train_images.astype(int)
    batch = profile.p * profile.k
    start = _start(profile) + (" (the frozen part's outputs are computed once and cached)"
                               if profile.weights and profile.trainable_stages >= 0
                               and profile.cache_features else "")
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
        verdict = (f"Every domain was still improving at its last evaluation (a domain "
                   f"{_improving_rule(rules)}): this run was too short to test over-fitting"
                   + (f", and the selected epoch {selected_epoch} still cost {price}." if costly
                      else "."))
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


# ---------------------------------------------------------------- budgets and collapsed runs

TRAIN_LONGER = "still improving: train longer"
NO_BATCHES = "batches not recorded for every epoch (trained before they were)"


def _epochs_trained(history: pd.DataFrame) -> int:
    return int(history.epoch.max()) if len(history) else 0


def still_improving(history: pd.DataFrame, best_epoch: int) -> bool:
    """The model was selected at the last epoch it trained: its validation score was still
    rising when training stopped, so more epochs may improve it."""
    return len(history) > 0 and int(best_epoch) >= _epochs_trained(history)


def _budget_rows(name: str, result) -> list[dict]:
    h, best = result.history, int(result.best_epoch)
    epochs = _epochs_trained(h)
    counts = h[(h.split == "train") & (h.metric == "batches")]
    flag = TRAIN_LONGER if still_improving(h, best) else ""
    rows = []
    for domain in dict.fromkeys(h.domain):
        g = counts[counts.domain == domain]
        known = g.epoch.nunique() == epochs
        rows.append({"model": name, "domain": domain, "epochs": epochs, "selected_epoch": best,
                     "batches": g.value.sum() if known else np.nan,
                     "batches_to_selected": g[g.epoch <= best].value.sum() if known else np.nan,
                     "flag": flag, "note": "" if known else NO_BATCHES})
    return rows


def budget_table(models: Mapping, flags: Mapping[str, str] | None = None) -> pd.DataFrame:
    """What each model trained on, from its history: {label: TrainResult} (anything with
    `history` and `best_epoch`; labels start with the model's kind, e.g. 'specialist:orl',
    'naive', 'distill:kl') -> one row per (model, domain): `epochs` trained, `selected_epoch`,
    `batches` of the domain over all epochs and `batches_to_selected` up to the selected epoch
    (NaN, with a `note`, for a history without the per-epoch "batches" rows), and `flag`
    ("still improving: train longer" when `still_improving`; "collapsed: <reason>" for the
    models in `flags`, {label: reason} from `collapse_flags`)."""
    rows = [r for name, result in models.items() for r in _budget_rows(name, result)]
    table = pd.DataFrame(rows, columns=["model", "domain", "epochs", "selected_epoch", "batches",
                                        "batches_to_selected", "flag", "note"])
    for name, reason in (flags or {}).items():
        rows = table.model == name
        table.loc[rows, "flag"] = table.flag[rows].map(
            lambda f, r=reason: "; ".join(x for x in (f, f"collapsed: {r}") if x))
    return table


def _budget_spans(table: pd.DataFrame, rules: Rules) -> pd.DataFrame:
    """Per domain with the batch counts of at least two models: `low`, `high`, `equal`."""
    g = table.dropna(subset=["batches"]).groupby("domain", sort=False).batches
    spans = pd.DataFrame({"low": g.min(), "high": g.max(), "models": g.size()})
    spans = spans[spans.models > 1]
    return spans.assign(equal=spans.high - spans.low <= rules.budget_tolerance * spans.high + _EPS)


def _flagged(table: pd.DataFrame, column: str, value: str) -> list[str]:
    return list(dict.fromkeys(table.model[table[column] == value]))


def budget_sentence(table: pd.DataFrame, rules: Rules = Rules()) -> str:
    """Whether every domain got the same batches (over all epochs trained) from every model that
    trained on it, within [budget_tolerance], and which models were still improving."""
    spans, rule = _budget_spans(table, rules), f"within {_pct(rules.budget_tolerance)}"
    unequal = spans[~spans.equal]
    if spans.empty:
        text = "No domain has the batch counts of two models to compare."
    elif unequal.empty:
        text = (f"Every model saw the same number of batches of each domain ({rule}): "
                + ", ".join(f"{d} {_num(r.high, 0)}" for d, r in spans.iterrows()) + ".")
    else:
        known = table.dropna(subset=["batches"])
        text = (f"The budgets differ: batches of each domain are **not** equal across models "
                f"({rule}) on " + "; ".join(
                    f"{d} (" + ", ".join(f"{r.model} {_num(r.batches, 0)}"
                                         for r in known[known.domain == d].itertuples()) + ")"
                    for d in unequal.index) + ".")
    missing = _flagged(table, "note", NO_BATCHES)
    text += f" Not recorded for {', '.join(missing)}." if missing else ""
    still = _flagged(table, "flag", TRAIN_LONGER)
    return text + (f" Selected at their last epoch ({TRAIN_LONGER}): {', '.join(still)}." if still
                   else " No model was selected at its last epoch.")


def chance_recall_at_1(labels) -> float:
    """Expected leave-one-out Recall@1 of a random ranking: the chance that a random other item
    shares the query's class, sum_c n_c (n_c - 1) / (N (N - 1))."""
    _, n = np.unique(np.asarray(labels), return_counts=True)
    total = int(n.sum())
    return float((n * (n - 1)).sum() / (total * (total - 1))) if total > 1 else np.nan


def collapsed(history: pd.DataFrame, best_epoch: int, epochs: int,
              chance: Mapping[str, float] | None = None, rules: Rules = Rules(),
              metric: str = "recall@1") -> str | None:
    """Why a model counts as collapsed, or None: near chance (mean validation `metric` over
    domains at the selected epoch below [collapse_ratio] x the mean over domains of `chance`,
    when given) and/or selected early (best epoch <= [collapse_epoch] of a run of at least
    [collapse_min_epochs] epochs)."""
    reasons = []
    if chance:
        at = history[(history.split == "val") & (history.metric == metric)
                     & (history.epoch == best_epoch)].value.mean()
        base = float(np.mean(list(chance.values())))
        if at < rules.collapse_ratio * base - _EPS:
            reasons.append(f"near chance: mean val {metric} {_num(at)} vs chance {_num(base)}")
    if epochs >= rules.collapse_min_epochs and best_epoch <= rules.collapse_epoch:
        reasons.append(f"best epoch {best_epoch} of {epochs}")
    return "; ".join(reasons) or None


def collapse_flags(models: Mapping, domains: Mapping, rules: Rules = Rules()) -> dict[str, str]:
    """{label: reason} of the `models` ({label: TrainResult}) that `collapsed`, with chance taken
    from the validation labels of `domains` ({name: Domain}, those the models trained on)."""
    chance = {name: chance_recall_at_1(d.splits["val"].labels) for name, d in domains.items()}
    flags = {}
    for name, result in models.items():
        reason = collapsed(result.history, result.best_epoch, _epochs_trained(result.history),
                           chance, rules)
        if reason:
            flags[name] = reason
    return flags


def tuning_table(tunings: Sequence) -> pd.DataFrame:
    """The tuning points of several methods (`RunFolder.tuning` results) in one table, one row per
    (method, grid point), the chosen point marked."""
    return pd.concat([t.table.assign(method=t.method) for t in tunings], ignore_index=True
                     ).set_index("method")


def gallery_sentence(domains: Mapping) -> str:
    """Per domain, the classes of the validation and test splits and the Recall@1 of a random
    ranking on each (`chance_recall_at_1`): why the splits score differently without any
    over-fitting."""
    parts = []
    for name, d in domains.items():
        val, test = d.splits["val"], d.splits["test"]
        parts.append(f"{name}: validation {val.num_classes} classes (chance Recall@1 "
                     f"{_num(chance_recall_at_1(val.labels))}), test {test.num_classes} "
                     f"(chance {_num(chance_recall_at_1(test.labels))})")
    return ("Classes per split, and the Recall@1 a random ranking would get: " + "; ".join(parts)
            + ". Where the test split has more classes than validation, its queries meet more "
            "distractors, so lower test numbers are expected and are not a sign of over-fitting.")


def _not_compared(a: str, b: str, flags: Mapping[str, str] | None) -> str | None:
    """'distill:darkrank collapsed (best epoch 2 of 30): not compared with distill:kl' when a or
    b is flagged in `flags` ({label: reason}, see `collapsed`), else None."""
    bad = [m for m in (a, b) if flags and m in flags]
    if not bad:
        return None
    other = [m for m in (a, b) if m not in bad]
    return (" and ".join(f"{m} collapsed ({flags[m]})" for m in bad) + ": not compared"
            + (f" with {other[0]}" if other else ""))


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
    return table.rename_axis(columns=_over_seeds(metric, g.count()))


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
    return bool(mean <= rules.min_gain + _EPS or (len(d) > 1 and mean < d.std(ddof=1) - _EPS))


def _outcome(d: np.ndarray, rules: Rules) -> str:
    if _is_tie(d, rules):
        return "tie"
    if d.mean() > 0 and _consistent(d, rules):
        return "win"
    if d.mean() < 0 and _consistent(-d, rules):
        return "loss"
    return "mixed"


def compare(results: pd.DataFrame, a: str, b: str, metric: str = "recall@1",
            domains: list[str] | None = None, rules: Rules = Rules(),
            flags: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Per domain (rows paired by seed; `domains` default: all but merged): mean of a and of b,
    `diff` (mean paired a - b), `n` seeds, `std` (of the differences), `lower` (one-sided
    confidence bound), `positive` (seeds with a > b), `outcome` (win/loss/tie/mixed for a, or
    "not compared" when a or b is in `flags`, {label: reason} of collapsed models), `win`.
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
    rows, skip = [], _not_compared(a, b, flags) is not None
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


def beats_rule(rules: Rules = Rules(), n_seeds: int = 1) -> str:
    """The beats rule in words, for `n_seeds` paired seeds."""
    return f"wins on a majority of domains: {win_rule(rules, n_seeds)}"


def win_rule(rules: Rules = Rules(), n_seeds: int = 1) -> str:
    """When one comparison (one domain, one setting) is a win, in words (`_outcome`)."""
    if n_seeds <= rules.all_positive_max_seeds:
        every = "positive on every seed"
    else:
        every = f"the one-sided {_pct(rules.confidence)} t lower confidence bound of the mean gain > 0"
    tie = f"a mean within ±{_num(rules.min_gain)}"
    tie = (f"{tie} is a tie; one seed has no spread" if n_seeds <= 1 else
           f"{tie}, or smaller in size than the std over seeds of the paired differences, is a tie")
    return f"mean paired gain > {_num(rules.min_gain)} and {every} ({tie})"


def beats(cmp: pd.DataFrame) -> bool:
    """Whether a `compare` table's model a wins more than half of its domains."""
    return _majority(list(cmp.win))


def wins_sentence(cmp: pd.DataFrame, a: str, b: str, metric: str = "recall@1",
                  flags: Mapping[str, str] | None = None) -> str:
    """'distill:kl beat naive on 2 of 3 domains in recall@1 (mean paired difference over 3 seeds:
    A +0.041 ± 0.010 (win), B +0.004 ± 0.002 (tie), C -0.030 ± 0.020 (loss))', or 'distill:kl
    collapsed (best epoch 2 of 30): not compared with naive' when a or b is in `flags`."""
    if (skip := _not_compared(a, b, flags)) is not None:
        return skip
    if cmp.empty:
        return f"{a} and {b} have no paired {metric} results"
    parts = ", ".join(
        f"{d} {_signed(r['diff'])}" + (f" ± {_num(r['std'])}" if r["n"] > 1 else "")
        + f" ({'mixed across seeds' if r['outcome'] == 'mixed' else r['outcome']})"
        for d, r in cmp.iterrows())
    return (f"{a} beat {b} on {int(cmp.win.sum())} of {len(cmp)} domains in {metric} "
            f"(mean paired difference over {_seeds(cmp.n)}: {parts})")


def comparison_sentence(results: pd.DataFrame, a: str, b: str, metric: str = "recall@1",
                        domains: list[str] | None = None, rules: Rules = Rules(),
                        flags: Mapping[str, str] | None = None) -> str:
    """One Markdown sentence: wins per domain with the paired differences, the rule, and
    whether a beats b by it (the same rule `claims` uses); a collapsed model (in `flags`) is
    named and not compared."""
    if (skip := _not_compared(a, b, flags)) is not None:
        return skip + "."
    cmp = compare(results, a, b, metric, domains, rules)
    held = beats(cmp)
    rule = beats_rule(rules, int(cmp.n.max()) if len(cmp) else 1)
    return (f"{wins_sentence(cmp, a, b, metric)}. By the rule ({rule}), {a} "
            + ("**beats**" if held else "does **not** beat") + f" {b}.")


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


def _row(claim: str, measured: str, rule: str, holds: bool) -> dict:
    return {"claim": claim, "measured": measured, "rule": rule, "holds": bool(holds)}


def _beats_claim(claim, results, a, b, metric, domains, rules, flags=None) -> dict:
    try:
        cmp = compare(results, a, b, metric, domains, rules, flags)
    except KeyError:
        return _row(claim, f"not measured: no {metric} rows for {a} and {b}", beats_rule(rules), False)
    rule = beats_rule(rules, int(cmp.n.max()) if len(cmp) else 1)
    return _row(claim, wins_sentence(cmp, a, b, metric, flags), rule, beats(cmp))


def _close_claim(results, metric, domains, rules, flags=None) -> dict:
    claim = CLOSE
    rule = (f"the mean over domains of the seed-mean gap (kl - specialist) > "
            f"{_signed(-rules.close_gap)}")
    if (skip := _not_compared("distill:kl", "specialist", flags)) is not None:
        return _row(claim, skip, rule, False)
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
    return _row(PEAKS_DIFFER,
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
    return _row(OVERFITS, measured, rule, _majority(flags))


def _cost_claim(named_costs, metric, rules) -> dict:
    parts, flags = [], []
    for name, t in named_costs:
        worst = t.loc[t.cost.idxmax()] if t.cost.notna().any() else None
        top = float(worst.cost) if worst is not None else np.nan
        flags.append(bool(top > rules.cost_tolerance + _EPS))
        parts.append(f"{name}: {_signed(top)}" + (f" ({worst.domain})" if worst is not None else ""))
    return _row(STOP_COSTS,
                f"largest test {metric} lost by stopping all domains at the selected epoch instead of "
                f"each at its own peak, {'; '.join(parts)}",
                f"the largest cost (test at the domain's own peak epoch - test at the shared epoch) > "
                f"{_num(rules.cost_tolerance)} on a majority of seeds", _majority(flags))


def claims(results: pd.DataFrame, peak_tables: Sequence[pd.DataFrame] | Mapping,
           cost_tables: Sequence[pd.DataFrame] | Mapping, domains: list[str] | None = None,
           metric: str = "recall@1", rules: Rules = Rules(), min_spread: int | None = None,
           flags: Mapping[str, str] | None = None) -> pd.DataFrame:
    """The claims of SPEC §1: columns `claim`, `measured`, `rule`, `holds`.

    `peak_tables` / `cost_tables`: `peak_epochs` / `stopping_cost` of the naive model, one per
    seed (a list, or a {seed: table} mapping to name the seeds), computed with the same `rules`.
    `min_spread` (epochs) defaults to `rules.min_spread_evals` evaluation intervals. A model in
    `flags` ({label: reason}, see `collapsed`) is not compared: its claims do not hold."""
    peaks, costs = _named(peak_tables), _named(cost_tables)
    need = _spread_threshold(min_spread, [t.eval_interval.max() for _, t in peaks
                                          if "eval_interval" in t], rules)
    rows = [_beats_claim(FALLS_SHORT, results, "specialist", "naive", metric, domains, rules, flags),
            _spread_claim(peaks, metric, need, rules),
            _overfit_claim(peaks, metric, rules),
            _cost_claim(costs, metric, rules),
            _beats_claim(DISTILL_BEATS, results, "distill:kl", "naive", metric, domains, rules, flags),
            _close_claim(results, metric, domains, rules, flags)]
    present = set(label(results[results.metric == metric]))
    for absolute in ("distill:distance_mse", "distill:embedding_mse"):
        if absolute in present:
            rows.append(_beats_claim(KL_BEATS.format(absolute.split(":")[1]), results, "distill:kl",
                                     absolute, metric, domains, rules, flags))
    return pd.DataFrame(rows, columns=["claim", "measured", "rule", "holds"])


def claims_sentence(verdict: pd.DataFrame) -> str:
    """'N of M claims held: <claim> (held); <claim> (did not hold); …'."""
    held = int(verdict.holds.sum())
    return (f"{held} of {len(verdict)} claims held: "
            + "; ".join(f"{r.claim} ({'held' if r.holds else 'did not hold'})"
                        for r in verdict.itertuples()) + ".")


def _against_naive(table, students, metric, domains, rules, flags) -> list[str]:
    """Each student against naive fusion, the reference (or why it cannot be)."""
    if "naive" not in set(label(table[table.metric == metric])):
        return [f"- Naive fusion (the reference): no naive {metric} rows in this table, so no "
                f"student is compared with it."]
    return ["- " + comparison_sentence(table, s, "naive", metric, domains, rules, flags)
            for s in students]


def _merged_line(table, metric, flags) -> list[str]:
    merged = table[(table.domain == "merged") & (table.metric == metric)]
    if merged.empty:
        return []
    ranked = merged.assign(model_name=label(merged)).groupby("model_name", sort=False).value
    order = ranked.mean().sort_values(ascending=False, kind="stable").index
    return [f"- Merged index {metric}: " + ", ".join(
        f"{m} {_mean_std(ranked.get_group(m))}" + (f" (collapsed: {flags[m]})" if m in flags else "")
        for m in order) + "."]


def distillation_summary(table: pd.DataFrame, methods: list[str], domains: list[str] | None = None,
                         metric: str = "recall@1", rules: Rules = Rules(),
                         flags: Mapping[str, str] | None = None) -> str:
    """Markdown for notebook 03: kl against each other loss and every student against naive
    fusion (the reference; the beats rule), the kl student's gap to the specialists, and the
    ranking on the merged index. A model in `flags` ({label: reason}, see `collapsed`) is named
    with its reason and counted as neither a win nor a loss."""
    flags = dict(flags or {})
    students = [f"distill:{m}" for m in methods]
    lines = ["- " + comparison_sentence(table, "distill:kl", s, metric, domains, rules, flags)
             for s in students if "kl" in methods and s != "distill:kl"]
    lines += _against_naive(table, students, metric, domains, rules, flags)
    if "kl" in methods:
        close = _close_claim(table, metric, domains, rules, flags)
        verdict = ("" if "distill:kl" in flags else
                   f"; {'close' if close['holds'] else '**not** close'} by the rule ({close['rule']})")
        lines.append(f"- Gap of the `kl` student to the specialists: {close['measured']}{verdict}.")
    return "\n".join(lines + _merged_line(table, metric, flags))


# ---------------------------------------------------------------- ablations (notebook 05)

def _sweep(table: pd.DataFrame, knob: str, metric: str) -> pd.DataFrame:
    t = table[(table.metric == metric) & ~table.domain.astype(str).str.startswith("merged")]
    return t.assign(**{knob: t[knob].map(setting_label)})


def _over_seeds(metric: str, counts) -> str:
    """A table header: 'recall@1 (mean ± std over 3 seeds)'; with one seed in some cell, where
    no std is shown: 'recall@1 (mean over 1 seed)' or '… over 1–3 seeds; n = 1: the mean alone'."""
    if not len(counts):
        return f"{metric} (mean ± std over 0 seeds)"
    lo, hi = int(min(counts)), int(max(counts))
    if hi == 1:
        return f"{metric} (mean over {_seeds(counts)})"
    return f"{metric} (mean ± std over {_seeds(counts)}" + ("; n = 1: the mean alone)" if lo == 1 else ")")


def ablation_table(table: pd.DataFrame, knob: str, values: list, metric: str = "recall@1"
                   ) -> pd.DataFrame:
    """Per setting of `knob` (rows in the order of `values`): per domain 'mean ± std' over seeds
    (the mean alone for one seed) and, in 'all domains', the per-seed mean over domains
    summarised the same way; the header says over how many seeds."""
    t = _sweep(table, knob, metric)
    order = [setting_label(v) for v in values]
    shown = (t.groupby([knob, "domain"], sort=False).value.agg(_mean_std).unstack("domain")
             .reindex(index=order, columns=list(dict.fromkeys(t.domain))))
    by_seed = t.groupby([knob, "seed"]).value.mean()
    shown["all domains"] = by_seed.groupby(level=knob).agg(_mean_std).reindex(order)
    n = t.groupby([knob, "domain"]).seed.nunique()
    return shown.fillna("–").rename_axis(index=knob, columns=_over_seeds(metric, n))


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
    clear = span > rules.min_gain + _EPS
    text = (f"{metric} averaged over domains: " + (
        f"the best setting was {best} ({_num(average[best])}) and the worst {worst} "
        f"({_num(average[worst])}), a range of {_num(span)}" if clear else
        f"from {_num(average.min())} to {_num(average.max())}, a range of {_num(span)} (within "
        f"{_num(rules.min_gain)}: no setting is clearly better)")
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
    text = f"**{knob}** ({_seeds(t.groupby(knob).seed.nunique())}): " + " ".join(
        part[0] for part in parts.values())
    return text + (" " + _agreement(parts) if len(parts) == 2 else "")


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


def paper_comparison(verdict: pd.DataFrame) -> pd.DataFrame:
    """The paper's claims in words (its tables are not available here) beside this run's
    verdict: columns `claim`, `the paper (in words)`, `this run` (held / did not hold: measured)."""
    rows = [{"claim": r.claim, "the paper (in words)": PAPER.get(r.claim, ("(not a claim of the paper)",))[0],
             "this run": ("held: " if r.holds else "did not hold: ") + r.measured}
            for r in verdict.itertuples()]
    return pd.DataFrame(rows, columns=["claim", "the paper (in words)", "this run"])


def _kinds(claim: str) -> tuple[str, ...]:
    return PAPER.get(claim, ("", ("specialist", "naive", "distill")))[1]


def _of_kinds(budget: pd.DataFrame | None, kinds) -> pd.DataFrame:
    if budget is None:
        return pd.DataFrame(columns=["model", "domain", "batches", "flag", "note"])
    return budget[budget.model.astype(str).str.split(":").str[0].isin(kinds)]


def _length(row, kinds, profile, budget) -> tuple[str, dict] | None:
    still = _flagged(_of_kinds(budget, kinds), "flag", TRAIN_LONGER)
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
        spans = _budget_spans(_of_kinds(budget, kinds), rules)
        unequal = list(spans.index[~spans.equal])
        seen += [f"their batches of {', '.join(unequal)} differ by more than "
                 f"{_pct(rules.budget_tolerance)}"] if unequal else []
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
    return (f"this run starts from {_start(profile)}; another start (pretrained and fine-tuned, "
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
    seeds, methods = len(profile.seed_list()), len(profile.methods("final_methods"))
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
    return (f"about {_duration(total)} of training for {len(profile.seed_list())} seeds ("
            f"{' + '.join(terms)}; evaluation not included)")


def _command(change: dict, profile, run_overrides: Mapping) -> str:
    settings = {**{k: v for k, v in run_overrides.items() if k not in change}, **change}
    out = slug(f"{profile.name}-" + "-".join(f"{k}{v}" for k, v in change.items()))
    return f"ue run --profile {profile.name} --out runs/{out} --only 04 {_p_args(settings)}"


def _next_run(row, profile, seconds, budget, run_overrides, rules) -> list[str]:
    kinds = _kinds(row.claim)
    found = {"length": _length(row, kinds, profile, budget), "budget": _budget(kinds, profile, budget, rules),
             "regime": _regime(profile), "domain similarity": _similarity(kinds, profile)}
    found = {k: v for k, v in found.items() if v is not None}
    lines = [f"- **{row.claim}** did not hold. Candidate explanations (candidates, not established "
             f"by this run):"] + [f"  - *{k}*: {text}." for k, (text, _) in found.items()]
    main = next(((k, change) for k, (_, change) in found.items() if change), None)
    if main is None:
        return lines + ["  - No single setting tests these candidates."]
    return lines + [f"  - Main candidate: *{main[0]}*. Test it with "
                    f"`{_command(main[1], profile, run_overrides)}` "
                    f"(expected: {_expected_time(main[1], profile, seconds)})."]


def next_runs(verdict: pd.DataFrame, profile, seconds: Mapping[str, float],
              budget: pd.DataFrame | None = None, run_overrides: Mapping | None = None,
              rules: Rules = Rules()) -> str:
    """Markdown: for each claim of `claims` that did not hold, the candidate explanations this
    run points to -- length (a model still improving at its last epoch, from `budget`, a
    `budget_table`; or naive fusion too short to test over-fitting), budget (epochs or batches
    per domain differ between the models the claim compares), regime (`profile.weights`,
    `trainable_stages`) and domain similarity -- and one `ue run` command that tests the main
    one (the first with a command, in that order), with its expected training time from
    `seconds` ({kind: measured training seconds per model}, kinds specialist, naive, distill)
    scaled by the epochs ratio x the models notebook 04 trains (per seed, plus its tuning).
    `run_overrides` are this run's own `-p` settings, repeated in the command so that only the
    tested change differs."""
    failed = verdict[~verdict.holds.astype(bool)]
    if failed.empty:
        return "Every claim held: no next run is needed to explain a failure."
    lines = [f"{len(failed)} of {len(verdict)} claims did not hold."]
    for row in failed.itertuples():
        lines += _next_run(row, profile, seconds, budget, dict(run_overrides or {}), rules)
    return "\n".join(lines)


def ablation_plan(grid_that_ran: Mapping[str, list], profile, seconds_per_point: float,
                  seeds: Sequence[int]) -> str:
    """Markdown for notebook 05: which knobs and seeds ran, and for each knob of
    `STANDARD_KNOBS` that did not, the `ue sweep` command over notebook 03 that runs it on the
    same seeds, with its expected time (values x seeds x `seconds_per_point`, measured here)."""
    seeds = [int(s) for s in seeds]
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
    lines.append(f"- Not run yet (expected time: values x {n} x {per_point:.1f} s per point, the kl "
                 f"student's training time measured in this run x its {len(profile.tuning_points())} "
                 f"tuning point(s)):")
    for knob, values in todo.items():
        cmd = (f"ue sweep {SWEEP_NOTEBOOK} --profile {profile.name} "
               f"--out runs/{slug(f'{profile.name}-sweep-{knob}')} --seeds {' '.join(map(str, seeds))} "
               f"-p distill_methods kl -p {knob} {' '.join(_cli(v) for v in values)}")
        more = "; it retrains the specialists too, so more" if knob in RETRAINS_TEACHERS else ""
        lines.append(f"  - `{knob}`: `{cmd}` ({len(values)} values x {n} x {per_point:.1f} s: "
                     f"about {_duration(len(values) * len(seeds) * per_point)}{more}).")
    return "\n".join(lines)


# ---------------------------------------------------------------- compressed retrieval (notebook 06)

QUANT_INDEXES = ("float", "pq", "opq", "opqn")


def bits_of(rows: pd.DataFrame) -> pd.Series:
    """The bit budget of notebook 06's rows (their method, "<bits> bits")."""
    return rows.method.str.extract(r"(\d+) bits", expand=False).astype(int)


def quantization_table(rows: pd.DataFrame, metric: str = "map@all") -> pd.DataFrame:
    """'mean ± std' over seeds of `metric` per experiment and bit budget (rows) and index
    (columns: float, pq, opq, opqn, then any other such as the kl student's), from
    `ue_lib.runfolder.compressed_rows` rows."""
    r = rows[rows.metric == metric].assign(bits=lambda d: bits_of(d))
    g = r.groupby(["domain", "bits", "model"], sort=False).value
    table = g.agg(_mean_std).unstack("model").fillna("–")
    order = [m for m in QUANT_INDEXES if m in table.columns] + \
        [m for m in dict.fromkeys(r.model) if m not in QUANT_INDEXES]
    return table.reindex(columns=order).rename_axis(columns=_over_seeds(metric, g.count()))


def quantization_verdicts(rows: pd.DataFrame, a: str = "opqn", against=("pq", "opq"),
                          metric: str = "map@all", rules: Rules = Rules()) -> pd.DataFrame:
    """`a` against each index of `against`, per experiment and bit budget, paired by seed with
    the rule of `compare` (win / loss / tie / mixed): domain, bits, against, mean of each,
    diff, n, std, outcome."""
    r = rows.assign(bits=lambda d: bits_of(d))
    out = []
    for (domain, bits), part in r.groupby(["domain", "bits"], sort=False):
        for b in against:
            if not {a, b} <= set(part.model):
                continue
            c = compare(part, a, b, metric, [domain], rules)
            for row in c.reset_index().to_dict("records"):
                out.append({"domain": domain, "bits": bits, "against": b, a: row[a], "other": row[b],
                            "diff": row["diff"], "n": row["n"], "std": row["std"],
                            "outcome": row["outcome"]})
    return pd.DataFrame(out, columns=["domain", "bits", "against", a, "other", "diff", "n", "std",
                                      "outcome"])


def quantization_sentence(verdicts: pd.DataFrame, a: str = "opqn", metric: str = "map@all",
                          rules: Rules = Rules()) -> str:
    """Markdown: per faiss baseline, where `a` wins, loses and ties, with the rule."""
    if verdicts.empty:
        return f"No {metric} comparison of {a} ran."
    n = int(verdicts.n.max())
    lines = []
    for b, part in verdicts.groupby("against", sort=False):
        counts = part.outcome.value_counts()
        where = "; ".join(f"{o}: " + ", ".join(f"{r.domain} at {r.bits} bits ({_signed(r['diff'])})"
                                               for _, r in part[part.outcome == o].iterrows())
                          for o in ("win", "loss", "mixed") if counts.get(o, 0))
        lines.append(f"- **{a} vs {b}** ({metric}): {counts.get('win', 0)} win(s), "
                     f"{counts.get('loss', 0)} loss(es), {counts.get('tie', 0)} tie(s), "
                     f"{counts.get('mixed', 0)} mixed of {len(part)} settings"
                     + (f". {where}." if where else "."))
    lines.append(f"- Rule: a win is a {win_rule(rules, n)}; a loss the same the other way.")
    return "\n".join(lines)


def bits_needed(rows: pd.DataFrame, index: str, reference: str, metric: str = "recall@1",
                tolerance: float = 0.01) -> pd.DataFrame:
    """Per experiment: the fewest bits at which `index` stays within `tolerance` of
    `reference` (its float embedding) in `metric` — the mean over seeds of the paired drop
    reference − index at most `tolerance` — or None when no budget that ran does. Columns:
    domain, index, bits (or None), drop (at those bits, else at the largest budget)."""
    r = rows[rows.metric == metric].assign(bits=lambda d: bits_of(d))
    out = []
    for domain, part in r.groupby("domain", sort=False):
        if not {index, reference} <= set(part.model):
            continue
        wide = part.pivot_table(index=["bits", "seed"], columns="model", values="value")
        drop = (wide[reference] - wide[index]).groupby("bits").mean()
        ok = drop[drop <= tolerance + _EPS]
        bits = int(ok.index.min()) if len(ok) else None
        out.append({"domain": domain, "index": index, "bits": bits,
                    "drop": float(drop.loc[bits] if bits is not None else drop.iloc[-1])})
    return pd.DataFrame(out, columns=["domain", "index", "bits", "drop"])


def bits_sentence(needed: pd.DataFrame, metric: str = "recall@1", tolerance: float = 0.01) -> str:
    """Markdown from `bits_needed` tables."""
    if needed.empty:
        return "No bit budget was compared with its float embedding."
    lines = []
    for r in needed.itertuples():
        if r.bits is None or pd.isna(r.bits):
            lines.append(f"- {r.domain}, {r.index}: no budget that ran stays within {_num(tolerance)} "
                         f"of float {metric} (at the largest, the mean drop is {_num(r.drop)}).")
        else:
            lines.append(f"- {r.domain}, {r.index}: {int(r.bits)} bits ({int(r.bits) // 8} bytes) stay "
                         f"within {_num(tolerance)} of float {metric} (mean drop {_signed(-r.drop)}).")
    return "\n".join(lines + [f"- Rule: the mean over seeds of the paired drop float − compressed is "
                              f"at most {_num(tolerance)}."])


def quantization_budgets(rows: pd.DataFrame, metric: str = "recall@1", tolerance: float = 0.01
                         ) -> pd.DataFrame:
    """`bits_needed` of every compressed index against its own float embedding: OPQN, PQ, OPQ
    (and IVFPQ) against "float", the kl student's against "kl float"."""
    parts = [bits_needed(rows, f"{prefix}{kind}", f"{prefix}float", metric, tolerance)
             for prefix in ("", "kl ") for kind in ("opqn", "pq", "opq", "ivfpq")
             if f"{prefix}{kind}" in set(rows.model)]
    return pd.concat(parts, ignore_index=True) if parts else bits_needed(rows.iloc[:0], "", "")


def index_costs(rows: pd.DataFrame) -> pd.DataFrame:
    """Bytes per item and mean search microseconds per query of every index at the bits it
    stores (a float index: 32 per dimension), from `ue_lib.runfolder.compressed_rows` rows
    (averaged over experiments and seeds)."""
    key = ["model", "domain", "method", "seed"]
    wide = rows[rows.metric.isin(["bits", "bytes", "search_us"])].pivot_table(
        index=key, columns="metric", values="value").reset_index()
    table = wide.groupby(["model", "bits"], sort=False)[["bytes", "search_us"]].mean()
    table.index = table.index.set_levels(table.index.levels[1].astype(int), level=1)
    return table.rename(columns={"bytes": "bytes per item", "search_us": "µs per query"})


def opqn_ablation_table(rows: pd.DataFrame, metric: str = "map@all", rules: Rules = Rules(),
                        reference: str = "opqn") -> pd.DataFrame:
    """Notebook 06's ablation rows (`ue_lib.runfolder.opqn_ablation`): each setting's mean ± std
    of `metric` and its paired difference from `reference` (the defaults), with the outcome of
    `compare` and the number of seeds."""
    domain = rows.domain.iloc[0]
    out = []
    for model in dict.fromkeys(rows.model):
        values = rows[(rows.model == model) & (rows.metric == metric)].value
        row = {"setting": model, metric: _mean_std(values)}
        if model != reference:
            c = compare(rows, model, reference, metric, [domain], rules).iloc[0]
            row.update(diff=c["diff"], n=c["n"], outcome=c["outcome"])
        out.append(row)
    return pd.DataFrame(out, columns=["setting", metric, "diff", "n", "outcome"]).set_index("setting")


def opqn_ablation_sentence(table: pd.DataFrame, metric: str = "map@all", rules: Rules = Rules(),
                           reference: str = "opqn") -> str:
    """Markdown: each change against the defaults, in words, with the rule."""
    verbs = {"win": "beats", "loss": "loses to", "tie": "ties with", "mixed": "is mixed against"}
    changed = table.drop(index=reference, errors="ignore")
    if changed.empty:
        return "No ablation ran."
    parts = [f"{setting} {verbs.get(r.outcome, r.outcome)} the defaults ({_signed(r['diff'])})"
             for setting, r in changed.iterrows()]
    return (f"In {metric}: " + "; ".join(parts) + f". Rule: a change beats the defaults with a "
            f"{win_rule(rules, int(changed.n.max()))}.")


# ---------------------------------------------------------------- semantic granularity (notebook 07)

def ladder_table(rows: pd.DataFrame, metrics: Sequence[str]) -> pd.DataFrame:
    """Notebook 07: one row per model (rung, student) in recorded order, one column per metric:
    the mean over domains (merged excluded), as 'mean ± std' over seeds of that per-seed mean."""
    r = rows[rows.metric.isin(metrics) & ~rows.domain.astype(str).str.startswith("merged")]
    per_seed = r.groupby(["model", "metric", "seed"], sort=False).value.mean()
    table = per_seed.groupby(["model", "metric"], sort=False).agg(_mean_std).unstack("metric")
    counts = per_seed.groupby(["model", "metric"], sort=False).count()
    table = table.reindex(index=list(dict.fromkeys(r.model)), columns=list(metrics)).fillna("–")
    return table.rename_axis(columns=f"mean over domains, {_over_seeds('', counts).strip()}")


def ladder_verdicts(rows: pd.DataFrame, baseline: str, metrics: Sequence[str],
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


def ladder_sentence(verdicts: pd.DataFrame, baseline: str, rules: Rules = Rules()) -> str:
    """Markdown: per model and metric, its wins, losses and ties against `baseline` over the
    domains (with the paired differences of the decided ones), and the rule."""
    if verdicts.empty:
        return f"No comparison with {baseline} ran."
    lines = []
    for model, part in verdicts.groupby("model", sort=False):
        bits = []
        for metric, m in part.groupby("metric", sort=False):
            c = m.outcome.value_counts()
            decided = ", ".join(f"{r.domain} {_signed(r['diff'])} ({r.outcome})"
                                for _, r in m[m.outcome.isin(["win", "loss", "mixed"])].iterrows())
            bits.append(f"{metric}: {c.get('win', 0)} win(s), {c.get('loss', 0)} loss(es), "
                        f"{c.get('tie', 0)} tie(s) of {len(m)} domains"
                        + (f" ({decided})" if decided else ""))
        lines.append(f"- **{model} vs {baseline}** — " + "; ".join(bits) + ".")
    lines.append(f"- Rule: a win is a {win_rule(rules, int(verdicts.n.max()))}; a loss the same "
                 f"the other way; anything else is a tie (or mixed across seeds).")
    return "\n".join(lines)


def _win_counts(rows: pd.DataFrame, a: str, b: str, metrics: Sequence[str], rules: Rules
                ) -> tuple[dict[str, int], list[str]]:
    wins, parts = {a: 0, b: 0}, []
    for metric in metrics:
        cmp = compare(rows, a, b, metric, rules=rules)
        wa, wb = int((cmp.outcome == "win").sum()), int((cmp.outcome == "loss").sum())
        wins[a], wins[b] = wins[a] + wa, wins[b] + wb
        parts.append(f"{metric} {wa}–{wb} of {len(cmp)}")
    return wins, parts


def _favoured_of(wins: dict[str, int], a: str, b: str, rules: Rules) -> str:
    m = rules.favour_margin
    return a if wins[a] - wins[b] >= m else b if wins[b] - wins[a] >= m else "neither"


def favoured(rows: pd.DataFrame, a: str, b: str, metrics: Sequence[str],
             rules: Rules = Rules()) -> str:
    """Which of two models the numbers favour: the one that wins at least `rules.favour_margin`
    more (domain, metric) comparisons (each by the rule of `compare`) than the other, else
    "neither"."""
    return _favoured_of(_win_counts(rows, a, b, metrics, rules)[0], a, b, rules)


def favoured_sentence(rows: pd.DataFrame, a: str, b: str, metrics: Sequence[str],
                      rules: Rules = Rules()) -> str:
    """One Markdown sentence: which of `a` and `b` the numbers favour (`favoured`), with the
    per-metric wins behind it."""
    wins, parts = _win_counts(rows, a, b, metrics, rules)
    choice = _favoured_of(wins, a, b, rules)
    return (f"{a} against {b}, domains won by each ({', '.join(parts)}; {wins[a]} against "
            f"{wins[b]} in all): the numbers favour **{choice}** (rule: {rules.favour_margin} or "
            f"more wins than the other).")


def attribute_table(domains: Mapping) -> pd.DataFrame:
    """Notebook 07: what each domain declares (`Domain.attribute_names`, `Domain.group_names`):
    the number of attributes and coarse groups, a few names of each, and the mean number of
    attributes an image has on (training split); "–" where a domain has none."""
    rows = []
    for name, d in domains.items():
        a = d.train.attributes
        rows.append({"domain": name, "attributes": len(d.attribute_names) or "–",
                     "e.g.": ", ".join(d.attribute_names[:4]) or "–",
                     "on per image": "–" if a is None else _num(float((a >= 0.5).sum(1).mean()), 1),
                     "coarse groups": len(d.group_names) or "–",
                     "groups, e.g.": ", ".join(d.group_names[:4]) or "–"})
    return pd.DataFrame(rows).set_index("domain")


def ladder_settings(ladder: Mapping[str, Mapping]) -> str:
    """Notebook 07, Markdown: each rung of `Profile.sgml_ladder` with the settings its
    specialists change ("the profile's own" for none)."""
    return "\n".join(f"- **{rung}**: " + (", ".join(f"`{k}` = {setting_label(v)}" for k, v in s.items())
                                          or "the profile's own")
                     for rung, s in ladder.items())


# ---------------------------------------------------------------- object embeddings (notebook 08)

# the conditions of notebook 08 in the order of the issue, with their names in tables
CONDITIONS = {"global": "(i) global", "roi_oracle": "(ii) box-pooled, oracle boxes",
              "roi_detected": "(iii) box-pooled, detected boxes",
              "teacher_crop": "(iv) teacher on crops",
              "student_embedding_mse": "(v) student, MSE guide",
              "student_kl": "(v) student, kl guide",
              "detector_features": "(vi) detector's features",
              "trunk_features": "classification trunk's features"}


def condition_rows(rows: pd.DataFrame, task: str) -> pd.DataFrame:
    """Notebook 08's rows of one task ("objects": object retrieval per domain; "spliced": spliced
    retrieval) with ``model`` set to the condition, so that `compare`, `favoured` and
    `ladder_table` compare conditions."""
    r = rows[rows.model == task]
    return r.assign(model=r.method.astype(str))


def object_table(rows: pd.DataFrame, task: str, metrics: Sequence[str]) -> pd.DataFrame:
    """One row per condition (named as in `CONDITIONS`), one column per metric: the mean over
    domains, 'mean ± std' over seeds of that per-seed mean."""
    table = ladder_table(condition_rows(rows, task), metrics)
    return table.rename(index=lambda m: CONDITIONS.get(m, m))


def detector_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Notebook 08's detector: its test quality (recall and precision at IoU >= 0.5, mean IoU of
    each object's best detection, detections per scene) and its training seconds, mean ± std
    over seeds."""
    r = rows[(rows.model == "detector") | ((rows.model == "cost") &
                                           (rows.metric == "train_seconds"))]
    table = r.groupby("metric", sort=False).value.agg(_mean_std).to_frame().T
    return table.rename(index={"value": f"mean ± std over {r.seed.nunique()} seeds"})


def _pipeline_totals(rows: pd.DataFrame) -> tuple[pd.Series, pd.DataFrame]:
    """Per seed: the shared milliseconds per test image (scene pass + detector) and, per method
    (the teacher and the students), its own."""
    c = rows[(rows.model == "cost") & (rows.metric == "ms_per_image")]
    wide = c.pivot_table(index="seed", columns="method", values="value", aggfunc="mean")
    own = wide[[m for m in wide.columns if m == "teacher_crop" or m.startswith("student_")]]
    return wide["scene_maps"] + wide["detector"], own


def pipeline_costs(rows: pd.DataFrame) -> pd.DataFrame:
    """Milliseconds per test image of each way to embed a scene's objects, mean ± std over
    seeds: the shared part (the trunk's scene pass and the detector's heads, which find the
    boxes), then the teacher (crops, one trunk pass per object, its head) or a student
    (roi_align, the rest of the trunk, its head), and the totals."""
    shared, own = _pipeline_totals(rows)
    out = []
    for method in own.columns:
        total = shared + own[method]
        out.append({"condition": CONDITIONS.get(method, method), "method": method,
                    "shared ms": _mean_std(shared), "own ms": _mean_std(own[method]),
                    "total ms": _mean_std(total), "total_mean": float(total.mean())})
    return pd.DataFrame(out).set_index("condition")


def tradeoff_points(rows: pd.DataFrame, metric: str = "recall@1") -> pd.DataFrame:
    """For `plots.tradeoff_plot`: per timed method, the total ms per test image and the object
    retrieval `metric` (mean over domains), each as mean and std over seeds."""
    shared, own = _pipeline_totals(rows)
    objects = condition_rows(rows, "objects")
    acc = objects[objects.metric == metric].groupby(["model", "seed"]).value.mean()
    out = []
    for method in own.columns:
        total, value = shared + own[method], acc.loc[method]
        out.append({"method": method, "ms": float(total.mean()),
                    "ms_std": float(total.std(ddof=1)) if len(total) > 1 else 0.0,
                    "value": float(value.mean()),
                    "value_std": float(value.std(ddof=1)) if len(value) > 1 else 0.0})
    return pd.DataFrame(out)


def _favour_line(rows: pd.DataFrame, a: str, b: str, metrics: Sequence[str], rules: Rules
                 ) -> tuple[str, str]:
    wins, parts = _win_counts(rows, a, b, metrics, rules)
    return _favoured_of(wins, a, b, rules), f"{a} vs {b}: {', '.join(parts)}"


def object_findings(rows: pd.DataFrame, metrics: Sequence[str], spliced_metrics: Sequence[str],
                    rules: Rules = Rules()) -> pd.DataFrame:
    """The paper's findings, each decided from this run's rows by `favoured` (wins per (domain,
    metric) comparison, paired by seed, by the rule of `compare`; a margin of
    `rules.favour_margin`): finding, what was compared, the numbers favour, verdict."""
    objects, spliced = condition_rows(rows, "objects"), condition_rows(rows, "spliced")
    present = set(objects.model)
    guides = sorted(m for m in present if m.startswith("student_"))
    out = []

    def add(finding, table, a, b, ms, expected):
        """`expected`: the choice (or choices) under which the finding holds."""
        if not {a, b} <= set(table.model):
            return
        choice, measured = _favour_line(table, a, b, ms, rules)
        expected = {expected} if isinstance(expected, str) else set(expected)
        verdict = ("holds" if choice in expected else "not shown (neither favoured)"
                   if choice == "neither" else f"does not hold ({choice} favoured)")
        out.append({"finding": finding, "compared": measured, "favoured": choice,
                    "verdict": verdict, "seeds": int(table.seed.nunique())})

    add("1. a detector's features retrieve worse than a classification network's", objects,
        "trunk_features", "detector_features", metrics, "trunk_features")
    add("2. a detected box is hard attention: pooled in it beats the global embedding", objects,
        "roi_detected", "global", metrics, "roi_detected")
    add("2'. the same with oracle boxes", objects, "roi_oracle", "global", metrics, "roi_oracle")
    for g in guides:
        add(f"3. the guided student ({g[len('student_'):]}) is at least as good as its teacher",
            objects, g, "teacher_crop", metrics, ("neither", g))
    add("4. max over object pairs finds spliced sources better than the global embedding",
        spliced, "roi_detected", "global", spliced_metrics, "roi_detected")
    if len(guides) == 2:
        add("the main paper's kl guides better than the MSE of embeddings", objects,
            "student_kl", "student_embedding_mse", metrics, "student_kl")
    table = pd.DataFrame(out, columns=["finding", "compared", "favoured", "verdict", "seeds"])
    return table.set_index("finding")


def findings_markdown(findings: pd.DataFrame, rules: Rules = Rules()) -> str:
    """`object_findings` as a Markdown list: the finding, its verdict, and the comparisons
    behind it; then the rule."""
    lines = [f"- **{finding}: {r.verdict}.** {r.compared}; favoured: {r.favoured}."
             for finding, r in findings.iterrows()]
    seeds = int(findings.seeds.max()) if len(findings) else 1
    lines.append(f"- Rule: per (domain, metric) a win is a {win_rule(rules, seeds)}; a condition "
                 f"is favoured with {rules.favour_margin} or more wins than the other.")
    return "\n".join(lines)


def cost_sentence(costs: pd.DataFrame, rows: pd.DataFrame, metric: str = "recall@1") -> str:
    """The time/accuracy trade-off of the teacher and the students, in one Markdown sentence."""
    acc = tradeoff_points(rows, metric).set_index("method").value
    if "teacher_crop" not in costs.method.values:
        return "No teacher was timed."
    teacher = costs[costs.method == "teacher_crop"].iloc[0]
    parts = []
    for name, r in costs[costs.method != "teacher_crop"].iterrows():
        parts.append(f"{name}: {r['total ms']} ms, {teacher.total_mean / r.total_mean:.1f}× faster "
                     f"than the teacher, {metric} {_num(acc.get(r.method, np.nan))} against "
                     f"{_num(acc.get('teacher_crop', np.nan))}")
    return (f"Per test image, the teacher takes {teacher['total ms']} ms (of which "
            f"{teacher['own ms']} its crops and their trunk passes). " + "; ".join(parts) + ".")


def box_view_table(rows: pd.DataFrame, metric: str = "recall@1") -> pd.DataFrame:
    """Notebook 08 at paper scale (`ue_lib.objects.box_views`): `metric` per embedder and view
    (rows, in recorded order) and domain (columns). With no rows, one line saying why."""
    r = rows[(rows.model == "box_views") & (rows.metric == metric)] if len(rows) else rows
    if not len(r):
        return pd.DataFrame({"note": ["no domain of this profile keeps object boxes: the box "
                                      "views run on CUB and Cars (ue run --profile paper)"]})
    table = r.pivot_table(index="method", columns="domain", values="value", aggfunc="mean")
    return table.reindex(list(dict.fromkeys(r.method))).rename_axis(columns=metric)
