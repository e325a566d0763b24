"""How a face-retrieval experiment splits identities: OPQN's *seen identities* protocol, or the
library's class-disjoint split (*unseen*)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..data import Domain, Split


def _subset(split: Split, idx: np.ndarray, is_query: np.ndarray | None = None) -> Split:
    def take(a):
        return None if a is None else a[idx]

    return Split(split.images[idx], split.labels[idx], take(split.boxes), take(split.paths),
                 is_query, take(split.features), take(split.attributes), take(split.groups))


def _concat(parts: list[Split], is_query: np.ndarray | None = None) -> Split:
    def cat(name):
        values = [getattr(s, name) for s in parts]
        return None if any(v is None for v in values) else np.concatenate(values)

    return Split(cat("images"), cat("labels"), cat("boxes"), cat("paths"), is_query, cat("features"),
                 cat("attributes"), cat("groups"))


@dataclass(frozen=True)
class Protocol:
    """How a face-retrieval experiment splits identities: ``seen`` (OPQN's main protocol: every
    identity in training; the database is the training images, queries are held-out images of
    the same people) or ``unseen`` (the library's class-disjoint split: database and queries are
    the test identities, leave-one-out)."""

    name: str
    queries_per_class: int = 3
    val_per_class: int = 1

    def apply(self, domain: Domain, seed: int = 0) -> Domain:
        if self.name == "unseen":
            return domain
        if self.name != "seen":
            raise ValueError(f"unknown protocol {self.name!r}; valid: seen, unseen")
        return seen_identities(domain, self.queries_per_class, self.val_per_class, seed)


def seen_identities(domain: Domain, queries_per_class: int = 3, val_per_class: int = 1,
                    seed: int = 0) -> Domain:
    """The *seen identities* protocol over all of `domain`'s images: per class,
    `queries_per_class` test queries and `val_per_class` validation queries are held out (seeded)
    and the rest train. The val and test splits are query/gallery sets (``is_query``) whose
    gallery is the training images: the database a deployed index would hold."""
    pool = _concat(list(domain.splits.values()))
    rng = np.random.default_rng(seed)
    train, val, test = [], [], []
    for c in np.unique(pool.labels):
        idx = rng.permutation(np.flatnonzero(pool.labels == c))
        if len(idx) <= queries_per_class + val_per_class:
            raise ValueError(f"{domain.name}: class {c} has {len(idx)} images; the seen protocol "
                             f"holds out {queries_per_class} + {val_per_class} per class and needs "
                             f"at least one more to train on")
        test += list(idx[:queries_per_class])
        val += list(idx[queries_per_class : queries_per_class + val_per_class])
        train += list(idx[queries_per_class + val_per_class :])
    train_split = _subset(pool, np.array(sorted(train)))

    def with_gallery(queries: list[int]) -> Split:
        q = _subset(pool, np.array(sorted(queries)))
        mask = np.concatenate([np.ones(len(q), bool), np.zeros(len(train_split), bool)])
        return _concat([q, train_split], is_query=mask)

    return Domain(domain.name, train_split, with_gallery(val), with_gallery(test),
                  domain.class_names, f"seen identities: per class {queries_per_class} test and "
                  f"{val_per_class} validation queries held out; the gallery is the training images",
                  domain.provenance, domain.license, {**domain.notes, "protocol": "seen"},
                  domain.attribute_names, domain.group_names)
