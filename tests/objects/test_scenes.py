"""Scenes with boxes (ue_lib.data.scenes): determinism, exact pastes, splits, the overlap rule,
fragments, the cache and the error messages."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import blob_domain
from PIL import Image

from ue_lib.data import Domain, Split, load_domains
from ue_lib.objects import scenes as scenes_module
from ue_lib.objects.scenes import SceneSet, foreground_mask, iou, load_scenes, make_scenes

SMALL = dict(canvas=64, scale=(16, 32), objects=(1, 3))


def rgb_domain(name: str = "rgb", n_classes: int = 8, per_class: int = 4, size: int = 20,
               seed: int = 0) -> Domain:
    """Colour noise around a class colour; classes 0..3 train, 4..5 val, 6..7 test."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(n_classes), per_class)
    base = rng.integers(0, 256, size=(n_classes, 3, 1, 1))
    images = np.clip(base[labels] + rng.integers(-40, 40, size=(len(labels), 3, size, size)),
                     0, 255).astype(np.uint8)
    cut = [np.isin(labels, part) for part in (range(0, 4), range(4, 6), range(6, n_classes))]
    return Domain(name, *(Split(images[m], labels[m]) for m in cut),
                  class_names=[f"c{c}" for c in range(n_classes)], split_rule="class-disjoint",
                  provenance="synthetic", license="none")


@pytest.fixture(scope="module")
def domains() -> dict[str, Domain]:
    return {"blobs": blob_domain(size=24), "rgb": rgb_domain()}


@pytest.fixture(scope="module")
def scenes(domains) -> dict[str, SceneSet]:
    return make_scenes(domains, scenes_per_split=25, seed=3, **SMALL)


def _arrays(ss: SceneSet) -> dict[str, np.ndarray]:
    return ss.to_arrays("x")


def _assert_same(a: dict[str, SceneSet], b: dict[str, SceneSet]) -> None:
    assert list(a) == list(b)
    for split in a:
        x, y = _arrays(a[split]), _arrays(b[split])
        assert list(x) == list(y)
        for key in x:
            assert x[key].dtype == y[key].dtype and np.array_equal(x[key], y[key]), key


def _visible_mask(ss: SceneSet, row: int) -> np.ndarray:
    """Pixels of an object's box not covered by the later objects of its scene."""
    x1, y1, x2, y2 = ss.box[row].astype(int)
    mask = np.ones((y2 - y1, x2 - x1), dtype=bool)
    for later in ss.objects_of(int(ss.scene[row])):
        if later > row:
            a1, b1, a2, b2 = ss.box[later].astype(int)
            mask[max(b1 - y1, 0):max(b2 - y1, 0), max(a1 - x1, 0):max(a2 - x1, 0)] = False
    return mask


# ----------------------------------------------------------------------------- construction

def test_deterministic_for_a_seed(domains, scenes):
    again = make_scenes(domains, scenes_per_split=25, seed=3, **SMALL)
    _assert_same(scenes, again)
    other = make_scenes(domains, scenes_per_split=25, seed=4, **SMALL)
    for split in scenes:
        assert not np.array_equal(scenes[split].images, other[split].images)
    # each split has its own generator: asking for one split alone gives the same scenes
    _assert_same({"test": scenes["test"]},
                 make_scenes(domains, scenes_per_split={"test": 25}, seed=3, **SMALL))


def test_shapes_and_table(scenes, domains):
    assert list(scenes) == ["train", "val", "test"]
    for split, ss in scenes.items():
        assert ss.split == split and len(ss) == 25
        assert ss.images.shape == (25, 3, 64, 64) and ss.images.dtype == np.uint8
        assert ss.box.dtype == np.float32 and ss.box.shape == (ss.num_objects, 4)
        assert ss.domain_names == ["blobs", "rgb"] and ss.num_classes == [12, 8]
        assert ss.params["canvas"] == 64 and ss.params["seed"] == 3
        assert np.all(np.diff(ss.scene) >= 0)
        rows = [ss.objects_of(i) for i in range(len(ss))]
        assert np.array_equal(np.concatenate(rows), np.arange(ss.num_objects))
        assert all(np.all(ss.scene[r] == i) for i, r in enumerate(rows))
        assert np.array_equal(ss.objects_per_scene, [len(r) for r in rows])
        assert np.array_equal(ss.global_labels, np.where(ss.domain == 0, 0, 12) + ss.label)
        assert ss.scene_keys(0) == {(int(ss.domain[r]), int(ss.item[r])) for r in rows[0]}
        summary = ss.summary()
        assert summary["scenes"] == 25 and summary["objects"] == ss.num_objects
        assert summary["blobs_objects"] + summary["rgb_objects"] == ss.num_objects
    assert {int(d) for ss in scenes.values() for d in ss.domain} == {0, 1}
    with pytest.raises(IndexError):
        scenes["test"].objects_of(25)


@pytest.mark.parametrize("paste", ["foreground", "opaque"])
def test_boxes_inside_canvas_sides_in_scale_and_paste_exact(scenes, domains, paste):
    doms = list(domains.values())
    made = scenes if paste == "foreground" else make_scenes(
        domains, scenes_per_split=25, seed=3, paste="opaque", **SMALL)
    for split, ss in made.items():
        b = ss.box
        assert np.all(b >= 0) and np.all(b[:, 2:] <= 64) and np.all(b == np.round(b))
        w, h = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
        assert np.array_equal(w, h)  # square sources give square objects
        assert np.all((w >= 16) & (w <= 32))
        assert len(np.unique(w)) > 3  # the side is drawn, not fixed
        for row in range(ss.num_objects):
            source = doms[ss.domain[row]].splits[split].images[ss.item[row]]
            pil = Image.fromarray(source[0]) if source.shape[0] == 1 else \
                Image.fromarray(source.transpose(1, 2, 0))
            side = int(w[row])
            expected = np.asarray(pil.convert("RGB").resize((side, side), Image.BILINEAR))
            patch = ss.crop(row).transpose(1, 2, 0)
            mask = _visible_mask(ss, row)
            assert ss.visible[row] == pytest.approx(mask.mean(), abs=1e-6)
            if paste == "foreground":
                mask &= foreground_mask(expected, 24)
            assert np.array_equal(patch[mask], expected[mask])
        assert np.all(ss.visible > 0.5)


def test_objects_come_from_their_split_only(scenes, domains):
    doms = list(domains.values())
    for split, ss in scenes.items():
        for d, dom in enumerate(doms):
            own = dom.splits[split]
            rows = ss.domain == d
            assert np.all(ss.item[rows] < len(own))
            assert np.array_equal(ss.label[rows], own.labels[ss.item[rows]])
            others = set().union(*(set(dom.splits[s].labels.tolist())
                                   for s in ("train", "val", "test") if s != split))
            assert not set(ss.label[rows].tolist()) & others  # class-disjointness carries over
            frows = ss.fragment_domain == d
            assert np.all(ss.fragment_item[frows] < len(own))
    test_labels = set(zip(scenes["test"].domain.tolist(), scenes["test"].label.tolist()))
    train_labels = set(zip(scenes["train"].domain.tolist(), scenes["train"].label.tolist()))
    assert test_labels and not test_labels & train_labels


def test_foreground_mask_by_hand():
    patch = np.zeros((6, 6, 3), dtype=np.uint8)
    patch[2, 3] = (0, 200, 0)  # one foreground pixel on a black item
    patch[0, 0] = (10, 10, 10)  # within the threshold of the background colour
    mask = foreground_mask(patch, 24)
    expected = np.zeros((6, 6), dtype=bool)
    expected[1:4, 2:5] = True  # grown by one pixel
    assert np.array_equal(mask, expected)
    white = np.full((5, 5, 3), 250, dtype=np.uint8)  # the background is the border's colour
    white[2, 2] = 0
    assert foreground_mask(white, 24).sum() == 9


def test_foreground_paste_lets_the_clutter_show(domains):
    kw = dict(scenes_per_split={"val": 12}, seed=5, objects=1, **{k: v for k, v in SMALL.items()
                                                                  if k != "objects"})
    fg = make_scenes(domains, **kw)["val"]
    opaque = make_scenes(domains, paste="opaque", **kw)["val"]
    assert np.array_equal(fg.box, opaque.box)  # same draws: only the pixels differ
    differ = [not np.array_equal(fg.crop(r), opaque.crop(r)) for r in range(fg.num_objects)]
    assert any(differ)


def test_no_item_twice_in_a_scene(scenes):
    for ss in scenes.values():
        for i in range(len(ss)):
            assert len(ss.scene_keys(i)) == len(ss.objects_of(i))


def test_overlap_rule(domains, scenes):
    for ss in scenes.values():
        for i in range(len(ss)):
            rows = ss.objects_of(i)
            for a in rows:
                for b in rows[rows > a]:
                    assert iou(ss.box[a], ss.box[b]) <= 0.1
    apart = make_scenes(domains, scenes_per_split={"train": 20}, max_iou=0.0, seed=1,
                        **SMALL)["train"]
    assert np.all(apart.visible == 1)
    assert iou([0, 0, 10, 10], [5, 0, 15, 10]) == pytest.approx(50 / 150)
    assert iou([0, 0, 10, 10], [10, 0, 20, 10]) == 0.0  # touching boxes do not overlap


def test_object_counts_and_fragments(domains, scenes):
    for ss in scenes.values():
        per = ss.objects_per_scene
        assert per.min() >= 1 and per.max() <= 3 and len(np.unique(per)) > 1
        fb = ss.fragment_box
        assert len(fb) >= len(ss)  # at least one fragment per scene here
        assert np.all(fb >= 0) and np.all(fb[:, 2:] <= 64)
        assert np.all(fb[:, 2:] - fb[:, :2] <= 16 // 2) and np.all(fb[:, 2:] - fb[:, :2] >= 2)
        for f in range(len(ss.fragment_scene)):  # a fragment is never an object of its scene
            key = (int(ss.fragment_domain[f]), int(ss.fragment_item[f]))
            assert key not in ss.scene_keys(int(ss.fragment_scene[f]))
    two = make_scenes(domains, scenes_per_split={"val": 10}, objects=(2, 2), fragments=(4, 4),
                      canvas=64, scale=(16, 32))["val"]
    assert np.all(two.objects_per_scene == 2) and two.num_objects == 20
    assert np.all(np.bincount(two.fragment_scene, minlength=10) == 4)  # clutter, not objects
    bare = make_scenes(domains, scenes_per_split={"val": 5}, objects=1, fragments=0, strokes=0,
                       texture_strength=0.0, canvas=64, scale=(16, 32))["val"]
    assert bare.num_objects == 5 and len(bare.fragment_scene) == 0


# ----------------------------------------------------------------------------- cache

def test_cache_written_reused_and_atomic(domains, tmp_path, monkeypatch):
    monkeypatch.setenv("UE_CACHE", str(tmp_path))
    kwargs = dict(scenes_per_split={"train": 6, "test": 4}, seed=2, **SMALL)
    first = load_scenes(domains, **kwargs)
    files = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    assert len(files) == 1 and files[0].parts[:2] == ("ue_lib", "scenes")
    assert files[0].suffix == ".npz" and files[0].name.startswith("scenes-64px-")
    _assert_same(first, make_scenes(domains, **kwargs))

    def refuse(*args, **kw):
        raise AssertionError("made the scenes again instead of reading the cache")

    monkeypatch.setattr(scenes_module, "make_scenes", refuse)
    again = load_scenes(domains, **kwargs)
    _assert_same(first, again)
    assert again["train"].params == first["train"].params
    # in the same order too: the detector's file is named by their repr
    assert repr(again["train"].params) == repr(first["train"].params)
    # a changed parameter, seed, count or source makes new scenes
    for change in ({"max_iou": 0.05}, {"seed": 3}, {"scenes_per_split": {"train": 7}}):
        with pytest.raises(AssertionError, match="made the scenes again"):
            load_scenes(domains, **{**kwargs, **change})
    changed = dict(domains)
    changed["rgb"] = rgb_domain(seed=1)
    with pytest.raises(AssertionError, match="made the scenes again"):
        load_scenes(changed, **kwargs)
    monkeypatch.undo()
    monkeypatch.setenv("UE_CACHE", str(tmp_path))
    # no temporary file is left behind; a damaged file is made again
    load_scenes(domains, **{**kwargs, "seed": 5})
    names = sorted(p.name for p in (tmp_path / "ue_lib" / "scenes").iterdir())
    assert len(names) == 2 and not any(".tmp" in n or n.startswith(".") for n in names)
    target = tmp_path / "ue_lib" / "scenes" / files[0].name
    target.write_bytes(b"not an npz")
    _assert_same(first, load_scenes(domains, **kwargs))
    assert target.stat().st_size > 100
    # cache=False neither reads nor writes
    target.unlink()
    load_scenes(domains, cache=False, **kwargs)
    assert not target.exists()


def test_a_damaged_or_stale_cache_file_is_moved_aside_and_made_again(domains, tmp_path, monkeypatch,
                                                                      capsys):
    monkeypatch.setenv("UE_CACHE", str(tmp_path))
    kwargs = dict(scenes_per_split={"train": 6, "test": 4}, seed=2, **SMALL)
    first = load_scenes(domains, **kwargs)
    path = scenes_module.cache_file(domains, **kwargs)
    other = load_scenes(domains, **{**kwargs, "seed": 5})  # another set, another file
    truncated = path.read_bytes()[:1000]
    stale = scenes_module.cache_file(domains, **{**kwargs, "seed": 5}).read_bytes()
    for damaged, why in ((truncated, "could not be read (BadZipFile"),
                         (stale, "it holds other scenes than its name says")):
        path.write_bytes(damaged)
        capsys.readouterr()
        _assert_same(first, load_scenes(domains, **kwargs))
        lines = capsys.readouterr().err.splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"ue: rebuilding {path}: ") and why in lines[0]
        assert path.with_name(path.name + ".corrupt").read_bytes() == damaged
    _assert_same(other, load_scenes(domains, **{**kwargs, "seed": 5}))
    monkeypatch.setattr(scenes_module, "make_scenes", None)  # the file made again is read back
    _assert_same(first, load_scenes(domains, **kwargs))


# ----------------------------------------------------------------------------- errors

@pytest.mark.parametrize("kwargs, match", [
    (dict(domains={}), "no domains given"),
    (dict(scale=(24, 80)), "larger than the canvas.*lower scale"),
    (dict(scale=(30, 20)), "scale must be a pair"),
    (dict(objects=(0, 2)), "objects must be a pair"),
    (dict(canvas=(96, 128)), "canvas must be an integer side"),
    (dict(fragment_side=(4, 12)), "half the smallest object side"),
    (dict(max_iou=1.5), "max_iou must be"),
    (dict(seed=-1), "seed must be"),
    (dict(scenes_per_split={"tst": 3}), "unknown split 'tst'"),
    (dict(scenes_per_split=0), "must be an integer >= 1"),
    (dict(objects=(3, 3), scale=(40, 40), max_iou=0.0), "cannot place 3 distinct objects"),
])
def test_errors_name_the_cause(domains, kwargs, match):
    args = {"domains": domains, "scenes_per_split": 2, **SMALL, **kwargs}
    with pytest.raises(ValueError, match=match):
        make_scenes(args.pop("domains"), **args)


def test_error_for_an_empty_split(domains):
    empty = rgb_domain()
    empty.val = Split(np.zeros((0, 3, 20, 20), np.uint8), np.zeros(0, np.int64))
    with pytest.raises(ValueError, match="'rgb' has no items in its 'val' split.*drop it"):
        make_scenes({**domains, "rgb": empty}, scenes_per_split=2, **SMALL)
    # asking only for the splits it has works
    ok = make_scenes({"rgb": empty}, scenes_per_split={"test": 2}, **SMALL)
    assert len(ok["test"]) == 2


# ----------------------------------------------------------------------------- real data

def test_real_domains(data_root):
    doms = load_domains("fashion,omniglot", data_root, image_size=32, channels=1,
                        per_domain={"fashion": {"max_per_class": 20},
                                    "omniglot": {"max_classes": 30}})
    scenes = make_scenes(doms, scenes_per_split=10, canvas=112, scale=(24, 56))
    omni = scenes["test"].domain_names.index("omniglot")
    for split, ss in scenes.items():
        assert ss.images.shape == (10, 3, 112, 112) and ss.num_objects >= 10
        rows = ss.domain == omni
        own = set(doms["omniglot"].splits[split].labels.tolist())
        assert set(ss.label[rows].tolist()) <= own
    train = set(doms["omniglot"].train.labels.tolist())
    assert not set(scenes["test"].label[scenes["test"].domain == omni].tolist()) & train
