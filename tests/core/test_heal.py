"""Caches heal: a derived file that cannot be read (trunk features, a finished model, a
checkpoint) is moved aside to `<name>.corrupt`, named in one line on stderr and made again, with
the numbers of an undamaged run; the user's inputs (the data root, a weights file) are never moved
or changed: they are named errors. Tiny synthetic domains, seconds."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import blob_domain

from ue_lib.config import ModelSettings
from ue_lib.data import DataCorruptError
from ue_lib.features import FeatureStore
from ue_lib.io import RebuildError, Stale, UnreadableFileError, read_derived, read_named, read_or_build
from ue_lib.models import build_model, load_lite0
from ue_lib.profiles import Profile
from ue_lib.training import CHECKPOINT, FINAL, ModelStore, TrainJob, load_result, train
from ue_lib.universal.objectives import NaiveFusion

TINY = Profile(embedding_dim=8, width=8, p=3, k=2, eval_batch_size=64, epochs_naive=3, eval_every=1)


@pytest.fixture(scope="module")
def domains():
    return {"a": blob_domain("a", seed=0), "b": blob_domain("b", n_classes=14, seed=1)}


@pytest.fixture(scope="module")
def clean(domains):
    """The undamaged run every healed one is compared with (no folder: nothing on disk)."""
    return run(domains)


def run(domains, profile=TINY, **kw):
    return train(TrainJob(domains, NaiveFusion(profile), 0), progress=False, **kw)


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def garble(path: Path) -> None:
    """Flip every byte of the middle tenth of the file (its data, past the headers)."""
    data = bytearray(path.read_bytes())
    n = len(data)
    data[n // 2: n // 2 + n // 10] = bytes(b ^ 0xFF for b in data[n // 2: n // 2 + n // 10])
    path.write_bytes(bytes(data))


def aside(path: Path) -> Path:
    return path.with_name(path.name + ".corrupt")


def heal_line(capsys, path: Path) -> str:
    """The one line that said `path` was moved aside (and no other such line)."""
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("ue: rebuilding")]
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"ue: rebuilding {path}: ") and f"kept as {aside(path).name}" in lines[0]
    return lines[0]


def same_result(a, b) -> None:
    assert torch.equal(weights(a.model), weights(b.model)) and a.best_epoch == b.best_epoch
    pd.testing.assert_frame_equal(a.history, b.history)
    pd.testing.assert_frame_equal(a.final.reset_index(drop=True), b.final.reset_index(drop=True))


def weights(model) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.state_dict().values()])


def fail(exc: Exception):
    raise exc


class Boom(torch.nn.Module):
    def forward(self, x):
        raise AssertionError("the trunk ran although its outputs were cached")


# ----------------------------------------------------------------------------- trunk features

@pytest.mark.parametrize("damage, why", [(truncate, "BadZipFile: File is not a zip file"),
                                         (garble, "BadZipFile: Bad CRC-32")])
def test_a_damaged_features_file_is_moved_aside_and_computed_again(tmp_path, capsys, damage, why):
    images = blob_domain("a").train.images
    torch.manual_seed(0)
    trunk = torch.nn.Conv2d(1, 4, 3)
    first = FeatureStore(tmp_path).features(trunk, "k", "a", images)
    path = FeatureStore(tmp_path).path("a", "k")
    damage(path)
    damaged = path.read_bytes()
    capsys.readouterr()
    again = FeatureStore(tmp_path).features(trunk, "k", "a", images)
    np.testing.assert_array_equal(again, first)
    assert why in heal_line(capsys, path)
    assert aside(path).read_bytes() == damaged
    # the file written again is read back: the trunk does not run
    np.testing.assert_array_equal(FeatureStore(tmp_path).features(Boom(), "k", "a", images), first)
    assert capsys.readouterr().err == ""


# ----------------------------------------------------------------------------- models and checkpoints

def test_a_truncated_model_file_is_moved_aside_and_trained_again(domains, clean, tmp_path, capsys):
    folder = tmp_path / "model"
    run(domains, out_dir=folder)
    truncate(folder / FINAL)
    with pytest.raises(UnreadableFileError, match=re.escape(f"the model file {folder / FINAL} cannot be "
                                                            f"read (")):
        load_result(folder)  # asked for by name: an error naming it, the file left as it is
    assert not aside(folder / FINAL).exists()
    capsys.readouterr()
    healed = run(domains, out_dir=folder)
    assert not healed.loaded and ": it could not be read (" in heal_line(capsys, folder / FINAL)
    same_result(healed, clean)
    assert aside(folder / FINAL).is_file() and not (folder / CHECKPOINT).exists()
    again = run(domains, out_dir=folder)
    assert again.loaded
    same_result(again, clean)


def test_a_damaged_model_file_resumes_from_a_valid_checkpoint(domains, clean, tmp_path, capsys):
    class Stop(Exception):
        pass

    def stop_at_2(epoch, history):
        if epoch == 2:
            raise Stop

    folder = tmp_path / "model"
    with pytest.raises(Stop):
        run(domains, out_dir=folder, on_epoch_end=stop_at_2)
    (folder / FINAL).write_bytes(b"\x80\x05\x96" + (2 ** 64 - 1).to_bytes(8, "little") + b"x" * 64)
    capsys.readouterr()
    epochs = []
    healed = run(domains, out_dir=folder, on_epoch_end=lambda epoch, history: epochs.append(epoch))
    assert epochs == [3]  # resumed after epoch 2, not trained from the start
    assert "OverflowError: BYTEARRAY8 exceeds" in heal_line(capsys, folder / FINAL)
    same_result(healed, clean)


@pytest.mark.parametrize("garbage", [np.random.default_rng(0).bytes(4096), b""])
def test_a_garbage_checkpoint_is_moved_aside_and_training_starts_afresh(domains, clean, tmp_path,
                                                                         capsys, garbage):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / CHECKPOINT).write_bytes(garbage)
    epochs = []
    healed = run(domains, out_dir=folder, on_epoch_end=lambda epoch, history: epochs.append(epoch))
    assert epochs == [1, 2, 3]
    heal_line(capsys, folder / CHECKPOINT)
    same_result(healed, clean)
    assert aside(folder / CHECKPOINT).read_bytes() == garbage and not (folder / CHECKPOINT).exists()


def test_a_model_file_with_another_fingerprint(domains, clean, tmp_path, capsys):
    """In a folder named by the fingerprint (as a run folder names its models) the file is not
    what its name says: moved aside and trained again; in a folder the caller chose it is a model
    of other settings: refused, left as it is."""
    other = TINY.replace(epochs_naive=2)
    fingerprint = TrainJob(domains, NaiveFusion(TINY), 0).fingerprint
    keyed = tmp_path / f"naive-{fingerprint[:10]}"
    run(domains, other, out_dir=keyed)
    capsys.readouterr()
    healed = run(domains, out_dir=keyed)
    assert "it holds fingerprint" in heal_line(capsys, keyed / FINAL)
    same_result(healed, clean)
    chosen = tmp_path / "chosen"
    run(domains, other, out_dir=chosen)
    with pytest.raises(ValueError, match="other settings"):
        run(domains, out_dir=chosen)
    assert (chosen / FINAL).is_file() and not aside(chosen / FINAL).exists()


def test_a_failure_while_rebuilding_names_the_file(tmp_path, capsys):
    store = ModelStore(tmp_path, "f" * 64)
    (tmp_path / FINAL).write_bytes(b"garbage")
    assert store.finished() is None and store.healed == tmp_path / FINAL
    heal_line(capsys, tmp_path / FINAL)
    with pytest.raises(RebuildError, match=re.escape(f"could not rebuild {tmp_path / FINAL}") +
                       ".*OSError: disk full"):
        with store.training():
            raise OSError("disk full")
    with pytest.raises(KeyError), ModelStore(tmp_path / "b", "f" * 64).training():  # nothing healed
        raise KeyError("x")


# ----------------------------------------------------------------------------- the helpers

def test_read_or_build_reads_builds_and_names_the_file(tmp_path, capsys):
    path = tmp_path / "cache.npz"
    read = lambda p: dict(np.load(p, allow_pickle=False))  # noqa: E731

    def build():
        np.savez(path, x=np.arange(3))
        return {"x": np.arange(3)}

    assert read_or_build(path, read, build)["x"].tolist() == [0, 1, 2]  # missing: built, no line
    assert read_or_build(path, read, lambda: pytest.fail("built again"))["x"].tolist() == [0, 1, 2]
    assert capsys.readouterr().err == ""
    truncate(path)
    with pytest.raises(RebuildError, match=re.escape(f"could not rebuild {path}") + ".*no renderer"):
        read_or_build(path, read, lambda: fail(RuntimeError("no renderer")))
    heal_line(capsys, path)
    assert read_or_build(path, read, build)["x"].tolist() == [0, 1, 2]
    # a first build's error is its own
    with pytest.raises(ZeroDivisionError):
        read_or_build(tmp_path / "new.npz", read, lambda: 1 / 0)
    # a stale file (the reader says why) is moved aside like a damaged one
    assert read_derived(path, lambda p: fail(Stale("it holds other parameters"))) is None
    assert "it holds other parameters" in heal_line(capsys, path) and not path.exists()
    assert read_derived(tmp_path / "missing.npz", read) is None


def test_a_file_under_the_data_root_is_never_moved(tmp_path, monkeypatch, capsys):
    root = tmp_path / "data"
    monkeypatch.setenv("UE_DATA", str(root))
    path = root / "inputs" / "table.npz"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not an npz")
    with pytest.raises(DataCorruptError, match="(?s)" + re.escape(str(path)) + ".*under the data root"):
        read_derived(path, lambda p: np.load(p, allow_pickle=False)["x"])
    assert path.read_bytes() == b"not an npz" and not aside(path).exists()
    assert capsys.readouterr().err == ""


def test_an_unreadable_weights_file_is_a_named_error_left_as_it_is(tmp_path):
    bad = tmp_path / "weights.pth"
    bad.write_bytes(b"\x00" * 100)
    for load in (lambda: load_lite0(str(bad)),
                 lambda: build_model(ModelSettings.part_of(Profile(), backbone="resnet18",
                                                           weights=str(bad)))):
        with pytest.raises(UnreadableFileError, match=re.escape(f"weights file {bad} cannot be read")):
            load()
    assert bad.read_bytes() == b"\x00" * 100 and not aside(bad).exists()
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        read_named(tmp_path / "missing.pth", lambda p: torch.load(p))
