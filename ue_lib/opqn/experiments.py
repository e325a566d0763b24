"""What notebook 06 runs: every experiment (a domain under a protocol, or the universal index of
all domains) at every code shape and seed, its OPQN network against the faiss indexes of the
same float embedding (and, on the universal index, the distilled kl student of the main paper
compressed the same ways); and the ablation of OPQN's settings. Trained and scored in the
profile's `workers` processes (`RunFolder.map`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..data import Domain
from ..evaluate import combined_labels, embed, model_inputs
from ..io import RESULT_COLUMNS, result_rows, slug
from ..universal import models as universal
from ..verdicts import setting_label
from .indexes import compare_indexes, pq_shape
from .models import experiment_domains, opqn_model
from .objectives import quantizer_of


def experiment_label(domain: str, protocol: str) -> str:
    return domain if domain == "universal" else f"{domain} {protocol}"


def _split_inputs(model, domains: dict[str, Domain], split: str):
    """(embeddings, labels, is_query) of `split` over `domains` (several: merged, leave-one-out,
    labels made distinct per domain)."""
    parts = {n: getattr(d, split) for n, d in domains.items()}
    x = np.concatenate([embed(model, model_inputs(model, sp)) for sp in parts.values()])
    if len(parts) > 1:
        return x, combined_labels({n: sp.labels for n, sp in parts.items()})[0], None
    (sp,) = parts.values()
    return x, sp.labels, sp.is_query


def experiment(folder, domain: str, protocol: str, seed: int, shape: tuple[int, int],
               overrides: dict | None = None, kinds: Sequence[str] | None = None) -> pd.DataFrame:
    """One experiment, seed and code shape: the OPQN network's float embedding against the
    faiss `kinds` of that same embedding and against its own OPQN codes (`compare_indexes`, on
    the test split); for ``universal`` also the kl student of notebooks 03-04 (float and faiss,
    at the same bits: `pq_shape`). Result rows: model = index ("float", "pq", "opq", "opqn";
    "kl float", …), method = "<bits> bits", domain = the experiment. `kinds` default: the
    profile's `quantize_baselines`."""
    p = folder.profile
    kinds = p.methods("quantize_baselines") if kinds is None else kinds
    domains = experiment_domains(folder, domain, protocol, seed)
    name = f"{slug(domain)}-{protocol or 'merged'}-{shape[0]}x{shape[1]}-seed{seed}"
    result = opqn_model(folder, domains, name, seed, shape, overrides)
    bits = shape[0] * int(np.log2(shape[1]))
    train_x = _split_inputs(result.model, domains, "train")[0]
    rows = compare_indexes(train_x, *_split_inputs(result.model, domains, "test"), shape,
                           quantizer_of(result), kinds, seed=seed, max_queries=p.quantize_queries)
    if domain == "universal":
        student = universal.student(folder, "kl", seed).model
        s_train = _split_inputs(student, domains, "train")[0]
        rows += compare_indexes(s_train, *_split_inputs(student, domains, "test"),
                                pq_shape(s_train.shape[1], bits), None, kinds, seed=seed,
                                prefix="kl ", max_queries=p.quantize_queries)
    out = [row for r in rows for row in result_rows(
        {r["metric"]: r["value"]}, notebook=folder.notebook, model=r["index"], method=f"{bits} bits",
        domain=experiment_label(domain, protocol), seed=seed, epoch=result.best_epoch)]
    return pd.DataFrame(out, columns=RESULT_COLUMNS)


def all_experiments(folder) -> pd.DataFrame:
    """Notebook 06's main table: `experiment` for every experiment (`quantize_experiments`),
    code shape (`quantize_codes`) and seed (`quantize_seeds`, offset by the run's seed)."""
    p = folder.profile
    seeds = p.seed_list("quantize_seeds", offset=folder.seed)
    experiments = p.quantize_experiment_list()
    if ("universal", "") in experiments:  # the students every code shape shares: made first
        if p.distill_tuning:
            universal.tuning(folder, "kl")  # shared by every seed's student
        folder.map(_kl_student, folder.missing(_kl_student, [(s,) for s in seeds]), "students")
    items = [(d, proto, s, shape) for d, proto in experiments for shape in p.code_shapes()
             for s in seeds]
    return pd.concat(folder.map(experiment, items, "OPQN models"), ignore_index=True)


def _kl_student(folder, seed: int) -> None:
    universal.student(folder, "kl", seed)


def ablation(folder, shape: tuple[int, int] | None = None) -> pd.DataFrame:
    """Notebook 06's ablations: OPQN with one setting of `quantize_ablation` changed at a time,
    on `ablation_experiment` (one below the metric's ceiling), at `shape` (default: the middle
    code shape), every seed. Rows as
    `experiment` for the OPQN codes only, model "opqn" for the defaults (the main table's
    model, reused) and "opqn codebook=random", … for each change."""
    p = folder.profile
    shapes = p.code_shapes()
    shape = shape or shapes[len(shapes) // 2]
    domain, protocol = p.ablation_experiment()
    seeds = p.seed_list("quantize_seeds", offset=folder.seed)
    points = [("opqn", {})] + [(f"opqn {knob.partition('.')[2] or knob}={setting_label(v)}", {knob: v})
                               for knob, values in p.quantize_ablation.items() for v in values[1:]]
    items = [(domain, protocol, s, shape, overrides, ()) for _, overrides in points for s in seeds]
    parts = folder.map(experiment, items, "OPQN models")
    models = [model for model, _ in points for _ in seeds]
    return pd.concat([rows[rows.model == "opqn"].assign(model=model)
                      for rows, model in zip(parts, models)], ignore_index=True)
