"""Retrieval with objects: image-to-image similarity as the best pair of their objects, the
recall of a spliced image's sources, the object-retrieval layout of a domain (a gallery of clean
items and other scenes' objects), and the spliced query images themselves."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import faiss
import numpy as np

from ..evaluate import TIE_EPS, l2_normalise, query_gallery_metrics
from .scenes import SceneSet, iou, object_patch, paste_patch


def max_pair_similarity(query: np.ndarray, query_owner: np.ndarray, n_query: int,
                        gallery: np.ndarray, gallery_owner: np.ndarray, n_gallery: int,
                        query_group: np.ndarray | None = None,
                        gallery_group: np.ndarray | None = None) -> np.ndarray:
    """Image-to-image similarity as the maximum cosine over pairs of their objects (finding 4).

    `query` (a, D) object embeddings owned by query images `query_owner` (a,) in 0..n_query-1;
    likewise the gallery. With groups (e.g. the objects' domains when each domain's embeddings
    live in their own space), only pairs of the same group count. Returns float64
    (n_query, n_gallery); -inf where two images have no pair."""
    q = query / np.maximum(np.linalg.norm(query, axis=1, keepdims=True), 1e-12)
    g = gallery / np.maximum(np.linalg.norm(gallery, axis=1, keepdims=True), 1e-12)
    sims = (q.astype(np.float64) @ g.astype(np.float64).T)
    if query_group is not None:
        sims[np.asarray(query_group)[:, None] != np.asarray(gallery_group)[None, :]] = -np.inf
    out = np.full((n_query, n_gallery), -np.inf)
    np.maximum.at(out, (np.asarray(query_owner)[:, None], np.asarray(gallery_owner)[None, :]), sims)
    return out


def source_recall(similarity: np.ndarray, sources: np.ndarray, ks: Sequence[int]) -> dict:
    """Spliced-image retrieval: `similarity` (Q, G), `sources` int (Q, S) the gallery images each
    query was made from (column 0 the host, 1 the donor). Each source is ranked among the
    gallery *without the query's other sources* (otherwise the host, which shares almost every
    pixel, would always hold rank 1 above the donor); ties by gallery index. ``recall@K``: the
    fraction of a query's sources in their top K (mean over queries); ``host_recall@K`` and
    ``donor_recall@K`` per source."""
    sims = np.asarray(similarity, dtype=np.float64)
    sources = np.asarray(sources, dtype=np.int64)
    rows = np.arange(len(sims))[:, None]
    own = sims[rows, sources]  # (Q, S)
    gallery = np.arange(sims.shape[1])
    ranks = np.empty(sources.shape, dtype=np.int64)
    for c in range(sources.shape[1]):
        other = np.zeros(sims.shape, dtype=bool)
        other[rows, sources] = True
        other[rows[:, 0], sources[:, c]] = False
        above = (sims > own[:, c, None] + TIE_EPS) | \
            ((np.abs(sims - own[:, c, None]) <= TIE_EPS) & (gallery[None, :] < sources[:, c, None]))
        ranks[:, c] = (above & ~other).sum(axis=1)
    out = {}
    for k in ks:
        hit = ranks < k
        out[f"recall@{k}"] = float(hit.mean())
        out[f"host_recall@{k}"] = float(hit[:, 0].mean())
        out[f"donor_recall@{k}"] = float(hit[:, 1].mean())
    return out


def object_gallery(test: SceneSet, d: int, clean_items: np.ndarray):
    """Domain `d`'s object-retrieval layout: its test objects (rows of the object table) query a
    gallery of clean items and the test scenes' objects of that domain; excluded per query:
    the objects of its own scene and its own source item (a clean copy, or the same item in
    another scene). Returns (query rows, exclude (Q, G))."""
    rows = np.flatnonzero(test.domain == d)
    g_items = np.concatenate([clean_items, test.item[rows]])
    g_scene = np.concatenate([np.full(len(clean_items), -1), test.scene[rows]])
    exclude = (g_items[None, :] == test.item[rows, None]) | (g_scene[None, :] == test.scene[rows, None])
    return rows, exclude


def object_retrieval(q_emb: np.ndarray, clean_emb: np.ndarray, test: SceneSet, d: int,
                      clean_items: np.ndarray, clean_labels: np.ndarray, ks) -> dict:
    """Object retrieval in domain `d` (`object_gallery`), scored by the project's evaluator."""
    rows, exclude = object_gallery(test, d, clean_items)
    gallery = np.concatenate([clean_emb, q_emb[rows]])
    g_labels = np.concatenate([clean_labels, test.label[rows]])
    return query_gallery_metrics(q_emb[rows], test.label[rows], gallery, g_labels, ks, exclude)


def top_matches(query: np.ndarray, gallery: np.ndarray, exclude: np.ndarray, k: int) -> np.ndarray:
    """int (Q, k): each query's k most cosine-similar gallery items (faiss), its excluded ones
    left out (for the retrieval gallery figure)."""
    index = faiss.IndexFlatIP(gallery.shape[1])
    index.add(l2_normalise(np.asarray(gallery, np.float32)))
    wide = min(len(gallery), k + int(exclude.sum(axis=1).max()))
    _, found = index.search(l2_normalise(np.asarray(query, np.float32)), wide)
    return np.stack([[j for j in row if not exclude[i, j]][:k] for i, row in enumerate(found)])


@dataclass
class Spliced:
    """Spliced query images: ``images`` uint8 (Q, 3, S, S), each a host test scene with one
    object of a donor scene pasted in; ``sources`` int64 (Q, 2) (host, donor) scene indices;
    ``boxes`` list of float32 (n_i, 4), the objects of each (host's, then the donor's);
    ``domain`` list of int64 (n_i,) their domains."""

    images: np.ndarray
    sources: np.ndarray
    boxes: list[np.ndarray]
    domain: list[np.ndarray]


def splice(scenes: SceneSet, domains: dict, n: int, seed: int) -> Spliced:
    """`n` spliced queries from a scene set: a host scene, and an object of another (donor)
    scene cut from its source item, resized to a side in the scene set's scale and pasted (as
    the scenes paste) where it overlaps none of the host's objects by more than its max_iou.
    Seeded; hosts without room are drawn again."""
    p = scenes.params
    rng = np.random.default_rng([seed, 8])
    doms = [domains[name] for name in scenes.domain_names]
    images, sources, boxes, groups = [], [], [], []
    tries = 0
    while len(images) < n:
        tries += 1
        if tries > 50 * n:
            raise ValueError("cannot place donor objects in the host scenes: lower scale or "
                             "objects of the scene parameters")
        host, donor = (int(v) for v in rng.choice(len(scenes), 2, replace=False))
        row = int(rng.choice(scenes.objects_of(donor)))
        host_rows = scenes.objects_of(host)
        side = int(rng.integers(p["scale"][0], p["scale"][1] + 1))
        x, y = (int(v) for v in rng.integers(0, scenes.side - side + 1, size=2))
        box = [x, y, x + side, y + side]
        if any(iou(box, b) > p["max_iou"] for b in scenes.box[host_rows]):
            continue
        patch = object_patch(doms[scenes.domain[row]].splits[scenes.split].images[scenes.item[row]],
                             side)
        canvas = scenes.images[host].transpose(1, 2, 0).copy()
        paste_patch(canvas, patch, x, y, p)  # as the scenes paste their objects
        images.append(canvas.transpose(2, 0, 1))
        sources.append([host, donor])
        boxes.append(np.concatenate([scenes.box[host_rows], [box]]).astype(np.float32))
        groups.append(np.concatenate([scenes.domain[host_rows], [scenes.domain[row]]]))
    return Spliced(np.stack(images), np.asarray(sources, dtype=np.int64), boxes, groups)


def as_scenes(spliced: Spliced, i: int, side: int) -> SceneSet:
    """Spliced query `i` as a one-scene SceneSet (for `crops`)."""
    n = len(spliced.boxes[i])
    return SceneSet(split="test", images=spliced.images[i:i + 1], scene=np.zeros(n),
                    domain=spliced.domain[i], label=np.zeros(n), item=np.zeros(n),
                    box=spliced.boxes[i], visible=np.ones(n), fragment_scene=[], fragment_domain=[],
                    fragment_item=[], fragment_box=np.zeros((0, 4)), domain_names=[], num_classes=[])
