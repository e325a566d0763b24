"""`ue_lib.data.decoded`: a loader's slow, seed-independent arrays kept in the user cache."""

from __future__ import annotations

import os

import numpy as np

from ue_lib.data.decoded import cached_decode


def test_decoded_arrays_are_built_once_read_back_and_healed(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("UE_CACHE", str(tmp_path / "cache"))
    source = tmp_path / "font.ttf"
    source.write_bytes(b"glyphs")
    calls = []

    def build():
        calls.append(1)
        return np.arange(6, dtype=np.uint8).reshape(2, 3), ["a", "b"]

    first = cached_decode("glyphs", {"image_size": 8}, [source], build)
    again = cached_decode("glyphs", {"image_size": 8}, [source], build)
    assert len(calls) == 1 and np.array_equal(first[0], again[0]) and again[1] == ["a", "b"]
    (path,) = (tmp_path / "cache" / "ue_lib" / "decoded").glob("glyphs-*.pkl")
    path.write_bytes(b"not a pickle")  # damaged: moved aside, rebuilt, said in one line
    healed = cached_decode("glyphs", {"image_size": 8}, [source], build)
    assert len(calls) == 2 and np.array_equal(healed[0], first[0])
    assert str(path) in capsys.readouterr().err and path.with_name(path.name + ".corrupt").exists()
    cached_decode("glyphs", {"image_size": 16}, [source], build)  # other settings: another file
    os.utime(source, ns=(1, 1))  # a changed source: another file
    cached_decode("glyphs", {"image_size": 8}, [source], build)
    assert len(calls) == 4
    assert len(list(path.parent.glob("glyphs-*.pkl"))) == 3
