"""Decoded images kept between processes: a loader's slow, seed-independent part (rendering the
glyphs, decoding Omniglot's zips) runs once per machine, and every later load (each seed, each
notebook's kernel, each worker process) reads its arrays back from one pickle instead.

The file lives in the user cache (``$UE_CACHE/ue_lib/decoded/``, `user_cache_dir`), named by a
hash of what the arrays depend on: the loader, its settings, `DECODE_VERSION`, and each source
file's path, size and modification time (so a changed font or zip gives a new file). A file that
cannot be read, or that holds another key, is moved aside and rebuilt (`ue_lib.io.read_or_build`).
"""

from __future__ import annotations

import hashlib
import json
import pickle
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from ..io import Stale, atomic_write, read_or_build
from .core import user_cache_dir

T = TypeVar("T")

DECODE_VERSION = 1  # bump when a cached loader's output changes


def cache_key(kind: str, settings: dict, sources: Sequence[Path]) -> str:
    """What the decoded arrays depend on, as one string (sources by path, size and mtime)."""
    files = []
    for path in sources:
        stat = Path(path).stat()
        files.append([str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns])
    return json.dumps([kind, settings, files, DECODE_VERSION], sort_keys=True, default=str)


def cached_decode(kind: str, settings: dict, sources: Sequence[Path], build: Callable[[], T]) -> T:
    """``build()``, read from the user cache when an earlier call with the same key made it."""
    key = cache_key(kind, settings, sources)
    path = user_cache_dir("decoded") / f"{kind}-{hashlib.sha256(key.encode()).hexdigest()[:24]}.pkl"

    def read(p: Path) -> T:
        with open(p, "rb") as f:
            record = pickle.load(f)
        if record.get("key") != key:
            raise Stale(f"it holds the arrays of another key ({record.get('key', '?')[:80]}…)")
        return record["value"]

    def build_and_write() -> T:
        value = build()

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as f:
                pickle.dump({"key": key, "value": value}, f, protocol=pickle.HIGHEST_PROTOCOL)

        atomic_write(path, write)  # (it makes the folder)
        return value

    return read_or_build(path, read, build_and_write)
