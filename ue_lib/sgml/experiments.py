"""What notebook 07 runs: the ladder of specialists on every attribute-bearing domain and seed,
the choice of the graded rung that teaches, the kl students of each teaching rung, and pairs of
test items with their granularity similarity and each rung's learned similarity. Trained and
scored in the profile's `workers` processes (`RunFolder.map`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..evaluate import (
    combined_labels,
    embed,
    graded_metrics,
    l2_normalise,
    model_inputs,
    query_gallery_metrics,
    retrieval_metrics,
)
from ..io import RESULT_COLUMNS, result_rows
from ..losses import METRIC_LOSSES
from ..universal import models as universal
from .models import attribute_domains, rung_specialist, rung_student
from .settings import SGMLSettings

STUDENT_OF_SPECIALISTS = "kl ← specialists"


def metrics_of(embeddings: np.ndarray, labels: np.ndarray, groups=None, attributes=None,
                     is_query=None, ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """Recall@K and MAP@R (`ue_lib.evaluate.split_metrics`'s protocol: query/gallery when
    `is_query` is given, else leave-one-out) with coarse Recall@K and nDCG@K
    (`ue_lib.evaluate.graded_metrics`) of one set of embeddings."""
    if is_query is None:
        out = retrieval_metrics(embeddings, labels, ks)
        graded = graded_metrics(embeddings, labels, query_groups=groups,
                                query_attributes=attributes, ks=ks)
    else:
        q, g = np.asarray(is_query, bool), ~np.asarray(is_query, bool)
        pick = {n: (None, None) if a is None else (a[q], a[g])
                for n, a in (("groups", groups), ("attributes", attributes))}
        out = query_gallery_metrics(embeddings[q], labels[q], embeddings[g], labels[g], ks)
        graded = graded_metrics(embeddings[q], labels[q], query_groups=pick["groups"][0],
                                query_attributes=pick["attributes"][0], gallery=embeddings[g],
                                gallery_labels=labels[g], gallery_groups=pick["groups"][1],
                                gallery_attributes=pick["attributes"][1], ks=ks)
    return {**out, **graded}


def _rows(folder, model: str, method: str, domain: str, seed: int, epoch: int,
          metrics: dict[str, float]) -> list[dict]:
    return result_rows(metrics, notebook=folder.notebook, model=model, method=method, domain=domain,
                       seed=seed, epoch=epoch)


def split_metrics_of(model, split, ks: Sequence[int]) -> dict[str, float]:
    """`metrics_of` of `model`'s embeddings of one split, under the split's protocol."""
    x = embed(model, model_inputs(model, split))
    return metrics_of(x, split.labels, split.groups, split.attributes, split.is_query, ks)


def _ladder_rows(folder, rung: str, domain: str, seed: int) -> list[dict]:
    result = rung_specialist(folder, rung, domain, seed)
    metrics = split_metrics_of(result.model, folder.domains(seed)[domain].test,
                                     folder.profile.sgml_k_list())
    return _rows(folder, rung, "specialist", domain, seed, result.best_epoch, metrics)


def ladder(folder) -> pd.DataFrame:
    """Notebook 07's ladder: every rung of `sgml_ladder` as specialists on every attribute-bearing
    domain, every seed of `sgml_seeds` (offset by the run's seed); their test Recall@K, MAP@R,
    coarse Recall@K and nDCG@K (`metrics_of`, Ks `sgml_ks`), trained and scored in the
    profile's `workers` processes (`RunFolder.map`). Rows: model = rung, method "specialist"."""
    p = folder.profile
    items = [(rung, name, s) for s in p.seed_list("sgml_seeds", offset=folder.seed)
             for rung in p.sgml_ladder for name in attribute_domains(folder, s)]
    parts = folder.map(_ladder_rows, items, "specialists")
    return pd.DataFrame([r for part in parts for r in part], columns=RESULT_COLUMNS)


def graded_rungs(profile: SGMLSettings) -> list[str]:
    """The rungs of `sgml_ladder` whose loss grades pairs by attributes (``takes_attributes``)."""
    return [rung for rung, settings in profile.sgml_ladder.items()
            if getattr(METRIC_LOSSES[settings.get("metric_loss", profile.metric_loss)],
                       "takes_attributes", False)]


def teacher_choice(folder) -> tuple[str, pd.DataFrame]:
    """The graded rung (`graded_rungs`) whose specialists have the best *validation* nDCG@K
    (largest K of `sgml_ks`), averaged over the attribute-bearing domains and `sgml_seeds`
    (test is never looked at; ties: the first rung). Returns it and the table behind it
    (rung, val score)."""
    p = folder.profile
    metric = f"ndcg@{p.sgml_k_list()[-1]}"
    rungs = graded_rungs(p)
    if not rungs:
        raise ValueError("sgml_teachers has auto but sgml_ladder has no rung whose loss grades "
                         "pairs by attributes (e.g. soft_binomial_deviance)")
    scores = {}
    for rung in rungs:
        values = [split_metrics_of(rung_specialist(folder, rung, n, s).model,
                                         folder.domains(s)[n].val, p.sgml_k_list())[metric]
                  for s in p.seed_list("sgml_seeds", offset=folder.seed)
                  for n in attribute_domains(folder, s)]
        scores[rung] = float(np.mean(values))
    best = max(rungs, key=lambda r: (scores[r], -rungs.index(r)))
    table = pd.DataFrame({"rung": rungs, f"val {metric}": [scores[r] for r in rungs],
                          "chosen": [r == best for r in rungs]}).set_index("rung")
    return best, table


def teacher_rungs(folder, chosen: str | None = None) -> list[str]:
    """`sgml_teachers` with ``auto`` resolved to `chosen` (`teacher_choice`'s rung; computed
    when not given)."""
    rungs = folder.profile.methods("sgml_teachers")
    if "auto" in rungs and chosen is None:
        chosen = teacher_choice(folder)[0]
    return [chosen if r == "auto" else r for r in rungs]


def _teacher(folder, rung: str | None, domain: str, seed: int) -> None:
    if rung is None:
        universal.specialist(folder, domain, seed)
    else:
        rung_specialist(folder, rung, domain, seed)


def _student_rows(folder, rung: str | None, seed: int) -> list[dict]:
    p, domains = folder.profile, folder.domains(seed)
    if rung is None:
        model, result = STUDENT_OF_SPECIALISTS, universal.student(folder, "kl", seed)
    else:
        model, result = f"kl ← {rung}", rung_student(folder, rung, seed)
    xs = {n: embed(result.model, model_inputs(result.model, d.test)) for n, d in domains.items()}
    rows = []
    for n, d in domains.items():
        metrics = metrics_of(xs[n], d.test.labels, d.test.groups, d.test.attributes,
                                   d.test.is_query, p.sgml_k_list())
        rows += _rows(folder, model, "student", n, seed, result.best_epoch, metrics)
    labels = combined_labels({n: d.test.labels for n, d in domains.items()})[0]
    groups = combined_labels({n: d.test.labels if d.test.groups is None else d.test.groups
                              for n, d in domains.items()})[0]
    metrics = metrics_of(np.concatenate(list(xs.values())), labels, groups,
                               ks=p.sgml_k_list())
    return rows + _rows(folder, model, "student", "merged", seed, result.best_epoch, metrics)


def students(folder, chosen: str | None = None) -> pd.DataFrame:
    """Notebook 07's link to the main story: the kl student of the project's specialists
    (`ue_lib.universal.models.student`, model "kl ← specialists") and the kl student of each rung of
    `teacher_rungs` (`rung_student`, model "kl ← <rung>"), every seed of `sgml_seeds`:
    `metrics_of` per domain and on the merged index of all domains (labels and coarse
    groups made distinct per domain; a domain without groups counts its classes as its groups;
    attributes differ between domains, so the merged nDCG grades by class and group only).
    The models the students share are made first (the kl tuning here, the teachers in
    `workers` processes), then the students in `workers` processes. `chosen`: the graded rung
    `teacher_choice` chose, if the caller has it. Rows: method "student"."""
    p = folder.profile
    seeds, rungs = p.seed_list("sgml_seeds", offset=folder.seed), teacher_rungs(folder, chosen)
    if p.distill_tuning:
        universal.tuning(folder, "kl")
    teachers = [(None, n, s) for s in seeds for n in folder.domains(s)]
    teachers += [(r, n, s) for s in seeds for r in rungs for n in attribute_domains(folder, s)]
    folder.map(_teacher, folder.missing(_teacher, teachers), "teachers")
    parts = folder.map(_student_rows, [(r, s) for s in seeds for r in [None, *rungs]], "students")
    return pd.DataFrame([r for part in parts for r in part], columns=RESULT_COLUMNS)


def pairs(folder, domain: str | None = None, n_pairs: int = 3000) -> pd.DataFrame:
    """Test pairs of `domain` (default: the attribute-bearing domain with the most attributes
    on per image at the run's seed, whose pairs have the most graded g) at every seed of
    `sgml_seeds`: per seed, `n_pairs` seeded random pairs (mostly negatives) and `n_pairs`
    seeded positive pairs (an anchor and a random other item of its class), with their
    ground-truth granularity similarity g (cosine of the attribute vectors), whether they share
    a class, and each rung's learned cosine similarity. Columns: domain, seed, rung, g,
    same_class, similarity."""
    if domain is None:  # the most graded one: most attributes on per image
        domain = max(attribute_domains(folder, folder.seed), key=lambda n: float(
            (folder.domains(folder.seed)[n].test.attributes >= 0.5).sum(1).mean()))
    seeds = folder.profile.seed_list("sgml_seeds", offset=folder.seed)
    return pd.concat([_pairs_of_seed(folder, domain, seed, n_pairs) for seed in seeds],
                     ignore_index=True)


def pair_indices(labels: np.ndarray, n_pairs: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`n_pairs` seeded random pairs and `n_pairs` seeded positive pairs (an anchor and a random
    item of its class, possibly itself) of items with `labels`; pairs of an item with itself
    are dropped."""
    rng = np.random.default_rng(seed)
    n = len(labels)
    order = np.argsort(labels, kind="stable")
    _, start, inverse, count = np.unique(labels[order], return_index=True, return_inverse=True,
                                         return_counts=True)
    anchors = rng.integers(0, n, n_pairs)
    cls = inverse[np.argsort(order)][anchors]  # each anchor's class position
    partners = order[start[cls] + (rng.random(n_pairs) * count[cls]).astype(int)]
    i = np.concatenate([rng.integers(0, n, n_pairs), anchors])
    j = np.concatenate([rng.integers(0, n, n_pairs), partners])
    return i[i != j], j[i != j]


def _pairs_of_seed(folder, domain: str, seed: int, n_pairs: int) -> pd.DataFrame:
    test = folder.domains(seed)[domain].test
    i, j = pair_indices(test.labels, n_pairs, seed)
    a = l2_normalise(np.asarray(test.attributes, np.float64))
    g = np.clip((a[i] * a[j]).sum(1), 0.0, 1.0)
    out = []
    for rung in folder.profile.sgml_ladder:
        result = rung_specialist(folder, rung, domain, seed)
        x = l2_normalise(embed(result.model, model_inputs(result.model, test)))
        out.append(pd.DataFrame({"domain": domain, "seed": seed, "rung": rung, "g": g,
                                 "same_class": test.labels[i] == test.labels[j],
                                 "similarity": (x[i] * x[j]).sum(1)}))
    return pd.concat(out, ignore_index=True)
