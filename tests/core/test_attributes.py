"""Per-item attributes and coarse groups of the domains (issue 14): the containers carry them row
by row through every split, and each domain's values match their definition on hand-checked
items (real data where it loads in seconds, tiny hand-made files otherwise)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import write_benchmarks
from test_new_domains import _ar, _fake_files, _tar_xz

from ue_lib.data import (
    DataCorruptError,
    Domain,
    Split,
    clipart,
    core,
    fashion,
    glyphs,
    load_domain,
    omniglot,
)
from ue_lib.data import benchmarks as bm
from ue_lib.opqn.protocols import seen_identities


def _items(domain: Domain) -> list[tuple[Split, int]]:
    return [(s, i) for s in domain.splits.values() for i in range(len(s))]


def _named(domain: Domain, split: Split, i: int) -> set[str]:
    return {n for n, v in zip(domain.attribute_names, split.attributes[i]) if v}


# ----------------------------------------------------------------------------- containers

def test_split_validates_attributes_and_groups():
    images, labels = np.zeros((3, 1, 2, 2), np.uint8), np.array([0, 1, 1])
    plain = Split(images, labels)
    assert plain.attributes is None and plain.groups is None
    s = Split(images, labels, attributes=[[0, 1], [1, 0.5], [0, 0]], groups=[0, 2, 1])
    assert s.attributes.dtype == np.float32 and s.attributes.shape == (3, 2)
    assert s.groups.dtype == np.int64 and s.groups.tolist() == [0, 2, 1]
    for bad in (np.zeros((2, 2)), np.zeros(3), np.full((3, 1), 1.5), np.full((3, 1), -0.1),
                np.full((3, 1), np.nan)):
        with pytest.raises(ValueError, match="attributes"):
            Split(images, labels, attributes=bad)
    for bad in ([0, 1], [0, -1, 1], [0.5, 1, 1]):
        with pytest.raises(ValueError, match="groups"):
            Split(images, labels, groups=np.array(bad))
    # positional order is kept: features before the new fields
    assert Split(images, labels, None, None, None, None, np.ones((3, 1)), [0, 0, 0]).groups.sum() == 0


def test_domain_names_must_match_the_splits():
    s = Split(np.zeros((2, 1, 2, 2), np.uint8), [0, 1], attributes=np.ones((2, 3)), groups=[0, 1])
    ok = Domain("d", s, s, s, ["a", "b"], "r", "p", "l", attribute_names=list("xyz"),
                group_names=["g0", "g1"])
    assert ok.has_attributes and ok.has_groups
    bare = Domain("d", Split(s.images, s.labels), Split(s.images, s.labels),
                  Split(s.images, s.labels), ["a", "b"], "r", "p", "l")
    assert not bare.has_attributes and not bare.has_groups
    assert bare.attribute_names == [] and bare.group_names == []
    with pytest.raises(ValueError, match="attribute_names"):
        Domain("d", s, s, s, ["a", "b"], "r", "p", "l", attribute_names=["x"], group_names=["g0", "g1"])
    with pytest.raises(ValueError, match="group_names"):
        Domain("d", s, s, s, ["a", "b"], "r", "p", "l", attribute_names=list("xyz"), group_names=["g0"])


def _indexed_items(n_classes: int = 8, per_class: int = 6):
    """Items whose image holds its own index, with attributes and group derived from it."""
    n = n_classes * per_class
    labels = np.repeat(np.arange(n_classes), per_class)
    images = np.arange(n, dtype=np.uint8).reshape(n, 1, 1, 1).repeat(2, axis=2)
    attributes = np.stack([np.arange(n) / n, (np.arange(n) % 2)], axis=1).astype(np.float32)
    groups = np.arange(n) % 3
    return images, labels, attributes, groups


def test_make_split_and_domain_from_items_keep_rows_aligned():
    images, labels, attributes, groups = _indexed_items()
    idx = np.array([5, 0, 17, 3])
    s = core.make_split(images, labels, idx, paths=[f"f{i}" for i in range(len(labels))],
                        attributes=attributes, groups=groups)
    assert s.attributes.tolist() == attributes[idx].tolist() and s.groups.tolist() == [2, 0, 2, 0]
    assert s.paths.tolist() == ["f5", "f0", "f17", "f3"]
    kwargs = dict(seed=3, test_fraction=0.5, val_fraction=0.2, max_per_class=4, max_classes=7,
                  provenance="p", license="l")
    plain = core.domain_from_items("x", images, labels, list("abcdefgh"), **kwargs)
    d = core.domain_from_items("x", images, labels, list("abcdefgh"), attributes=attributes,
                               groups=groups, attribute_names=["frac", "odd"],
                               group_names=["g0", "g1", "g2"], **kwargs)
    assert d.attribute_names == ["frac", "odd"] and d.group_names == ["g0", "g1", "g2"]
    for a, b in zip(plain.splits.values(), d.splits.values()):  # the same split as without them
        assert np.array_equal(a.images, b.images) and np.array_equal(a.labels, b.labels)
        item = b.images[:, 0, 0, 0].astype(int)  # item i's attributes follow item i
        assert np.array_equal(b.attributes, attributes[item]) and np.array_equal(b.groups, groups[item])
    assert plain.attribute_names == [] and plain.train.attributes is None


def test_seen_identities_protocol_carries_attributes_and_groups():
    images, labels, attributes, groups = _indexed_items()
    d = core.domain_from_items("faces", images, labels, list("abcdefgh"), seed=0, test_fraction=0.5,
                               val_fraction=0.2, max_per_class=None, max_classes=None,
                               provenance="p", license="l", attributes=attributes, groups=groups,
                               attribute_names=["frac", "odd"], group_names=["g0", "g1", "g2"])
    seen = seen_identities(d, queries_per_class=2, val_per_class=1, seed=0)
    assert seen.attribute_names == ["frac", "odd"] and seen.group_names == ["g0", "g1", "g2"]
    for s in seen.splits.values():
        item = s.images[:, 0, 0, 0].astype(int)
        assert np.array_equal(s.attributes, attributes[item]) and np.array_equal(s.groups, groups[item])


# ----------------------------------------------------------------------------- glyphs

def test_glyph_character_attributes_by_hand():
    names = list(glyphs.CHARACTER_ATTRIBUTES)

    def on(char):
        return {n for n, v in zip(names, glyphs.character_attributes(char)) if v}

    assert on("g") == {"lowercase", "letter", "latin", "descender", "closed_loop"}
    assert on("K") == {"uppercase", "letter", "latin", "diagonal_stroke"}
    assert on("k") == {"lowercase", "letter", "latin", "ascender", "diagonal_stroke"}
    assert on("8") == {"digit", "closed_loop"}
    assert on("7") == {"digit", "diagonal_stroke"}
    assert on("Σ") == {"uppercase", "letter", "greek", "diagonal_stroke"}
    assert on("λ") == {"lowercase", "letter", "greek", "ascender", "diagonal_stroke"}
    assert on("φ") == {"lowercase", "letter", "greek", "descender", "closed_loop"}
    assert on("H") == {"uppercase", "letter", "latin"}
    assert [glyphs.GROUP_NAMES[glyphs.character_group(c)] for c in "gK8ΣλH"] == \
        ["Latin lower", "Latin upper", "digit", "Greek upper", "Greek lower", "Latin upper"]
    for chars in glyphs.STROKE_CLASSES.values():  # hand-written sets of real glyph characters
        assert set(chars) <= set(glyphs.CHARACTERS) and len(set(chars)) == len(chars)
    with pytest.raises(ValueError):
        glyphs.character_attributes("o")  # left out of the domain


def test_glyph_font_styles_by_hand():
    expected = {  # file -> (family, bold, italic)
        "DejaVuSerif-BoldItalic.ttf": ("serif", True, True), "DejaVuSans.ttf": ("sans", False, False),
        "DejaVuSans-Oblique.ttf": ("sans", False, True),
        "DejaVuSansMono-BoldOblique.ttf": ("mono", True, True),
        "DejaVuSerif-Bold.ttf": ("serif", True, False), "STIXGeneral.ttf": ("serif", False, False),
        "STIXGeneralBol.ttf": ("serif", True, False), "STIXGeneralBolIta.ttf": ("serif", True, True),
        "STIXGeneralItalic.ttf": ("serif", False, True), "cmr10.ttf": ("serif", False, False),
        "cmb10.ttf": ("serif", True, False), "cmti10.ttf": ("serif", False, True),
        "cmmi10.ttf": ("serif", False, True), "cmss10.ttf": ("sans", False, False),
        "cmtt10.ttf": ("mono", False, False)}
    for font, style in expected.items():
        assert glyphs.font_style(font) == style, font
    assert glyphs.font_attributes("DejaVuSerif-BoldItalic.ttf").tolist() == [1, 0, 0, 1, 1]
    assert glyphs.font_attributes("cmtt10.ttf").tolist() == [0, 0, 1, 0, 0]
    for path in glyphs.text_fonts():  # every font the domain renders with has a known style
        assert glyphs.font_style(path) is not None and glyphs.font_style(path)[0], path.name
    assert glyphs.font_style("SomeNewSans-Bold.ttf") is None
    assert glyphs.font_attributes("SomeNewSans-Bold.ttf").tolist() == [0, 1, 0, 1, 0]


@pytest.fixture(scope="module")
def glyph_domain() -> Domain:
    return load_domain("glyphs", seed=0)


def test_glyph_domain_attributes(glyph_domain):
    d = glyph_domain
    assert d.attribute_names == glyphs.ATTRIBUTE_NAMES and len(d.attribute_names) == 15
    assert d.group_names == ["Latin upper", "Latin lower", "digit", "Greek upper", "Greek lower"]
    assert d.notes["unknown_font_styles"] == []
    hits = [(s, i) for s, i in _items(d) if s.paths[i] == "DejaVuSerif-BoldItalic.ttf/g/0"]
    assert len(hits) == 1
    s, i = hits[0]
    assert d.class_names[s.labels[i]] == "g" and d.group_names[s.groups[i]] == "Latin lower"
    assert _named(d, s, i) == {"lowercase", "letter", "latin", "descender", "closed_loop",
                               "serif", "bold", "italic"}
    for s in d.splits.values():  # every item: its class is its character, attributes follow it
        chars = [str(p).split("/")[1] for p in s.paths]
        assert chars == [d.class_names[y] for y in s.labels]
        attributes, groups = glyphs.glyph_attributes(s.paths)
        assert np.array_equal(s.attributes, attributes) and np.array_equal(s.groups, groups)
        assert (s.attributes[:, [-5, -4, -3]].sum(axis=1) == 1).all()  # exactly one family


# ----------------------------------------------------------------------------- omniglot, fashion, orl

def test_omniglot_group_is_the_alphabet(data_root):
    d = load_domain("omniglot", root=data_root, max_per_class=2)
    assert d.group_names == d.attribute_names and "Latin" in d.group_names and len(d.group_names) == 8
    for s, i in _items(d):
        alphabet = d.class_names[s.labels[i]].split("/")[0]
        assert d.group_names[s.groups[i]] == alphabet
        assert _named(d, s, i) == {alphabet}
    assert omniglot.alphabet_groups(["Greek/character01", "Latin/character02", "Greek/character03"]
                                    )[1].tolist() == [0, 1, 0]


def test_fashion_coarse_groups(data_root):
    assert [fashion.GROUP_OF_CLASS[c] for c in ("Sneaker", "Sandal", "Ankle boot", "Coat", "Shirt",
                                                "T-shirt/top", "Pullover", "Bag", "Trouser", "Dress")] \
        == ["footwear"] * 3 + ["tops"] * 4 + ["bag", "trouser", "dress"]
    d = load_domain("fashion", root=data_root, max_per_class=20, seed=0)
    assert d.group_names == ["tops", "footwear", "bag", "trouser", "dress"]
    assert d.attribute_names == d.group_names
    for s in d.splits.values():
        sneakers = s.labels == fashion.CLASS_NAMES.index("Sneaker")
        assert sneakers.any() and (s.groups[sneakers] == d.group_names.index("footwear")).all()
        assert s.attributes[sneakers].tolist() == [[0, 1, 0, 0, 0]] * int(sneakers.sum())
        assert np.array_equal(s.groups, fashion.CLASS_GROUP[s.labels])
        assert np.array_equal(s.attributes.argmax(axis=1), s.groups)


def test_orl_has_no_attributes(data_root):
    path = data_root / "orl" / "att_faces.zip"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    d = load_domain("orl", data_root)
    assert not d.has_attributes and not d.has_groups
    assert all(s.attributes is None and s.groups is None for s in d.splits.values())


# ----------------------------------------------------------------------------- clipart

def test_clipart_topic_hierarchy_by_hand():
    assert clipart.topic_path("animals/mammals/bears") == ["animals", "animals/mammals",
                                                           "animals/mammals/bears"]
    nodes, tops, attributes, groups = clipart.topic_hierarchy(
        ["animals/birds", "animals/mammals/bears", "buildings", "buildings/furniture"])
    assert nodes == ["animals", "animals/birds", "animals/mammals", "animals/mammals/bears",
                     "buildings", "buildings/furniture"]
    assert tops == ["animals", "buildings"] and groups.tolist() == [0, 0, 1, 1]
    assert attributes.tolist() == [[1, 1, 0, 0, 0, 0], [1, 0, 1, 1, 0, 0], [0, 0, 0, 0, 1, 0],
                                   [0, 0, 0, 0, 1, 1]]
    nodes, tops, _, _ = clipart.topic_hierarchy(list(clipart.CATEGORIES))
    assert len(nodes) == 52 and len(tops) == 16


def test_clipart_items_carry_their_topic_path(tmp_path, monkeypatch):
    monkeypatch.setenv("UE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(clipart, "INSTALLED_TREE", tmp_path / "not-installed")
    (tmp_path / "data" / "openclipart").mkdir(parents=True)
    files, symlinks = _fake_files()
    (tmp_path / "data" / "openclipart" / clipart.DEB_NAME).write_bytes(
        _ar([("debian-binary", b"2.0\n"), ("data.tar.xz", _tar_xz(files, symlinks))]))
    d = clipart.load_clipart(tmp_path / "data", image_size=16)
    assert set(d.group_names) == {"animals", "food", "tools", "plants", "transportation", "recreation"}
    seen = set()
    for s, i in _items(d):
        folder = str(s.paths[i]).rpartition("/")[0]
        category = clipart.category_of(folder)
        assert d.class_names[s.labels[i]] == category
        assert _named(d, s, i) == set(clipart.topic_path(category))
        assert d.group_names[s.groups[i]] == category.split("/")[0]
        seen.add(folder)
    assert "animals/birds/penguin" in seen  # merged into birds: {animals, animals/birds}
    bird = next((s, i) for s, i in _items(d) if str(s.paths[i]).startswith("animals/birds/item"))
    assert _named(d, *bird) == {"animals", "animals/birds"}


# ----------------------------------------------------------------------------- paper benchmarks

def _cub_attribute_file(folder: Path, n_images: int) -> dict[int, list[int]]:
    """3 attributes per image: present iff (image + attribute) % 3 == 0, certainty = attribute + 1.
    One line carries an extra field, as some official lines do. Returns the expected rows."""
    lines, expected = [], {}
    for image in range(1, n_images + 1):
        for a in (1, 2, 3):
            present = int((image + a) % 3 == 0)
            lines.append(f"{image} {a} {present} {a + 1} 2.5" + (" 0" if image == 2 and a == 1 else ""))
        expected[image] = [int((image + a) % 3 == 0) for a in (1, 2, 3)]
    (folder / "attributes").mkdir()
    (folder / "attributes" / "image_attribute_labels.txt").write_text("\n".join(lines) + "\n")
    return expected


def test_cub_attributes_from_the_official_files(tmp_path):
    root = write_benchmarks(tmp_path, train_classes=6, test_classes=2, per_class=3, names=("cub",))
    folder = root / "CUB_200_2011"
    without = load_domain("cub", root=root, image_size=8, channels=3)
    assert not without.has_attributes and without.train.attributes is None
    assert "not found" in without.notes["attributes"]

    expected = _cub_attribute_file(folder, 24)
    (root / "attributes.txt").write_text("1 has_bill_shape::curved\n2 has_wing_color::blue\n"
                                         "3 has_size::small\n")  # beside CUB_200_2011/, as unpacked
    d = load_domain("cub", root=root, image_size=8, channels=3)
    assert d.attribute_names == ["has_bill_shape::curved", "has_wing_color::blue", "has_size::small"]
    assert "3 attributes" in d.notes["attributes"] and "24 of 24 images" in d.notes["attributes"]
    assert not d.has_groups
    for s, i in _items(d):
        image_id = int(Path(s.paths[i]).stem.split("_")[1]) + 1  # Bird_<image id - 1>.jpg
        assert s.attributes[i].tolist() == expected[image_id]
    ids = [str(i) for i in range(1, 25)]
    certain, names, _ = bm.read_cub_attributes(folder, ids, values="certainty")
    # image 1: attribute 2 present (certainty 3, weight 2/3); 1 absent (2, 1/3); 3 absent (4, 1)
    assert certain[0] == pytest.approx([0.5 - 0.5 / 3, 0.5 + 0.5 * 2 / 3, 0.0])
    (root / "attributes.txt").unlink()
    assert bm.read_cub_attributes(folder, ids)[1] == ["attribute_1", "attribute_2", "attribute_3"]


def _inshop_tree(root: Path, rows: list[tuple[str, str, str]]) -> Path:
    folder = root / "InShop"
    (folder / "img").mkdir(parents=True)
    lines = [str(len(rows)), "image_name item_id evaluation_status", *(" ".join(r) for r in rows)]
    (folder / "list_eval_partition.txt").write_text("\n".join(lines) + "\n")
    return folder


def test_inshop_groups_and_attributes(tmp_path):
    rows = [("img/WOMEN/Dresses/id_00000002/02_1_front.jpg", "id_00000002", "train"),
            ("img/MEN/Denim/id_00000007/01_2_side.jpg", "id_00000007", "query"),
            ("img/WOMEN/Dresses/id_00000009/01_1_front.jpg", "id_00000009", "gallery")]
    folder = _inshop_tree(tmp_path, rows)
    index = bm.read_index("inshop", tmp_path)
    assert index.group_names == ["MEN/Denim", "WOMEN/Dresses"] and index.groups.tolist() == [1, 0, 1]
    assert index.attributes is None and "not found" in index.notes["attributes"]
    (folder / "Anno").mkdir()
    (folder / "Anno" / "list_attr_cloth.txt").write_text("3\nattribute_name\nlong sleeve\nfloral\nA-line\n")
    (folder / "Anno" / "list_attr_items.txt").write_text(
        "2\nitem_id attribute_labels\nid_00000002 1 -1 1\nid_00000007 -1 0 1\n")
    index = bm.read_index("inshop", tmp_path)
    assert index.attribute_names == ["long sleeve", "floral", "A-line"]
    assert index.attributes.tolist() == [[1, 0, 1], [0, 0, 1], [0, 0, 0]]  # item 9 has no row
    assert "2 of 3 items" in index.notes["attributes"]
    assert bm.inshop_category("img/WOMEN/Blouses_Shirts/id_00000001/02_3_back.jpg") == "WOMEN/Blouses_Shirts"


def test_inshop_domain_carries_groups_and_attributes(tmp_path):
    root = write_benchmarks(tmp_path, train_classes=6, test_classes=2, per_class=2, names=("inshop",))
    folder = root / "InShop"
    items = [f"id_{k:08d}" for k in range(1, 9)]
    (folder / "list_attr_items.txt").write_text(  # in InShop/ itself: also found
        "8\nitem_id attribute_labels\n" + "".join(f"{it} {1 if k % 2 else -1} 1\n"
                                                 for k, it in enumerate(items, start=1)))
    d = load_domain("inshop", root=root, image_size=8, channels=3)
    assert d.group_names == ["WOMEN/Dresses"] and d.attribute_names == ["attribute_1", "attribute_2"]
    for s, i in _items(d):
        k = int(d.class_names[s.labels[i]].removeprefix("id_"))
        assert s.attributes[i].tolist() == [k % 2, 1] and s.groups[i] == 0
    assert d.test.is_query is not None


def test_sop_group_is_the_super_category(tmp_path):
    folder = tmp_path / "Stanford_Online_Products"
    folder.mkdir()
    (folder / "Ebay_train.txt").write_text("image_id class_id super_class_id path\n"
                                           "1 1 1 bicycle_final/1_0.JPG\n2 2 3 chair_final/2_0.JPG\n")
    (folder / "Ebay_test.txt").write_text("image_id class_id super_class_id path\n"
                                          "3 3 2 cabinet_final/3_0.JPG\n4 4 1 bicycle_final/4_0.JPG\n")
    index = bm.read_index("sop", tmp_path)
    assert index.group_names == ["bicycle", "cabinet", "chair"]
    assert index.groups.tolist() == [0, 2, 1, 0] and index.attributes is None


def test_cars_has_no_attributes(tmp_path):
    root = write_benchmarks(tmp_path, train_classes=6, test_classes=2, per_class=2, names=("cars",))
    d = load_domain("cars", root=root, image_size=8, channels=3)
    assert not d.has_attributes and not d.has_groups and d.test.groups is None


def test_cub_attribute_file_in_a_bad_format_is_named(tmp_path):
    folder = tmp_path / "CUB_200_2011"
    (folder / "attributes").mkdir(parents=True)
    labels = folder / "attributes" / "image_attribute_labels.txt"
    for text in ("1 1 0 1 2.5\n1 2 1\n", "1 1 yes 1 2.5\n"):
        labels.write_text(text)
        with pytest.raises(DataCorruptError, match="image_attribute_labels.txt"):
            bm.read_cub_attributes(folder, ["1"])
    with pytest.raises(ValueError, match="values"):
        bm.read_cub_attributes(folder, ["1"], values="soft")
