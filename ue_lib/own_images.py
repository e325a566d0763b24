"""The universal embedding on your own images: `ue index` embeds a folder tree of images with a
finished run's trained model (its frozen trunk and its head, with the run's preprocessing) into
a faiss index, flat or compressed (OPQ+PQ); `ue search` finds an image's nearest neighbours in it;
`ue export` writes a run's test images as PNG files, a folder tree to try both on.

Models are only loaded, never trained: a model the run has not trained is an error saying to run
`ue run` first. An index folder holds

    meta.json        the model (name, seed, run folder, model folder), its fingerprint, the
                     preprocessing, embedding dimension, compression, counts, seconds, images/s
    files.json       {"root": the indexed folder (absolute), "files": paths relative to it}
    embeddings.npy   float32 (N, D), L2-normalised, row i = files[i]
    index.faiss      the faiss index of those rows (inner product = cosine), same order

each written atomically; meta.json last, so a folder without it is an unfinished index.

The fingerprint (`model_fingerprint`) is a hash of every weight of the trunk and the head and of
the preprocessing: an index answers only queries embedded by the same model, prepared the same
way (`ImageIndex.search` refuses any other), and `ue search` refuses to run when the run's model
file changed since the index was made (retrained, or replaced by another run).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np
import pandas as pd
import torch
from PIL import Image, ImageDraw, ImageOps

from .config import ModelSettings
from .data import benchmarks
from .data.core import pil_to_array
from .data.transforms import eval_transform
from .evaluate import (
    embed,
    index_ranking_metrics,
    l2_normalise,
    merged_retrieval_metrics,
    model_inputs,
    opq_pq_index,
    query_counts,
)
from .io import atomic_write, atomic_write_text, read_named, slug
from .models import TrunkAndRest, build_trunk
from .runfolder import MissingModel, RunFolder
from .spec import RunSpec
from .training import TrainResult
from .training.store import FINAL, load_result

META, FILES, EMBEDDINGS, INDEX = "meta.json", "files.json", "embeddings.npy", "index.faiss"
EXPORT_MANIFEST = "export.json"
SHOWN_NAMES = 3  # unreadable files named in the summary line before "… and N more"


class SearchError(ValueError):
    """A problem the user can fix (the message says how): one line, exit status 2."""


class FingerprintMismatch(SearchError):
    """A query embedded by another model (or other preprocessing) than the index's."""


# ----------------------------------------------------------------------------- the run's model

def run_spec(run_dir: str | os.PathLike) -> RunSpec:
    """The run specification of a finished run folder (its run.json), with the folder where it
    is now (it may have moved since the run)."""
    run = Path(run_dir).expanduser()
    fix = "give the --out folder of a `ue run` (e.g. runs/mini)"
    if not run.is_dir():
        raise SearchError(f"no run folder at {run}: {fix}")
    if not (run / "run.json").is_file():
        raise SearchError(f"{run} is not a run folder (it has no run.json): {fix}")
    info = read_named(run / "run.json", lambda p: json.loads(p.read_text()), "the run record",
                      "run `ue run` into that folder again")
    return RunSpec.from_parameters({**info["parameters"], "out_dir": str(run.resolve())})


def model_names(profile) -> list[str]:
    """The universal models a run of `profile` trains (`--model`): naive fusion, a student of
    each distillation method, and each domain's specialist."""
    return (["naive", *profile.methods("distill_methods")]
            + [f"specialist:{d}" for d in profile.domain_names])


def find_model(folder: RunFolder, name: str, seed: int) -> TrainResult:
    """Model `name` (`model_names`) of the run at `seed`, loaded (the tuned one, as the
    notebooks use it); SearchError when the run has not trained it."""
    from .universal import models as universal

    known = model_names(folder.profile)
    if name not in known:
        raise SearchError(f"unknown model {name!r}: this run's models are {', '.join(known)}")
    seeds = folder.profile.seed_list("seeds", folder.seed)
    if seed not in seeds:  # checked first: the data of another seed's splits is never loaded
        raise SearchError(f"model {name} (seed {seed}) is not trained in {folder.out_dir}: its "
                          f"seeds are {', '.join(map(str, seeds))}")
    kind, _, domain = name.partition(":")
    try:
        with folder.loading_only():
            if kind == "naive":
                return universal.naive(folder, seed)
            if kind == "specialist":
                return universal.specialist(folder, domain, seed)
            return universal.student(folder, name, seed)
    except MissingModel:
        raise SearchError(f"model {name} (seed {seed}) is not trained in {folder.out_dir}: run "
                          f"`ue run --profile {folder.spec.profile} --out {folder.out_dir}` "
                          f"first") from None


def preprocessing(profile) -> dict:
    """How the run prepared its images, so that a user's image is prepared alike: the square
    resize of the in-memory domains, or for file-backed photo benchmarks (`lazy`) the evaluation
    transform (shorter side resized, central crop)."""
    crop = profile.lazy and all(d in benchmarks.SOURCES for d in profile.domain_names)
    return {"image_size": profile.image_size, "channels": profile.channels,
            "resize": "shorter side, central crop" if crop else "square"}


def image_network(result: TrainResult) -> torch.nn.Module:
    """The whole network on [0, 1] images: a model trained on cached trunk features gets its
    frozen trunk in front (`ue_lib.models.TrunkAndRest`)."""
    net = result.model
    if getattr(net, "takes_features", False):
        net = TrunkAndRest(build_trunk(ModelSettings.from_dict(result.config["model"])), net)
    return net.eval()


def model_fingerprint(network: torch.nn.Module, prep: dict) -> str:
    """A hash of every weight and buffer of `network` (names, shapes, bytes) and of `prep`."""
    h = hashlib.sha256(json.dumps(prep, sort_keys=True).encode())
    for name, tensor in sorted(network.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


class UnreadableImage(SearchError):
    """An image file that cannot be decoded."""


@dataclass(eq=False)
class Embedder:
    """A run's model on image files: read (`read`) and embed (`embed`) with its preprocessing."""

    network: torch.nn.Module
    prep: dict
    batch_size: int
    fingerprint: str
    record: dict  # model, seed, run_dir, model_dir (relative to run_dir when inside it)
    dim: int  # of the embeddings

    @classmethod
    def of(cls, result: TrainResult, prep: dict, batch_size: int, record: dict) -> Embedder:
        network = image_network(result)
        return cls(network, prep, batch_size, model_fingerprint(network, prep), record,
                   int(result.config["model"]["embedding_dim"]))

    def read(self, path: str | os.PathLike) -> np.ndarray:
        """Image file `path` as the model's input, uint8 (C, H, W); UnreadableImage if it is not
        an image PIL can decode."""
        size, channels = self.prep["image_size"], self.prep["channels"]
        try:
            with Image.open(path) as img:
                img.load()
                if self.prep["resize"] == "square":
                    return pil_to_array(img, size, channels)
                return eval_transform(size)(img.convert("RGB" if channels == 3 else "L")).numpy()
        except Exception as exc:  # PIL raises many kinds on a damaged or foreign file
            raise UnreadableImage(f"{path} cannot be read as an image ({type(exc).__name__}: "
                                  f"{' '.join(str(exc).split())}); give an image file "
                                  f"(.png, .jpg, …)") from None

    def embed(self, images: np.ndarray) -> np.ndarray:
        """uint8 images (N, C, H, W) -> L2-normalised float32 embeddings (N, D)."""
        return l2_normalise(embed(self.network, images, self.batch_size))

    def embed_file(self, path: str | os.PathLike) -> np.ndarray:
        return self.embed(self.read(path)[None])


def load_embedder(run_dir: str | os.PathLike, model: str = "kl", seed: int | None = None,
                  batch_size: int | None = None) -> Embedder:
    """The embedder of run `run_dir`'s model `model` at `seed` (default: the run's seed), found
    as the notebooks find it (`find_model`); `batch_size` defaults to the profile's
    `eval_batch_size`."""
    spec = run_spec(run_dir)
    folder = RunFolder(spec, "index", progress=False)
    seed = spec.seed if seed is None else seed
    result = find_model(folder, model, seed)
    where, run = folder.model_folder(result), Path(spec.out_dir)
    record = {"model": model, "seed": seed, "run_dir": str(run),
              "model_dir": str(where.relative_to(run) if where.is_relative_to(run) else where)}
    return Embedder.of(result, preprocessing(spec.settings),
                       batch_size or spec.settings.eval_batch_size, record)


def embedder_of_index(meta: dict, batch_size: int | None = None) -> Embedder:
    """The embedder of the model an index was made with (its meta.json), loaded from its run
    folder; SearchError when it is gone or is no longer the same model (fingerprint)."""
    spec = run_spec(meta["run_dir"])
    where = Path(spec.out_dir) / meta["model_dir"]
    redo = (f"make the index again: `ue index {meta['run_dir']} {meta['root']} --model "
            f"{meta['model']} --seed {meta['seed']} --out INDEX`")
    if not (where / FINAL).is_file():
        raise SearchError(f"the index's model ({meta['model']}, seed {meta['seed']}) is gone from "
                          f"{where}; {redo}")
    embedder = Embedder.of(load_result(where), preprocessing(spec.settings),
                           batch_size or spec.settings.eval_batch_size, dict(meta))
    if embedder.fingerprint != meta["fingerprint"]:
        raise SearchError(f"the model in {where} changed since the index was made (fingerprint "
                          f"{embedder.fingerprint[:12]}, the index's {meta['fingerprint'][:12]}): "
                          f"{redo}")
    return embedder


# ----------------------------------------------------------------------------- folders of images

def image_files(folder: Path) -> list[str]:
    """The image files under `folder` (recursively, by extension, hidden ones left out), as
    paths relative to it, sorted."""
    from torchvision.datasets.folder import IMG_EXTENSIONS

    out = []
    for here, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        out += [Path(here, n).relative_to(folder).as_posix() for n in names
                if not n.startswith(".") and Path(n).suffix.lower() in IMG_EXTENSIONS]
    return sorted(out)


def embed_folder(embedder: Embedder, root: Path, files: list[str], progress: bool = True
                 ) -> tuple[np.ndarray, list[str], list[str]]:
    """Embed `files` (relative to `root`) in batches, with a progress bar on stderr: (the
    embeddings of the readable files, those files, the unreadable ones)."""
    from tqdm import tqdm

    chunks, kept, skipped = [], [], []
    with tqdm(total=len(files), desc="embedding", unit="img", file=sys.stderr,
              disable=not progress) as bar:
        for start in range(0, len(files), embedder.batch_size):
            images = []
            for name in files[start:start + embedder.batch_size]:
                try:
                    images.append(embedder.read(root / name))
                    kept.append(name)
                except UnreadableImage:
                    skipped.append(name)
            if images:
                chunks.append(embedder.embed(np.stack(images)))
            bar.update(len(files[start:start + embedder.batch_size]))
    dim = chunks[0].shape[1] if chunks else 0
    return (np.concatenate(chunks) if chunks else np.zeros((0, dim), np.float32)), kept, skipped


def skipped_line(skipped: list[str]) -> str:
    """'skipped 5 unreadable files: a.png, b.jpg, c.png and 2 more' ('' when none)."""
    if not skipped:
        return ""
    shown = ", ".join(skipped[:SHOWN_NAMES])
    more = f" and {len(skipped) - SHOWN_NAMES} more" if len(skipped) > SHOWN_NAMES else ""
    return f"skipped {len(skipped)} unreadable file{'s' * (len(skipped) > 1)}: {shown}{more}"


# ----------------------------------------------------------------------------- faiss indexes

def parse_compression(text: str | None, dim: int) -> tuple[int, int] | None:
    """'flat' (or nothing) -> None; 'opq:M' or 'opq:MxB' -> (M sub-vectors, B bits each,
    default 8), checked against the embedding dimension `dim`."""
    if not text or text == "flat":
        return None
    match = re.fullmatch(r"opq:(\d+)(?:x(\d+))?", text)
    if not match:
        raise SearchError(f"--compress {text}: write flat, opq:M or opq:MxB (M sub-vectors of "
                          f"B bits, default 8), e.g. opq:{dim // 2}")
    m, bits = int(match[1]), int(match[2] or 8)
    if m < 1 or dim % m:
        divisors = [d for d in range(1, dim + 1) if dim % d == 0]
        raise SearchError(f"--compress {text}: M must divide the embedding dimension {dim}, "
                          f"one of {', '.join(map(str, divisors))}")
    if not 1 <= bits <= 12:
        raise SearchError(f"--compress {text}: B must be 1 to 12 bits per sub-vector")
    return m, bits


def min_images(dim: int, bits: int) -> int:
    """Vectors needed to fit OPQ+PQ codebooks: one per codeword (2^bits), and at least `dim`
    (faiss's OPQMatrix corrupts memory with fewer vectors than dimensions)."""
    return max(2 ** bits, dim)


def check_enough(n: int, dim: int, compression: tuple[int, int]) -> None:
    """SearchError unless `n` images can fit the codebooks of `compression` (M, bits)."""
    m, bits = compression
    need = min_images(dim, bits)
    if n < need:
        fewer = f", or fewer bits: opq:{m}x4 needs {min_images(dim, 4)}" if bits > 4 else ""
        raise SearchError(f"--compress opq:{m}x{bits} needs at least {need} images to fit its "
                          f"codebooks, and there are {n}: index more images"
                          f"{fewer}, or leave --compress out (flat)")


def build_index(x: np.ndarray, compression: tuple[int, int] | None) -> faiss.Index:
    """A faiss inner-product index of the L2-normalised rows `x`: exact (`IndexFlatIP`), or
    OPQ+PQ (M, bits) from `faiss.index_factory`, its codebooks fitted on `x` itself."""
    dim = x.shape[1]
    if compression is None:
        index = faiss.IndexFlatIP(dim)
        index.add(x)
        return index
    m, bits = compression
    check_enough(len(x), dim, compression)
    # no polysemous training (a reordering of the codes for Hamming-distance filtering, which
    # this index never uses: 90 % of a 100 s fit of 1,000 vectors, measured)
    index = opq_pq_index(x, m, bits)
    index.add(x)
    return index


def write_index(out: Path, index: faiss.Index, x: np.ndarray, root: Path, files: list[str],
                meta: dict) -> Path:
    """Write an index folder (module doc); meta.json goes first out and last in, so that a
    folder interrupted while being rewritten reads as unfinished."""
    (out / META).unlink(missing_ok=True)
    atomic_write(out / INDEX, lambda tmp: faiss.write_index(index, str(tmp)))
    atomic_write(out / EMBEDDINGS, lambda tmp: np.save(tmp, x))
    atomic_write_text(json.dumps({"root": str(root), "files": files}, indent=1), out / FILES)
    atomic_write_text(json.dumps(meta, indent=1), out / META)
    return out


def default_out(folder: Path) -> Path:
    """Where `ue index` writes without --out: `<folder name>.ue-index` in the working folder."""
    return Path.cwd() / f"{folder.resolve().name}.ue-index"


def _check_folders(folder: Path, out: Path) -> None:
    if not folder.is_dir():
        raise SearchError(f"no folder of images at {folder}: give a folder (it is searched "
                          f"recursively for .png, .jpg, … files)")
    if out.resolve().is_relative_to(folder.resolve()):
        raise SearchError(f"the index would be written into the folder of images ({out} is "
                          f"inside {folder}): give --out a folder outside it")


def index_folder(run_dir: str | os.PathLike, folder: str | os.PathLike, out=None,
                 model: str = "kl", seed: int | None = None, compress: str | None = None,
                 batch_size: int | None = None, progress: bool = True) -> dict:
    """`ue index`: embed the images under `folder` with run `run_dir`'s `model` into an index
    folder `out` (default `default_out`); returns its meta (plus `out` and `skipped`, the
    unreadable files, which the index leaves out)."""
    folder = Path(folder).expanduser()
    out = Path(out).expanduser() if out else default_out(folder)
    _check_folders(folder, out)
    files = image_files(folder)
    if not files:
        raise SearchError(f"no image files under {folder}: put .png, .jpg, … files in it "
                          f"(subfolders are searched too)")
    start = time.perf_counter()
    embedder = load_embedder(run_dir, model, seed, batch_size)
    compression = parse_compression(compress, embedder.dim)
    if compression:  # before the folder is embedded
        check_enough(len(files), embedder.dim, compression)
    loaded = time.perf_counter()
    x, kept, skipped = embed_folder(embedder, folder, files, progress)
    if not kept:
        raise SearchError(f"none of the {len(files)} image files under {folder} can be read "
                          f"({skipped_line(skipped)}): give a folder of readable images")
    embedded = time.perf_counter()
    index = build_index(x, compression)
    seconds = {"load_model": loaded - start, "embed": embedded - loaded,
               "index": time.perf_counter() - embedded}
    meta = {**embedder.record, "root": str(folder.resolve()), "fingerprint": embedder.fingerprint,
            "preprocessing": embedder.prep, "embedding_dim": int(x.shape[1]),
            "compression": "flat" if compression is None else "opq:{}x{}".format(*compression),
            "counts": {"files": len(files), "indexed": len(kept), "skipped": len(skipped)},
            "skipped": skipped, "seconds": {k: round(v, 3) for k, v in seconds.items()},
            # the files read (and decoded) per second of reading, embedding and indexing
            "images_per_second": round(len(files) / (seconds["embed"] + seconds["index"]), 1)}
    write_index(out, index, x, folder.resolve(), kept, meta)
    return {**meta, "out": str(out)}


# ----------------------------------------------------------------------------- searching

def _one_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"


@dataclass(eq=False)
class ImageIndex:
    """An index folder, read (`load`) and searched (`search`, `hits`)."""

    path: Path
    meta: dict
    root: Path
    files: list[str]
    embeddings: np.ndarray
    index: faiss.Index

    @property
    def fingerprint(self) -> str:
        return self.meta["fingerprint"]

    @classmethod
    def load(cls, path: str | os.PathLike) -> ImageIndex:
        """The index folder `path`; SearchError naming the problem when it is missing,
        unfinished or damaged (its parts do not read, or do not agree)."""
        path = Path(path).expanduser()
        fix = f"make it again with `ue index RUN_DIR FOLDER --out {path}`"
        if not path.is_dir():
            raise SearchError(f"no index at {path}: {fix}")
        if not (path / META).is_file():
            raise SearchError(f"{path} holds no finished index (no {META}): {fix}")
        try:
            meta = json.loads((path / META).read_text())
            listing = json.loads((path / FILES).read_text())
            x = np.load(path / EMBEDDINGS, allow_pickle=False)
            index = faiss.read_index(str(path / INDEX))
            made = cls(path, meta, Path(listing["root"]), list(listing["files"]), x, index)
            sizes = {len(made.files), len(x), index.ntotal, meta["counts"]["indexed"]}
            if len(sizes) > 1 or x.ndim != 2 or {x.shape[1], index.d} != {meta["embedding_dim"]}:
                raise ValueError(f"its parts disagree: {sorted(sizes)} items, dimensions "
                                 f"{x.shape[1:]}, {index.d}, {meta['embedding_dim']}")
        except (OSError, ValueError, RuntimeError, KeyError, TypeError) as exc:
            raise SearchError(f"the index at {path} is damaged ({_one_line(exc)}): {fix}") from None
        return made

    def search(self, queries: np.ndarray, fingerprint: str, k: int = 10
               ) -> tuple[np.ndarray, np.ndarray]:
        """The `k` best items for each query row (scores, item numbers), best first (equal
        scores: lower number first). `fingerprint` is that of the model that embedded the
        queries (`Embedder.fingerprint`): FingerprintMismatch unless it is the index's."""
        if fingerprint != self.fingerprint:
            raise FingerprintMismatch(
                f"the query was embedded by another model (fingerprint {fingerprint[:12]}) than "
                f"the index at {self.path} ({self.fingerprint[:12]}): embed it with the index's "
                f"model ({self.meta['model']}, seed {self.meta['seed']}, run "
                f"{self.meta['run_dir']}), or index the folder again with yours")
        q = l2_normalise(np.atleast_2d(np.asarray(queries, dtype=np.float32)))
        if q.shape[1] != self.index.d:
            raise SearchError(f"queries of dimension {q.shape[1]} for an index of {self.index.d}")
        k = min(int(k), self.index.ntotal)
        scores, ids = self.index.search(q, k)
        order = np.lexsort((ids, -scores), axis=1) if k > 1 else np.zeros_like(ids)
        return np.take_along_axis(scores, order, 1), np.take_along_axis(ids, order, 1)

    def hits(self, query: np.ndarray, fingerprint: str, k: int = 10) -> pd.DataFrame:
        """The `k` nearest items of one query embedding: rank, score, path (relative to the
        indexed folder)."""
        scores, ids = self.search(query, fingerprint, k)
        return pd.DataFrame({"rank": np.arange(1, ids.shape[1] + 1), "score": scores[0],
                             "path": [self.files[i] for i in ids[0]]})


def search_image(index_dir: str | os.PathLike, image: str | os.PathLike, k: int = 10
                 ) -> tuple[ImageIndex, pd.DataFrame]:
    """`ue search`: the index, and the `k` nearest indexed images of image file `image`,
    embedded by the index's own model (`embedder_of_index`)."""
    index = ImageIndex.load(index_dir)
    if k < 1:
        raise SearchError(f"-k {k}: ask for at least 1 neighbour")
    image = Path(image).expanduser()
    if not image.is_file():
        raise SearchError(f"no image file at {image}: give the path of an image to search with")
    embedder = embedder_of_index(index.meta)
    return index, index.hits(embedder.embed_file(image), embedder.fingerprint, k)


def format_hits(hits: pd.DataFrame, root: Path) -> str:
    """The table `ue search` prints: rank, score and path, under a line naming the folder."""
    lines = [f"nearest in {root}:", f"{'rank':>4}  {'score':>6}  path"]
    lines += [f"{r.rank:>4}  {r.score:6.3f}  {r.path}" for r in hits.itertuples()]
    return "\n".join(lines)


SHEET_TILE, SHEET_CAPTION, SHEET_COLUMNS = 128, 18, 6


def sheet_size(n_hits: int) -> tuple[int, int]:
    """(width, height) in pixels of a contact sheet of a query and `n_hits` neighbours."""
    tiles = n_hits + 1
    cols = min(tiles, SHEET_COLUMNS)
    rows = -(-tiles // cols)
    return cols * SHEET_TILE, rows * (SHEET_TILE + SHEET_CAPTION)


def _tile(path: Path) -> Image.Image:
    try:
        with Image.open(path) as img:  # scaled to fill the tile, in proportion
            return ImageOps.contain(img.convert("RGB"), (SHEET_TILE - 4, SHEET_TILE - 4))
    except Exception:  # a neighbour's file moved or damaged since indexing: a grey tile
        return Image.new("RGB", (SHEET_TILE // 2, SHEET_TILE // 2), (160, 160, 160))


def contact_sheet(query: Path, hits: pd.DataFrame, root: Path, out: str | os.PathLike) -> Path:
    """Save a PNG of the query image and its neighbours (`hits`), each captioned with its rank
    and score, `SHEET_COLUMNS` tiles a row (`sheet_size`)."""
    sheet = Image.new("RGB", sheet_size(len(hits)), "white")
    draw = ImageDraw.Draw(sheet)
    items = [(query, "query")] + [(root / r.path, f"{r.rank}  {r.score:.3f}")
                                  for r in hits.itertuples()]
    for i, (path, caption) in enumerate(items):
        x = (i % SHEET_COLUMNS) * SHEET_TILE
        y = (i // SHEET_COLUMNS) * (SHEET_TILE + SHEET_CAPTION)
        tile = _tile(path)
        sheet.paste(tile, (x + (SHEET_TILE - tile.width) // 2, y + (SHEET_TILE - tile.height) // 2))
        draw.text((x + 4, y + SHEET_TILE + 3), caption, fill="black")
    return atomic_write(Path(out).expanduser(), lambda tmp: sheet.save(tmp, format="PNG"))


# ----------------------------------------------------------------------------- measurement

def own_neighbours(index: ImageIndex, k: int = 1) -> np.ndarray:
    """For each indexed item, queried with its stored embedding, its `k` best *other* items
    (leave-one-out; with a compressed index the item itself may rank below them)."""
    _, ids = index.search(index.embeddings, index.fingerprint, k + 1)
    own = ids == np.arange(len(ids))[:, None]
    own[~own.any(axis=1), -1] = True  # itself not among them: drop the last instead
    return ids[~own].reshape(len(ids), k)


def folder_recall_at_1(index: ImageIndex) -> tuple[float, int]:
    """Leave-one-out Recall@1 of an index whose subfolders are the classes (an item is relevant
    to another in the same folder), as the evaluator scores any faiss index
    (`ue_lib.evaluate.index_ranking_metrics`, its tie rule): (recall, number of queries), over
    the items whose folder holds another item."""
    folders = np.array([str(Path(f).parent) for f in index.files])
    metrics = index_ranking_metrics(index.index, index.embeddings, folders, folders, ks=(1,),
                                    self_rows=np.arange(len(folders)))
    return metrics["recall@1"], query_counts(folders)["num_queries"]


def top1_agreement(a: ImageIndex, b: ImageIndex) -> float:
    """How often two indexes of the same files give each item the same best other item."""
    if a.files != b.files:
        raise SearchError(f"{a.path} and {b.path} index different files")
    return float((own_neighbours(a)[:, 0] == own_neighbours(b)[:, 0]).mean())


def self_first_rate(index: ImageIndex) -> float:
    """How often an item, queried with its stored embedding, comes first itself."""
    _, ids = index.search(index.embeddings, index.fingerprint, 1)
    return float((ids[:, 0] == np.arange(len(ids))).mean())


# ----------------------------------------------------------------------------- a run's own images

def pick_items(labels: np.ndarray, per_domain: int, per_class: int, rng: np.random.Generator
               ) -> np.ndarray:
    """Up to `per_domain` items of a split, class by class in a random order: of each class up
    to max(`per_class`, per_domain / classes) random items, so that most items have others of
    their class beside them (sorted indices)."""
    classes = rng.permutation(np.unique(labels))
    take = max(per_class, -(-per_domain // max(1, len(classes))))
    chosen: list[int] = []
    for c in classes:
        room = per_domain - len(chosen)
        if room < 2:  # one item alone would have no other of its class
            break
        chosen += rng.permutation(np.flatnonzero(labels == c))[:min(take, room)].tolist()
    return np.sort(np.asarray(chosen, dtype=np.int64))


def _clear_previous_export(out: Path) -> None:
    """Remove a previous export's files from `out` (named by its manifest); refuse a non-empty
    folder that holds no export."""
    manifest = out / EXPORT_MANIFEST
    if manifest.is_file():
        for item in json.loads(manifest.read_text())["items"]:
            (out / item["path"]).unlink(missing_ok=True)
        manifest.unlink()
    elif out.is_dir() and any(out.iterdir()):
        raise SearchError(f"{out} is not empty and holds no earlier export: give a new folder")


def export_images(run_dir: str | os.PathLike, out: str | os.PathLike, split: str = "test",
                  per_domain: int = 200, per_class: int = 10, seed: int | None = None) -> dict:
    """`ue export`: write about `per_domain` images of each domain's `split` of run `run_dir`
    (exactly the run's splits at `seed`, default the run's; test images are never trained on)
    as `<out>/<domain>/<class>/<NNNNN>.png` (NNNNN: the item's number in the split; chosen by
    `pick_items`), lossless at the run's image size, and a manifest `export.json` naming each
    file's domain, item number and label. Returns the manifest."""
    if split not in ("train", "val", "test"):
        raise SearchError(f"--split {split}: choose train, val or test")
    spec = run_spec(run_dir)
    seed = spec.seed if seed is None else seed
    out = Path(out).expanduser()
    _clear_previous_export(out)
    rng = np.random.default_rng(seed)
    items = []
    for name, domain in RunFolder(spec, "export", progress=False).domains(seed).items():
        part = getattr(domain, split)
        for i in pick_items(part.labels, per_domain, per_class, rng):
            label = int(part.labels[i])
            cls = domain.class_names[label] if label < len(domain.class_names) else str(label)
            path = f"{slug(name)}/{slug(f'{label:03d}-{cls}')}/{i:05d}.png"
            image = np.asarray(part.images[i]).transpose(1, 2, 0)
            picture = Image.fromarray(image[..., 0] if image.shape[2] == 1 else image)
            atomic_write(out / path, lambda tmp, p=picture: p.save(tmp, format="PNG"))
            items.append({"path": path, "domain": name, "index": int(i), "label": label})
    manifest = {"run_dir": spec.out_dir, "split": split, "seed": seed, "items": items}
    atomic_write_text(json.dumps(manifest, indent=1), out / EXPORT_MANIFEST)
    return manifest


def evaluator_recall_at_1(run_dir: str | os.PathLike, export_dir: str | os.PathLike,
                          model: str = "kl") -> tuple[float, int]:
    """The library evaluator's merged Recall@1 (`ue_lib.evaluate.merged_retrieval_metrics`,
    as notebook 04 computes it over whole test sets) on exactly the items of an export
    (`export_images`), from the run's in-memory images: (recall, number of queries)."""
    manifest = json.loads((Path(export_dir).expanduser() / EXPORT_MANIFEST).read_text())
    spec, seed = run_spec(run_dir), manifest["seed"]
    folder = RunFolder(spec, "export", progress=False)
    result = find_model(folder, model, seed)
    embeddings, labels = {}, {}
    for name, domain in folder.domains(seed).items():
        rows = [it["index"] for it in manifest["items"] if it["domain"] == name]
        part = getattr(domain, manifest["split"])
        embeddings[name] = embed(result.model, model_inputs(result.model, part)[rows])
        labels[name] = part.labels[rows]
    metrics = merged_retrieval_metrics(embeddings, labels, ks=(1,))["all"]
    return metrics["recall@1"], sum(query_counts(v)["num_queries"] for v in labels.values())


def notebook_figure(run_dir: str | os.PathLike, model: str = "kl") -> pd.DataFrame:
    """Notebook 04's merged-index test Recall@1 of student `model`, one row per seed."""
    table = pd.read_csv(Path(run_dir).expanduser() / "results.csv")
    rows = table[table.notebook.str.startswith("04") & (table.method == model)
                 & (table.domain == "merged") & (table.split == "test")
                 & (table.metric == "recall@1")]
    return rows[["seed", "value"]].sort_values("seed").reset_index(drop=True)


def measure(run_dir: str | os.PathLike, work: str | os.PathLike, model: str = "kl",
            per_domain: int = 200, compress: str = "opq:32") -> pd.DataFrame:
    """The search on a run's own test images, against the evaluator: export `per_domain` test
    images a domain to `<work>/images` (`export_images`, the run's seed), index them flat and
    compressed, and tabulate each index's leave-one-out Recall@1 by folder (domain/class), the
    evaluator's merged Recall@1 on the same items from the in-memory images, notebook 04's
    merged-index figure (whole test sets) at that seed and over the run's seeds, the compressed
    index's agreement with the flat one, and the indexing speed."""
    work = Path(work).expanduser()
    made = export_images(run_dir, work / "images", per_domain=per_domain)
    rows = []
    for name, compression in (("flat", None), (compress, compress)):
        meta = index_folder(run_dir, work / "images", work / slug(name), model=model,
                            seed=made["seed"], compress=compression, progress=False)
        index = ImageIndex.load(work / slug(name))
        recall, queries = folder_recall_at_1(index)
        rows.append({"measure": f"search Recall@1, {meta['compression']} index", "value": recall,
                     "items": queries, "images/s": meta["images_per_second"]})
    flat, small = ImageIndex.load(work / "flat"), ImageIndex.load(work / slug(compress))
    recall, queries = evaluator_recall_at_1(run_dir, work / "images", model)
    figure = notebook_figure(run_dir, model)
    at_seed = figure[figure.seed == made["seed"]].value
    merged_items = _merged_test_items(run_dir, made["seed"])
    rows += [{"measure": "evaluator Recall@1, same items", "value": recall, "items": queries},
             {"measure": f"notebook 04 merged Recall@1, seed {made['seed']}",
              "value": float(at_seed.iloc[0]) if len(at_seed) else float("nan"),
              "items": merged_items},
             {"measure": f"notebook 04 merged Recall@1, mean of {len(figure)} seeds",
              "value": float(figure.value.mean()), "items": merged_items},
             {"measure": f"{compress} best other item = flat's", "value": top1_agreement(flat, small),
              "items": len(flat.files)},
             {"measure": f"{compress} item itself first", "value": self_first_rate(small),
              "items": len(small.files)}]
    return pd.DataFrame(rows)


def _merged_test_items(run_dir, seed: int) -> int:
    """How many test items notebook 04's merged index holds at `seed`."""
    spec = run_spec(run_dir)
    domains = RunFolder(spec, "export", progress=False).domains(seed)
    return sum(len(d.test.labels) for d in domains.values())
