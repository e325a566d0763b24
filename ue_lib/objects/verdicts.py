"""The object-embedding system's verdicts (notebook 08): every condition's retrieval per task, the
detector, the cost per image of teacher and students, and the paper's findings, each decided by
`ue_lib.verdicts.favoured` (wins per (domain, metric) comparison, paired by seed)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..verdicts import (
    Rules,
    favoured_of,
    interval,
    mean_std,
    model_table,
    num,
    outcome,
    signed,
    win_counts,
    win_rule,
)
from .settings import GUIDES, MEASURE_LACKS, MEASURES, condition_name, is_measured

TIME_DIGITS = 2  # measured times vary by more than 1% between runs: 2 significant digits
FLOOR = 0.1  # a domain where no condition's mean score reaches this is at the floor (`floor_note`)


def condition_rows(rows: pd.DataFrame, task: str, measured: bool = False) -> pd.DataFrame:
    """Notebook 08's rows of one task ("objects": object retrieval per domain; "spliced": spliced
    retrieval) with ``model`` set to the condition's name (`condition_name`), so that `compare`,
    `favoured`, the tables and the figures compare and name conditions alike. The measured
    students (`is_measured`) have a section of their own: only with `measured`."""
    r = rows[rows.model == task]
    if not measured:
        r = r[~r.method.astype(str).map(is_measured).astype(bool)]
    return r.assign(model=r.method.astype(str).map(condition_name))


def object_table(rows: pd.DataFrame, task: str, metrics: Sequence[str]) -> pd.DataFrame:
    """One row per condition (named by `condition_name`), one column per metric: the mean over
    domains, 'mean ± std' over seeds of that per-seed mean."""
    return model_table(condition_rows(rows, task), metrics)


def floor_note(rows: pd.DataFrame, task: str = "objects", metric: str = "recall@1",
               floor: float = FLOOR) -> str:
    """The domains of `task` where no condition (measured students left out) reaches `floor` in
    `metric` (mean over seeds), in one Markdown sentence with each one's best condition and
    score ("" when there are none): there every condition is near zero, so their comparisons
    come out as ties and the findings' counts are decided by the other domains."""
    r = condition_rows(rows, task)
    means = r[r.metric == metric].groupby(["domain", "model"]).value.mean()
    if means.empty:
        return ""
    best = means.groupby(level="domain").agg(["max", "idxmax"])
    low = best[best["max"] < floor]
    if low.empty:
        return ""
    where = " and ".join(f"{d} (best: {b['idxmax'][1]}, {num(b['max'])})" for d, b in low.iterrows())
    others = best.index.size - low.index.size
    return (f"**At the floor:** no condition reaches {metric} {num(floor)} on {where}. There every "
            f"condition is near zero, so the comparisons come out as ties and the findings' win "
            f"counts are decided by the other {others} domain{'' if others == 1 else 's'}.")


def detector_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Notebook 08's detector: its test quality (recall and precision at IoU >= 0.5, mean IoU of
    each object's best detection, detections per scene) and its training seconds (to
    `TIME_DIGITS` significant digits), mean ± std over seeds."""
    r = rows[(rows.model == "detector") | ((rows.model == "cost") &
                                           (rows.metric == "train_seconds"))]
    values = {m: mean_std(g.value, TIME_DIGITS if m == "train_seconds" else None)
              for m, g in r.groupby("metric", sort=False)}
    table = pd.Series(values, name="value").rename_axis("metric").to_frame().T
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
    (roi_align, the rest of the trunk, its head), and the totals; to `TIME_DIGITS` significant
    digits."""
    shared, own = _pipeline_totals(rows)
    out = []
    for method in own.columns:
        total = shared + own[method]
        out.append({"condition": condition_name(method), "method": method,
                    "shared ms": mean_std(shared, TIME_DIGITS),
                    "own ms": mean_std(own[method], TIME_DIGITS),
                    "total ms": mean_std(total, TIME_DIGITS), "total_mean": float(total.mean())})
    return pd.DataFrame(out).set_index("condition")


def tradeoff_points(rows: pd.DataFrame, metric: str = "recall@1") -> pd.DataFrame:
    """For `figures.tradeoff_plot`: per timed method (its id and its `condition_name`), the total
    ms per test image and the object retrieval `metric` (mean over domains), each as mean and std
    over seeds."""
    shared, own = _pipeline_totals(rows)
    objects = rows[rows.model == "objects"]
    acc = objects[objects.metric == metric].groupby(["method", "seed"]).value.mean()
    out = []
    for method in own.columns:
        total, value = shared + own[method], acc.loc[method]
        out.append({"method": method, "condition": condition_name(method), "ms": float(total.mean()),
                    "ms_std": float(total.std(ddof=1)) if len(total) > 1 else 0.0,
                    "value": float(value.mean()),
                    "value_std": float(value.std(ddof=1)) if len(value) > 1 else 0.0})
    return pd.DataFrame(out)


def _favour_line(rows: pd.DataFrame, a: str, b: str, metrics: Sequence[str], rules: Rules
                 ) -> tuple[str, str]:
    wins, parts = win_counts(rows, a, b, metrics, rules)
    return favoured_of(wins, a, b, rules), f"{a} vs {b}: {', '.join(parts)}"


def object_findings(rows: pd.DataFrame, metrics: Sequence[str], spliced_metrics: Sequence[str],
                    rules: Rules = Rules()) -> pd.DataFrame:
    """The paper's findings, each decided from this run's rows by `favoured` (wins per (domain,
    metric) comparison, paired by seed, by the rule of `compare`; a margin of
    `rules.favour_margin`): finding, what was compared, the numbers favour, verdict."""
    objects, spliced = condition_rows(rows, "objects"), condition_rows(rows, "spliced")
    guides = sorted(m for m in set(rows[rows.model == "objects"].method)
                    if m.startswith("student_") and not is_measured(m))
    out = []

    def add(finding, table, a, b, ms, expected):
        """Condition ids `a`, `b`; `expected`: the id (or ids, or "neither") under which the
        finding holds."""
        a, b = condition_name(a), condition_name(b)
        if not {a, b} <= set(table.model):
            return
        choice, measured = _favour_line(table, a, b, ms, rules)
        expected = {condition_name(e) for e in ([expected] if isinstance(expected, str) else expected)}
        verdict = ("holds" if choice in expected else "not shown (neither favoured)"
                   if choice == "neither" else f"does not hold: {choice} favoured")
        out.append({"finding": finding, "compared": measured, "favoured": choice,
                    "verdict": verdict, "seeds": int(table.seed.nunique())})

    add("1. a detector's features retrieve worse than a classification network's", objects,
        "trunk_features", "detector_features", metrics, "trunk_features")
    add("2. a detected box is hard attention: pooled in it beats the global embedding", objects,
        "roi_detected", "global", metrics, "roi_detected")
    add("2'. the same with oracle boxes", objects, "roi_oracle", "global", metrics, "roi_oracle")
    for g in guides:
        guide = GUIDES.get(g[len("student_"):], g[len("student_"):])
        add(f"3. the guided student ({guide} guide) is at least as good as its teacher",
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
                     f"than the teacher, {metric} {num(acc.get(r.method, np.nan))} against "
                     f"{num(acc.get('teacher_crop', np.nan))}")
    return (f"Per test image, the teacher takes {teacher['total ms']} ms (of which "
            f"{teacher['own ms']} its crops and their trunk passes). " + "; ".join(parts) + ".")


def box_view_table(rows: pd.DataFrame, metric: str = "recall@1") -> pd.DataFrame:
    """Notebook 08 at paper scale (`ue_lib.objects.paper_scale.box_views`): `metric` per embedder and view
    (rows, in recorded order) and domain (columns). With no rows, one line saying why."""
    r = rows[(rows.model == "box_views") & (rows.metric == metric)] if len(rows) else rows
    if not len(r):
        return pd.DataFrame({"note": ["no domain of this profile keeps object boxes: the box "
                                      "views run on CUB and Cars (ue run --profile paper)"]})
    table = r.pivot_table(index="method", columns="domain", values="value", aggfunc="mean")
    return table.reindex(list(dict.fromkeys(r.method))).rename_axis(columns=metric)


def _per_seed_gap(rows: pd.DataFrame, task: str, a: str, b: str, metric: str) -> pd.Series:
    """Per seed: the mean over domains of a's `metric` minus b's in `task`'s rows."""
    r = rows[(rows.model == task) & (rows.metric == metric) & rows.method.isin([a, b])]
    per = r.pivot_table(index="seed", columns="method", values="value", aggfunc="mean")
    return per[a] - per[b] if {a, b} <= set(per.columns) else pd.Series(dtype=float)


def trunk_vs_head(rows: pd.DataFrame, metric: str = "recall@1", rules: Rules = Rules()) -> str:
    """Why the raw trunk features can beat a trained head on scene objects, measured (Markdown):
    the universal head (the kl student on the box's features, condition roi_oracle) minus the
    raw trunk features, on clean items ("clean" rows) and on objects cut from scenes ("objects"
    rows), each the mean over domains paired by seed with its outcome by the rule. A head ahead
    on clean items and not on objects lost its lead to the shift from clean items to scene
    crops; a head behind on both is the weaker embedding."""
    head, trunk = condition_name("roi_oracle"), condition_name("trunk_features")
    clean, objects = (_per_seed_gap(rows, t, "roi_oracle", "trunk_features", metric)
                      for t in ("clean", "objects"))
    if clean.empty or objects.empty:
        return "The clean-item and scene-object rows of the head and the trunk did not both run."
    oc, oo = outcome(clean, rules), outcome(objects, rules)
    if oc == "win" and oo != "win":
        why = ("the head is the better embedding of clean items, the kind it was trained on, and "
               "loses that lead on objects cut from scenes: the shift from clean items to scene "
               "crops (clutter in the box, context mixed in by the first stages) costs the trained "
               "head more than the raw features")
    elif oc != "win" and oo != "win":
        why = ("the head is not ahead even on clean items: its embedding, much smaller than the "
               "trunk's features and trained on a few domains, keeps less of these items before "
               "any shift")
    else:
        why = "the head is ahead on scene objects: the raw features have no lead to explain here"
    one = " (on this seed)" if len(clean) == 1 else ""
    return (f"**Trunk against head.** {head} minus {trunk}, {metric}, mean over domains: "
            f"on clean items {signed(clean.mean())} ({oc}), on objects in scenes "
            f"{signed(objects.mean())} ({oo}){one}. So {why}.")


def _gap_cells(gap: pd.Series, rules: Rules) -> dict:
    lo, hi = interval(gap)
    return {"mean": signed(gap.mean()),
            "95% interval": f"{signed(lo)} to {signed(hi)}" if np.isfinite(lo) else "one seed",
            "outcome": outcome(gap, rules)}


def measured_students(rows: pd.DataFrame) -> dict[str, list[str]]:
    """{student id: [its measured students' ids]} for the guided students measured in `rows`
    (``student_kl`` -> ``student_kl+clean``, ``student_kl+init``), in the order run."""
    methods = list(dict.fromkeys(rows[rows.model == "objects"].method.astype(str)))
    return {base: [m for m in methods if is_measured(m) and m.split("+")[0] == base]
            for base in methods if any(is_measured(m) and m.split("+")[0] == base for m in methods)}


def student_margins(rows: pd.DataFrame, metric: str = "recall@1", rules: Rules = Rules()
                    ) -> pd.DataFrame:
    """The teacher's margin over each measured guided student and its unchanged student: per
    student (named by `condition_name`) and task (a row each: "scene objects", the objects cut
    from test scenes; "clean items", the clean test items), its `metric` and the teacher's (mean
    over domains, mean ± std over seeds) and the teacher minus the student, paired by seed: the mean, its 95%
    t interval and its outcome by the rule of `compare` ("win": the teacher stays ahead)."""
    out = []
    for base, measured in measured_students(rows).items():
        for method in [base, *measured]:
            for task, where in (("objects", "scene objects"), ("clean", "clean items")):
                gap = _per_seed_gap(rows, task, "teacher_crop", method, metric)
                if gap.empty:
                    continue
                own, teacher = (rows[(rows.model == task) & (rows.method == m) & (rows.metric == metric)]
                                .groupby("seed").value.mean() for m in (method, "teacher_crop"))
                margin = _gap_cells(gap, rules)
                out.append({"student": condition_name(method), "retrieving": where,
                            metric: mean_std(own), f"teacher's {metric}": mean_std(teacher),
                            "teacher's margin": margin["mean"], "its 95% interval": margin["95% interval"],
                            "teacher ahead?": margin["outcome"]})
    return pd.DataFrame(out).set_index(["student", "retrieving"]) if out else pd.DataFrame()


def _measure_reading(results: dict[str, tuple[str, str]], seeds: int) -> str:
    """What the measurements' outcomes say together: `results` maps a measured student's id to
    its outcomes against the unchanged student (on scene objects, on clean items) over `seeds`."""
    def named(ids) -> str:
        return " and ".join("*" + ", ".join(MEASURES.get(x, x) for x in m.split("+")[1:]) + "*"
                            for m in ids)

    def lack(ids, join: str = " or ") -> str:
        return join.join(dict.fromkeys(MEASURE_LACKS.get(x, x) for m in ids for x in m.split("+")[1:]))

    def verb(ids, one: str, many: str) -> str:
        return one if len(ids) == 1 else many

    helped = [m for m, (o, _) in results.items() if o == "win"]
    if helped:
        return (f"{named(helped)} {verb(helped, 'lifts', 'lift')} the student on scene objects: it "
                f"was short of {lack(helped)}.")
    unseen = (f"no gain on scene objects shows over {seeds} seed{'' if seeds == 1 else 's'} (a gain "
              f"within the rule's 0.010, or within the spread over seeds, would not show)")
    clean = [m for m, (_, c) in results.items() if c == "win"]
    if clean:
        added = lack(results, " nor ")
        return (f"{named(clean)} {verb(clean, 'lifts', 'lift')} the student on clean items, and "
                f"{unseen}: on objects cut from scenes the student is held back by what their RoI "
                f"features keep; " + (f"neither {added} changed that." if " nor " in added
                                      else f"{added} did not change that."))
    return f"No measurement lifts the student on clean items, and {unseen}."


def _measured(rows: pd.DataFrame, metric: str, rules: Rules) -> tuple[list[str], dict]:
    """`measures_sentence`'s lines, and each measured student's outcomes against its unchanged
    student (on scene objects, on clean items) for `_measure_reading`."""
    lines, results = [], {}
    for base, measured in measured_students(rows).items():
        for method in measured:
            on = {t: _per_seed_gap(rows, t, method, base, metric) for t in ("objects", "clean")}
            margin = _per_seed_gap(rows, "objects", "teacher_crop", method, metric)
            if on["objects"].empty or margin.empty:
                continue
            what = condition_name(method)[len(condition_name(base)) + 2:]
            outcomes = {t: outcome(g, rules) if not g.empty else "not measured" for t, g in on.items()}
            results[method] = (outcomes["objects"], outcomes["clean"])
            clean = (f", on clean items {signed(on['clean'].mean())} ({outcomes['clean']})"
                     if not on["clean"].empty else "")
            one = " (on this seed)" if len(margin) == 1 else ""
            lines.append(f"- **{what}**: {metric} against {condition_name(base)} on scene objects "
                         f"{signed(on['objects'].mean())} ({outcomes['objects']}){clean}{one}; the "
                         f"teacher stays {signed(margin.mean())} ahead on scene objects "
                         f"({outcome(margin, rules)}).")
    return lines, results


def measures_sentence(rows: pd.DataFrame, metric: str = "recall@1", rules: Rules = Rules()) -> str:
    """What each measurement did to its guided student, in Markdown: one line per measured
    student, its `metric` minus the unchanged student's (mean over domains, paired by seed,
    with the outcome) on objects cut from scenes and on clean items, and the teacher's margin on
    objects after it; then what the outcomes say together (`_measure_reading`)."""
    lines, results = _measured(rows, metric, rules)
    if not lines:
        return "No guided student was measured in this run (`objects_student_measures` is empty)."
    seeds = int(rows[rows.model == "objects"].seed.nunique())
    head = {t: rows[(rows.model == t) & (rows.method == "roi_oracle") & (rows.metric == metric)]
            for t in ("objects", "clean")}
    if all(len(h) for h in head.values()):  # what the students started from with "init"
        lines.append(f"- For scale, {condition_name('roi_oracle')} is the universal head itself, "
                     f"unguided: {metric} {num(head['objects'].groupby('seed').value.mean().mean())} "
                     f"on scene objects, {num(head['clean'].groupby('seed').value.mean().mean())} on "
                     f"clean items.")
    return "\n".join(lines) + "\n\n**Reading.** " + _measure_reading(results, seeds)


def measures_reading(rows: pd.DataFrame, metric: str = "recall@1", rules: Rules = Rules()) -> str:
    """Only the reading of `measures_sentence` ("" when no student was measured)."""
    results = _measured(rows, metric, rules)[1]
    seeds = int(rows[rows.model == "objects"].seed.nunique()) if results else 0
    return _measure_reading(results, seeds) if results else ""


def answer(findings: pd.DataFrame, costs: pd.DataFrame | None = None) -> str:
    """Notebook 08's question in one plain answer (Markdown), from `object_findings`: does a
    detector's box (hard attention) give a better object embedding than the whole scene
    (finding 2), does a guided student match its teacher (finding 3, per guide; with `costs`
    of `pipeline_costs`, at what speed), then the other findings' verdicts in a line."""
    def said(verdict: str) -> str:
        return "**Yes**" if verdict == "holds" else "**No**"

    if findings.empty:
        return "The scene experiment did not run, so its question has no answer in this run."
    parts = []
    for f, r in findings.iterrows():
        if str(f).startswith("2. "):
            parts.append(f"**Does a detected box beat the whole scene?** {said(r.verdict)} "
                         f"(finding 2 {r.verdict}).")
        elif str(f).startswith("3. "):
            guide = f[f.index("(") + 1:f.index(")")]
            speed = ""
            if costs is not None and "teacher_crop" in set(costs.method):
                name = f"(v) student, {guide}"
                teacher = costs[costs.method == "teacher_crop"].total_mean.iloc[0]
                if name in costs.index:
                    speed = f", {teacher / costs.loc[name, 'total_mean']:.1f}× faster than the teacher"
            parts.append(f"**Does the guided student ({guide}) match its teacher?** "
                         f"{said(r.verdict)} (finding 3 {r.verdict}{speed}).")
    others = "; ".join(f"{str(f).split('.')[0]}: {r.verdict}" for f, r in findings.iterrows()
                       if not str(f).startswith(("2. ", "3. ")))
    return " ".join(parts) + (f" The other findings: {others}." if others else "")
