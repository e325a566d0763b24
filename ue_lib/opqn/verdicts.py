"""OPQN's verdicts (notebook 06), decided by the rules of `ue_lib.verdicts`: each index at each bit
budget, OPQN against each faiss baseline, the bits each index needs to stay within a tolerance
of its float embedding, memory and search time, and the ablation. Rows: as
`ue_lib.opqn.experiments.experiment` makes them (model = index, method = "<bits> bits")."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import pandas as pd

from ..verdicts import (
    EPS,
    Rules,
    compare,
    counts_phrase,
    mean_std,
    num,
    outcome_counts,
    over_seeds,
    rounded,
    signed,
    significant,
    status,
    win_rule,
)
from .indexes import pq_shape

INDEXES = ("float", "pq", "opq", "opqn")


def bits_of(rows: pd.DataFrame) -> pd.Series:
    """The bit budget of notebook 06's rows (their method, "<bits> bits")."""
    return rows.method.str.extract(r"(\d+) bits", expand=False).astype(int)


def _network_and_index(model: str) -> tuple[str, str]:
    """("OPQN network", "pq") for "pq"; ("kl student", "pq") for "kl pq": the embedding an index
    compresses, and the index."""
    first, _, rest = model.partition(" ")
    return ("kl student", rest) if first == "kl" and rest else ("OPQN network", model)


def index_table(rows: pd.DataFrame, metric: str = "map@all") -> pd.DataFrame:
    """'mean ± std' over seeds of `metric`: one row per experiment, embedding (the OPQN network,
    or the distilled kl student in the universal index) and bit budget; one column per index
    (float, pq, opq, opqn, then any other), so a row only lacks the indexes its embedding has
    none of (the kl student has no OPQN codes), from `ue_lib.opqn.experiments.experiment`
    rows."""
    r = rows[rows.metric == metric].assign(bits=lambda d: bits_of(d))
    parts = r.model.map(_network_and_index)
    r = r.assign(embedding=parts.str[0], index=parts.str[1])
    g = r.groupby(["domain", "embedding", "bits", "index"], sort=False).value
    table = g.agg(mean_std).unstack("index").fillna("–")
    order = [m for m in INDEXES if m in table.columns] + \
        [m for m in dict.fromkeys(r["index"]) if m not in INDEXES]
    table = table.reindex(columns=order).rename_axis(columns=over_seeds(metric, g.count()))
    return table.rename_axis(index=["experiment", "embedding", "bits"])


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
    lines.append(f"- Rule: a win is a {win_rule(rules, n)}; a loss the same the other way; "
                 f"anything else is mixed.")
    return "\n".join(lines)


def student_verdict(rows: pd.DataFrame, metric: str = "recall@1", student: str = "kl opq",
                    other: str = "opqn", domain: str = "universal", rules: Rules = Rules()) -> str:
    """The link to the main story, in one Markdown sentence: does the distilled student,
    compressed after training (`student`), beat OPQN's network trained on every domain
    (`other`) in the `domain` index at the same bits? Each bit budget is one comparison paired
    by seed (`compare`); the claim holds when the student wins a majority of the budgets, does
    not hold when it loses one and wins no majority, else it is not established."""
    v = index_verdicts(rows[rows.domain == domain], student, [other], metric, rules)
    if v.empty:
        return f"No {metric} comparison of {student} and {other} on the {domain} index ran."
    counts = outcome_counts(v)
    verdict = status(counts["win"] > len(v) / 2, counts["loss"] > 0)
    budgets = ", ".join(f"{r.bits} bits {num(r[student])} against {num(r.other)} ({r.outcome})"
                        for _, r in v.iterrows())
    one = ", on this seed" if int(v.n.max()) == 1 else ""
    return (f"**Does the distilled student, compressed after training, beat OPQN's universal "
            f"network?** {student} against {other} on the {domain} index, {metric} per bit budget "
            f"(mean over seeds): {budgets}. By the rule (a majority of the {len(v)} budgets won; "
            f"each a {win_rule(rules, int(v.n.max()))}): **{verdict}**{one}.")


def bits_needed(rows: pd.DataFrame, index: str, reference: str, metric: str = "recall@1",
                tolerance: float = 0.01) -> pd.DataFrame:
    """Per experiment: the fewest bits at which `index` stays within `tolerance` of
    `reference` (its float embedding) in `metric` — the mean over seeds of the paired drop
    reference − index at most `tolerance` — or None when no budget that ran does. Columns:
    domain, index, bits (or None), drop (at those bits, else at the largest budget), largest
    (the largest budget that ran)."""
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
                    "drop": float(drop.loc[bits] if bits is not None else drop.iloc[-1]),
                    "largest": int(drop.index.max())})
    return pd.DataFrame(out, columns=["domain", "index", "bits", "drop", "largest"])


def bits_table(needed: pd.DataFrame) -> pd.DataFrame:
    """The headline of notebook 06 from `bits_needed` tables: one row per experiment and
    embedding (the OPQN network, or the distilled kl student in the universal index), one column
    per compressed index, each cell the bits it needs to stay within the tolerance of its float
    embedding ("16 bits"), or "more than 48 (drop 0.052)" when the largest budget that ran (48)
    does not reach it; "–" only where an embedding has no such index (the kl student has no
    OPQN codes)."""
    def cell(r) -> str:
        if r.bits is None or pd.isna(r.bits):
            return f"more than {int(r.largest)} (drop {num(r.drop)})"
        return f"{int(r.bits)} bits"

    parts = needed["index"].map(_network_and_index)
    shown = needed.assign(cell=[cell(r) for r in needed.itertuples()], embedding=parts.str[0],
                          compressed=parts.str[1])
    table = shown.pivot(index=["domain", "embedding"], columns="compressed", values="cell")
    rows = list(dict.fromkeys(zip(shown.domain, shown.embedding)))
    table = table.reindex(index=pd.MultiIndex.from_tuples(rows),
                          columns=list(dict.fromkeys(shown.compressed))).fillna("–")
    return table.rename_axis(index=["experiment", "embedding"], columns="bits needed")


def bits_budgets(rows: pd.DataFrame, metric: str = "recall@1", tolerance: float = 0.01
                         ) -> pd.DataFrame:
    """`bits_needed` of every compressed index against its own float embedding: OPQN, PQ, OPQ
    (and IVFPQ) against "float", the kl student's against "kl float"."""
    parts = [bits_needed(rows, f"{prefix}{kind}", f"{prefix}float", metric, tolerance)
             for prefix in ("", "kl ") for kind in ("opqn", "pq", "opq", "ivfpq")
             if f"{prefix}{kind}" in set(rows.model)]
    return pd.concat(parts, ignore_index=True) if parts else bits_needed(rows.iloc[:0], "", "")


def index_costs(rows: pd.DataFrame) -> pd.DataFrame:
    """Bytes per item of every index at the bits it stores (a float index: 32 per dimension),
    from `ue_lib.opqn.experiments.experiment` rows (averaged over experiments and seeds).
    Search time is not here: on these small databases it is call overhead
    (`benchmark_table` measures it)."""
    key = ["model", "domain", "method", "seed"]
    wide = rows[rows.metric.isin(["bits", "bytes"])].pivot_table(
        index=key, columns="metric", values="value").reset_index()
    table = wide.groupby(["model", "bits"], sort=False)[["bytes"]].mean()
    table.index = table.index.set_levels(table.index.levels[1].astype(int), level=1)
    return table.rename(columns={"bytes": "bytes per item"})


def benchmark_table(bench: Sequence[Mapping]) -> pd.DataFrame:
    """`ue_lib.opqn.indexes.search_benchmark`'s rows for display: per index its bits, bytes per
    item, the memory of the whole database (MiB: 2^20 bytes; the item count in its header) and
    milliseconds per query, measured values to 2 significant digits."""
    table = pd.DataFrame(list(bench)).set_index("index")
    items = int(table["items"].iloc[0])
    return pd.DataFrame({"bits": table.bits.astype(int), "bytes per item": table.bytes.astype(int),
                         f"memory of {items:,} items (MiB)": table.memory_mib.map(significant),
                         "ms per query (median)": table.ms_per_query.map(significant)})


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
        if model == reference:  # the row the others are compared with: no difference of its own
            row.update(diff="", n="", outcome="(the defaults)")
        else:
            c = compare(rows, model, reference, metric, [domain], rules).iloc[0]
            # shown to 3 decimals like every metric (a raw -0.000015 would read as a number)
            row.update(diff=rounded(c["diff"], 3), n=c["n"], outcome=c["outcome"])
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


def _bits_answer(rows: pd.DataFrame, domain: str) -> str:
    """How many bits the `domain` index needs, in words (`bits_budgets`, Recall@1), with the best
    compressed index at the largest budget when none suffices."""
    needed = bits_budgets(rows[rows.domain == domain])
    if needed.empty:
        return f"No compressed index of the {domain} index ran"
    reached = needed[needed.bits.notna()]
    if len(reached):
        rest = len(reached) < len(needed)
        return ("Within 0.01 of float Recall@1: " + ", ".join(
            f"{r.index} from {int(r.bits)} bits" for r in reached.itertuples())
            + (f" (the others need more than {int(needed.largest.max())})" if rest else ""))
    largest = int(needed.largest.max())
    r = rows[(rows.domain == domain) & (rows.metric == "recall@1")].assign(bits=lambda d: bits_of(d))
    means = r[r.bits == largest].groupby("model").value.mean()
    compressed = means[[m for m in means.index if _network_and_index(m)[1] != "float"]]
    best = compressed.idxmax()
    drops = {m: means["kl float" if m.startswith("kl ") else "float"] - v for m, v in compressed.items()}
    closest = min(drops, key=drops.get)
    reference = "kl float" if best.startswith("kl ") else "float"
    text = (f"No budget tried (up to {largest} bits, {largest // 8} bytes) stays within 0.01 of "
            f"float Recall@1; the highest at {largest} bits is {best}'s, {num(compressed[best])} "
            f"against its float {num(means[reference])}")
    if closest != best:
        text += f" (the smallest drop from its own float is {closest}'s, {num(drops[closest])})"
    return text


def answer(rows: pd.DataFrame, against=("pq", "opq"), metrics=("map@all", "recall@1"),
           domain: str = "universal", rules: Rules = Rules()) -> str:
    """Notebook 06's question in one plain answer (Markdown): how many bits the `domain` index
    needs (`_bits_answer`), and, per baseline of `against` and per metric, whether OPQN beats
    post-hoc quantization (`index_verdicts` over every experiment and bit budget: it holds when
    OPQN wins a majority of those settings, does not hold when it loses one and wins no
    majority, else is not established); it says so when the verdicts disagree."""
    parts, verdicts = [], set()
    for baseline in against:
        said = []
        for metric in metrics:
            v = index_verdicts(rows, "opqn", [baseline], metric, rules)
            if not len(v):
                continue
            counts = outcome_counts(v)
            verdict = status(counts["win"] > len(v) / 2, counts["loss"] > 0)
            verdicts.add(verdict)
            said.append(f"{metric} **{verdict}** ({counts_phrase(counts)} of {len(v)})")
        if said:
            parts.append(f"against {baseline}, " + ", ".join(said))
    beats = ("; ".join(parts) if parts else "not compared") + "."
    return (f"**How many bits does the {domain} index need?** {_bits_answer(rows, domain)}. "
            f"**Does OPQN beat post-hoc quantization?** Per baseline and metric, over the "
            f"(experiment, bits) settings (a majority of wins needed): " + beats
            + (" The verdict depends on the baseline and the metric." if len(verdicts) > 1 else ""))


def shapes_line(profile) -> str:
    """Notebook 06's embeddings and code shapes in one Markdown line: the OPQN networks' size and
    codes (`quantize_dim`, `code_shapes`), and the distilled student's (`embedding_dim`) faiss
    codes at the same bits (`ue_lib.opqn.indexes.pq_shape`: its shape changes with the budget,
    so its curve need not fall steadily with fewer bits)."""
    shapes = profile.code_shapes()
    bits = [m * int(math.log2(k)) for m, k in shapes]
    student = [pq_shape(profile.embedding_dim, b) for b in bits]
    return (f"OPQN networks: {profile.quantize_dim}-d floats ({4 * profile.quantize_dim} bytes), "
            f"codes {', '.join(f'{m}×{k}' for m, k in shapes)} at {', '.join(map(str, bits))} bits. "
            f"The kl student: {profile.embedding_dim}-d ({4 * profile.embedding_dim} bytes), faiss "
            f"codes {', '.join(f'{m}×{k}' for m, k in student)} at the same bits (at most 8 bits "
            f"per sub-space).")
