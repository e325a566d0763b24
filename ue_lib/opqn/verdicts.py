"""OPQN's verdicts (notebook 06), decided by the rules of `ue_lib.verdicts`: each index at each bit
budget, OPQN against each faiss baseline, the bits each index needs to stay within a tolerance
of its float embedding, memory and search time, and the ablation. Rows: as
`ue_lib.opqn.experiments.experiment` makes them (model = index, method = "<bits> bits")."""

from __future__ import annotations

import pandas as pd

from ..verdicts import EPS, Rules, compare, mean_std, num, over_seeds, signed, win_rule

INDEXES = ("float", "pq", "opq", "opqn")


def bits_of(rows: pd.DataFrame) -> pd.Series:
    """The bit budget of notebook 06's rows (their method, "<bits> bits")."""
    return rows.method.str.extract(r"(\d+) bits", expand=False).astype(int)


def index_table(rows: pd.DataFrame, metric: str = "map@all") -> pd.DataFrame:
    """'mean ± std' over seeds of `metric` per experiment and bit budget (rows) and index
    (columns: float, pq, opq, opqn, then any other such as the kl student's), from
    `ue_lib.opqn.experiments.experiment` rows."""
    r = rows[rows.metric == metric].assign(bits=lambda d: bits_of(d))
    g = r.groupby(["domain", "bits", "model"], sort=False).value
    table = g.agg(mean_std).unstack("model").fillna("–")
    order = [m for m in INDEXES if m in table.columns] + \
        [m for m in dict.fromkeys(r.model) if m not in INDEXES]
    return table.reindex(columns=order).rename_axis(columns=over_seeds(metric, g.count()))


def index_verdicts(rows: pd.DataFrame, a: str = "opqn", against=("pq", "opq"),
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


def index_sentence(verdicts: pd.DataFrame, a: str = "opqn", metric: str = "map@all",
                          rules: Rules = Rules()) -> str:
    """Markdown: per faiss baseline, where `a` wins, loses and ties, with the rule."""
    if verdicts.empty:
        return f"No {metric} comparison of {a} ran."
    n = int(verdicts.n.max())
    lines = []
    for b, part in verdicts.groupby("against", sort=False):
        counts = part.outcome.value_counts()
        where = "; ".join(f"{o}: " + ", ".join(f"{r.domain} at {r.bits} bits ({signed(r['diff'])})"
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
        ok = drop[drop <= tolerance + EPS]
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
            lines.append(f"- {r.domain}, {r.index}: no budget that ran stays within {num(tolerance)} "
                         f"of float {metric} (at the largest, the mean drop is {num(r.drop)}).")
        else:
            lines.append(f"- {r.domain}, {r.index}: {int(r.bits)} bits ({int(r.bits) // 8} bytes) stay "
                         f"within {num(tolerance)} of float {metric} (mean drop {signed(-r.drop)}).")
    return "\n".join(lines + [f"- Rule: the mean over seeds of the paired drop float − compressed is "
                              f"at most {num(tolerance)}."])


def bits_budgets(rows: pd.DataFrame, metric: str = "recall@1", tolerance: float = 0.01
                         ) -> pd.DataFrame:
    """`bits_needed` of every compressed index against its own float embedding: OPQN, PQ, OPQ
    (and IVFPQ) against "float", the kl student's against "kl float"."""
    parts = [bits_needed(rows, f"{prefix}{kind}", f"{prefix}float", metric, tolerance)
             for prefix in ("", "kl ") for kind in ("opqn", "pq", "opq", "ivfpq")
             if f"{prefix}{kind}" in set(rows.model)]
    return pd.concat(parts, ignore_index=True) if parts else bits_needed(rows.iloc[:0], "", "")


def index_costs(rows: pd.DataFrame) -> pd.DataFrame:
    """Bytes per item and mean search microseconds per query of every index at the bits it
    stores (a float index: 32 per dimension), from `ue_lib.opqn.experiments.experiment` rows
    (averaged over experiments and seeds)."""
    key = ["model", "domain", "method", "seed"]
    wide = rows[rows.metric.isin(["bits", "bytes", "search_us"])].pivot_table(
        index=key, columns="metric", values="value").reset_index()
    table = wide.groupby(["model", "bits"], sort=False)[["bytes", "search_us"]].mean()
    table.index = table.index.set_levels(table.index.levels[1].astype(int), level=1)
    return table.rename(columns={"bytes": "bytes per item", "search_us": "µs per query"})


def ablation_table(rows: pd.DataFrame, metric: str = "map@all", rules: Rules = Rules(),
                        reference: str = "opqn") -> pd.DataFrame:
    """Notebook 06's ablation rows (`ue_lib.opqn.experiments.ablation`): each setting's mean ± std
    of `metric` and its paired difference from `reference` (the defaults), with the outcome of
    `compare` and the number of seeds."""
    domain = rows.domain.iloc[0]
    out = []
    for model in dict.fromkeys(rows.model):
        values = rows[(rows.model == model) & (rows.metric == metric)].value
        row = {"setting": model, metric: mean_std(values)}
        if model != reference:
            c = compare(rows, model, reference, metric, [domain], rules).iloc[0]
            row.update(diff=c["diff"], n=c["n"], outcome=c["outcome"])
        out.append(row)
    return pd.DataFrame(out, columns=["setting", metric, "diff", "n", "outcome"]).set_index("setting")


def ablation_sentence(table: pd.DataFrame, metric: str = "map@all", rules: Rules = Rules(),
                           reference: str = "opqn") -> str:
    """Markdown: each change against the defaults, in words, with the rule."""
    verbs = {"win": "beats", "loss": "loses to", "tie": "ties with", "mixed": "is mixed against"}
    changed = table.drop(index=reference, errors="ignore")
    if changed.empty:
        return "No ablation ran."
    parts = [f"{setting} {verbs.get(r.outcome, r.outcome)} the defaults ({signed(r['diff'])})"
             for setting, r in changed.iterrows()]
    return (f"In {metric}: " + "; ".join(parts) + f". Rule: a change beats the defaults with a "
            f"{win_rule(rules, int(changed.n.max()))}.")
