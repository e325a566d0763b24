"""Atomic writes: every file the project writes (checkpoints, models, caches, results, figures)
goes to a temporary file in the same folder first and is then renamed over its target, so an
interrupted run never leaves a half-written file behind. Torch-free: `torch_save` imports torch
only when called.

`RESULT_COLUMNS` is the one declaration of a results table's columns (`results.csv`, each
notebook's `results/<notebook>.csv`, the sweep tables), and `result_rows` the one builder of its
rows. `read_sweep` reads a finished sweep folder (`ue sweep` writes it).

Derived files heal: `read_derived` reads a file the project made (a cache, a model, a
checkpoint) and, when it cannot be parsed or its stored fingerprint is not the one wanted
(`Stale`), moves it aside (`quarantine`: `<name>.corrupt`, said in one line on stderr) so that the
caller rebuilds it; `read_or_build` does both, and an error while rebuilding names the file
(`RebuildError`). A file under the data root (the user's inputs) is never moved: it is a named
error, as is any unreadable input file read through `read_named`.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import sys
import zipfile
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

import pandas as pd

RESULT_COLUMNS = ["notebook", "model", "method", "domain", "split", "metric", "value", "seed",
                  "epoch"]
# metrics that are wall-clock measurements (a search time per query, a time per image, a
# training time): shown and kept in results.csv, never compared with a regression baseline,
# since they vary from run to run
TIMING_METRICS = ("search_us", "ms_per_image", "train_seconds")
SWEEP_SPEC, SWEEP_TABLE = "sweep.json", "sweep.csv"  # in a sweep folder: its grid, its table


def result_rows(metrics: Mapping[str, float], *, notebook: str, model: str, method: str,
                domain: str, seed: int, epoch: int, split: str = "test") -> list[dict]:
    """Rows of a results table (`RESULT_COLUMNS`), one per metric of `metrics` ({name: value}),
    all with the same key: the one place a result row is made."""
    return [{"notebook": notebook, "model": model, "method": method, "domain": domain,
             "split": split, "metric": m, "value": v, "seed": seed, "epoch": epoch}
            for m, v in metrics.items()]


def read_sweep(sweep_dir: str | os.PathLike) -> tuple[dict[str, list], pd.DataFrame]:
    """A finished sweep folder's grid ({parameter: values}) and table (a DataFrame of its
    `sweep.csv`); FileNotFoundError naming the file and the fix when it has none."""
    folder = Path(sweep_dir)
    if not (folder / SWEEP_TABLE).is_file():
        raise FileNotFoundError(f"{folder / SWEEP_TABLE} not found: run `ue sweep … --out {folder}` "
                                f"first")
    spec = json.loads((folder / SWEEP_SPEC).read_text())
    return spec["params"], pd.read_csv(folder / SWEEP_TABLE)


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call `write(tmp)` on a temporary path beside `path`, then rename it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def atomic_write_text(text: str, path: str | os.PathLike) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def torch_save(obj, path: str | os.PathLike) -> Path:
    import torch

    return atomic_write(path, lambda tmp: torch.save(obj, tmp))


# ----------------------------------------------------------------------------- derived files

T = TypeVar("T")
# what a damaged file makes a reader raise: a truncated or garbled zip (npz, torch's format), a
# pickle cut short or made of garbage (EOFError, OverflowError: BYTEARRAY8 exceeds…), torch's
# "PytorchStreamReader failed" (RuntimeError), missing keys, arrays of the wrong shape
READ_ERRORS = (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError, KeyError, IndexError,
               TypeError, RuntimeError, OverflowError, pickle.UnpicklingError)
CORRUPT_SUFFIX = ".corrupt"


class Stale(ValueError):
    """Raised by a reader of a derived file that parses but whose stored fingerprint is not the
    one wanted (the message says how): the file is moved aside and rebuilt like a damaged one."""


class RebuildError(RuntimeError):
    """Rebuilding a derived file that was moved aside failed (the message names the file)."""


class UnreadableFileError(ValueError):
    """A file that cannot be read and is not rebuilt (an input, or a file asked for by name)."""


def _cause(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, Stale) else f"it could not be read ({type(exc).__name__}: {exc})"


def _data_root_holding(path: Path) -> Path | None:
    """The data root when `path` is inside it (the user's inputs), else None."""
    from .data.core import resolve_data_root  # here: ue_lib.data's modules import this one

    root = resolve_data_root().resolve()
    return root if path.resolve().is_relative_to(root) else None


def quarantine(path: str | os.PathLike, why: str) -> Path | None:
    """Move the derived file `path` aside to `<name>.corrupt` (replacing an older one) and say so
    in one line on stderr; returns where it went (None: it could not be moved, said in the line).
    A file under the data root is never moved: DataCorruptError naming it and `why`."""
    path = Path(path)
    root = _data_root_holding(path)
    if root is not None:
        from .data.core import DataCorruptError

        raise DataCorruptError(f"{path}: {why}. It is under the data root {root}, which holds your "
                               f"inputs, so it is left as it is: replace or delete it yourself")
    aside = path.with_name(path.name + CORRUPT_SUFFIX)
    try:
        os.replace(path, aside)
        kept = f"it is kept as {aside.name}"
    except FileNotFoundError:  # another process moved it aside first
        aside, kept = None, "another process moved it aside"
    except OSError as exc:
        aside, kept = None, f"it could not be moved aside ({exc})"
    print(f"ue: rebuilding {path}: {why}; {kept}", file=sys.stderr, flush=True)
    return aside


def _identity(path: Path) -> tuple | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


def read_derived(path: str | os.PathLike, reader: Callable[[Path], T]) -> T | None:
    """`reader(path)` for a file the project derived (a cache, a model, a checkpoint); None when
    there is no such file, or when the reader failed with one of `READ_ERRORS` (a damaged file)
    or `Stale` (another fingerprint): the file is then moved aside (`quarantine`) for the caller
    to rebuild. A file replaced while it was read (another process rebuilt it) is read again;
    PermissionError is raised as it is. `reader` never returns None."""
    path = Path(path)
    for _ in range(2):
        before = _identity(path)
        if before is None:
            return None
        try:
            return reader(path)
        except PermissionError:
            raise
        except FileNotFoundError:
            return None
        except READ_ERRORS as exc:
            now = _identity(path)
            if now is None:  # moved aside or removed meanwhile: the caller rebuilds it
                return None
            if now == before:
                quarantine(path, _cause(exc))
                return None
    return None


def rebuild_failed(path: str | os.PathLike, exc: Exception) -> Exception:
    """What to raise when rebuilding `path` failed with `exc`: `exc` itself when its message
    names the file already, else a RebuildError that does."""
    if str(path) in str(exc):
        return exc
    return RebuildError(f"could not rebuild {path}, moved aside as damaged or stale "
                        f"({type(exc).__name__}: {exc})")


@contextlib.contextmanager
def rebuilding(path: str | os.PathLike | Callable[[], str | os.PathLike | None], active: bool = True):
    """Name `path` in an error raised inside (when `active`: the file was moved aside). `path`
    may be a function giving it when the error comes, None when nothing was moved aside."""
    try:
        yield
    except Exception as exc:
        where = path() if callable(path) else path
        error = rebuild_failed(where, exc) if active and where is not None else exc
        if error is exc:
            raise
        raise error from exc


def read_or_build(path: str | os.PathLike, read: Callable[[Path], T], build: Callable[[], T]) -> T:
    """`read(path)` when `path` holds a readable, current derived file, else `build()` (which
    writes it): a damaged or stale file is moved aside first (`read_derived`), and an error
    while rebuilding it names it."""
    path = Path(path)
    existed = path.exists()
    value = read_derived(path, read)
    if value is not None:
        return value
    with rebuilding(path, active=existed):
        return build()


def read_named(path: str | os.PathLike, reader: Callable[[Path], T], what: str = "file",
               fix: str = "") -> T:
    """`reader(path)` for a file that is not rebuilt here (an input the user provides, an
    installed package's file, a file asked for by name): never moved or changed; a failure that
    leaves it unreadable is an UnreadableFileError naming it (an OSError naming it already, such
    as a missing file, is raised as it is)."""
    path = Path(path)
    try:
        return reader(path)
    except READ_ERRORS as exc:
        if isinstance(exc, OSError) and exc.filename:
            raise
        raise UnreadableFileError(f"{what} {path} cannot be read ({type(exc).__name__}: {exc})"
                                  f"{'; ' + fix if fix else ''}") from exc


def save_figure(fig, path: str | os.PathLike, dpi: int = 110) -> Path:
    return atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=dpi, bbox_inches="tight"))


def slug(text: str) -> str:
    """A folder-safe name: 'temperature=0.05,seed=0' stays; 'folder:/a/b' -> 'folder-a-b-<hash>'
    (a short hash is added whenever characters were replaced or the name was shortened, so two
    different texts never share a folder)."""
    import hashlib
    import re

    clean = re.sub(r"[^A-Za-z0-9_.,=+-]+", "-", text).strip("-")
    if clean != text or len(clean) > 100:
        clean = f"{clean[:100]}-{hashlib.sha1(text.encode()).hexdigest()[:6]}"
    return clean
