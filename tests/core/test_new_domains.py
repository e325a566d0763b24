"""The `clipart` (Open Clip Art, from Debian's openclipart-svg .deb) and `orl` (AT&T faces)
domains. Clip art is tested on a tiny fake .deb built here (so the ar/tar reading, the curation,
the rendering and its cache are all exercised in a second); one slow test renders the real one."""

from __future__ import annotations

import io
import os
import shutil
import tarfile
import time
import zipfile
from fnmatch import fnmatchcase
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ue_lib.data import (
    LOADERS,
    DataCorruptError,
    DataNotFoundError,
    check_domain,
    clipart,
    core,
    load_domain,
    orl,
)

SVG_DIR = "./usr/share/openclipart/svg/"


def _assert_class_disjoint(domain) -> None:
    tr, va, te = (set(s.labels.tolist()) for s in (domain.train, domain.val, domain.test))
    assert tr and va and te
    assert not (tr & va) and not (tr & te) and not (va & te)


def _all(domain, attr: str) -> list:
    return [x for s in domain.splits.values() for x in getattr(s, attr).tolist()]


# ----------------------------------------------------------------------------- shared helpers

def test_domain_from_items_keeps_paths_without_changing_the_split():
    labels = np.repeat(np.arange(8), 3)
    images = np.arange(24, dtype=np.uint8).reshape(24, 1, 1, 1).repeat(4, axis=2)
    kwargs = dict(seed=3, test_fraction=0.5, val_fraction=0.2, max_per_class=2, max_classes=7,
                  provenance="p", license="l")
    plain = core.domain_from_items("x", images, labels, list("abcdefgh"), **kwargs)
    withp = core.domain_from_items("x", images, labels, list("abcdefgh"),
                                   paths=[f"f{i}" for i in range(24)], **kwargs)
    for a, b in zip(plain.splits.values(), withp.splits.values()):
        assert np.array_equal(a.images, b.images) and np.array_equal(a.labels, b.labels)
        assert [f"f{int(v)}" for v in b.images[:, 0, 0, 0]] == b.paths.tolist()


def test_user_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("UE_CACHE", str(tmp_path))
    assert core.user_cache_dir("clipart") == tmp_path / "ue_lib" / "clipart"
    monkeypatch.delenv("UE_CACHE")
    assert core.user_cache_dir("clipart").parts[-2:] == ("ue_lib", "clipart")


# ----------------------------------------------------------------------------- clipart

def _svg(sides: int, colour: str, *, stretch: float = 1.0) -> bytes:
    """A filled regular polygon (a distinct drawing per number of sides and colour)."""
    angles = np.linspace(0, 2 * np.pi, sides, endpoint=False) + 0.3
    pts = " ".join(f"{50 + 40 * np.cos(a) * stretch:.1f},{50 + 40 * np.sin(a):.1f}" for a in angles)
    return (f'<svg xmlns="http://www.w3.org/2000/svg" xmlns:dc="http://purl.org/dc/elements/1.1/" '
            f'xmlns:cc="http://web.resource.org/cc/" width="100" height="100">'
            f'<metadata><dc:creator><cc:Agent><dc:title>Tester &amp; Co</dc:title></cc:Agent>'
            f'</dc:creator></metadata><polygon points="{pts}" fill="{colour}"/></svg>').encode()


CURATED = {  # folder -> colour; three distinct drawings each
    "animals/birds": "#c00000", "food/fruit": "#00a000", "tools": "#0000c0",
    "plants/flowers": "#c0a000", "transportation/vehicles": "#a000a0", "recreation/music": "#00a0a0",
    "plants": "#606060",
}
EXCLUDED = ["signs_and_symbols/flags/europe", "shapes/stars", "unsorted", "computer/icons/lemon-theme/apps"]


def _fake_files() -> tuple[dict[str, bytes], dict[str, str]]:
    files = {}
    for k, (folder, colour) in enumerate(CURATED.items()):
        for i, sides in enumerate((3, 4, 6)):
            files[f"{folder}/item{i}.svg"] = _svg(sides, colour, stretch=1 + 0.1 * k)
    files["animals/birds/penguin/tux.svg"] = _svg(8, "#000000")  # merged into animals/birds
    for folder in EXCLUDED:
        files[f"{folder}/thing.svg"] = _svg(5, "#ff8800")
    files["tools/blank.svg"] = b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>'
    files["food/fruit/broken.svg"] = b"<svg this is not xml"
    # the same file name in two unrelated classes (ambiguous: dropped from both) ...
    files["animals/birds/dolphin.svg"] = _svg(7, "#3366ff")
    files["food/fruit/dolphin.svg"] = _svg(7, "#3366ff")
    # ... and in a class and a class inside it (kept in the inner one)
    files["plants/rose.svg"] = _svg(9, "#ff0066")
    files["plants/flowers/rose.svg"] = _svg(9, "#ff0066")
    symlinks = {"tools/link_to_bird.svg": "../animals/birds/item0.svg"}  # Debian's exact copies
    return files, symlinks


def _ar(members: list[tuple[str, bytes]]) -> bytes:
    out = [b"!<arch>\n"]
    for name, data in members:
        out.append(f"{name:<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(data):<10}`\n".encode())
        out.append(data + (b"\n" if len(data) % 2 else b""))
    return b"".join(out)


def _tar_xz(files: dict[str, bytes], symlinks: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:xz") as tar:
        for rel, data in files.items():
            info = tarfile.TarInfo(SVG_DIR + rel)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for rel, target in symlinks.items():
            info = tarfile.TarInfo(SVG_DIR + rel)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
        copyright_ = b"creative commons Public Domain Dedication\n"
        info = tarfile.TarInfo("./" + clipart.LICENSE_FILE)
        info.size = len(copyright_)
        tar.addfile(info, io.BytesIO(copyright_))
    return buf.getvalue()


@pytest.fixture
def fake_deb_root(tmp_path, monkeypatch) -> Path:
    """A data root holding a small fake openclipart-svg .deb; the user cache in tmp_path."""
    monkeypatch.setenv("UE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(clipart, "INSTALLED_TREE", tmp_path / "not-installed")
    root = tmp_path / "data"
    (root / "openclipart").mkdir(parents=True)
    files, symlinks = _fake_files()
    deb = _ar([("debian-binary", b"2.0\n"), ("control.tar.xz", _tar_xz({}, {})),
               ("data.tar.xz", _tar_xz(files, symlinks))])
    (root / "openclipart" / clipart.DEB_NAME).write_bytes(deb)
    return root


def _listing(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in folder.rglob("*")}


def excluded(folder: str) -> bool:
    """Whether a clip-art folder matches a pattern of the excluded topics."""
    return any(fnmatchcase(folder, pattern) for pattern in clipart.EXCLUDED)


def test_clipart_curated_lists_are_consistent():
    assert len(set(clipart.CATEGORIES)) == len(clipart.CATEGORIES)
    assert set(clipart.MERGED.values()) <= set(clipart.CATEGORIES)
    assert not set(clipart.MERGED) & set(clipart.CATEGORIES)
    for folder in (*clipart.CATEGORIES, *clipart.MERGED):
        assert not excluded(folder), folder
    for pattern, reason in clipart.EXCLUDED.items():
        assert reason and clipart.category_of(pattern.rstrip("*")) is None, pattern
    assert excluded("signs_and_symbols/flags/europe/france")  # patterns cover subtrees
    paths = np.array(["tools/weapons/bullet_hole_linda_kim_q.svg", "tools/weapons/sword.svg",
                      "signs_and_symbols/clocks/clock01.svg", "signs_and_symbols/clocks/clock07.svg"])
    small = np.arange(4, dtype=np.float32)[:, None] * np.full((1, 768), 50, np.float32)
    keep, classes, report = clipart.select_items(paths, small)
    assert paths[keep].tolist() == [paths[1], paths[2]]
    assert classes.tolist() == ["tools/weapons", "signs_and_symbols/clocks"]
    assert report["dropped_files"] == [paths[0], paths[3]]


def test_clipart_from_fake_deb(fake_deb_root, tmp_path):
    before = _listing(fake_deb_root)
    d = clipart.load_clipart(fake_deb_root, image_size=32, channels=3)
    assert _listing(fake_deb_root) == before  # nothing written into the data root
    cached = list((tmp_path / "cache" / "ue_lib" / "clipart").glob("*.npz"))
    assert len(cached) == 1 and d.notes["cache_file"] == str(cached[0])

    assert d.name == "clipart" and d.class_names == [c for c in clipart.CATEGORIES if c in CURATED]
    paths = _all(d, "paths")
    assert not any(p.startswith(tuple(EXCLUDED)) for p in paths)  # excluded folders never appear
    assert "animals/birds/penguin/tux.svg" in paths  # merged folder
    assert "tools/link_to_bird.svg" not in paths  # symlinks (exact copies) are skipped
    assert not any("dolphin" in p for p in paths)  # ambiguous across unrelated classes
    assert "plants/flowers/rose.svg" in paths and "plants/rose.svg" not in paths
    assert set(d.notes["render_failed"]) == {"food/fruit/broken.svg"}
    assert d.notes["render_blank"] == ["tools/blank.svg"]
    labels = {p: d.class_names[label] for s in d.splits.values()
              for p, label in zip(s.paths, s.labels)}
    assert labels["animals/birds/penguin/tux.svg"] == "animals/birds"
    assert all(labels[p] == p.rpartition("/")[0] for p in paths if "penguin" not in p)
    assert len(paths) == 3 * len(CURATED) + 2 and len(set(paths)) == len(paths)
    _assert_class_disjoint(d)
    assert "Open Clip Art" in d.provenance and "public domain" in d.license.lower()
    assert d.notes["authors"]["tools/item0.svg"] == "Tester & Co"
    assert d.image_shape == (3, 32, 32) and d.train.images.dtype == np.uint8
    images = np.concatenate([s.images for s in d.splits.values()])
    assert (images == 255).any(axis=(1, 2, 3)).all() and (images < 200).any(axis=(1, 2, 3)).all()

    grey = clipart.load_clipart(fake_deb_root, image_size=16, channels=1)
    assert grey.image_shape == (1, 16, 16)
    assert [s.paths.tolist() for s in grey.splits.values()] == \
        [s.paths.tolist() for s in d.splits.values()]


def test_clipart_render_cache_is_reused(fake_deb_root, monkeypatch):
    first = clipart.load_clipart(fake_deb_root)

    def broken_renderer(*args, **kwargs):
        calls.append(args)
        raise RuntimeError("renderer broken")

    calls = []
    monkeypatch.setattr(clipart, "render_svg", broken_renderer)
    again = clipart.load_clipart(fake_deb_root)  # from the cache: the renderer is not called
    assert not calls
    for a, b in zip(first.splits.values(), again.splits.values()):
        assert np.array_equal(a.images, b.images) and a.paths.tolist() == b.paths.tolist()
    assert again.notes["render_seconds"] == first.notes["render_seconds"]
    # a source with other content is another cache entry: it renders
    other = fake_deb_root.parent / "other"
    (other / "openclipart").mkdir(parents=True)
    deb = (fake_deb_root / "openclipart" / clipart.DEB_NAME).read_bytes()
    (other / "openclipart" / clipart.DEB_NAME).write_bytes(deb.replace(b"2.0\n", b"2.1\n"))
    with pytest.raises(ValueError):  # every render fails here, leaving no classes to split
        clipart.load_clipart(other)
    assert calls


def test_clipart_damaged_render_cache_is_moved_aside_and_rendered_again(fake_deb_root, tmp_path, capsys):
    first = clipart.load_clipart(fake_deb_root)
    (path,) = (tmp_path / "cache").rglob("*.npz")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    capsys.readouterr()
    again = clipart.load_clipart(fake_deb_root)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"ue: rebuilding {path}: it could not be read (")
    assert path.with_name(path.name + ".corrupt").read_bytes() == data[: len(data) // 2]
    for a, b in zip(first.splits.values(), again.splits.values()):
        assert np.array_equal(a.images, b.images) and a.paths.tolist() == b.paths.tolist()
    with np.load(path) as npz:  # written again, whole
        assert npz["paths"].tolist() == sorted(npz["paths"].tolist()) and len(npz["images"])
    # the source in the data root is never moved, whatever the cache's state
    assert [p.name for p in (fake_deb_root / "openclipart").iterdir()] == [clipart.DEB_NAME]


def test_clipart_unpacked_tree_and_installed_package(fake_deb_root, tmp_path, monkeypatch):
    from_deb = clipart.load_clipart(fake_deb_root)
    files, _ = _fake_files()
    tree = tmp_path / "tree-root" / "openclipart" / "svg"
    for rel, data in files.items():
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        (tree / rel).write_bytes(data)
    os.symlink("../animals/birds/item0.svg", tree / "tools" / "link_to_bird.svg")
    from_tree = clipart.load_clipart(tmp_path / "tree-root")
    assert from_tree.notes["source"].startswith("tree:")
    for a, b in zip(from_deb.splits.values(), from_tree.splits.values()):
        assert a.paths.tolist() == b.paths.tolist() and np.array_equal(a.images, b.images)
    # nothing in the data root: the installed package is read
    monkeypatch.setattr(clipart, "INSTALLED_TREE", tree)
    installed = load_domain("clipart", tmp_path / "empty-root", image_size=16)
    assert installed.notes["source"] == f"tree: {tree}"
    check_domain("clipart", root=tmp_path / "empty-root")


def test_clipart_missing_files_error(tmp_path, monkeypatch):
    monkeypatch.setattr(clipart, "INSTALLED_TREE", tmp_path / "not-installed")
    root = tmp_path / "data"
    with pytest.raises(DataNotFoundError) as err:
        clipart.load_clipart(root, download=True)
    msg = str(err.value)
    for text in ("'clipart'", clipart.DEB_NAME, str((root / "openclipart").resolve()), "svg/",
                 "dpkg-deb -x", "apt-get install openclipart-svg", "/usr/share/openclipart/svg",
                 "never downloaded", "$UE_DATA"):
        assert text in msg, text
    with pytest.raises(DataNotFoundError):
        check_domain("clipart", root=root)


def test_clipart_corrupt_deb(tmp_path, monkeypatch):
    monkeypatch.setenv("UE_CACHE", str(tmp_path / "cache"))
    (tmp_path / "openclipart").mkdir()
    deb = tmp_path / "openclipart" / clipart.DEB_NAME
    deb.write_bytes(b"not an ar archive")
    with pytest.raises(DataCorruptError, match="not a .deb"):
        clipart.load_clipart(tmp_path)
    deb.write_bytes(_ar([("debian-binary", b"2.0\n"), ("data.tar.xz", b"garbage")]))
    with pytest.raises(DataCorruptError, match="cannot be read"):
        clipart.load_clipart(tmp_path)


@pytest.mark.slow
def test_clipart_real_deb(data_root, tmp_path, monkeypatch):
    """The real package (~40 s to render on 2 shared cores, then read from the cache)."""
    deb = data_root / "openclipart" / clipart.DEB_NAME
    if not deb.is_file():
        pytest.skip(f"{deb} not found")
    folders = {rel.rpartition("/")[0] for rel, _ in clipart.read_deb_svgs(deb, folders=None)}
    for folder in folders:  # every folder is curated, merged or excluded, never two of these
        assert (clipart.category_of(folder) is None) == excluded(folder), folder
    assert set(clipart.CATEGORIES) <= folders and set(clipart.MERGED) <= folders

    monkeypatch.setenv("UE_CACHE", str(tmp_path))
    d = clipart.load_clipart(data_root, image_size=32, channels=3)
    counts = np.bincount(np.concatenate([s.labels for s in d.splits.values()]))
    assert d.class_names == list(clipart.CATEGORIES) and counts.min() >= 8
    assert not d.notes["render_failed"] and len(d.notes["render_blank"]) <= 10
    _assert_class_disjoint(d)
    start = time.perf_counter()
    again = clipart.load_clipart(data_root, image_size=32, channels=3)
    assert time.perf_counter() - start < 5  # about 0.7 s on an idle machine
    assert np.array_equal(again.test.images, d.test.images)


# ----------------------------------------------------------------------------- orl

@pytest.fixture
def orl_zip(data_root) -> Path:
    path = data_root / "orl" / orl.ZIP_NAME
    if not path.is_file():
        pytest.skip(f"{path} not found")
    return path


def test_orl_loads_40_people_x_10(orl_zip):
    d = load_domain("orl", orl_zip.parent.parent)
    assert LOADERS["orl"] is orl.load_orl
    assert d.class_names == [f"s{p}" for p in range(1, 41)]
    labels = np.concatenate([s.labels for s in d.splits.values()])
    assert np.bincount(labels).tolist() == [10] * 40
    _assert_class_disjoint(d)
    assert d.image_shape == (1, 32, 32)
    assert "AT&T" in d.provenance and "research" in d.license
    for name, split in d.splits.items():  # image number within the person, from the paths
        index = d.notes["image_index"][name]
        assert index.tolist() == [int(p.split("/")[1][:-4]) - 1 for p in split.paths]
        assert all(d.class_names[label] == p.split("/")[0] for p, label in zip(split.paths, split.labels))
        for person in np.unique(split.labels):
            assert sorted(index[split.labels == person].tolist()) == list(range(10))

    rgb = orl.load_orl(orl_zip.parent.parent, image_size=48, channels=3)
    assert rgb.image_shape == (3, 48, 48)
    im = rgb.train.images
    assert np.array_equal(im[:, 0], im[:, 1]) and np.array_equal(im[:, 1], im[:, 2])
    grey48 = orl.load_orl(orl_zip.parent.parent, image_size=48, channels=1)
    assert np.array_equal(grey48.train.images[:, 0], im[:, 0])


def _rezip(src: Path, dst: Path, *, rename=None, skip=(), replace=None) -> Path:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for name in zin.namelist():
            if name in skip:
                continue
            data = (replace or {}).get(name, zin.read(name))
            zout.writestr(rename(name) if rename else name, data)
    return dst


def test_orl_content_check(orl_zip, tmp_path):
    faces, names = orl.read_faces(orl_zip)
    assert faces.shape == (400, 112, 92) and names[:2] == ["s1/1.pgm", "s1/2.pgm"]
    # a top-level folder around s1..s40 (as some copies have) is fine
    wrapped = _rezip(orl_zip, tmp_path / "wrapped.zip", rename=lambda n: "att_faces/" + n)
    assert np.array_equal(orl.read_faces(wrapped)[0], faces)
    with pytest.raises(DataCorruptError, match=r"1 missing: s40/10\.pgm"):
        orl.read_faces(_rezip(orl_zip, tmp_path / "a.zip", skip={"s40/10.pgm"}))
    small = io.BytesIO()
    Image.new("L", (46, 56)).save(small, "PPM")
    with pytest.raises(DataCorruptError, match=r"s3/2\.pgm .*46x56"):
        orl.read_faces(_rezip(orl_zip, tmp_path / "b.zip", replace={"s3/2.pgm": small.getvalue()}))
    with pytest.raises(DataCorruptError, match="unreadable image s5/5.pgm"):
        orl.read_faces(_rezip(orl_zip, tmp_path / "c.zip", replace={"s5/5.pgm": b"P5 garbage"}))
    (tmp_path / "d.zip").write_bytes(b"not a zip")
    with pytest.raises(DataCorruptError, match="not a readable zip"):
        orl.read_faces(tmp_path / "d.zip")
    extra = _rezip(orl_zip, tmp_path / "e.zip", rename=lambda n: n.replace("s40/", "s41/"))
    with pytest.raises(DataCorruptError, match="10 missing.*10 unexpected: s41/1.pgm"):
        orl.read_faces(extra)
    # a bad zip in the data root is reported by the loader too
    (tmp_path / "root" / "orl").mkdir(parents=True)
    shutil.copy(tmp_path / "a.zip", tmp_path / "root" / "orl" / orl.ZIP_NAME)
    with pytest.raises(DataCorruptError, match="Delete it"):
        orl.load_orl(tmp_path / "root")


def test_orl_missing_zip_and_download(orl_zip, tmp_path, monkeypatch):
    root = tmp_path / "root"
    with pytest.raises(DataNotFoundError) as err:
        orl.load_orl(root, download=False)
    msg = str(err.value)
    for text in ("'orl'", orl.ZIP_NAME, str((root / "orl").resolve()), orl.URLS[0], "s40/10.pgm",
                 "download disabled"):
        assert text in msg, text

    import torchvision.datasets.utils as tv_utils

    def offline(url, folder, filename):
        raise OSError("network unreachable")

    monkeypatch.setattr(tv_utils, "download_url", offline)
    with pytest.raises(DataNotFoundError, match="download failed .*network unreachable"):
        check_domain("orl", root=root)

    served = {"file": tmp_path / "served.zip"}

    def fake_download(url, folder, filename):
        shutil.copy(served["file"], Path(folder) / filename)

    monkeypatch.setattr(tv_utils, "download_url", fake_download)
    _rezip(orl_zip, served["file"], skip={"s1/1.pgm"})  # a wrong file is served: rejected, deleted
    with pytest.raises(DataCorruptError, match="missing: s1/1.pgm"):
        orl.load_orl(root)
    assert not (root / "orl" / orl.ZIP_NAME).exists()
    served["file"] = orl_zip  # the right content (whatever its checksum): accepted
    assert len(orl.load_orl(root).test) == 200
    assert (root / "orl" / orl.ZIP_NAME).is_file()
