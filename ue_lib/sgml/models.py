"""SGML's models in a run folder (`ue_lib.runfolder.RunFolder`): the specialists of each rung of
the ladder and the kl students they teach, trained when missing and reused when present. A rung
without settings is the project's specialist itself (notebook 02's model, reused)."""

from __future__ import annotations

from ..io import slug
from ..training import TrainResult
from ..universal import models as universal
from ..universal.objectives import Distillation
from .objectives import specialist_objective
from .settings import SGMLSettings


def rung_profile(folder, rung: str, domain: str | None = None) -> SGMLSettings:
    """The profile a rung of `sgml_ladder` trains `domain`'s specialist with: the project's
    specialist's (with the optimiser settings its tuning chose, `tune_baselines`) plus the
    rung's settings, so that every rung starts from the same tuned baseline."""
    p = folder.profile
    if rung not in p.sgml_ladder:
        raise ValueError(f"unknown rung {rung!r} of sgml_ladder; valid: {', '.join(p.sgml_ladder)}")
    base = universal.baseline_profile(folder, f"specialist:{domain}", p) if domain else p
    return base.with_overrides(p.sgml_ladder[rung])


def attribute_domains(folder, seed: int | None = None) -> list[str]:
    """The profile's domains that carry attributes (`Domain.attribute_names`): the ladder trains
    on these; ValueError naming the domains when none does."""
    domains = folder.domains(seed)
    names = [n for n, d in domains.items() if d.has_attributes]
    if not names:
        raise ValueError(f"none of the domains {list(domains)} has attributes; notebook 07 "
                         f"needs at least one (glyphs, omniglot, fashion, clipart, or cub / "
                         f"inshop with their attribute files): add one with --domains")
    return names


def rung_specialist(folder, rung: str, domain: str, seed: int | None = None) -> TrainResult:
    """`domain`'s specialist of ladder rung `rung` at `seed` (a rung without settings is the
    project's specialist itself: notebook 02's model, reused)."""
    if not folder.profile.sgml_ladder[rung]:
        return universal.specialist(folder, domain, seed)  # the project's own, tuned, reused
    p, seed = rung_profile(folder, rung, domain), folder.seed if seed is None else seed
    d = folder.domains(seed, p)[domain]
    return folder.train(specialist_objective(p), {domain: d}, seed,
                        _rung_name(folder, rung, f"{slug(domain)}-seed{seed}"))


def _rung_name(folder, rung: str, name: str) -> str:
    """A rung's model name: `name` (the project's own model's) for a rung without settings, so
    that it is that model; else `name` tagged with the rung."""
    return f"{name}-{slug(rung)}" if folder.profile.sgml_ladder[rung] else name


def rung_student(folder, rung: str, seed: int | None = None) -> TrainResult:
    """The kl student (with notebook 03's tuned settings, `ue_lib.universal.models.student`)
    distilled from rung `rung`'s specialists where a domain has attributes and from the
    project's specialist where it has none."""
    seed = folder.seed if seed is None else seed
    attributed = set(attribute_domains(folder, seed))
    teachers = {n: (rung_specialist(folder, rung, n, seed) if n in attributed else r).model
                for n, r in universal.specialists(folder, seed).items()}
    p = folder.profile
    chosen = universal.tuning(folder, "kl", p).chosen if p.distill_tuning else {}
    trained = p.with_overrides(chosen) if chosen else p
    return folder.train(Distillation(trained, "kl", teachers), folder.domains(seed), seed,
                        _rung_name(folder, rung, f"seed{seed}"))
