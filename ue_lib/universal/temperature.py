"""What the temperature τ of the kl loss does to one anchor's distribution: the loss turns an
anchor's squared distances d to the other images of its batch into softmax(-d / τ); a small τ
puts almost all of the mass on the nearest few candidates, a large one spreads it evenly.

Computed on a real batch, drawn as training draws it (`samplers.PKSampler`: P classes x K
images of one domain's split), its first item the anchor, so K - 1 candidates share the
anchor's class; the distributions come from the loss itself
(`losses.DistributionDistillationLoss`). `ue_lib.universal.figures.softmax_panel` draws them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from ..evaluate import embed, model_inputs
from ..losses import DistributionDistillationLoss, squared_distances
from ..samplers import PKSampler
from ..verdicts import num


def anchor_batch(model: torch.nn.Module, split, p: int = 8, k: int = 4, seed: int = 0
                 ) -> tuple[torch.Tensor, np.ndarray]:
    """The first batch of a seeded `PKSampler` over `split` (P classes x K images, as in
    training), embedded by `model` (`evaluate.model_inputs`: cached features or images):
    (embeddings (B, D), labels (B,)). Its first item is the anchor; the next K - 1 share its
    class."""
    idx = np.asarray(next(PKSampler(split.labels, p, k, seed).batches(0, 1)))
    return torch.from_numpy(embed(model, model_inputs(model, split)[idx])), np.asarray(split.labels)[idx]


def anchor_distributions(embeddings: torch.Tensor, labels, temperatures: Sequence[float]
                         ) -> pd.DataFrame:
    """The first row's (the anchor's) distributions over the other items of the batch, one per
    temperature, by `DistributionDistillationLoss(temperature=τ).distributions` (the loss's
    own p). One row per temperature and candidate, nearest first: temperature, rank (1 =
    nearest), candidate (its position in the batch), distance (squared, L2-normalised
    embeddings), same_class (has the anchor's label), p."""
    d = squared_distances(embeddings)[0, 1:].numpy()
    same = np.asarray(labels)[1:] == np.asarray(labels)[0]
    order = np.argsort(d, kind="stable")
    parts = []
    for tau in temperatures:
        p = DistributionDistillationLoss(temperature=tau).distributions(embeddings)[0].numpy()
        parts.append(pd.DataFrame({"temperature": float(tau), "rank": np.arange(1, len(d) + 1),
                                   "candidate": order + 1, "distance": d[order],
                                   "same_class": same[order], "p": p[order]}))
    return pd.concat(parts, ignore_index=True)


def softmax_mass(distances, temperatures: Sequence[float], ks: Sequence[int] = (1, 5)) -> pd.DataFrame:
    """How much of softmax(-d / τ) (`DistributionDistillationLoss.distribution_of`) the nearest
    candidates carry: for one anchor's `distances` to its candidates (any order) and each τ of
    `temperatures` and k of `ks` (clamped to the number of candidates), `mass` = the summed
    probability of the k nearest, and `uniform` = k / n, what an even spread would give. Columns
    temperature, k, mass, uniform."""
    d = torch.as_tensor(np.sort(np.asarray(distances, dtype=np.float64)))
    rows = []
    for tau in temperatures:
        p = DistributionDistillationLoss(temperature=tau).distribution_of(d).numpy()
        for k in ks:
            k = min(int(k), len(d))
            rows.append({"temperature": float(tau), "k": k, "mass": float(p[:k].sum()),
                         "uniform": k / len(d)})
    return pd.DataFrame(rows, columns=["temperature", "k", "mass", "uniform"])


def anchor_mass(model: torch.nn.Module, split, temperatures: Sequence[float], ks: Sequence[int] = (1, 5),
                p: int = 8, k: int = 4, seed: int = 0) -> pd.DataFrame:
    """`softmax_mass` of the anchor of `anchor_batch(model, split, p, k, seed)`: the numbers
    that `ue_lib.universal.figures.softmax_panel` with the same arguments writes."""
    emb, _ = anchor_batch(model, split, p, k, seed)
    return softmax_mass(squared_distances(emb)[0, 1:].numpy(), temperatures, ks)


def _carry(k: int, mass: float) -> str:
    return f"the nearest candidate carries {num(mass, 2)}" if k == 1 else \
        f"the nearest {k} carry {num(mass, 2)}"


def mass_sentence(mass: pd.DataFrame) -> str:
    """One sentence from a `softmax_mass` table: per temperature, the share of the mass on the
    nearest k candidates, against an even spread."""
    n = round(mass.k.iloc[0] / mass.uniform.iloc[0])
    parts = [f"at τ = {tau:g} " + ", ".join(_carry(r.k, r.mass) for r in g.itertuples())
             for tau, g in mass.groupby("temperature", sort=False)]
    even = ", ".join(f"{num(r.uniform, 2)} for the nearest {r.k}"
                     for r in mass.drop_duplicates("k").itertuples())
    return (f"Of one anchor's softmax over its {n} candidates, " + "; ".join(parts)
            + f" (an even spread would give {even}).")
