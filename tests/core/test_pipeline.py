"""The paper-scale image pipeline: file-backed images, transforms v2, DataLoader workers, mixed
precision, and the batch sharding of multi-process training."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import class_color, write_benchmarks
from PIL import Image

from ue_lib.config import ModelSettings
from ue_lib.data import DataCorruptError, DataNotFoundError, ImageFiles, load_domain
from ue_lib.data.transforms import eval_transform, train_transform
from ue_lib.device import amp_dtype, autocast
from ue_lib.evaluate import embed
from ue_lib.models import build_model
from ue_lib.profiles import Profile
from ue_lib.samplers import MultiDomainBatchSampler
from ue_lib.training import TrainJob, train
from ue_lib.universal.objectives import Distillation, NaiveFusion, Specialist

SIZE = 16
RGB = Profile(channels=3, width=4, embedding_dim=8, p=4, k=2, epochs_specialist=1, epochs_naive=1,
              epochs_distill=1)


@pytest.fixture(scope="module")
def bench_root(tmp_path_factory):
    return write_benchmarks(tmp_path_factory.mktemp("bench"))


def _file(tmp_path, w: int, h: int, name: str = "x.png"):
    """A w x h RGB image whose pixel (x, y) is (x, y, 7): positions can be read back."""
    xs, ys = np.meshgrid(np.arange(w), np.arange(h))
    arr = np.stack([xs, ys, np.full_like(xs, 7)], axis=-1).astype(np.uint8)
    Image.fromarray(arr).save(tmp_path / name)
    return tmp_path / name


def test_eval_transform_resizes_the_shorter_side_then_crops_the_centre(tmp_path):
    # 64 x 32 -> shorter side round(16 * 256 / 224) = 18 -> 36 x 18 -> central 16 x 16
    img = Image.open(_file(tmp_path, 64, 32)).convert("RGB")
    out = eval_transform(SIZE)(img)
    assert out.dtype == torch.uint8 and tuple(out.shape) == (3, SIZE, SIZE)
    # the crop's columns come from the middle of the 64-px-wide original: x in [~21, ~42]
    assert 18 <= int(out[0, :, 0].float().mean()) <= 24
    assert 39 <= int(out[0, :, -1].float().mean()) <= 45
    assert int(out[2].float().mean()) == 7


def test_train_transform_is_random_but_seeded(tmp_path):
    img = Image.open(_file(tmp_path, 48, 40)).convert("RGB")
    t = train_transform(SIZE)
    torch.manual_seed(0)
    a = t(img)
    torch.manual_seed(0)
    assert torch.equal(a, t(img)) and tuple(a.shape) == (3, SIZE, SIZE)
    assert any(not torch.equal(a, t(img)) for _ in range(5))


def test_image_files_index_like_an_array(tmp_path):
    paths = [_file(tmp_path, 30 + i, 20, f"{i}.png") for i in range(4)]
    files = ImageFiles([str(p) for p in paths], SIZE, channels=3, name="demo")
    assert files.shape == (4, 3, SIZE, SIZE) and files.dtype == np.uint8 and files.ndim == 4
    assert len(files) == 4 and "4 files" in repr(files)
    one, some = files[2], files[np.array([0, 3])]
    assert one.shape == (3, SIZE, SIZE) and some.shape == (2, 3, SIZE, SIZE)
    np.testing.assert_array_equal(files[1:3][1], one)
    np.testing.assert_array_equal(np.asarray(files)[3], some[1])
    grey = ImageFiles([str(p) for p in paths], SIZE, channels=1)
    assert grey[0].shape == (1, SIZE, SIZE)
    assert files.fingerprint() != grey.fingerprint()
    # the same files under another root: same fingerprint; a changed file: another
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    for q in paths:
        (moved / q.name).write_bytes(q.read_bytes())
    same = ImageFiles([str(moved / q.name) for q in paths], SIZE, channels=3)
    assert same.fingerprint() == files.fingerprint()
    _file(moved, 50, 20, "3.png")
    assert ImageFiles([str(moved / q.name) for q in paths], SIZE).fingerprint() != files.fingerprint()


def test_lazy_benchmark_matches_the_eager_one(bench_root):
    kw = dict(root=bench_root, image_size=SIZE, channels=3, seed=0)
    eager, lazy = load_domain("cub", **kw), load_domain("cub", lazy=True, num_workers=1, **kw)
    for split in ("train", "val", "test"):
        e, z = getattr(eager, split), getattr(lazy, split)
        assert isinstance(z.images, ImageFiles) and z.images.num_workers == 1
        np.testing.assert_array_equal(e.labels, z.labels)
        np.testing.assert_array_equal(e.paths, z.paths)
        # both are the class colour (with noise and a dark bar) however they were resized
        colors = np.array([class_color(int(lazy.class_names[y][:3])) for y in z.labels])
        means = z.images[:].reshape(len(z), 3, -1).mean(axis=2)
        assert np.abs(means - colors).mean() < 40
    # the mini domains ignore `lazy`: they are small and always in memory
    assert load_domain("folder:" + str(bench_root / "CUB_200_2011" / "images"), lazy=True,
                       image_size=SIZE).train.images.dtype == np.uint8


def test_lazy_loading_names_missing_and_corrupt_files(tmp_path):
    root = write_benchmarks(tmp_path, names=("sop",))
    first = sorted((root / "Stanford_Online_Products" / "bicycle_final").iterdir())[0]
    first.write_bytes(b"not a jpeg")
    d = load_domain("sop", root=root, image_size=SIZE, channels=3, lazy=True, num_workers=1)
    split = next(sp for sp in d.splits.values() if str(first) in set(sp.paths))
    with pytest.raises(DataCorruptError, match=first.name):  # raised in a DataLoader worker
        embed(build_model(ModelSettings.part_of(RGB)), split.images)
    first.unlink()
    with pytest.raises(DataNotFoundError, match=f"missing, e.g. .*{first.name}"):
        load_domain("sop", root=root, image_size=SIZE, channels=3, lazy=True)


def test_embedding_files_with_workers_equals_embedding_their_pixels(bench_root):
    d = load_domain("cars", root=bench_root, image_size=SIZE, channels=3, lazy=True, num_workers=2)
    model = build_model(ModelSettings.part_of(RGB))
    files = d.test.images
    np.testing.assert_allclose(embed(model, files, batch_size=7), embed(model, files[:]),
                               atol=1e-6)


def _lazy_domains(root, workers: int):
    return {n: load_domain(n, root=root, image_size=SIZE, channels=3, seed=0, lazy=True,
                           num_workers=workers) for n in ("cub", "inshop")}


def _run(domains, objective, seed=0):
    return train(TrainJob(domains, objective, seed), progress=False)


def test_training_on_files_is_reproducible_with_workers(bench_root):
    prof = RGB.replace(epochs_naive=2, augment=True)
    a = _run(_lazy_domains(bench_root, 2), NaiveFusion(prof), seed=3)
    b = _run(_lazy_domains(bench_root, 2), NaiveFusion(prof), seed=3)
    assert a.history.equals(b.history) and set(a.final.domain) == {"cub", "inshop"}
    c = _run(_lazy_domains(bench_root, 2), NaiveFusion(prof), seed=4)
    assert not a.history.equals(c.history)


def test_distilling_on_files_embeds_teachers_per_batch(bench_root):
    doms = _lazy_domains(bench_root, 0)
    teachers = {n: _run({n: d}, Specialist(RGB)).model for n, d in doms.items()}
    for augment in (True, False):  # random crops: teachers embed each batch; else cached
        res = _run(doms, Distillation(RGB.replace(augment=augment), "kl", teachers))
        assert np.isfinite(res.history.value).all()


def test_bf16_autocast_path_runs_on_cpu(bench_root):
    cpu = torch.device("cpu")
    assert amp_dtype("auto", cpu) is None and amp_dtype("off", torch.device("cuda")) is None
    assert amp_dtype("auto", torch.device("cuda")) is torch.bfloat16
    with pytest.raises(ValueError, match="amp must be one of"):
        amp_dtype("fp8", cpu)
    with autocast("bf16", cpu):
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16
    doms = _lazy_domains(bench_root, 0)
    res = _run(doms, NaiveFusion(RGB.replace(amp="bf16")))
    x = embed(res.model, doms["cub"].test.images, amp="bf16")
    assert x.dtype == np.float32 and np.isfinite(x).all()
    full = embed(res.model, doms["cub"].test.images, amp="off")
    assert (np.sum(x * full, axis=1) > 0.98).all()  # bf16 embeddings point the same way


def test_batches_are_sharded_by_whole_classes():
    labels = {"a": np.repeat(np.arange(10), 6), "b": np.repeat(np.arange(7), 5)}
    full = list(MultiDomainBatchSampler(labels, p=4, k=3, seed=1))
    shards = [list(MultiDomainBatchSampler(labels, p=4, k=3, seed=1, rank=r, world_size=2))
              for r in range(2)]
    for b, (name, batch) in enumerate(full):
        (n0, s0), (n1, s1) = shards[0][b], shards[1][b]
        assert n0 == n1 == name and sorted(s0 + s1) == sorted(batch)
        for shard in (s0, s1):
            classes, counts = np.unique(labels[name][shard], return_counts=True)
            assert len(classes) == 2 and (counts == 3).all()  # 2 whole classes of K=3
        assert not set(labels[name][s0]) & set(labels[name][s1])
    with pytest.raises(ValueError, match="P=4 classes cannot be shared evenly by 3 processes"):
        MultiDomainBatchSampler(labels, p=4, k=3, rank=0, world_size=3)
    with pytest.raises(ValueError, match="rank must be < world_size"):
        MultiDomainBatchSampler(labels, p=4, k=3, rank=2, world_size=2)
