"""What the training histories say, for the main paper's claims: the run's regime, each domain's
validation peak, over-fitting and what one shared stopping point costs (notebook 01), the
training budget of every model and the runs that collapsed (notebooks 02-03).

The rules (every threshold is a field of `ue_lib.verdicts.Rules`, named in brackets):

* **Ties and peaks.** Validation values within [tie_tolerance] of a domain's maximum are a tie;
  the domain's *peak epoch* is the LAST tied epoch (a curve that reaches its ceiling at epochs 6,
  14 and 16 peaks at 16).
* **Over-fitting.** A domain over-fits when its value at the last evaluation is more than
  [overfit_drop] below its maximum.
* **At ceiling.** A domain whose validation maximum is at least [ceiling] and reached at the
  first evaluation is at its ceiling: it is neither over-fitting nor still improving.
* **Still improving.** A domain still improves when its last evaluation is tied with its maximum
  and the evaluation [last_evals] before it was not: it reached its peak only in the last
  [last_evals] evaluation(s). A curve that peaked early and stayed flat (within the tie band) is
  neither over-fitting nor still improving.
* **Peaks disagree** when they span at least `min_spread` epochs (by default [min_spread_evals]
  evaluation intervals).
* **Stopping cost** of a domain: the test metric at its own peak validation epoch minus the test
  metric at the one epoch selected for all domains; it counts when above [cost_tolerance].
* **Flags** (`flag`): a model *collapsed* when its mean validation Recall@1 has come less than
  [collapse_gain] of the way from chance to 1 (named with its reason and not compared); a
  healthy model *peaked early* when selected at epoch <= [early_epoch] of a run of at least
  [early_min_epochs] (it is compared, and its number is an early one); a model selected at its
  last epoch is *still improving* (train longer).
* **Budgets** (`budget_table`): the batches of a domain are equal across models when the
  largest is at most [budget_tolerance] above the smallest; a model selected at the last epoch
  it trained is still improving ("train longer").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from ..evaluate import chance_recall_at_1
from ..verdicts import EPS, Rules, num, pct, signed

# ---------------------------------------------------------------- the regime (notebook 01)

def start_phrase(profile) -> str:
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
    start = start_phrase(profile) + (" (the frozen part's outputs are computed once and cached)"
                               if profile.weights and profile.trainable_stages >= 0
                               and profile.cache_features else "")
    natural = {d: int(n) // batch for d, n in t.items()}
    # naive fusion's batches per domain per epoch (round robin: the mean natural count)
    per_epoch = profile.batches_per_domain or max(1, int(np.floor(np.mean(list(natural.values())) + 0.5)))
    passes = {d: per_epoch * batch / t[d] for d in t.index}
    big, small = t.idxmax(), t.idxmin()
    lines = [f"- **Start:** {start}.",
             f"- **Domains:** {len(t)}, from {small} ({t[small]} training images) to {big} "
             f"({t[big]}): {num(t[big] / t[small], 1)}x apart.",
             "- **Budget:** " + (f"every model sees {profile.batches_per_domain} batches of {batch} "
                                 f"images of each domain per epoch"
                                 if profile.batches_per_domain else
                                 f"a specialist's epoch is its domain's own number of batches (size / "
                                 f"{batch}); in naive fusion the domains take turns, {per_epoch} "
                                 f"batches each")
             + "; in naive fusion each domain's training images are seen per epoch: "
             + ", ".join(f"{d} {num(v, 1)}x" for d, v in sorted(passes.items(), key=lambda kv: -kv[1]))
             + "."]
    if passes[small] > 1.5 * passes[big]:
        lines.append(f"- So in naive fusion {small} is revisited {num(passes[small] / passes[big], 0)}x "
                     f"as often as {big}: a small domain can be memorised while a large one still "
                     f"has new images to learn from.")
    return "\n".join(lines)


# ---------------------------------------------------------------- learning curves

def _improving_rule(rules: Rules) -> str:
    k = rules.last_evals
    before = "the one before it" if k == 1 else f"the one {k} evaluations before"
    return (f"still improves when its last evaluation is within {num(rules.tie_tolerance)} of its maximum "
            f"and {before} was not")


def _curve(epochs: np.ndarray, values: np.ndarray, rules: Rules) -> dict:
    """Peak, over-fitting, still-improving and ceiling of one sorted curve (see the module
    docstring)."""
    top = values.max()
    tied = values >= top - rules.tie_tolerance - EPS
    k = rules.last_evals
    # at its ceiling from the first evaluation: nothing left to learn, so a later dip or rise is
    # neither over-fitting nor improvement
    ceiling = bool(tied[0] and top >= rules.ceiling - EPS)
    still = bool(tied[-1] and (len(values) <= k or not tied[-1 - k])) and not ceiling
    drop = top - values[-1]
    overfits = bool(drop > rules.overfit_drop + EPS) and not ceiling
    peak_at = int(np.flatnonzero(tied)[-1])
    below = np.flatnonzero(values[peak_at:] < top - rules.overfit_drop - EPS)
    gaps = np.diff(epochs)
    status = ("at ceiling" if ceiling else "over-fits" if overfits else
              "still improving" if still else "levelled off")
    return {"peak_epoch": int(epochs[peak_at]), "first_peak_epoch": int(epochs[tied][0]),
            "peak": float(top), "last_epoch": int(epochs[-1]), "last": float(values[-1]),
            "drop_after_peak": float(drop), "overfits": overfits, "still_improving": still,
            "at_ceiling": ceiling,
            # first evaluation after the peak that is more than overfit_drop below it (or None)
            "overfit_epoch": int(epochs[peak_at + below[0]]) if overfits and len(below) else None,
            "status": status, "eval_interval": int(pd.Series(gaps).mode().min()) if len(gaps) else 1}


def peak_epochs(history: pd.DataFrame, metric: str = "recall@1", split: str = "val",
                rules: Rules = Rules()) -> pd.DataFrame:
    """Per domain (in recorded order): `peak_epoch` (last epoch tied with the maximum),
    `first_peak_epoch`, `peak` (the maximum), `last_epoch`, `last`, `drop_after_peak`,
    `overfits`, `still_improving`, `at_ceiling`, `status` and `eval_interval` (epochs between
    evaluations)."""
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


def spread_threshold(min_spread: int | None, intervals, rules: Rules) -> int:
    if min_spread is not None:
        return int(min_spread)
    return rules.min_spread_evals * max([int(i) for i in intervals] or [1])


def _listed(t: pd.DataFrame) -> str:
    return ", ".join(t.domain) if len(t) else "none"


def peak_spread(peaks: pd.DataFrame) -> int:
    """Epochs between the earliest and the latest peak of the domains not at their ceiling (a
    flat curve's "peak" says nothing about when it learned); 0 with fewer than two."""
    moving = peaks[~peaks.at_ceiling] if "at_ceiling" in peaks else peaks
    return int(moving.peak_epoch.max() - moving.peak_epoch.min()) if len(moving) > 1 else 0


def _epochs(n: int) -> str:
    return f"{n} epoch" + ("" if n == 1 else "s")


def _status_lines(peaks: pd.DataFrame, metric: str, rules: Rules) -> list[str]:
    moving = peaks[~peaks.at_ceiling]
    over = peaks[peaks.overfits]
    rising = peaks[peaks.still_improving]
    flat = peaks[~peaks.overfits & ~peaks.still_improving & ~peaks.at_ceiling]
    ceiling = peaks[peaks.at_ceiling]
    drops = ", ".join(f"{r.domain} ({signed(-r.drop_after_peak)})" for r in over.itertuples())
    return [
        f"- Validation {metric} peaked at epoch "
        + (", ".join(f"{r.domain} {r.peak_epoch}" for r in moving.itertuples()) or "–")
        + f" (the last epoch within {num(rules.tie_tolerance)} of each domain's maximum): "
        f"a spread of {_epochs(peak_spread(peaks))} over {len(moving)} domains"
        + (f"; at their ceiling from the first evaluation (maximum {num(rules.ceiling, 2)} or "
           f"more), so not counted: {_listed(ceiling)}." if len(ceiling) else "."),
        f"- Over-fitted (last evaluation more than {num(rules.overfit_drop)} below the peak): "
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
    spread = peak_spread(peaks)
    need = spread_threshold(min_spread, peaks.eval_interval, rules)
    worst = cost.loc[cost.cost.idxmax()] if cost.cost.notna().any() else None
    top = float(worst.cost) if worst is not None else np.nan
    lines = _status_lines(peaks, metric, rules) + [
        f"- Stopping all domains at epoch {selected_epoch} cost on average {signed(cost.cost.mean())} "
        f"test {metric} against each domain's own peak epoch; the largest cost was {signed(top)}"
        + (f" ({worst.domain})." if worst is not None else ".")]
    costly = bool(top > rules.cost_tolerance + EPS)
    mean = f"on average {signed(cost.cost.mean())} over the domains"
    price = f"up to {num(top)} test {metric}, {mean} (more than {num(rules.cost_tolerance)} counts)"
    cheap = f"at most {signed(top)} test {metric}, {mean} (not more than {num(rules.cost_tolerance)})"
    apart = f"{_epochs(spread)} apart, " + ("at least" if spread >= need else "fewer than")
    span = f"peaks {apart} the {need} that count as different"
    if (peaks.still_improving | peaks.at_ceiling).all():
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
COLLAPSED, PEAKED_EARLY = "collapsed", "peaked early"
NO_BATCHES = "batches not recorded for every epoch (trained before they were)"


def epochs_trained(history: pd.DataFrame) -> int:
    return int(history.epoch.max()) if len(history) else 0


def still_improving(history: pd.DataFrame, best_epoch: int) -> bool:
    """The model was selected at the last epoch it trained: its validation score was still
    rising when training stopped, so more epochs may improve it."""
    return len(history) > 0 and int(best_epoch) >= epochs_trained(history)


def flag(history: pd.DataFrame, best_epoch: int, epochs: int,
         chance: Mapping[str, float] | None = None, rules: Rules = Rules(),
         metric: str = "recall@1") -> str | None:
    """A model's flag, the first that applies, or None:

    * "collapsed: near chance (…)": its mean validation `metric` over domains at the selected
      epoch, s, has come less than [collapse_gain] of the way from c, the mean over its domains
      of `chance` (when given), to 1: (s - c) / (1 - c) < collapse_gain;
    * "peaked early: selected at epoch e of n": a healthy model whose selected epoch is at most
      [early_epoch] of a run of at least [early_min_epochs] epochs;
    * "still improving: train longer": selected at its last epoch.
    """
    if chance:
        val = history[(history.split == "val") & (history.metric == metric)]
        at = val[val.epoch == best_epoch].value.mean()
        base = float(np.mean([chance[d] for d in dict.fromkeys(val.domain) if d in chance]
                             or list(chance.values())))
        if at - base < rules.collapse_gain * (1 - base) - EPS:
            return f"{COLLAPSED}: near chance (mean val {metric} {num(at)}, chance {num(base)})"
    if epochs >= rules.early_min_epochs and best_epoch <= rules.early_epoch:
        return f"{PEAKED_EARLY}: selected at epoch {best_epoch} of {epochs}"
    if still_improving(history, best_epoch):
        return TRAIN_LONGER
    return None


def model_flags(models: Mapping, domains: Mapping, rules: Rules = Rules()) -> dict[str, str]:
    """{label: flag} of the `models` ({label: TrainResult}) that have one (`flag`), chance taken
    from the validation labels of the `domains` ({name: Domain}) each model trained on."""
    chance = {name: chance_recall_at_1(d.splits["val"].labels) for name, d in domains.items()}
    out = {}
    for name, result in models.items():
        found = flag(result.history, result.best_epoch, epochs_trained(result.history), chance,
                     rules)
        if found:
            out[name] = found
    return out


def flags_over_seeds(by_seed: Mapping[int, Mapping[str, str]]) -> dict[str, str]:
    """{seed: {label: flag}} (`model_flags` per seed) -> {label: 'peaked early on 2 of 3 seeds
    (seed 0: selected at epoch 1 of 30; seed 1: …)'}: each model's most serious flag (collapsed,
    then peaked early, then still improving) with the seeds it held on. A model collapsed on any
    seed stays "collapsed…" (`collapsed_only` keeps it out of comparisons)."""
    n, out = len(by_seed), {}
    for label in dict.fromkeys(lb for flags in by_seed.values() for lb in flags):
        seen = {s: flags[label] for s, flags in by_seed.items() if label in flags}
        for kind in (COLLAPSED, PEAKED_EARLY, TRAIN_LONGER.split(":")[0]):
            hits = {s: f for s, f in seen.items() if f.startswith(kind)}
            if hits:
                details = "; ".join(f"seed {s}: {f.partition(': ')[2] or f}" for s, f in hits.items())
                out[label] = f"{kind} on {len(hits)} of {n} seed{'s' if n > 1 else ''} ({details})"
                break
    return out


def collapsed_only(flags: Mapping[str, str] | None) -> dict[str, str]:
    """The flags that keep a model out of comparisons: the collapsed ones (a model that peaked
    early or still improves is healthy, and compared)."""
    return {k: v for k, v in (flags or {}).items() if v.startswith(COLLAPSED)}


def _budget_rows(name: str, result, rules: Rules) -> list[dict]:
    h, best = result.history, int(result.best_epoch)
    epochs = epochs_trained(h)
    found = flag(h, best, epochs, rules=rules) or ""
    counts = h[(h.split == "train") & (h.metric == "batches")]
    rows = []
    for domain in dict.fromkeys(h.domain):
        g = counts[counts.domain == domain]
        known = g.epoch.nunique() == epochs
        rows.append({"model": name, "domain": domain, "epochs": epochs, "selected_epoch": best,
                     "batches": g.value.sum() if known else np.nan,
                     "batches_to_selected": g[g.epoch <= best].value.sum() if known else np.nan,
                     "flag": found,
                     "note": "" if known else NO_BATCHES})
    return rows


def budget_table(models: Mapping, flags: Mapping[str, str] | None = None,
                 rules: Rules = Rules()) -> pd.DataFrame:
    """What each model trained on, from its history: {label: TrainResult} (anything with
    `history` and `best_epoch`; labels start with the model's kind, e.g. 'specialist:orl',
    'naive', 'distill:kl') -> one row per (model, domain): `epochs` trained, `selected_epoch`,
    `batches` of the domain over all epochs and `batches_to_selected` up to the selected epoch
    (NaN, with a `note`, for a history without the per-epoch "batches" rows), and `flag` (the
    model's in `flags`, {label: flag} from `model_flags`; else its `flag` without a chance
    level: peaked early, still improving or "")."""
    rows = [r for name, result in models.items() for r in _budget_rows(name, result, rules)]
    table = pd.DataFrame(rows, columns=["model", "domain", "epochs", "selected_epoch", "batches",
                                        "batches_to_selected", "flag", "note"])
    for name, reason in (flags or {}).items():
        table.loc[table.model == name, "flag"] = reason
    return table


def budget_view(table: pd.DataFrame) -> pd.DataFrame:
    """A `budget_table` to read: one row per model, its epochs, selected epoch, the batches it saw
    of each of its domains over all epochs ('300 of each' when they are equal, else per domain)
    and its flag."""
    def batches(g: pd.DataFrame) -> str:
        known = g.dropna(subset=["batches"])
        if known.empty:
            return "not recorded"
        if known.batches.nunique() == 1:
            return f"{known.batches.iloc[0]:.0f} of " + ("each" if len(known) > 1 else known.domain.iloc[0])
        return ", ".join(f"{r.domain} {r.batches:.0f}" for r in known.itertuples())

    g = table.groupby("model", sort=False)
    view = g[["epochs", "selected_epoch"]].first().rename(columns={"selected_epoch": "selected"})
    return view.assign(batches=g.apply(batches, include_groups=False), flag=g.flag.first())


def budget_spans(table: pd.DataFrame, rules: Rules) -> pd.DataFrame:
    """Per domain with the batch counts of at least two models: `low`, `high`, `equal`."""
    g = table.dropna(subset=["batches"]).groupby("domain", sort=False).batches
    spans = pd.DataFrame({"low": g.min(), "high": g.max(), "models": g.size()})
    spans = spans[spans.models > 1]
    return spans.assign(equal=spans.high - spans.low <= rules.budget_tolerance * spans.high + EPS)


def flagged(table: pd.DataFrame, column: str, value: str) -> list[str]:
    """The models whose `column` is `value`, or starts with it followed by ':'."""
    col = table[column].astype(str)
    return list(dict.fromkeys(table.model[(col == value) | col.str.startswith(value + ":")]))


def budget_sentence(table: pd.DataFrame, rules: Rules = Rules()) -> str:
    """Whether every domain got the same batches (over all epochs trained) from every model that
    trained on it, within [budget_tolerance], and which models are flagged (`flag`)."""
    spans, rule = budget_spans(table, rules), f"within {pct(rules.budget_tolerance)}"
    unequal = spans[~spans.equal]
    if spans.empty:
        text = "No domain has the batch counts of two models to compare."
    elif unequal.empty:
        text = (f"Every model saw the same number of batches of each domain ({rule}): "
                + ", ".join(f"{d} {num(r.high, 0)}" for d, r in spans.iterrows()) + ".")
    else:
        known = table.dropna(subset=["batches"])
        text = (f"The budgets differ: batches of each domain are **not** equal across models "
                f"({rule}) on " + "; ".join(
                    f"{d} (" + ", ".join(f"{r.model} {num(r.batches, 0)}"
                                         for r in known[known.domain == d].itertuples()) + ")"
                    for d in unequal.index) + ".")
    missing = flagged(table, "note", NO_BATCHES)
    text += f" Not recorded for {', '.join(missing)}." if missing else ""
    return text + " " + flags_sentence(table, rules)


def flags_sentence(table: pd.DataFrame, rules: Rules = Rules()) -> str:
    """Which models of a `budget_table` are flagged, by flag."""
    kinds = [(COLLAPSED, "Collapsed (near chance; not compared)"),
             (PEAKED_EARLY, f"Peaked early (selected at epoch {rules.early_epoch} or before, its "
                            f"number an early one)"),
             (TRAIN_LONGER, f"Selected at their last epoch ({TRAIN_LONGER})")]
    parts = [f"{text}: {', '.join(names)}." for kind, text in kinds
             if (names := flagged(table, "flag", kind))]
    return " ".join(parts) or "No model is flagged (collapsed, peaked early or still improving)."


def epochs_view(epochs: pd.DataFrame) -> pd.DataFrame:
    """The selected epochs of each baseline before and after its tuning (`experiments.fairness`
    rows: model, seed, untuned/tuned lr and selected epoch): one row per model, the epochs over
    seeds as 'e1, e2, …' and the learning rates."""
    g = epochs.groupby("model", sort=False)

    def listed(col: str):
        return g[col].agg(lambda v: ", ".join(str(int(e)) for e in v))

    return pd.DataFrame({"lr before": g["untuned lr"].first(), "selected epochs before": listed("untuned"),
                         "lr after": g["tuned lr"].first(), "selected epochs after": listed("tuned")})


def early_count(epochs: pd.DataFrame, column: str, rules: Rules = Rules()) -> int:
    """How many (model, seed) rows of `epochs` were selected at epoch [early_epoch] or before, in
    a run of at least [early_min_epochs] (`flag`'s "peaked early")."""
    long = epochs["epochs"] >= rules.early_min_epochs
    return int(((epochs[column] <= rules.early_epoch) & long).sum())


def tuning_table(tunings: Sequence) -> pd.DataFrame:
    """The tuning points of several methods (`ue_lib.universal.models.tuning` results) in one
    table, one row per (method, grid point), the chosen point marked; the `flag` and `error`
    columns only when some point has one."""
    if not tunings:
        return pd.DataFrame()
    table = pd.concat([t.table.assign(method=t.method) for t in tunings], ignore_index=True)
    empty = [c for c in ("flag", "error") if c in table and not table[c].astype(bool).any()]
    return table.drop(columns=empty).set_index("method")


def gallery_sentence(domains: Mapping) -> str:
    """Per domain, the classes of the validation and test splits and the Recall@1 of a random
    ranking on each (`chance_recall_at_1`): why the splits score differently without any
    over-fitting."""
    parts = []
    for name, d in domains.items():
        val, test = d.splits["val"], d.splits["test"]
        parts.append(f"{name}: validation {val.num_classes} classes (chance Recall@1 "
                     f"{num(chance_recall_at_1(val.labels))}), test {test.num_classes} "
                     f"(chance {num(chance_recall_at_1(test.labels))})")
    return ("Classes per split, and the Recall@1 a random ranking would get: " + "; ".join(parts)
            + ". Where the test split has more classes than validation, its queries meet more "
            "distractors, so lower test numbers are expected and are not a sign of over-fitting.")
