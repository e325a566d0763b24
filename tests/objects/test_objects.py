"""Object embeddings (ue_lib.objects, notebook 08): pooling in boxes, the detector, the guided
student, max-over-objects similarity, spliced queries and the retrieval scores."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from test_scenes import rgb_domain

from ue_lib.evaluate import query_gallery_metrics
from ue_lib.models import LITE0_MEAN, LITE0_STD, EfficientNetLite0
from ue_lib.objects.detector import ObjectDetector, match_detections, train_detector
from ue_lib.objects.models import detector
from ue_lib.objects.objectives import GuidedStudent
from ue_lib.objects.retrieval import max_pair_similarity, source_recall, splice
from ue_lib.objects.scenes import make_scenes
from ue_lib.objects.settings import DetectorSettings, detector_settings
from ue_lib.objects.trunk import SceneTrunk, box_features, crops, pool_map, scene_boxes
from ue_lib.profiles import load_profile
from ue_lib.training import Batch, Setup


@pytest.fixture(scope="module")
def lite0() -> EfficientNetLite0:
    torch.manual_seed(0)
    return EfficientNetLite0(num_classes=None).eval()


@pytest.fixture(scope="module")
def domains():
    return {"a": rgb_domain("a", size=24, seed=1), "b": rgb_domain("b", size=24, seed=2)}


@pytest.fixture(scope="module")
def scenes(domains):
    return make_scenes(domains, scenes_per_split=12, seed=4, canvas=64, scale=(16, 32))


# ----------------------------------------------------------------------------- pooling

def test_pool_map_by_hand():
    h = torch.tensor([[[[1.0, 2.0], [3.0, 6.0]]]])
    assert pool_map(h, "avg").item() == 3.0
    assert pool_map(h, "max").item() == 6.0
    assert pool_map(h, "gem", 1.0).item() == pytest.approx(3.0)
    assert pool_map(h, "gem", 2.0).item() == pytest.approx(np.sqrt((1 + 4 + 9 + 36) / 4))
    with pytest.raises(ValueError, match="pooling must be one of avg, max, gem"):
        pool_map(h, "sum")


def test_identity_box_equals_global_pooling():
    maps = torch.randn(3, 5, 4, 4)
    whole = [torch.tensor([[0.0, 0.0, 64.0, 64.0]])] * 3
    cut = box_features(maps, whole, image_side=64, output_size=4)
    assert torch.equal(cut, maps)  # the map itself: one sample at each cell's centre
    one = box_features(maps, whole, image_side=64, output_size=1)
    assert torch.allclose(one.flatten(1), maps.mean(dim=(2, 3)), atol=1e-6)


def test_scene_trunk_box_of_a_whole_item_is_the_trunk_feature(lite0):
    trunk = SceneTrunk(lite0, roi_stage=6, roi_size=4, mean=LITE0_MEAN, std=LITE0_STD)
    images = np.random.default_rng(0).integers(0, 256, (3, 3, 64, 64), dtype=np.uint8)
    maps = trunk.maps(images)
    assert maps.shape[-2:] == (4, 4)
    boxed = trunk.objects(maps, [torch.tensor([[0.0, 0.0, 64.0, 64.0]])] * 3, 64)
    with torch.no_grad():
        x = (torch.from_numpy(images).float() / 255 - 0.5) / 0.5
        expected = lite0(x)  # the trunk's globally pooled features (what the cache holds)
    assert torch.allclose(boxed, expected, atol=1e-5)
    assert torch.allclose(trunk.whole(maps), expected, atol=1e-5)


def test_scene_trunk_settings_are_checked(lite0):
    with pytest.raises(ValueError, match="objects_roi_stage must be in 1..8"):
        SceneTrunk(lite0, roi_stage=9, roi_size=4)
    with pytest.raises(ValueError, match="pooling must be one of"):
        SceneTrunk(lite0, roi_stage=6, roi_size=4, pooling="median")


# ----------------------------------------------------------------------------- the detector

def _square_maps(n: int, seed: int):
    """Maps (n, 4, 8, 8) of a 64-px image holding one bright square, and its box."""
    rng = np.random.default_rng(seed)
    maps, boxes = torch.zeros(n, 4, 8, 8), []
    for i in range(n):
        x, y = (int(v) for v in rng.integers(0, 5, size=2))
        maps[i, :, y:y + 3, x:x + 3] = 1.0
        boxes.append(torch.tensor([[x * 8.0, y * 8.0, x * 8.0 + 24, y * 8.0 + 24]]))
    return maps, boxes


def test_detector_training_is_seeded_and_sees_maps_only():
    settings = DetectorSettings(neck=8, anchors=(24,), epochs=2, batch=4)
    maps, boxes = _square_maps(8, 0)
    a, la = train_detector(maps, boxes, 64, settings, seed=3)
    b, lb = train_detector(maps, boxes, 64, settings, seed=3)
    assert la == lb and all(np.isfinite(la)) and len(la) == 2
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), name
    # detection takes the maps alone: no box of the scenes can reach it
    out = a.detect(maps, 64)
    assert len(out) == 8 and set(out[0]) == {"boxes", "scores"}
    assert all(d["boxes"].shape[1:] == (4,) for d in out)
    assert all(len(d["boxes"]) <= settings.max_detections for d in out)


def test_a_damaged_detector_file_is_moved_aside_and_trained_again(domains, scenes, tmp_path, capsys):
    profile = load_profile("mini").replace(objects_detector={"neck": 8, "anchors": [24], "epochs": 2,
                                                             "batch": 4})
    folder = SimpleNamespace(profile=profile, models_root=tmp_path)
    torch.manual_seed(0)
    maps = torch.rand(len(scenes["train"]), 4, 8, 8)
    first, _ = detector(folder, maps, scenes["train"], {"pool": "avg"}, domains, 0)
    (path,) = (tmp_path / "detector").iterdir()
    path.write_bytes(path.read_bytes()[:200])
    capsys.readouterr()
    again, seconds = detector(folder, maps, scenes["train"], {"pool": "avg"}, domains, 0)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"ue: rebuilding {path}: it could not be read (")
    assert path.with_name(path.name + ".corrupt").stat().st_size == 200
    for (name, x), (_, y) in zip(first.state_dict().items(), again.state_dict().items()):
        assert torch.equal(x, y), name
    loaded, seconds_read = detector(folder, maps, scenes["train"], {"pool": "avg"}, domains, 0)
    assert seconds_read == seconds and torch.equal(loaded.state_dict()[name], y)


def test_matched_boxes_are_the_detectors(scenes):
    test = scenes["test"]
    dets = [{"boxes": np.array([[0, 0, 10, 10], b + 1], np.float32), "scores": np.ones(2)}
            for b in (test.box[test.objects_of(i)][0] for i in range(len(test)))]
    boxes, best = match_detections(dets, test)
    firsts = np.array([test.objects_of(i)[0] for i in range(len(test))])
    assert np.array_equal(boxes[firsts], test.box[firsts] + 1)  # the detection, not the truth
    assert np.all(best[firsts] > 0.5) and np.all(best[firsts] < 1)
    detected = {tuple(b) for d in dets for b in d["boxes"].tolist()}
    assert all(tuple(b) in detected for b in boxes.tolist())


def test_detector_settings_messages():
    assert detector_settings({"epochs": 3}).epochs == 3
    assert detector_settings({"anchors": [8, 16]}).anchors == (8, 16)
    with pytest.raises(ValueError, match="unknown setting"):
        detector_settings({"epoch": 3})
    with pytest.raises(ValueError, match="objects_detector"):
        load_profile("smoke", overrides={"objects_detector": {"lr_max": 1}})


def test_profile_checks_notebook_08_settings():
    p = load_profile("smoke")
    assert p.object_domains() == ["fashion", "glyphs", "omniglot"]
    assert p.scene_counts() == {"train": 160, "val": 40, "test": 80}
    assert load_profile("smoke", domains="glyphs,orl").object_domains() == ["glyphs"]
    assert load_profile("smoke", overrides={"objects_domains": ""}).object_domains() == \
        ["omniglot", "fashion", "glyphs", "orl"]
    with pytest.raises(ValueError, match="has none of the profile's domains"):
        load_profile("smoke", overrides={"objects_domains": "clipart"}).object_domains()
    with pytest.raises(ValueError, match="three positive integers"):
        load_profile("smoke", overrides={"objects_scenes": "10,10"})
    with pytest.raises(ValueError, match="objects_ks must be positive integers"):
        load_profile("smoke", overrides={"objects_ks": "0"})


# ----------------------------------------------------------------------------- the guided student

@pytest.mark.parametrize("method", ["embedding_mse", "kl"])
def test_guided_student_loss_is_zero_at_the_teacher(method, domains):
    rng = np.random.default_rng(0)
    n = len(domains["a"].train)
    targets = {"a": rng.normal(size=(n, 8)).astype(np.float32)}
    student = GuidedStudent(load_profile("smoke"), method, targets, roi={"stage": 6})
    student.check({"a": domains["a"]})
    student.prepare(Setup({"a": domains["a"]}, 8, 4, torch.device("cpu"), 0, "recall@1",
                          evaluate=None))
    idx = torch.tensor([0, 3, 5, 7])
    batch = Batch("a", idx, torch.zeros(4), torch.tensor([0, 0, 1, 1]))
    same = torch.from_numpy(targets["a"][idx.numpy()])
    assert student.loss(batch, same).item() == pytest.approx(0.0, abs=1e-6)
    assert student.loss(batch, torch.randn(4, 8)).item() > 1e-3
    with pytest.raises(ValueError, match="3 teacher embeddings for 16 training objects"):
        GuidedStudent(load_profile("smoke"), method, {"a": targets["a"][:3]}, {}).check(
            {"a": domains["a"]})


def test_guided_student_fingerprint_follows_the_targets(domains):
    p = load_profile("smoke")
    t = np.ones((len(domains["a"].train), 4), np.float32)
    a = GuidedStudent(p, "kl", {"a": t}, {"stage": 6}).config()
    assert a == GuidedStudent(p, "kl", {"a": t.copy()}, {"stage": 6}).config()
    assert a != GuidedStudent(p, "kl", {"a": t * 2}, {"stage": 6}).config()
    assert a != GuidedStudent(p, "kl", {"a": t}, {"stage": 5}).config()
    assert "measures" not in a  # the unmeasured students keep the key they were trained under


def test_a_measured_student_starts_from_its_init_and_says_so_in_its_key(domains):
    import dataclasses

    from ue_lib import distributed
    from ue_lib.config import ModelSettings
    from ue_lib.models import build_model
    from ue_lib.training.loop import _Trainer
    from ue_lib.training.store import TrainJob

    p = load_profile("smoke")
    init = build_model(ModelSettings.part_of(p), seed=7)
    width = init.head[0].in_features  # a head on cached trunk features: give the items some
    rng = np.random.default_rng(0)
    d = {"a": dataclasses.replace(domains["a"], **{
        k: dataclasses.replace(v, features=rng.normal(size=(len(v), width, 1, 1)).astype(np.float32))
        for k, v in domains["a"].splits.items()})}
    t = {"a": np.ones((len(domains["a"].train), p.embedding_dim), np.float32)}
    measured = GuidedStudent(p, "kl", t, {"stage": 6}, ("init",), init)
    assert measured.folder == "guided-kl+init"
    config = measured.config()
    assert config["measures"] == ["init"] and config["init"] != GuidedStudent(
        p, "kl", t, {"stage": 6}, ("init",), build_model(ModelSettings.part_of(p), seed=8)).config()["init"]
    trainer = _Trainer(TrainJob(d, measured, seed=0), distributed.DistContext())
    for name, value in init.state_dict().items():  # the network starts as the given one ...
        assert torch.equal(trainer.model.state_dict()[name], value)
    plain = _Trainer(TrainJob(d, GuidedStudent(p, "kl", t, {"stage": 6}), seed=0), distributed.DistContext())
    assert not all(torch.equal(plain.model.state_dict()[n], v)  # ... and an unmeasured one does not
                   for n, v in init.state_dict().items())
    with pytest.raises(ValueError, match="exactly when 'init' is measured"):
        GuidedStudent(p, "kl", t, {"stage": 6}, ("clean",), init)
    assert GuidedStudent(p, "kl", t, {"stage": 6}, ("clean", "init"), init).folder == "guided-kl+clean+init"


def test_student_measures_are_parsed_named_and_checked():
    from ue_lib.objects.settings import condition_name, is_measured, student_measures

    assert student_measures("kl+clean, kl+clean+init", ["kl"]) == [("kl", ("clean",)),
                                                                  ("kl", ("clean", "init"))]
    assert student_measures("", ["kl"]) == []
    for bad in ("mse+clean", "kl", "kl+more"):
        with pytest.raises(ValueError, match="objects_student_measures"):
            student_measures(bad, ["kl", "embedding_mse"])
    assert load_profile("smoke").student_measures() == [("kl", ("clean",)), ("kl", ("init",))]
    with pytest.raises(ValueError, match="'embedding_mse\\+init' must be a guide"):
        load_profile("smoke", overrides={"objects_guides": "kl",
                                         "objects_student_measures": "embedding_mse+init"})
    assert condition_name("student_kl+clean") == "(v) student, kl guide, + clean items"
    assert condition_name("student_kl+clean+init") == \
        "(v) student, kl guide, + clean items, from the universal head"
    assert is_measured("student_kl+init") and not is_measured("student_kl")
    assert not is_measured("teacher_crop")


def test_clean_items_join_the_students_training_objects_with_their_targets(monkeypatch):
    import dataclasses
    from types import SimpleNamespace

    from ue_lib.objects import experiments

    source = rgb_domain("a", seed=3)  # 16 training items of 20 px
    m = len(source.train)
    source = dataclasses.replace(source, train=dataclasses.replace(
        source.train, features=np.arange(m * 5, dtype=np.float32).reshape(m, 5, 1, 1)))
    scenes = make_scenes({"a": source}, scenes_per_split={"train": 4, "val": 2, "test": 2}, seed=0,
                         canvas=64, scale=(16, 32))
    n = {k: len(v.domain) for k, v in scenes.items()}
    roi = {k: torch.full((n[k], 5), -1.0) for k in scenes}
    crop = {k: np.zeros((n[k], 3, 64, 64), np.uint8) for k in scenes}
    teacher = {"train": np.full((n["train"], 2), 9.0, np.float32)}
    run = SimpleNamespace(names=["a"], source={"a": source}, scenes=scenes, roi=roi, crop=crop,
                          teacher=teacher, folder=None, seed=0)

    class Double(torch.nn.Module):  # the "specialist": its embedding is the features' first two, doubled
        def forward(self, x):
            return 2 * x.flatten(1)[:, :2]

    monkeypatch.setattr(experiments.universal, "specialist",
                        lambda folder, name, seed: SimpleNamespace(model=Double()))
    plain, clean = experiments._object_domain(run, 0), experiments._object_domain(run, 0, clean=True)
    assert len(clean.train) == len(plain.train) + m and len(clean.val) == len(plain.val)
    assert np.array_equal(clean.train.labels[-m:], source.train.labels)
    assert np.array_equal(clean.train.features[-m:], source.train.features)
    assert clean.train.images.shape[1:] == (3, 64, 64)
    targets = experiments._targets(run, 0, clean=True)
    assert len(targets) == len(clean.train)
    assert np.all(targets[:n["train"]] == 9.0)  # the scene objects' teacher embeddings first ...
    assert np.allclose(targets[n["train"]:], 2 * source.train.features[:, :2, 0, 0])  # ... then the items'
    assert np.array_equal(experiments._targets(run, 0), teacher["train"])


# ----------------------------------------------------------------------------- retrieval

def test_max_pair_similarity_against_brute_force():
    rng = np.random.default_rng(1)
    q, g = rng.normal(size=(7, 5)), rng.normal(size=(9, 5))
    qo, go = np.array([0, 0, 1, 2, 2, 2, 3]), np.array([0, 1, 1, 2, 3, 3, 3, 4, 4])
    qg, gg = rng.integers(0, 2, 7), rng.integers(0, 2, 9)
    cos = (q / np.linalg.norm(q, axis=1, keepdims=True)) @ (g / np.linalg.norm(g, axis=1, keepdims=True)).T
    for groups in (False, True):
        got = max_pair_similarity(q, qo, 4, g, go, 5, *((qg, gg) if groups else (None, None)))
        for a in range(4):
            for b in range(5):
                pairs = [cos[i, j] for i in np.flatnonzero(qo == a) for j in np.flatnonzero(go == b)
                         if not groups or qg[i] == gg[j]]
                assert got[a, b] == pytest.approx(max(pairs, default=-np.inf))


def test_source_recall_by_hand():
    sims = np.array([[0.9, 0.8, 0.5, 0.7],   # host 0 first; donor 3 behind 1 (host 0 left out)
                     [0.1, 0.2, 0.3, 0.3]])  # host 2 ties with 3: index order, 2 first
    sources = np.array([[0, 3], [2, 3]])
    out = source_recall(sims, sources, ks=(1, 2))
    # query 0: host rank 0; donor: above it only 1 (0 is the other source) -> rank 1
    # query 1: host 2 rank 0 (3 is the other source); donor 3: 2 is left out, so rank 0
    assert out["host_recall@1"] == 1.0 and out["donor_recall@1"] == 0.5
    assert out["recall@1"] == 0.75 and out["recall@2"] == 1.0


def test_gallery_metrics_with_exclusions_equal_dropping_the_items():
    rng = np.random.default_rng(2)
    q, g = rng.normal(size=(6, 4)), rng.normal(size=(15, 4))
    qy, gy = rng.integers(0, 3, 6), rng.integers(0, 3, 15)
    exclude = rng.random((6, 15)) < 0.3
    got = query_gallery_metrics(q, qy, g, gy, (1, 3), exclude)
    per = []
    for i in range(6):
        keep = ~exclude[i]
        if np.any(gy[keep] == qy[i]):
            per.append(query_gallery_metrics(q[i:i + 1], qy[i:i + 1], g[keep], gy[keep], (1, 3)))
    for key in got:
        assert got[key] == pytest.approx(np.mean([m[key] for m in per]))
    with pytest.raises(ValueError, match=r"exclude must be a bool array of shape \(6, 15\)"):
        query_gallery_metrics(q, qy, g, gy, (1,), exclude[:, :3])


def test_exclusions_by_hand():
    q = np.array([[1.0, 0.0]])
    g = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.5, 0.5]])
    # the identical gallery item is excluded (e.g. the query's own source item): the ranking
    # is 1 (class 1), 3, 2 (class 0), R = 2, AP@R = (0 + 1/2) / 2
    out = query_gallery_metrics(q, [0], g, [0, 1, 0, 0], (1, 2),
                                np.array([[True, False, False, False]]))
    assert out["recall@1"] == 0.0 and out["recall@2"] == 1.0 and out["map@r"] == 0.25


# ----------------------------------------------------------------------------- crops and splices

def test_crops_cut_the_boxes(scenes):
    test = scenes["test"]
    cut = crops(test, size=20)
    assert cut.shape == (test.num_objects, 3, 20, 20) and cut.dtype == np.uint8
    row = int(np.argmax(test.box[:, 2] - test.box[:, 0] == 20)) if np.any(
        test.box[:, 2] - test.box[:, 0] == 20) else None
    if row is not None:  # a box of the crop's size is cut as it is
        assert np.array_equal(cut[row], test.crop(row))
    assert len(scene_boxes(test)) == len(test)


def test_splice_is_seeded_and_pastes_the_donor(scenes, domains):
    test = scenes["test"]
    a, b = splice(test, domains, 10, seed=1), splice(test, domains, 10, seed=1)
    assert np.array_equal(a.images, b.images) and np.array_equal(a.sources, b.sources)
    assert np.all(a.sources[:, 0] != a.sources[:, 1])
    for i, (host, _) in enumerate(a.sources):
        n_host = len(test.objects_of(int(host)))
        assert len(a.boxes[i]) == n_host + 1  # the host's objects and the donor
        x1, y1, x2, y2 = a.boxes[i][-1].astype(int)
        outside = np.ones(a.images.shape[-2:], dtype=bool)
        outside[y1:y2, x1:x2] = False
        assert np.array_equal(a.images[i][:, outside], test.images[host][:, outside])
    assert not np.array_equal(splice(test, domains, 10, seed=2).sources, a.sources)


def test_detector_forward_shapes():
    det = ObjectDetector(4, DetectorSettings(neck=8, anchors=(16,)))
    maps, boxes = _square_maps(2, 1)
    det.train()
    losses = det(maps, 64, [{"boxes": b, "labels": torch.ones(1, dtype=torch.int64)} for b in boxes])
    assert set(losses) == {"loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg"}
    feats = det.features(maps, boxes, 64, output_size=2)
    assert feats.shape == (2, 8)


# ----------------------------------------------------------------------------- report

def _rows() -> pd.DataFrame:
    rows = []
    for seed in (0, 1, 2):
        for domain, base in (("a", 0.2), ("b", 0.4)):
            for method, gain in (("global", 0.0), ("roi_detected", 0.1), ("roi_oracle", 0.1),
                                 ("teacher_crop", 0.2), ("student_kl", 0.2 + 0.001 * seed),
                                 ("detector_features", -0.05), ("trunk_features", 0.1)):
                for metric in ("recall@1", "map@r"):
                    rows.append(dict(model="objects", method=method, domain=domain, metric=metric,
                                     value=base + gain + 0.01 * seed, seed=seed))
        for method, value in (("global", 0.3), ("roi_detected", 0.5)):
            for metric in ("recall@1", "donor_recall@1"):
                rows.append(dict(model="spliced", method=method, domain="all", metric=metric,
                                 value=value + 0.01 * seed, seed=seed))
        for method, ms in (("scene_maps", 10.0), ("detector", 2.0), ("teacher_crop", 12.0 + seed),
                           ("student_kl", 1.0)):
            rows.append(dict(model="cost", method=method, domain="all", metric="ms_per_image",
                             value=ms, seed=seed))
    return pd.DataFrame(rows).assign(notebook="08", split="test", epoch=0)


def test_object_report_functions_by_hand():
    from ue_lib.objects import verdicts as objects_verdicts

    rows = _rows()
    table = objects_verdicts.object_table(rows, "objects", ["recall@1"])
    # global: mean over domains 0.3 (+0.01 per seed) -> 0.310 ± 0.010
    assert table.loc["(i) whole scene", "recall@1"] == "0.310 ± 0.010"
    assert list(table.index)[:2] == ["(i) whole scene", "(iii) box-pooled, detected box"]
    costs = objects_verdicts.pipeline_costs(rows)
    assert costs.loc["(iv) teacher on crops", "total ms"] == "25 ± 1.0"  # 2 significant digits
    assert costs.loc["(v) student, kl guide", "total_mean"] == 13.0
    points = objects_verdicts.tradeoff_points(rows).set_index("method")
    assert points.loc["student_kl", "ms"] == 13.0 and points.loc["teacher_crop", "ms_std"] == 1.0
    assert points.loc["student_kl", "condition"] == "(v) student, kl guide"
    assert points.loc["teacher_crop", "value"] == pytest.approx(0.51)
    findings = objects_verdicts.object_findings(rows, ["recall@1", "map@r"], ["recall@1", "donor_recall@1"])
    verdicts = findings.verdict.to_dict()
    assert verdicts["1. a detector's features retrieve worse than a classification network's"] == "holds"
    assert verdicts["2. a detected box is hard attention: pooled in it beats the global embedding"] == "holds"
    assert verdicts["3. the guided student (kl guide) is at least as good as its teacher"] == "holds"  # a tie
    assert verdicts["4. max over object pairs finds spliced sources better than the global embedding"] \
        == "holds"
    assert findings.loc["2'. the same with oracle boxes", "compared"] == \
        "(ii) box-pooled, true box vs (i) whole scene: recall@1 2–0 of 2, map@r 2–0 of 2"
    text = objects_verdicts.findings_markdown(findings)
    assert "positive on every seed" in text and text.count("\n- ") == len(findings)
    sentence = objects_verdicts.cost_sentence(costs, rows)
    assert "1.9× faster than the teacher" in sentence and "recall@1 0.511 against 0.510" in sentence


def test_floor_note_names_the_domains_no_condition_lifts_off_zero():
    from ue_lib.objects import verdicts as objects_verdicts

    rows = _rows()  # domain a: 0.15 to 0.41, b: 0.35 to 0.61 (+0.01 per seed)
    assert objects_verdicts.floor_note(rows) == ""
    low = rows.assign(value=np.where(rows.domain == "a", rows.value / 10, rows.value))
    # a's best: the teacher (and the kl student, 0.001 per seed higher): (0.4 + 0.01 × seed) / 10
    assert objects_verdicts.floor_note(low) == (
        "**At the floor:** no condition reaches recall@1 0.100 on a (best: (v) student, kl guide, "
        "0.041). There every condition is near zero, so the comparisons come out as ties and the "
        "findings' win counts are decided by the other 1 domain.")
    assert objects_verdicts.floor_note(rows, "clean") == ""


def test_findings_say_when_a_finding_does_not_hold():
    from ue_lib.objects import verdicts as objects_verdicts

    rows = _rows()
    flip = (rows.method == "detector_features") & (rows.model == "objects")
    rows.loc[flip, "value"] += 0.5  # the detector's features now retrieve best
    findings = objects_verdicts.object_findings(rows, ["recall@1", "map@r"], ["recall@1"])
    assert findings.verdict.iloc[0] == "does not hold: (vi) detector's features favoured"


def test_trunk_against_head_separates_the_shift_from_the_heads_quality():
    from ue_lib.objects import verdicts as objects_verdicts

    def rows(clean_gap: float, object_gap: float) -> pd.DataFrame:
        out = []
        for seed in (0, 1, 2):
            for task, gap in (("clean", clean_gap), ("objects", object_gap)):
                for domain in ("a", "b"):
                    out += [dict(model=task, method="trunk_features", domain=domain,
                                 metric="recall@1", value=0.5 + 0.01 * seed, seed=seed),
                            dict(model=task, method="roi_oracle", domain=domain, metric="recall@1",
                                 value=0.5 + 0.01 * seed + gap, seed=seed)]
        return pd.DataFrame(out)

    text = objects_verdicts.trunk_vs_head(rows(0.05, -0.02))
    assert ("(ii) box-pooled, true box minus (ref.) trunk's features, no head, recall@1, mean over "
            "domains: on clean items +0.050 (win), on objects in scenes -0.020 (loss).") in text
    assert "the shift from clean items to scene crops" in text
    text = objects_verdicts.trunk_vs_head(rows(-0.03, -0.02))
    assert "on clean items -0.030 (loss)" in text and "not ahead even on clean items" in text
    assert "no lead to explain" in objects_verdicts.trunk_vs_head(rows(0.0, 0.05))
    assert "did not both run" in objects_verdicts.trunk_vs_head(rows(0.05, 0.0).query("model == 'objects'"))


def test_the_answer_of_notebook_08_in_both_directions():
    from ue_lib.objects import verdicts as objects_verdicts

    rows = _rows()
    findings = objects_verdicts.object_findings(rows, ["recall@1", "map@r"], ["recall@1"])
    text = objects_verdicts.answer(findings, objects_verdicts.pipeline_costs(rows))
    assert text.startswith("**Does a detected box beat the whole scene?** **Yes** (finding 2 holds).")
    # the teacher's 25 ms against the student's 13 ms per scene
    assert ("**Does the guided student (kl guide) match its teacher?** **Yes** (finding 3 holds, "
            "1.9× faster than the teacher).") in text
    assert text.endswith("The other findings: 1: holds; 2': holds; 4: not shown (neither favoured).")
    worse = rows.copy()
    worse.loc[(worse.method == "student_kl") & (worse.model == "objects"), "value"] -= 0.1
    worse.loc[(worse.method == "roi_detected") & (worse.model == "objects"), "value"] -= 0.3
    text = objects_verdicts.answer(objects_verdicts.object_findings(worse, ["recall@1", "map@r"],
                                                                    ["recall@1"]))
    assert "**No** (finding 2 does not hold: (i) whole scene favoured)." in text
    assert "match its teacher?** **No** (finding 3 does not hold: (iv) teacher on crops favoured)" in text
    assert "did not run" in objects_verdicts.answer(findings.iloc[:0])


def _measured_rows(clean_gain: float, object_gain: float) -> pd.DataFrame:
    """Teacher, the kl student and two measured kl students on two domains over three seeds:
    the measured students differ from the kl student by `object_gain` on scene objects and
    by `clean_gain` on clean items (plus 0.001 × seed, so that their gaps vary)."""
    out = []
    for seed in (0, 1, 2):
        for task, base, gain in (("objects", 0.2, object_gain), ("clean", 0.4, clean_gain)):
            for domain in ("a", "b"):
                for method, value in (("teacher_crop", base + 0.1), ("student_kl", base),
                                      ("student_kl+clean", base + gain + 0.001 * seed),
                                      ("student_kl+init", base)):
                    out.append(dict(model=task, method=method, domain=domain, metric="recall@1",
                                    value=value + 0.01 * seed, seed=seed))
    return pd.DataFrame(out)


def test_the_measured_students_margins_and_reading_in_both_directions():
    from ue_lib.objects import verdicts as objects_verdicts

    rows = _measured_rows(clean_gain=0.05, object_gain=0.0)
    table = objects_verdicts.student_margins(rows)
    assert list(table.index.get_level_values(0).unique()) == [
        "(v) student, kl guide", "(v) student, kl guide, + clean items",
        "(v) student, kl guide, from the universal head"]
    plain = table.loc[("(v) student, kl guide", "scene objects")]
    assert plain["recall@1"] == "0.210 ± 0.010" and plain["teacher's margin"] == "+0.100"
    assert plain["teacher's recall@1"] == "0.310 ± 0.010"
    assert plain["its 95% interval"] == "+0.100 to +0.100" and plain["teacher ahead?"] == "win"
    # + clean items on clean items: the teacher's 0.5 against 0.45 + 0.001 × seed, so 0.049 on average;
    # the gaps 0.05, 0.049, 0.048 have std 0.001: the interval is 0.049 ± 4.303 × 0.001 / √3
    clean = table.loc[("(v) student, kl guide, + clean items", "clean items")]
    assert clean["teacher's margin"] == "+0.049" and clean["its 95% interval"] == "+0.047 to +0.051"
    text = objects_verdicts.measures_sentence(rows)
    assert ("- **+ clean items**: recall@1 against (v) student, kl guide on scene objects +0.001 (tie), "
            "on clean items +0.051 (win); the teacher stays +0.099 ahead on scene objects (win).") in text
    assert text.endswith("**Reading.** *+ clean items* lifts the student on clean items, and no gain "
                         "on scene objects shows over 3 seeds (a gain within the rule's 0.010, or "
                         "within the spread over seeds, would not show): on objects cut from scenes "
                         "the student is held back by what their RoI features keep; neither clean "
                         "training items nor a better start changed that.")
    assert "For scale" not in text  # no rows of the universal head itself
    one = rows[rows.method != "student_kl+init"]
    assert objects_verdicts.measures_reading(one).endswith("clean training items did not change that.")
    helped = objects_verdicts.measures_reading(_measured_rows(clean_gain=0.05, object_gain=0.05))
    assert helped == ("*+ clean items* lifts the student on scene objects: it was short of clean "
                      "training items.")
    assert objects_verdicts.measures_reading(_measured_rows(0.0, 0.0)).startswith(
        "No measurement lifts the student on clean items, and no gain on scene objects shows")
    head = pd.concat([rows, rows[rows.method == "teacher_crop"].assign(method="roi_oracle")])
    assert ("- For scale, (ii) box-pooled, true box is the universal head itself, unguided: recall@1 "
            "0.310 on scene objects, 0.510 on clean items.") in objects_verdicts.measures_sentence(head)
    none = rows[~rows.method.str.contains("\\+")]
    assert objects_verdicts.measures_reading(none) == "" and objects_verdicts.student_margins(none).empty
    assert "is empty" in objects_verdicts.measures_sentence(none)
    # the measured students have their own section: the other tables and the findings leave them out
    assert set(objects_verdicts.condition_rows(rows, "objects").model) == {
        "(iv) teacher on crops", "(v) student, kl guide"}
    assert len(set(objects_verdicts.condition_rows(rows, "objects", measured=True).model)) == 4


def test_one_naming_table_names_the_conditions_in_tables_figures_and_findings():
    import matplotlib.pyplot as plt

    from ue_lib import figures
    from ue_lib.objects import figures as objects_figures
    from ue_lib.objects import verdicts as objects_verdicts
    from ue_lib.objects.settings import CONDITIONS, condition_name

    assert condition_name("student_embedding_mse") == "(v) student, MSE guide"
    assert condition_name("student_rkd_angle") == "(v) student, rkd_angle guide"
    assert condition_name("unknown") == "unknown"
    rows = _rows()
    names = {condition_name(m) for m in set(rows[rows.model == "objects"].method)}
    assert set(objects_verdicts.object_table(rows, "objects", ["recall@1"]).index) == names
    fig = figures.bars(objects_verdicts.condition_rows(rows, "objects"), "recall@1", hue="model")
    assert {t.get_text() for t in fig.axes[0].get_legend().get_texts()} == names
    plt.close(fig)
    fig = objects_figures.tradeoff_plot(objects_verdicts.tradeoff_points(rows))
    assert sorted(t.get_text() for t in fig.axes[0].texts) == ["(iv) teacher on crops",
                                                               "(v) student, kl guide"]
    plt.close(fig)
    compared = " ".join(objects_verdicts.object_findings(rows, ["recall@1"], ["recall@1"]).compared)
    assert all(name in compared for name in (CONDITIONS["global"], CONDITIONS["trunk_features"]))
    assert "roi_" not in compared and "student_" not in compared


# ----------------------------------------------------------------------------- at paper scale

def test_view_box_follows_the_evaluation_transform(tmp_path):
    from PIL import Image

    from ue_lib.data.transforms import eval_transform, view_box

    for w, h, box in ((40, 30, (6, 4, 30, 22)), (30, 50, (2, 10, 20, 44)), (64, 64, (0, 0, 64, 64))):
        im = np.zeros((h, w, 3), np.uint8)
        im[box[1]:box[3], box[0]:box[2]] = 255
        view = eval_transform(16)(Image.fromarray(im)).numpy()[0].astype(int)
        x1, y1, x2, y2 = view_box(box, w, h, 16)
        inner = view[int(np.ceil(y1)) + 1:int(y2) - 1, int(np.ceil(x1)) + 1:int(x2) - 1]
        assert inner.size and inner.min() > 200
        outside = np.ones_like(view, dtype=bool)
        outside[max(0, int(y1) - 1):int(np.ceil(y2)) + 1, max(0, int(x1) - 1):int(np.ceil(x2)) + 1] = False
        assert not outside.any() or view[outside].max() < 50
    assert np.array_equal(view_box((0, 0, 64, 64), 64, 64, 16), [0, 0, 16, 16])


def test_box_crops_cut_and_resize(tmp_path):
    from PIL import Image

    from ue_lib.data.files import BoxCrops, ImageFiles

    rng = np.random.default_rng(0)
    paths = []
    for i in range(3):
        path = tmp_path / f"{i}.png"
        Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    boxes = np.array([[2, 3, 30, 20], [0, 0, 40, 30], [10, 10, 10, 10]], np.float32)
    crops_ = BoxCrops(paths, boxes, 16)
    expected = np.asarray(Image.open(paths[0]).convert("RGB").crop((2, 3, 30, 20)).resize(
        (16, 16), Image.BILINEAR)).transpose(2, 0, 1)
    assert np.abs(crops_[0].astype(int) - expected).max() <= 2  # torchvision's antialiased resize
    assert crops_[:].shape == (3, 3, 16, 16)
    assert crops_.fingerprint() != BoxCrops(paths, boxes + 1, 16).fingerprint()
    assert crops_.fingerprint().startswith(ImageFiles(paths, 16).fingerprint())
    with pytest.raises(ValueError, match="2 boxes for 3 files"):
        BoxCrops(paths, boxes[:2], 16)


@pytest.mark.parametrize("backbone", ["resnet18", "small_cnn"])
def test_box_pooled_with_the_whole_view_is_the_embedding(backbone):
    from ue_lib.config import ModelSettings
    from ue_lib.evaluate import embed
    from ue_lib.models import build_model
    from ue_lib.objects.paper_scale import box_pooled

    settings = ModelSettings.part_of(load_profile("smoke"), backbone=backbone, weights=None,
                                     trainable_stages=-1, frozen_bn=False, channels=3, width=8)
    model = build_model(settings, seed=0).eval()
    images = np.random.default_rng(1).integers(0, 256, (5, 3, 64, 64), dtype=np.uint8)
    whole = np.tile(np.array([[0, 0, 64, 64]], np.float32), (5, 1))
    side = 2 if backbone == "resnet18" else 8  # the last map's side at 64 px
    got = box_pooled(model, images, whole, 64, output_size=side)
    assert np.allclose(got, embed(model, images), atol=1e-5)
    part = box_pooled(model, images, whole / 2, 64, output_size=side)
    assert not np.allclose(part, got, atol=1e-3)


def test_box_views_on_a_fake_cub(tmp_path, monkeypatch):
    from helpers import write_benchmarks

    from ue_lib.objects import paper_scale
    from ue_lib.objects.experiments import scenes_supported
    from ue_lib.runfolder import RunFolder
    from ue_lib.spec import RunSpec

    root = write_benchmarks(tmp_path / "data", train_classes=4, test_classes=2, per_class=3,
                            names=("cub",))
    monkeypatch.setenv("UE_DATA", str(root))
    overrides = {"domains": "cub", "image_size": 32, "backbone": "small_cnn", "weights": None,
                 "frozen_bn": False, "width": 4, "embedding_dim": 8, "p": 2, "k": 2,
                 "epochs_specialist": 1, "epochs_distill": 1, "num_workers": 0, "lazy": True,
                 "distill_tuning": {}, "objects_domains": "cub"}
    run = RunFolder.open("08_object_embeddings", RunSpec("paper", str(tmp_path / "run"), 0, "",
                                                         overrides, ""), progress=False)
    assert paper_scale.box_domains(run) == ["cub"]
    assert not scenes_supported(run.profile)[0]
    calls = []

    class Stub(torch.nn.Module):  # the COCO detector: one fixed box per image
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, images):
            calls.append(len(images))
            return [{"boxes": torch.tensor([[1.0, 1.0, 20.0, 15.0]]), "scores": torch.ones(1)}
                    for _ in images]

    monkeypatch.setattr(paper_scale, "coco_detector", lambda weights, size: Stub())
    rows = paper_scale.box_views(run)
    assert set(rows.method) == {f"{who}:{view}" for who in ("kl", "specialist")
                                for view in ("whole", "box_pooled", "crop", "detected_crop")}
    assert set(rows.domain) == {"cub"} and rows.value.between(0, 1).all()
    assert sum(calls) == 6  # the 6 test images, once


@pytest.mark.slow
def test_coco_detector_from_a_local_file(tmp_path):
    from PIL import Image
    from torchvision.models.detection import fasterrcnn_resnet50_fpn_v2

    from ue_lib.data.files import ImageFiles
    from ue_lib.objects.paper_scale import coco_detector, top_boxes

    path = tmp_path / "coco.pth"
    torch.save(fasterrcnn_resnet50_fpn_v2(weights=None, weights_backbone=None).state_dict(), path)
    det = coco_detector(str(path), 64)
    files = []
    for i in range(2):
        files.append(str(tmp_path / f"{i}.png"))
        Image.fromarray(np.full((30, 40, 3), 60 * i, np.uint8)).save(files[-1])
    boxes = top_boxes(det, ImageFiles(files, 16))
    assert boxes.shape == (2, 4) and np.all(boxes[:, 2:] <= [40, 30])
    with pytest.raises(FileNotFoundError, match="objects_coco_weights: no file"):
        coco_detector(str(tmp_path / "missing.pth"), 64)


def test_box_view_table():
    from ue_lib.objects import verdicts as objects_verdicts

    empty = objects_verdicts.box_view_table(pd.DataFrame(columns=["model", "metric"]))
    assert "no domain of this profile keeps object boxes" in empty.note.iloc[0]
    rows = pd.DataFrame([dict(model="box_views", method=m, domain=d, metric="recall@1", value=v)
                         for m, d, v in (("kl:whole", "cub", 0.5), ("kl:crop", "cub", 0.7),
                                         ("kl:whole", "cars", 0.4))])
    table = objects_verdicts.box_view_table(rows)
    assert list(table.index) == ["kl:whole", "kl:crop"] and table.loc["kl:crop", "cub"] == 0.7
    assert np.isnan(table.loc["kl:crop", "cars"])


def test_detector_table():
    from ue_lib.objects import verdicts as objects_verdicts

    rows = pd.DataFrame([dict(model=m, method="x", metric=k, value=v, seed=s)
                         for s in (0, 1) for m, k, v in (
                             ("detector", "recall@iou0.5", 0.8 + 0.1 * s),
                             ("cost", "train_seconds", 20.0 + 2 * s),
                             ("cost", "ms_per_image", 5.0))])
    table = objects_verdicts.detector_table(rows)
    assert list(table.columns) == ["recall@iou0.5", "train_seconds"]
    assert table.iloc[0].tolist() == ["0.850 ± 0.071", "21 ± 1.4"]  # seconds: 2 significant digits
    assert table.index[0] == "mean ± std over 2 seeds"


def test_scene_sections_say_once_why_a_profile_has_no_scenes(monkeypatch):
    from types import SimpleNamespace

    from ue_lib.objects import sections

    shown = []
    monkeypatch.setattr(sections, "_display", lambda *items: shown.extend(items))
    run = SimpleNamespace(profile=load_profile("paper"), results=lambda: pd.DataFrame(),
                          show=lambda fig, name: shown.append(name))
    scene = sections.SceneSections(run)
    assert not scene.supported and len(shown) == 1
    assert "does not run in this profile" in shown[0].data and "resnet50" in shown[0].data
    for section in ("scenes", "experiment", "detector", "objects", "gallery", "clean", "spliced",
                    "costs", "measured"):
        getattr(scene, section)()
    assert len(shown) == 1  # every section of the scene experiment stays empty
    scene.findings()
    assert "did not run" in shown[-1].data and len(shown) == 2
