"""The interactive explorer of notebook 04: one query, its top-k neighbours for each model in the
per-domain and in the merged index, side by side, hits and misses marked.

State (`Explorer`), made from a run folder without training anything (`from_run`): every
domain's test split embedded by this seed's specialists (each its own domain), naive fusion and
the kl student, and a compressed index of the kl student's embeddings. The indexes:

* per-domain: one domain's test items, searched as the per-domain metrics search them
  (leave-one-out; a split with a query/gallery protocol: its gallery);
* merged: every domain's test items in one index, in the order of the merged evaluation
  (`ue_lib.evaluate.merged_retrieval_metrics`), where a hit needs the query's class *and*
  domain. A specialist has no merged index: it embeds only its own domain, and the
  specialists' spaces are unrelated, so their union is not one index. Its merged panel says
  so instead of showing neighbours.

The float indexes are searched by the metrics' own search (`ue_lib.evaluate.nearest_neighbours`:
faiss's exact inner product on L2-normalised rows, the query itself left out, the tie rule of
`ue_lib.evaluate.search`), so the neighbours shown are the ones the numbers counted. The
compressed index (`COMPRESSED`) is faiss's post-hoc OPQ rotation and PQ codes
(`faiss.index_factory`) over the kl student's L2-normalised embeddings, fitted on its embeddings
of the training splits (never the searched test items); its approximate scores are ranked by
the same tie rule (`ue_lib.evaluate.tie_ordered`). It is a generic faiss index, not the
compressed-retrieval paper's network of notebook 06: that system lives in a neighbouring
system folder, which this layer may not import.

The widget (`Explorer.widget`: ipywidgets) calls plain methods (`show`, `view`, `random_query`),
which tests call directly; `figure` draws a view as one matplotlib figure, the static example
notebook 04 shows where widgets do not run (the executed notebook, its HTML, the book).
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

import faiss
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .. import figures
from ..evaluate import embed, l2_normalise, model_inputs, nearest_neighbours, opq_pq_index, tie_ordered
from ..palette import fixed
from .models import naive, specialists, student

SPECIALIST, NAIVE, STUDENT, COMPRESSED = "specialist", "naive", "distill:kl", "kl compressed"
MODELS = (SPECIALIST, NAIVE, STUDENT, COMPRESSED)  # palette labels, in the order shown
NAMES = {SPECIALIST: "specialist (its own domain)", NAIVE: "naive fusion", STUDENT: "kl student",
         COMPRESSED: "kl student, compressed index"}
PER_DOMAIN, MERGED = "per-domain index", "merged index"
TABLE_COLUMNS = ["model", "index", "rank", "domain", "item", "label", "score", "hit"]
NO_MERGED = "no merged index: a specialist embeds only its own domain"

# the compressed index: PQ codes of SUB_DIMS dimensions per sub-vector, CODE_BITS bits each (a
# 64-d float row of 256 bytes becomes 32 one-byte codes), the OPQ rotation fitted in
# OPQ_ITERATIONS alternations on at most FIT_VECTORS training rows (a seeded sample), on one
# thread (faiss's rotation depends on its thread count: the same seed gives the same index).
# Measured on the mini run's kl student (merged index, 7278 test images): the compressed top-1
# is the float top-1 for 54 % of the queries with 2 dimensions per code (Recall@1 0.668 against
# the float index's 0.688), 29 % with 4; 10 alternations instead of none moved it by about a
# point, at 0.15 s each
SUB_DIMS, CODE_BITS, OPQ_ITERATIONS, FIT_VECTORS = 2, 8, 4, 1000
DEFAULT_K = 5
EXAMPLE_TRIES = 50  # random queries `example` looks through for one with a hit and a miss
TEXT = "0.2"  # the neighbours' titles: one neutral colour (the border says hit or miss)


class Explorer:
    """One seed's models over every domain's test split, searched per query (module docstring).

    `labels`: {domain: test labels}, in the domains' order (the merged index's order);
    `embeddings`: {model label (`MODELS`, without `COMPRESSED`): {domain: (N, D) test
    embeddings}}, the specialist's each by its own domain's model; `images`: {domain: test
    images (N, C, H, W)} for `figure` (None: no figure); `compressed`: {domain or `MERGED`:
    faiss index of the same items} (`compressed_indexes`); `is_query`: {domain: bool mask} for a
    split with a query/gallery protocol. `seed` seeds the random queries (`random_query`, the
    widget's button)."""

    def __init__(self, labels: Mapping[str, Any], embeddings: Mapping[str, Mapping[str, Any]],
                 images: Mapping[str, Any] | None = None,
                 compressed: Mapping[str, faiss.Index] | None = None,
                 is_query: Mapping[str, Any] | None = None, seed: int = 0, k: int = DEFAULT_K):
        self.domains = list(labels)
        self.labels = {d: np.asarray(v).reshape(-1) for d, v in labels.items()}
        self.embeddings = {m: {d: np.asarray(e[d], dtype=np.float32) for d in self.domains}
                           for m, e in embeddings.items()}
        self.images, self.compressed = images, compressed
        self.is_query = {d: None if m is None else np.asarray(m, dtype=bool)
                         for d, m in (is_query or {}).items()}
        self.models = [m for m in MODELS if m in self.embeddings or (m == COMPRESSED and compressed)]
        self.seed, self.k = seed, k
        # where each domain starts in the merged index (and its size, last)
        self._start = np.cumsum([0] + [len(self.labels[d]) for d in self.domains])
        self.merged = {m: np.concatenate([e[d] for d in self.domains])
                       for m, e in self.embeddings.items() if m != SPECIALIST}
        self._rng = np.random.default_rng(seed)
        self.table: pd.DataFrame | None = None  # the last view `show` drew
        self.controls: dict = {}
        self.output = None  # the widget's Output (`widget`)

    # ---- queries
    def size(self, domain: str) -> int:
        return len(self.labels[self._domain(domain)])

    def _domain(self, domain: str) -> str:
        if domain not in self.labels:
            raise ValueError(f"unknown domain {domain!r}; this explorer has {', '.join(self.domains)}")
        return domain

    def _gallery(self, domain: str, query: int) -> np.ndarray:
        """The items of `domain`'s per-domain index that `query` may retrieve: every other one
        (leave-one-out), or the gallery of a query/gallery split."""
        n = self.size(domain)
        if not 0 <= query < n:
            raise ValueError(f"query {query} is not an item of {domain}'s test split (0 to {n - 1})")
        keep = np.ones(n, dtype=bool) if self.is_query.get(domain) is None else ~self.is_query[domain]
        keep[query] = False
        return np.flatnonzero(keep)

    def valid_queries(self, domain: str) -> np.ndarray:
        """The items of `domain` whose class has another item in their per-domain index (a hit
        is possible): the queries the metrics count and `random_query` draws from."""
        labels, mask = self.labels[self._domain(domain)], self.is_query.get(domain)
        if mask is None:  # leave-one-out: a class of at least two items
            _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
            return np.flatnonzero(counts[inverse.reshape(-1)] > 1)
        return np.flatnonzero(mask & np.isin(labels, labels[~mask]))

    def random_query(self, domain: str, seed: int | None = None) -> int:
        """A random valid query of `domain` (`valid_queries`): from a generator of `seed`, or,
        without one, the next draw of this explorer's generator (seeded with its `seed`)."""
        rng = self._rng if seed is None else np.random.default_rng(seed)
        return int(rng.choice(self.valid_queries(domain)))

    # ---- search
    def neighbours(self, model: str, domain: str, query: int, k: int, index: str) -> pd.DataFrame:
        """`model`'s top-`k` neighbours of item `query` of `domain`'s test split in the
        per-domain (`PER_DOMAIN`) or merged (`MERGED`) index, best first: one row each
        (`TABLE_COLUMNS`; `item` indexes its domain's test split, `score` is the cosine, or the
        compressed index's approximate inner product, `hit` = same class, and in the merged
        index same domain too). No rows for a specialist's merged index (`NO_MERGED`)."""
        domain = self._domain(domain)
        if index == MERGED and model == SPECIALIST:
            return pd.DataFrame(columns=TABLE_COLUMNS)
        gallery = self._gallery(domain, query)
        if index == MERGED:  # the query, then every other item of every domain, in merged order
            own = self._start[self.domains.index(domain)] + query
            rows = np.concatenate([[own], np.delete(np.arange(self._start[-1]), own)])
        else:
            rows = np.concatenate([[query], gallery])
        found, scores = self._search(model, domain, index, rows, k)
        if index == MERGED:
            place = np.searchsorted(self._start, found, side="right") - 1
            names, items = np.asarray(self.domains)[place], found - self._start[place]
        else:
            names, items = np.full(len(found), domain), found
        labels = np.asarray([self.labels[n][i] for n, i in zip(names, items)], dtype=np.int64)
        hit = (labels == self.labels[domain][query]) & (names == domain)
        return pd.DataFrame({"model": model, "index": index, "rank": np.arange(1, len(found) + 1),
                             "domain": names, "item": items, "label": labels, "score": scores,
                             "hit": hit}, columns=TABLE_COLUMNS)

    def _search(self, model: str, domain: str, index: str, rows: np.ndarray, k: int
                ) -> tuple[np.ndarray, np.ndarray]:
        """The top-`k` of `rows[1:]` for the query `rows[0]` (indices into the index's items:
        the domain's, or the merged order) by `model`, and their scores."""
        if model == COMPRESSED:
            faiss_index = self.compressed[MERGED if index == MERGED else domain]
            x = self.merged[STUDENT] if index == MERGED else self.embeddings[STUDENT][domain]
            query = l2_normalise(x[rows[:1]])
            scores, found = faiss_index.search(query, faiss_index.ntotal)
            allowed = np.isin(found[0], rows[1:])
            ranked = tie_ordered(scores[0][allowed], found[0][allowed])[:k]
            score_of = dict(zip(found[0].tolist(), scores[0].tolist()))
            return ranked, np.asarray([score_of[i] for i in ranked.tolist()])
        x = self.merged[model] if index == MERGED else self.embeddings[model][domain]
        subset = x[rows]  # the query first: left out, as the metrics leave it out
        nbr = nearest_neighbours(subset, k, [0])[0]
        unit = l2_normalise(subset)
        return rows[nbr], (unit[nbr] @ unit[0]).astype(np.float64)

    def view(self, domain: str, query: int, models: Sequence[str] | None = None,
             k: int | None = None) -> pd.DataFrame:
        """The neighbour table of one query (`neighbours`) for each of `models` (default: all)
        in the per-domain and the merged index; its `attrs` hold the query (domain, query,
        label, k, models)."""
        models, k = list(models or self.models), int(k or self.k)
        unknown = [m for m in models if m not in self.models]
        if unknown:
            raise ValueError(f"unknown models {unknown}; this explorer has {', '.join(self.models)}")
        parts = [self.neighbours(m, domain, int(query), k, index)
                 for m in models for index in (PER_DOMAIN, MERGED)]
        table = pd.concat([p for p in parts if len(p)], ignore_index=True) if any(map(len, parts)) \
            else pd.DataFrame(columns=TABLE_COLUMNS)
        table.attrs = {"domain": domain, "query": int(query), "label": int(self.labels[domain][query]),
                       "k": k, "models": models}
        return table

    # ---- drawing
    def figure(self, table: pd.DataFrame, title: str = ""):
        """The view of a `view` table as one figure (`ue_lib.figures.neighbour_pairs`): a row
        per model, its per-domain index left and its merged index right, each the query and its
        neighbours (border: hit or miss), each titled with its domain and score."""
        if self.images is None:
            raise ValueError("this explorer has no images to draw (made without `images`)")
        a = table.attrs
        rows = {m: [self._panel(table, m, PER_DOMAIN), self._panel(table, m, MERGED)]
                for m in a["models"]}
        n = int(self._start[-1])
        return figures.neighbour_pairs(
            self.images[a["domain"]][a["query"]], rows,
            [f"{PER_DOMAIN}: {a['domain']} alone ({self.size(a['domain'])} test images)",
             f"{MERGED}: all {len(self.domains)} domains ({n} test images)"],
            title or f"Query {a['query']} of {a['domain']}'s test split (class {a['label']}): "
                     f"top-{a['k']} neighbours per model",
            f"{self.summary(table)}\nborder: green = a hit (same class; merged: and same domain), "
            "orange-red = a miss; above each neighbour: its domain and class, hit or miss, and its "
            "cosine similarity (approximate when compressed; not comparable across models)",
            names={m: NAMES[m] for m in a["models"]})

    def _panel(self, table: pd.DataFrame, model: str, index: str) -> list | str:
        rows = table[(table.model == model) & (table["index"] == index)]
        if model == SPECIALIST and index == MERGED:
            return NO_MERGED
        return [(self.images[r.domain][r.item], bool(r.hit),
                 f"{r.domain} {r.label}\n{'hit' if r.hit else 'miss'} {fixed(r.score, 2)}", TEXT)
                for r in rows.itertuples()]

    def example(self, tries: int = EXAMPLE_TRIES) -> pd.DataFrame:
        """The view notebook 04 shows statically: every model, for the first of up to `tries`
        random valid queries of the first domain (drawn with this explorer's seed, not its
        generator: the same every call) whose view has at least one hit and one miss, so that
        the two can be told apart; the first draw when none has both."""
        rng, domain = np.random.default_rng(self.seed), self.domains[0]
        queries = rng.choice(self.valid_queries(domain), size=tries)
        for query in queries:
            view = self.view(domain, int(query))
            if 0 < view.hit.sum() < len(view):
                return view
        return self.view(domain, int(queries[0]))

    def example_figure(self):
        return self.figure(self.example())

    # ---- the widget
    def show(self, domain: str, query: int, models: Sequence[str] | None = None,
             k: int | None = None) -> pd.DataFrame:
        """`view` of this query, kept in `table` and drawn in the widget's output (when the
        widget was made): what every control of the widget calls."""
        self.table = self.view(domain, query, models, k)
        if self.output is not None:  # set as the widget's state: drawn by any front end
            from IPython.display import Image, Markdown

            fig = self.figure(self.table)
            png = io.BytesIO()
            fig.savefig(png, format="png", dpi=90)
            plt.close(fig)
            self.output.outputs = ()
            self.output.append_display_data(Markdown(self.summary(self.table)))
            self.output.append_display_data(Image(data=png.getvalue()))
        return self.table

    @staticmethod
    def summary(table: pd.DataFrame) -> str:
        """'hits in the top 5: naive 3 (per-domain) / 1 (merged), …': the view in one line."""
        parts = []
        for m in table.attrs["models"]:
            per = table[(table.model == m) & (table["index"] == PER_DOMAIN)].hit.sum()
            merged = table[(table.model == m) & (table["index"] == MERGED)]
            parts.append(f"{NAMES[m]} {per} (per-domain) / "
                         + (f"{merged.hit.sum()} (merged)" if len(merged) else "no merged index"))
        return f"Hits in the top {table.attrs['k']}: " + "; ".join(parts) + "."

    def widget(self):
        """The explorer as ipywidgets: a domain Dropdown, the query's index in its test split
        (BoundedIntText) and a "random" Button, the models (SelectMultiple), k, and an Output
        with the view (`show`). The controls are in `controls`, their callbacks are methods
        (`_changed`, `_domain_changed`, `_random`)."""
        import ipywidgets as w

        first = self.domains[0]
        c = self.controls = {
            "domain": w.Dropdown(options=self.domains, value=first, description="domain"),
            "query": w.BoundedIntText(value=self.random_query(first, self.seed), min=0,
                                      max=self.size(first) - 1, description="query"),
            "random": w.Button(description="random query"),
            "models": w.SelectMultiple(options=[(NAMES[m], m) for m in self.models],
                                       value=tuple(self.models), description="models", rows=len(self.models)),
            "k": w.BoundedIntText(value=self.k, min=1, max=20, description="k")}
        self.output = w.Output()
        c["domain"].observe(self._domain_changed, names="value")
        for name in ("query", "models", "k"):
            c[name].observe(self._changed, names="value")
        c["random"].on_click(self._random)
        self._changed()
        return w.VBox([w.HBox([c["domain"], c["query"], c["random"]]), w.HBox([c["models"], c["k"]]),
                       self.output])

    def _changed(self, change: Any = None) -> None:
        c = self.controls
        if c.get("held"):
            return
        self.show(c["domain"].value, c["query"].value, list(c["models"].value) or self.models[:1],
                  c["k"].value)

    def _set_query(self, value: int, top: int | None = None) -> None:
        """Set the query control (and its bound) without drawing twice."""
        c = self.controls
        c["held"] = True
        try:
            if top is not None:
                c["query"].max = top
            c["query"].value = value
        finally:
            c["held"] = False
        self._changed()

    def _domain_changed(self, change: Any) -> None:
        domain = self.controls["domain"].value
        self._set_query(self.random_query(domain), self.size(domain) - 1)

    def _random(self, button: Any = None) -> None:
        self._set_query(self.random_query(self.controls["domain"].value))


# ---------------------------------------------------------------- the compressed index

def compressed_index(train: np.ndarray, seed: int = 0, sub_dims: int = SUB_DIMS,
                     bits: int = CODE_BITS) -> faiss.Index:
    """An empty, fitted faiss index of OPQ rotation and PQ codes (`faiss.index_factory`,
    inner product) for L2-normalised rows like `train`: D / `sub_dims` sub-vectors of `bits`
    bits each (fewer bits when `train` has fewer than 2^`bits` rows), the rotation and the
    codebooks fitted on a seeded sample of at most `FIT_VECTORS` rows of `train`, on one
    thread (`ue_lib.evaluate.opq_pq_index`). Add items with `add` (after `faiss.clone_index`
    for several sets)."""
    train = l2_normalise(np.asarray(train, dtype=np.float32))
    if len(train) > FIT_VECTORS:
        train = train[np.sort(np.random.default_rng(seed).choice(len(train), FIT_VECTORS, replace=False))]
    dim = train.shape[1]
    subspaces = max(1, dim // sub_dims) if dim % sub_dims == 0 else 1
    bits = min(bits, int(np.log2(max(2, len(train)))))
    if len(train) < dim:
        raise ValueError(f"{len(train)} training rows cannot fit a rotation of {dim} dimensions")
    return opq_pq_index(train, subspaces, bits, seed, OPQ_ITERATIONS)


def compressed_indexes(train: np.ndarray, items: Mapping[str, np.ndarray], seed: int = 0
                       ) -> dict[str, faiss.Index]:
    """{domain: index of its items, `MERGED`: index of all of them, in order}: copies of one
    `compressed_index` fitted on `train`, each holding its L2-normalised items."""
    fitted = compressed_index(train, seed)
    out = {}
    for name, x in {**items, MERGED: np.concatenate(list(items.values()))}.items():
        out[name] = faiss.clone_index(fitted)
        out[name].add(l2_normalise(np.asarray(x, dtype=np.float32)))
    return out


# ---------------------------------------------------------------- from a run folder

KINDS = ("specialists", "naive fusion", "kl student")


def _model(folder, kind: str, seed: int):
    """The models of `kind` at `seed`: the specialists ({domain: TrainResult}), naive fusion or
    the kl student (a TrainResult), loaded as notebook 04 has them."""
    if kind == "specialists":
        return specialists(folder, seed)
    return naive(folder, seed) if kind == "naive fusion" else student(folder, "kl", seed)


def from_run(folder, seed: int | None = None, k: int = DEFAULT_K) -> Explorer:
    """The `Explorer` of a run folder's models at `seed` (the run's by default): this seed's
    specialists, naive fusion and tuned kl student, found in the folder (in memory when the
    notebook already loaded them), never trained (ValueError in one line naming what is
    missing and the command that makes it); each domain's test split embedded once by each,
    and the compressed index of the kl student, fitted on its embeddings of the training
    splits."""
    seed = folder.seed if seed is None else seed
    missing = [kind for kind, _ in folder.missing(_model, [(kind, seed) for kind in KINDS])]
    if missing:
        raise ValueError(f"the run folder {folder.out_dir} has no {' and no '.join(missing)} for "
                         f"seed {seed}: the explorer loads models, it does not train them; make "
                         f"them with `ue run --out {folder.out_dir} --only 04`")
    domains = folder.domains(seed)
    experts = _model(folder, "specialists", seed)
    universal = {NAIVE: _model(folder, "naive fusion", seed).model,
                 STUDENT: _model(folder, "kl student", seed).model}
    embeddings = {SPECIALIST: {n: _embed(experts[n].model, d.test) for n, d in domains.items()},
                  **{label: {n: _embed(m, d.test) for n, d in domains.items()}
                     for label, m in universal.items()}}
    train = np.concatenate([_embed(universal[STUDENT], d.train) for d in domains.values()])
    return Explorer({n: d.test.labels for n, d in domains.items()}, embeddings,
                    {n: d.test.images for n, d in domains.items()},
                    compressed_indexes(train, embeddings[STUDENT], seed),
                    {n: getattr(d.test, "is_query", None) for n, d in domains.items()}, seed, k)


def _embed(model, split) -> np.ndarray:
    """`model`'s embeddings of `split`, as the metrics embed them (`ue_lib.evaluate.embed`)."""
    return embed(model, model_inputs(model, split))
