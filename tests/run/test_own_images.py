"""`ue index`, `ue search` and `ue export` (`ue_lib.own_images`): the universal embedding of a run
on a folder of the user's images. The index tests read the session's smoke run (its kl student);
the rest work on small hand-made inputs."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from test_cli import ue, ue_fast

from ue_lib import own_images as oi

COLOURS = {"red": (220, 30, 30), "green": (30, 160, 60), "blue": (40, 60, 210),
           "orange": (240, 150, 20)}
UNREADABLE = ["disc/broken.png", "notes.jpg"]  # a damaged PNG, and text named .jpg
# the smoke student's 32-d embeddings as 32 sub-vectors of 4 bits: 16 bytes a picture, not 128
COMPRESS = "opq:32x4"


def make_pictures(root):
    """36 drawn pictures (3 shapes x 4 colours x 3 sizes) in nested folders, the large ones as
    JPEG one level deeper; plus two unreadable files, a text file and a hidden picture."""
    for shape in ("disc", "square", "triangle"):
        for name, colour in COLOURS.items():
            for size in (20, 34, 48):
                img = Image.new("RGB", (64, 64), "white")
                a, b = 32 - size // 2, 32 + size // 2
                draw = ImageDraw.Draw(img)
                if shape == "disc":
                    draw.ellipse((a, a, b, b), fill=colour)
                elif shape == "square":
                    draw.rectangle((a, a, b, b), fill=colour)
                else:
                    draw.polygon([(32, a), (b, b), (a, b)], fill=colour)
                path = root / shape / name / (f"{size}.png" if size < 48 else f"big/{size}.jpg")
                path.parent.mkdir(parents=True, exist_ok=True)
                img.save(path)
    (root / UNREADABLE[0]).write_bytes(b"\x89PNG\r\n\x1a\nnot an image at all")
    (root / UNREADABLE[1]).write_text("shopping list, not a picture")
    (root / "readme.txt").write_text("not an image file name")
    Image.new("RGB", (8, 8)).save(root / ".hidden.png")
    return root


# ----------------------------------------------------------------------------- hand-made inputs

def test_image_files_walks_the_tree_by_extension_sorted(tmp_path):
    files = oi.image_files(make_pictures(tmp_path / "pics"))
    assert len(files) == 38 and files == sorted(files)
    assert files[:3] == ["disc/blue/20.png", "disc/blue/34.png", "disc/blue/big/48.jpg"]
    assert set(UNREADABLE) <= set(files)
    assert not any(f.endswith(".txt") or "hidden" in f for f in files)


def test_parse_compression():
    assert oi.parse_compression(None, 64) is None and oi.parse_compression("flat", 64) is None
    assert oi.parse_compression("opq:32", 64) == (32, 8)
    assert oi.parse_compression("opq:8x4", 32) == (8, 4)
    with pytest.raises(oi.SearchError, match="M must divide the embedding dimension 64, one of "
                                             "1, 2, 4, 8, 16, 32, 64"):
        oi.parse_compression("opq:12", 64)
    with pytest.raises(oi.SearchError, match="write flat, opq:M or opq:MxB"):
        oi.parse_compression("pq32", 64)
    assert oi.min_images(64, 8) == 256 and oi.min_images(64, 4) == 64 and oi.min_images(32, 5) == 32


def test_skipped_line_names_the_first_few():
    assert oi.skipped_line([]) == ""
    assert oi.skipped_line(["a.png"]) == "skipped 1 unreadable file: a.png"
    assert oi.skipped_line(list("abcde")) == "skipped 5 unreadable files: a, b, c and 2 more"


def test_pick_items_takes_whole_shares_of_classes():
    labels = np.repeat(np.arange(5), 4)  # 5 classes of 4
    picked = oi.pick_items(labels, 10, 3, np.random.default_rng(0))
    assert len(picked) == 9 and list(picked) == sorted(picked)
    per_class = np.bincount(labels[picked], minlength=5)
    assert sorted(per_class) == [0, 0, 3, 3, 3]  # three classes of 3; one left alone is not taken
    again = oi.pick_items(labels, 10, 3, np.random.default_rng(0))
    assert np.array_equal(picked, again)
    # few classes: each gives per_domain / classes
    assert np.bincount(labels[oi.pick_items(labels, 8, 1, np.random.default_rng(1))]).max() == 2


def test_model_fingerprint_follows_weights_and_preprocessing():
    net = torch.nn.Linear(3, 2)
    prep = {"image_size": 32, "channels": 3, "resize": "square"}
    first = oi.model_fingerprint(net, prep)
    assert first == oi.model_fingerprint(net, dict(prep))
    assert first != oi.model_fingerprint(net, {**prep, "image_size": 64})
    with torch.no_grad():
        net.bias[0] += 1e-6
    assert first != oi.model_fingerprint(net, prep)


def small_index(tmp_path, x, fingerprint="f" * 64, compression=None):
    x = oi.l2_normalise(np.asarray(x, np.float32))
    files = [f"c{i % 2}/{i}.png" for i in range(len(x))]
    meta = {"model": "kl", "seed": 0, "run_dir": "/nowhere", "model_dir": "m", "root": "/pics",
            "fingerprint": fingerprint, "embedding_dim": x.shape[1],
            "counts": {"indexed": len(x)}, "compression": "flat"}
    oi.write_index(tmp_path / "idx", oi.build_index(x, compression), x, tmp_path, files, meta)
    return oi.ImageIndex.load(tmp_path / "idx")


def test_search_ranks_by_cosine_ties_by_number_and_refuses_another_model(tmp_path):
    index = small_index(tmp_path / "a", [[1, 0], [0, 1], [1, 1], [1, 0], [-1, 0]])
    scores, ids = index.search(np.array([[2.0, 0.0]]), "f" * 64, k=4)
    assert ids.tolist() == [[0, 3, 2, 1]]  # 0 and 3 tie: lower number first
    assert np.allclose(scores, [[1, 1, np.sqrt(0.5), 0]])
    hits = index.hits(np.array([0.0, 1.0]), "f" * 64, k=2)
    assert hits.path.tolist() == ["c1/1.png", "c0/2.png"] and hits["rank"].tolist() == [1, 2]
    assert index.search(np.array([[1.0, 0]]), "f" * 64, k=50)[1].shape == (1, 5)  # k clamped
    with pytest.raises(oi.FingerprintMismatch, match="embedded by another model "
                                                     r"\(fingerprint eeeeeeeeeeee\)"):
        index.search(np.array([[1.0, 0.0]]), "e" * 64)

def test_leave_one_out_neighbours_and_recall_by_folder(tmp_path):
    index = small_index(tmp_path, [[1, 0], [0, 1], [1, 0.5], [1, -0.2], [-1, 0.1]])
    assert oi.own_neighbours(index)[:, 0].tolist() == [3, 2, 0, 0, 1]
    # folders c0 (items 0, 2, 4) and c1 (1, 3) are the classes: only 2 -> 0 is a hit
    assert oi.folder_recall_at_1(index) == (0.2, 5)
    assert oi.self_first_rate(index) == 1.0 and oi.top1_agreement(index, index) == 1.0
    # item 4 moved next to item 1: item 1's best other item becomes 4 (was 2), the rest keep theirs
    moved = small_index(tmp_path / "moved", [[1, 0], [0, 1], [1, 0.5], [1, -0.2], [0.3, 1]])
    assert oi.top1_agreement(index, moved) == 0.8


def test_a_damaged_or_missing_index_is_named(tmp_path, capsys):
    status, out, err = ue_fast(capsys, "search", tmp_path / "nothing", tmp_path / "q.png")
    assert status == 2 and out == ""
    assert err.strip() == (f"ue search: error: no index at {tmp_path / 'nothing'}: make it again "
                           f"with `ue index RUN_DIR FOLDER --out {tmp_path / 'nothing'}`")
    small_index(tmp_path, np.eye(4))
    (tmp_path / "idx" / oi.INDEX).write_bytes(b"garbage")
    status, _, err = ue_fast(capsys, "search", tmp_path / "idx", tmp_path / "q.png")
    assert status == 2 and "is damaged (RuntimeError" in err and len(err.strip().splitlines()) == 1
    small_index(tmp_path, np.eye(4))
    files = json.loads((tmp_path / "idx" / oi.FILES).read_text())
    (tmp_path / "idx" / oi.FILES).write_text(json.dumps({**files, "files": files["files"][:3]}))
    with pytest.raises(oi.SearchError, match=r"parts disagree: \[3, 4\] items"):
        oi.ImageIndex.load(tmp_path / "idx")
    (tmp_path / "idx" / oi.META).unlink()
    with pytest.raises(oi.SearchError, match="holds no finished index"):
        oi.ImageIndex.load(tmp_path / "idx")


def test_a_compressed_index_needs_enough_images_for_its_codebooks():
    x = oi.l2_normalise(np.random.default_rng(0).normal(size=(40, 16)).astype(np.float32))
    with pytest.raises(oi.SearchError, match="opq:4x8 needs at least 256 images to fit its "
                                             "codebooks, and there are 40: index more images, "
                                             "or fewer bits: opq:4x4 needs 16"):
        oi.build_index(x, (4, 8))
    index = oi.build_index(x, (4, 4))
    assert index.ntotal == 40 and index.d == 16


def test_notebook_figure_reads_notebook_04s_merged_rows(tmp_path):
    rows = ["notebook,model,method,domain,split,metric,value,seed,epoch",
            "04_final_results,distill,kl,merged,test,recall@1,0.7,1,3",
            "04_final_results,distill,kl,merged,test,recall@1,0.6,0,3",
            "04_final_results,distill,kl,merged:orl,test,recall@1,0.9,0,3",
            "04_final_results,distill,kl,merged,test,map@r,0.2,0,3",
            "04_final_results,distill,distance_mse,merged,test,recall@1,0.5,0,3",
            "03_absolute_vs_distribution_distillation,distill,kl,merged,test,recall@1,0.1,0,3"]
    (tmp_path / "results.csv").write_text("\n".join(rows) + "\n")
    figure = oi.notebook_figure(tmp_path, "kl")
    assert figure.seed.tolist() == [0, 1] and figure.value.tolist() == [0.6, 0.7]


def test_an_export_replaces_only_an_earlier_export(tmp_path):
    (tmp_path / "ex" / "a").mkdir(parents=True)
    (tmp_path / "ex" / "a" / "1.png").write_bytes(b"x")
    (tmp_path / "ex" / "a" / "mine.txt").write_text("the user's")
    (tmp_path / "ex" / oi.EXPORT_MANIFEST).write_text(json.dumps({"items": [{"path": "a/1.png"}]}))
    oi._clear_previous_export(tmp_path / "ex")
    assert sorted(p.name for p in (tmp_path / "ex").rglob("*")) == ["a", "mine.txt"]
    with pytest.raises(oi.SearchError, match="is not empty and holds no earlier export"):
        oi._clear_previous_export(tmp_path / "ex")


def test_contact_sheet_size(tmp_path):
    assert oi.sheet_size(10) == (6 * 128, 2 * (128 + 18))
    assert oi.sheet_size(3) == (4 * 128, 128 + 18)


# ----------------------------------------------------------------------------- on the smoke run


@pytest.fixture(scope="module")
def indexed(smoke_run, tmp_path_factory):
    """The generated folder indexed by the smoke run's kl student: flat, and compressed."""
    root = tmp_path_factory.mktemp("own")
    pics = make_pictures(root / "pics")
    flat = oi.index_folder(smoke_run, pics, root / "flat", model="kl", progress=False)
    small = oi.index_folder(smoke_run, pics, root / "opq", model="kl", compress=COMPRESS,
                            progress=False)
    return root, pics, flat, small


def test_index_skips_and_names_unreadable_files(indexed, smoke_run, capsys):
    root, pics, flat, _ = indexed
    assert flat["skipped"] == UNREADABLE and flat["counts"] == {"files": 38, "indexed": 36,
                                                                "skipped": 2}
    index = oi.ImageIndex.load(root / "flat")
    assert len(index.files) == 36 and not set(UNREADABLE) & set(index.files)
    assert index.root == pics.resolve() and index.meta["model_dir"].startswith("models/distill-kl/")
    assert index.meta["preprocessing"] == {"image_size": 32, "channels": 3, "resize": "square"}
    status, out, err = ue_fast(capsys, "index", smoke_run, pics, "--out", root / "cli")
    assert status == 0 and "indexed 36 images" in out and "(seed 0, 32-d, flat)" in out
    assert ("ue index: skipped 2 unreadable files: disc/broken.png, notes.jpg (left out of the "
            "index)") in err
    assert not list(pics.rglob("*.ue-index")) and not (pics / oi.META).exists()


def test_each_image_finds_itself_first(indexed):
    root, pics, _, _ = indexed
    index = oi.ImageIndex.load(root / "flat")
    embedder = oi.embedder_of_index(index.meta)
    queries = np.concatenate([embedder.embed_file(pics / f) for f in index.files])
    scores, ids = index.search(queries, embedder.fingerprint, k=2)
    assert ids[:, 0].tolist() == list(range(len(index.files)))  # all 36
    assert np.allclose(scores[:, 0], 1, atol=1e-5) and (scores[:, 1] < scores[:, 0] - 1e-4).all()
    assert np.allclose(queries, index.embeddings, atol=1e-6)  # the query path is the index's


def test_ue_search_prints_the_table_and_a_contact_sheet(indexed, capsys):
    root, pics, _, _ = indexed
    sheet = root / "sheets" / "red.png"
    status, out, _ = ue_fast(capsys, "search", root / "flat", pics / "disc/red/34.png", "-k", "5",
                             "--sheet", sheet)
    lines = out.splitlines()
    assert status == 0 and lines[0] == f"nearest in {pics.resolve()}:"
    assert lines[1].split() == ["rank", "score", "path"] and len(lines) == 2 + 5 + 1
    assert lines[2].split() == ["1", "1.000", "disc/red/34.png"]
    with Image.open(sheet) as img:
        assert img.size == oi.sheet_size(5) == (768, 146)


def test_compressed_index_agrees_with_the_flat_one(indexed):
    """OPQ+PQ at 16 bytes a picture instead of 128 (`COMPRESS`). Queried with each of its 36
    pictures, the compressed index puts the picture itself first for all 36 (the flat one
    always does), and its best *other* picture is the flat index's for 32 of the 36 (0.889,
    measured). The pictures differ only in shape, colour and size, so their neighbours are
    close calls: the bounds (35 of 36 first; 29 of 36 the same neighbour) leave a margin of 1
    and 3 pictures for faiss versions whose k-means runs differently."""
    root, _, _, small = indexed
    flat, compressed = oi.ImageIndex.load(root / "flat"), oi.ImageIndex.load(root / "opq")
    assert small["compression"] == "opq:32x4" and compressed.files == flat.files
    first, agreement = oi.self_first_rate(compressed), oi.top1_agreement(flat, compressed)
    print(f"compressed: itself first {first:.3f}, same best other picture {agreement:.3f}")
    assert oi.self_first_rate(flat) == 1.0
    assert first >= 35 / 36 and agreement >= 29 / 36


def test_a_query_of_another_model_is_refused(indexed, smoke_run):
    root, pics, _, _ = indexed
    index = oi.ImageIndex.load(root / "flat")
    naive = oi.load_embedder(smoke_run, "naive")
    assert naive.fingerprint != index.fingerprint
    with pytest.raises(oi.FingerprintMismatch, match="embedded by another model"):
        index.search(naive.embed_file(pics / "disc/red/20.png"), naive.fingerprint)


def test_search_refuses_when_the_model_changed(indexed, tmp_path, capsys):
    root, pics, _, _ = indexed
    shutil.copytree(root / "flat", tmp_path / "idx")
    meta = json.loads((tmp_path / "idx" / oi.META).read_text())
    (tmp_path / "idx" / oi.META).write_text(json.dumps({**meta, "fingerprint": "0" * 64}))
    status, out, err = ue_fast(capsys, "search", tmp_path / "idx", pics / "disc/red/20.png")
    assert status == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert "changed since the index was made" in err and "make the index again: `ue index" in err


def test_indexing_is_deterministic(indexed, smoke_run):
    root, pics, _, _ = indexed
    for name, compress in (("flat", None), ("opq", COMPRESS)):
        oi.index_folder(smoke_run, pics, root / f"{name}2", compress=compress, progress=False)
        for part in (oi.INDEX, oi.EMBEDDINGS, oi.FILES):
            assert (root / name / part).read_bytes() == (root / f"{name}2" / part).read_bytes()


@pytest.mark.parametrize("case, message", [
    ("no run", "no run folder at"),
    ("unknown model", "unknown model 'kll': this run's models are naive, kl,"),
    ("untrained seed", "model kl (seed 7) is not trained in"),
    ("no such folder", "no folder of images at"),
    ("empty folder", "no image files under"),
    ("inside", "the index would be written into the folder of images"),
    ("unreadable query", "cannot be read as an image (UnidentifiedImageError"),
    ("too few for codebooks", "--compress opq:8x8 needs at least 256 images"),
])
def test_user_errors_are_one_line(indexed, smoke_run, tmp_path, capsys, case, message):
    root, pics, _, _ = indexed
    (tmp_path / "empty").mkdir()
    args = {"no run": ["index", tmp_path / "nowhere", pics],
            "unknown model": ["index", smoke_run, pics, "--model", "kll", "--out", tmp_path / "i"],
            "untrained seed": ["index", smoke_run, pics, "--seed", "7", "--out", tmp_path / "i"],
            "empty folder": ["index", smoke_run, tmp_path / "empty", "--out", tmp_path / "i"],
            "no such folder": ["index", smoke_run, tmp_path / "nope", "--out", tmp_path / "i"],
            "inside": ["index", smoke_run, pics, "--out", pics / "index"],
            "unreadable query": ["search", root / "flat", pics / UNREADABLE[1]],
            "too few for codebooks": ["index", smoke_run, pics, "--compress", "opq:8",
                                      "--out", tmp_path / "i"]}[case]
    status, out, err = ue_fast(capsys, *args)
    assert status == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err and not (tmp_path / "i").exists()


def test_export_writes_the_runs_test_images_losslessly(smoke_run, tmp_path):
    """`ue export` through the real entry point; the PNG files hold the split's pixels exactly,
    so the search on them and the evaluator on the same items agree."""
    r = ue("export", smoke_run, tmp_path / "ex", "--per-domain", "12", "--per-class", "3")
    assert r.returncode == 0, r.stderr
    manifest = json.loads((tmp_path / "ex" / oi.EXPORT_MANIFEST).read_text())
    assert manifest["split"] == "test" and manifest["seed"] == 0
    assert {it["domain"] for it in manifest["items"]} == {"omniglot", "fashion", "glyphs", "orl"}
    assert len(manifest["items"]) == 48 and "exported 48 test images of 4 domains" in r.stdout
    folder = oi.RunFolder(oi.run_spec(smoke_run), "test", progress=False)
    domains = folder.domains(0)
    for item in manifest["items"][::7]:
        with Image.open(tmp_path / "ex" / item["path"]) as img:
            pixels = np.asarray(img.convert("RGB")).transpose(2, 0, 1)
        assert np.array_equal(pixels, domains[item["domain"]].test.images[item["index"]])
    oi.index_folder(smoke_run, tmp_path / "ex", tmp_path / "idx", progress=False)
    searched = oi.folder_recall_at_1(oi.ImageIndex.load(tmp_path / "idx"))
    evaluated = oi.evaluator_recall_at_1(smoke_run, tmp_path / "ex")
    assert searched[1] == evaluated[1] > 40
    assert searched[0] == pytest.approx(evaluated[0], abs=1 / 48)
