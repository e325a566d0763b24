"""Shared fixtures. Tests that need the cached real data skip, saying why, when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ue_lib.data import resolve_data_root

REPO = Path(__file__).resolve().parents[1]


def _cached_root() -> Path | None:
    candidates = [resolve_data_root(), REPO.parent / "shared" / "data"]
    for root in candidates:
        if (root / "omniglot" / "images_background_small1.zip").is_file() and \
                (root / "fashion-mnist" / "train-images-idx3-ubyte.gz").is_file():
            return root.resolve()
    return None


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = _cached_root()
    if root is None:
        pytest.skip(f"cached datasets not found (looked in ${'{'}UE_DATA{'}'}="
                    f"{os.environ.get('UE_DATA', '')!r}, ./data and ../shared/data); "
                    f"set UE_DATA to a folder holding omniglot/ and fashion-mnist/")
    os.environ["UE_DATA"] = str(root)  # the `ue` processes the tests start look there too
    return root
