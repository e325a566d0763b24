"""Shared fixtures. Tests that need the cached real data skip, saying why, when it is absent."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ue_lib.data import resolve_data_root

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))  # `from helpers import …` in every test folder


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


SENTINEL = {"specialist": "#010101", "naive": "#020202", "teacher": "#030303",
            "distill:kl": "#040404", "distill:distance_mse": "#050505"}
DOMAIN_SENTINEL = {"x": "#0a0a0a", "y": "#0b0b0b", "domain A": "#0c0c0c", "domain B": "#0d0d0d"}


@pytest.fixture
def sentinels(monkeypatch):
    """The palette's entries replaced by colours no default uses (`SENTINEL`, `DOMAIN_SENTINEL`;
    HIT and MISS #0e0e0e and #0f0f0f), to read back from the drawn artists."""
    import matplotlib.pyplot as plt

    from ue_lib import figures, palette

    for name, color in SENTINEL.items():
        monkeypatch.setitem(palette.PALETTE, name, color)
    for name, color in DOMAIN_SENTINEL.items():
        monkeypatch.setitem(palette.DOMAIN_COLORS, name, color)
    monkeypatch.setattr(figures, "HIT", "#0e0e0e")
    monkeypatch.setattr(figures, "MISS", "#0f0f0f")
    yield
    plt.close("all")


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory, data_root):
    """One `smoke` run for the whole session (notebooks, book, explorer, search tests read it
    and never write into it). `ue profile` is `ue run` with every process profiled
    (`ue_lib.timing`): the same notebooks and numbers, and a table of where their time went."""
    out = tmp_path_factory.mktemp("smoke")
    start = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "ue_lib.cli", "profile", "--profile", "smoke",
                        "--out", str(out)], capture_output=True, text=True, cwd=REPO, timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr
    print(f"\nsmoke profile: {time.perf_counter() - start:.0f} s\n{r.stdout}")
    (out / "ue-run.stderr").write_text(r.stderr)
    return out
