"""OPQN's models in a run folder (`ue_lib.runfolder.RunFolder`): its networks, trained when
missing and reused when present, and the data of each experiment."""

from __future__ import annotations

from ..data import Domain
from ..training import TrainResult
from .objectives import OPQN
from .protocols import Protocol
from .settings import OPQNSettings


def opqn_model(folder, domains: dict[str, Domain], name: str, seed: int, shape: tuple[int, int],
               overrides: dict | None = None, profile: OPQNSettings | None = None) -> TrainResult:
    """An OPQN network (`quantize_dim`-d) with M x K codes `shape`, trained on `domains` (one
    domain, or all for a universal index) with `profile` plus `overrides`."""
    p, (m, k) = profile or folder.profile, shape
    trained = p.with_overrides({"embedding_dim": p.quantize_dim, "opqn.subspaces": m,
                                "opqn.codewords": k, **(overrides or {})})
    return folder.train(OPQN(trained), domains, seed, name)


def experiment_domains(folder, domain: str, protocol: str, seed: int) -> dict[str, Domain]:
    """One experiment's data: one domain under a face-retrieval protocol (`Protocol`), or
    every profile domain for ``universal``."""
    p = folder.profile
    if domain == "universal":
        return folder.domains(seed)
    p_dom = p if domain in p.domain_names else p.with_overrides({"domains": domain})
    return {domain: Protocol(protocol).apply(folder.domains(seed, p_dom)[domain], seed)}
