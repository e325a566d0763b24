"""Loaders, split rules and error messages of ue_lib.data."""

from __future__ import annotations

import gzip
import io
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ue_lib.data import (
    DataCorruptError,
    DataNotFoundError,
    core,
    glyphs,
    load_domain,
    load_domains,
    parse_domains,
    resolve_data_root,
)
from ue_lib.data.fashion import read_idx
from ue_lib.data.omniglot import read_omniglot_zips


def _classes(split):
    return set(split.labels.tolist())


def _assert_class_disjoint(domain):
    tr, va, te = (_classes(s) for s in (domain.train, domain.val, domain.test))
    assert tr and va and te
    assert not (tr & va) and not (tr & te) and not (va & te)


# ----------------------------------------------------------------------------- core

def test_data_root_resolution(monkeypatch, tmp_path):
    monkeypatch.setenv("UE_DATA", str(tmp_path / "env"))
    assert resolve_data_root(tmp_path / "arg") == tmp_path / "arg"
    assert resolve_data_root() == tmp_path / "env"
    monkeypatch.delenv("UE_DATA")
    assert resolve_data_root() == Path("data")


def test_class_disjoint_split_sizes_and_determinism():
    labels = np.repeat(np.arange(10), 3)
    tr, va, te = core.class_disjoint_split(labels, 0.5, 0.2, np.random.default_rng(0))
    # 10 classes: 5 test; 20 % of the 5 others = 1 -> raised to the minimum of 2 val; 3 train
    assert [len(np.unique(labels[i])) for i in (tr, va, te)] == [3, 2, 5]
    assert sorted(np.concatenate([tr, va, te]).tolist()) == list(range(30))
    again = core.class_disjoint_split(labels, 0.5, 0.2, np.random.default_rng(0))
    assert all(np.array_equal(a, b) for a, b in zip((tr, va, te), again))
    with pytest.raises(ValueError, match="at least 6 classes"):
        core.class_disjoint_split(np.arange(5), 0.5, 0.2, np.random.default_rng(0))
    with pytest.raises(ValueError, match="test_fraction"):
        core.class_disjoint_split(labels, 1.5, 0.2, np.random.default_rng(0))


def test_held_out_split_is_stratified():
    labels = np.repeat(np.arange(3), 10)
    keep, held = core.held_out_split(labels, 0.2, np.random.default_rng(1))
    assert np.bincount(labels[held]).tolist() == [2, 2, 2]
    assert np.bincount(labels[keep]).tolist() == [8, 8, 8]
    assert not set(keep) & set(held)


def test_subsampling():
    labels = np.repeat(np.arange(4), [5, 1, 7, 3])
    idx = core.subsample_per_class(labels, 2, np.random.default_rng(0))
    assert np.bincount(labels[idx]).tolist() == [2, 1, 2, 2]
    idx = core.subsample_classes(labels, 2, np.random.default_rng(0))
    assert len(np.unique(labels[idx])) == 2


def test_parse_domains():
    assert parse_domains("mini") == ["clipart", "fashion", "glyphs", "omniglot", "orl"]
    assert parse_domains("scratch") == ["omniglot", "fashion", "glyphs"]
    assert parse_domains(" omniglot, folder:/tmp/x ") == ["omniglot", "folder:/tmp/x"]
    with pytest.raises(ValueError, match="unknown domain 'birds'.*folder:<path>"):
        parse_domains("omniglot,birds")
    with pytest.raises(ValueError, match="named twice"):
        parse_domains("glyphs,glyphs")
    with pytest.raises(ValueError, match="no domain"):
        parse_domains(" , ")


# ----------------------------------------------------------------------------- errors

def test_missing_root_names_domain_path_files_and_source(tmp_path):
    with pytest.raises(DataNotFoundError) as err:
        load_domain("omniglot", root=tmp_path / "nowhere", download=False)
    msg = str(err.value)
    for part in ("'omniglot'", str((tmp_path / "nowhere" / "omniglot").resolve()),
                 "images_background_small1.zip", "images_background_small2.zip",
                 "github.com/brendenlake/omniglot", "UE_DATA"):
        assert part in msg
    with pytest.raises(DataNotFoundError, match=r"(?s)'fashion'.*t10k-images-idx3-ubyte\.gz"):
        load_domain("fashion", root=tmp_path, download=False)


def test_failed_download_is_reported(tmp_path, monkeypatch):
    import torchvision.datasets.utils as tv_utils

    def offline(url, root, filename=None, md5=None):
        raise OSError("network is unreachable")

    monkeypatch.setattr(tv_utils, "download_url", offline)
    with pytest.raises(DataNotFoundError, match="download failed.*network is unreachable"):
        load_domain("omniglot", root=tmp_path)


def test_wrong_checksum_names_the_file(tmp_path, data_root):
    folder = tmp_path / "omniglot"
    folder.mkdir()
    for name in ("images_background_small1.zip", "images_background_small2.zip"):
        shutil.copy(data_root / "omniglot" / name, folder / name)
    bad = folder / "images_background_small2.zip"
    bad.write_bytes(bad.read_bytes()[:-10])
    with pytest.raises(DataCorruptError, match="images_background_small2.zip has the wrong checksum"):
        load_domain("omniglot", root=tmp_path, download=False)


# ----------------------------------------------------------------------------- omniglot

def _png_bytes(value: int, size: int = 20) -> bytes:
    buf = io.BytesIO()
    Image.new("1", (size, size), value).save(buf, format="PNG")
    return buf.getvalue()


def _omniglot_zip(path: Path, alphabets: dict[str, int], drawers: int = 2,
                  corrupt: str | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for alphabet, n_chars in alphabets.items():
            for c in range(1, n_chars + 1):
                for d in range(drawers):
                    member = f"{path.stem}/{alphabet}/character{c:02d}/{c:02d}_{d}.png"
                    zf.writestr(member, b"garbage" if member == corrupt else _png_bytes(1))
    return path


def test_omniglot_reader_dedupes_shared_alphabets_and_inverts(tmp_path):
    z1 = _omniglot_zip(tmp_path / "images_background_small1.zip", {"Greek": 3, "Latin": 2})
    z2 = _omniglot_zip(tmp_path / "images_background_small2.zip", {"Greek": 3, "Tagalog": 4})
    images, labels, names = read_omniglot_zips([z1, z2], image_size=8, channels=1)
    assert len(names) == 3 + 2 + 4  # Greek kept once
    assert names[:2] == ["Greek/character01", "Greek/character02"]
    assert np.bincount(labels).tolist() == [2] * 9
    assert images.shape == (18, 1, 8, 8)
    assert images.max() == 0  # an all-white page becomes an all-black background


def test_omniglot_corrupt_png_is_named(tmp_path):
    bad = "images_background_small1/Latin/character02/02_1.png"
    z = _omniglot_zip(tmp_path / "images_background_small1.zip", {"Latin": 2}, corrupt=bad)
    with pytest.raises(DataCorruptError, match=bad):
        read_omniglot_zips([z], image_size=8, channels=1)


def test_omniglot_real(data_root):
    d = load_domain("omniglot", root=data_root, seed=0)
    assert len(d.class_names) == 242
    assert d.train.num_classes + d.val.num_classes + d.test.num_classes == 242
    assert len(d.train) + len(d.val) + len(d.test) == 242 * 20
    assert d.test.num_classes == 121  # half of the classes are held out for test
    _assert_class_disjoint(d)
    assert d.image_shape == (1, 32, 32)
    assert d.train.images.mean() < 64  # inverted: dark background, bright strokes
    assert np.array_equal(d.test.labels, load_domain("omniglot", root=data_root, seed=0).test.labels)
    assert not np.array_equal(d.test.classes, load_domain("omniglot", root=data_root, seed=1).test.classes)


# ----------------------------------------------------------------------------- fashion

def _write_idx(path: Path, array: np.ndarray) -> Path:
    magic = 2051 if array.ndim == 3 else 2049
    header = magic.to_bytes(4, "big") + b"".join(int(s).to_bytes(4, "big") for s in array.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + array.astype(np.uint8).tobytes())
    return path


def test_read_idx_exact_and_errors(tmp_path):
    imgs = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    assert np.array_equal(read_idx(_write_idx(tmp_path / "i.gz", imgs)), imgs)
    assert read_idx(_write_idx(tmp_path / "l.gz", np.array([3, 1, 4]))).tolist() == [3, 1, 4]
    with gzip.open(tmp_path / "bad.gz", "wb") as fh:
        fh.write(b"\x00\x00\x00\x07" + b"\x00" * 8)
    with pytest.raises(DataCorruptError, match="bad.gz is not an IDX file"):
        read_idx(tmp_path / "bad.gz")
    (tmp_path / "trunc.gz").write_bytes((tmp_path / "i.gz").read_bytes()[:-5])
    with pytest.raises(DataCorruptError, match="trunc.gz"):
        read_idx(tmp_path / "trunc.gz")


def test_fashion_real(data_root):
    d = load_domain("fashion", root=data_root, max_per_class=100, seed=0)
    # held-out images of all 10 classes (SPEC §4): 50 test from t10k, 50 train of which 10 val
    assert [d.train.num_classes, d.val.num_classes, d.test.num_classes] == [10, 10, 10]
    assert np.bincount(d.test.labels).tolist() == [50] * 10
    assert np.bincount(d.val.labels).tolist() == [10] * 10
    assert np.bincount(d.train.labels).tolist() == [40] * 10
    assert "held-out images" in d.split_rule
    assert d.image_shape == (1, 32, 32)
    full = load_domain("fashion", root=data_root, image_size=28)
    assert len(full.test) == 10_000 and len(full.train) + len(full.val) == 60_000
    rgb = load_domain("fashion", root=data_root, max_per_class=10, image_size=40, channels=3)
    assert rgb.image_shape == (3, 40, 40)


# ----------------------------------------------------------------------------- glyphs

def test_glyphs_classes_fonts_and_determinism():
    d = load_domain("glyphs", seed=0)
    for confusable in "oO0lI1":
        assert confusable not in d.class_names
    _assert_class_disjoint(d)
    fonts = d.notes["fonts_per_class"]
    assert all(len(v) >= 4 for v in fonts.values())
    used = {f for v in fonts.values() for f in v}
    assert not any(f.startswith(glyphs.EXCLUDED_FONT_PREFIXES) for f in used)
    for split in d.splits.values():  # no blank image anywhere
        assert (split.images.reshape(len(split), -1).max(axis=1) > 100).all()
    again = load_domain("glyphs", seed=0)
    assert np.array_equal(d.train.images, again.train.images)
    assert len(d.class_names) >= 60


def test_glyph_blank_rendering_is_rejected():
    blank_font = glyphs.font_dir() / "DejaVuSansDisplay.ttf"
    assert glyphs.render_char("A", blank_font) is None
    assert glyphs.render_char("A", glyphs.font_dir() / "DejaVuSans.ttf") is not None


# ----------------------------------------------------------------------------- folder

def _image_tree(root: Path, n_classes: int = 6, per_class: int = 3) -> Path:
    rng = np.random.default_rng(0)
    for c in range(n_classes):
        (root / f"class{c}").mkdir(parents=True)
        for i in range(per_class):
            arr = rng.integers(0, 255, size=(10, 12, 3), dtype=np.uint8)
            Image.fromarray(arr).save(root / f"class{c}" / f"{i}.png")
    return root


def test_folder_domain(tmp_path):
    tree = _image_tree(tmp_path / "pics")
    d = load_domain(f"folder:{tree}", image_size=16, channels=3, seed=0)
    assert d.name == f"folder:{tree}"
    assert d.class_names == [f"class{c}" for c in range(6)]
    assert [d.train.num_classes, d.val.num_classes, d.test.num_classes] == [2, 2, 2]
    assert len(d.train) + len(d.val) + len(d.test) == 18
    assert d.image_shape == (3, 16, 16)
    _assert_class_disjoint(d)
    both = load_domains(f"folder:{tree},glyphs", per_domain={"glyphs": {"max_classes": 10}})
    assert list(both) == [f"folder:{tree}", "glyphs"]


def test_folder_corrupt_image_is_named(tmp_path):
    tree = _image_tree(tmp_path / "pics")
    bad = tree / "class3" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    with pytest.raises(DataCorruptError, match=str(bad)):
        load_domain(f"folder:{tree}")


def test_folder_missing_and_empty(tmp_path):
    with pytest.raises(DataNotFoundError, match="is not a folder"):
        load_domain(f"folder:{tmp_path / 'nope'}")
    tree = _image_tree(tmp_path / "pics")
    (tree / "empty_class").mkdir()
    with pytest.raises(DataNotFoundError, match="empty_class"):
        load_domain(f"folder:{tree}")
