"""Numbers behind the notebooks' conclusions: every sentence a notebook prints about a
claim is built from these functions on that run's results, never written in advance."""

from __future__ import annotations

import numpy as np
import pandas as pd


def peak_epochs(history: pd.DataFrame, metric: str = "recall@1", split: str = "val") -> pd.DataFrame:
    """Per domain: the epoch where `metric` on `split` peaks, its value there and at the last
    evaluated epoch, and the drop from peak to last (over-fitting shows as a drop)."""
    h = history[(history.metric == metric) & (history.split == split)]
    rows = []
    for domain, g in h.groupby("domain", sort=False):
        g = g.sort_values("epoch")
        best = g.loc[g.value.idxmax()]
        rows.append({"domain": domain, "peak_epoch": int(best.epoch), "peak": best.value,
                     "last_epoch": int(g.epoch.iloc[-1]), "last": g.value.iloc[-1],
                     "drop_after_peak": best.value - g.value.iloc[-1]})
    return pd.DataFrame(rows)


def stopping_cost(history: pd.DataFrame, selected_epoch: int, metric: str = "recall@1"
                  ) -> pd.DataFrame:
    """What one shared stopping point costs each domain: test `metric` at the epoch that domain's
    own validation curve would have chosen vs at the epoch selected for all domains."""
    peaks = peak_epochs(history, metric, "val")
    test = history[(history.metric == metric) & (history.split == "test")]
    at = test.set_index(["domain", "epoch"]).value
    rows = []
    for r in peaks.itertuples():
        own, shared = at.get((r.domain, r.peak_epoch), np.nan), at.get((r.domain, selected_epoch),
                                                                      np.nan)
        rows.append({"domain": r.domain, "own_best_epoch": r.peak_epoch,
                     "selected_epoch": selected_epoch, "test_at_own_best": own,
                     "test_at_selected": shared, "cost": own - shared})
    return pd.DataFrame(rows)


def label(results: pd.DataFrame) -> pd.Series:
    """'specialist', 'naive', 'distill:kl', … — one name per model/method pair."""
    return np.where(results.model == "distill", "distill:" + results.method, results.model)


def summary(results: pd.DataFrame, metric: str = "recall@1") -> pd.DataFrame:
    """'mean ± std (n seeds)' over seeds: one row per model, one column per domain."""
    r = results[results.metric == metric].assign(model_name=lambda d: label(d))
    g = r.groupby(["model_name", "domain"], sort=False).value
    cells = g.mean().map("{:.3f}".format) + " ± " + g.std(ddof=0).map("{:.3f}".format)
    table = cells.unstack("domain").fillna("–")
    columns = list(dict.fromkeys(r.domain))  # domains in the order they were recorded
    return table[columns].rename_axis(columns=f"{metric} (n={g.count().max()} seeds)")


def compare(results: pd.DataFrame, a: str, b: str, metric: str = "recall@1",
            domains: list[str] | None = None) -> pd.DataFrame:
    """Per domain: mean over seeds of model a and model b (names as in `label`), a - b."""
    r = results[results.metric == metric].assign(model_name=lambda d: label(d))
    means = r.groupby(["domain", "model_name"]).value.mean().unstack("model_name")
    if domains is not None:
        means = means.reindex(domains)
    if a not in means or b not in means:
        missing = [m for m in (a, b) if m not in means]
        raise KeyError(f"no {metric} rows for {missing}; present: {list(means.columns)}")
    return pd.DataFrame({a: means[a], b: means[b], "diff": means[a] - means[b]}).dropna()


def wins_sentence(cmp: pd.DataFrame, a: str, b: str, metric: str = "recall@1") -> str:
    """'distill:kl beat distill:distance_mse on 3 of 3 domains (+0.041, +0.012, +0.100)'."""
    wins = int((cmp["diff"] > 0).sum())
    diffs = ", ".join(f"{d}: {v:+.3f}" for d, v in cmp["diff"].items())
    return f"{a} beat {b} on {wins} of {len(cmp)} domains in {metric} ({diffs})"


def claims(results: pd.DataFrame, peak_tables: list[pd.DataFrame], cost_tables: list[pd.DataFrame],
           domains: list[str], metric: str = "recall@1", tolerance: float = 0.01,
           min_spread: int = 2) -> pd.DataFrame:
    """The claims of SPEC §1, each with what this run measured and whether it held.

    `peak_tables` / `cost_tables`: `peak_epochs` / `stopping_cost` of the naive model, one per
    seed. A comparison "holds" when it is true on a majority of domains (means over seeds);
    `tolerance` is the change that counts (a drop after the peak, a cost); peaks count as
    different when they are at least `min_spread` epochs apart."""
    rows = []

    def add(claim, measured, holds):
        rows.append({"claim": claim, "measured": measured, "holds": bool(holds)})

    c = compare(results, "specialist", "naive", metric, domains)
    add("naive fusion falls short of the specialists", wins_sentence(c, "specialist", "naive", metric),
        (c["diff"] > 0).sum() > len(c) / 2)
    spreads = [int(t.peak_epoch.max() - t.peak_epoch.min()) for t in peak_tables]
    peaks = "; ".join(", ".join(f"{r.domain} {r.peak_epoch}" for r in t.itertuples())
                      for t in peak_tables)
    add("in naive fusion, domains peak at different epochs",
        f"validation peaks per seed: {peaks} (spread {spreads} epochs)",
        np.mean(spreads) >= min_spread)
    over = [int((t.drop_after_peak > tolerance).sum()) for t in peak_tables]
    add("in naive fusion, some domains over-fit while others still improve",
        f"domains whose validation {metric} fell by more than {tolerance} after their peak: "
        f"{over} of {len(domains)} per seed",
        np.mean([o > 0 and o < len(domains) for o in over]) > 0.5)
    worst = [float(t.cost.max()) for t in cost_tables]
    add("one shared stopping point costs some domain",
        f"largest test {metric} lost by stopping all domains at the selected epoch instead of each "
        f"at its own best, per seed: " + ", ".join(f"{w:+.3f}" for w in worst),
        np.mean([w > tolerance for w in worst]) > 0.5)
    c = compare(results, "distill:kl", "naive", metric, domains)
    add("distilling the specialists beats naive fusion", wins_sentence(c, "distill:kl", "naive", metric),
        (c["diff"] > 0).sum() > len(c) / 2)
    c = compare(results, "distill:kl", "specialist", metric, domains)
    add("the distilled student comes close to the specialists",
        f"mean gap to the specialists: {c['diff'].mean():+.3f} ("
        + ", ".join(f"{d}: {v:+.3f}" for d, v in c["diff"].items()) + ")",
        c["diff"].mean() > -0.02)
    for absolute in ("distill:distance_mse", "distill:embedding_mse"):
        if absolute in set(label(results)):
            c = compare(results, "distill:kl", absolute, metric, domains)
            add(f"distribution distillation (kl) beats {absolute.split(':')[1]}",
                wins_sentence(c, "distill:kl", absolute, metric), (c["diff"] > 0).sum() > len(c) / 2)
    return pd.DataFrame(rows)
