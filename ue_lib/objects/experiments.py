"""What notebook 08 runs at one seed, in stages that pass one small state (`SeedRun`) along:

1. `prepare`: the seed's scenes; the trunk's maps of every scene, each object's RoI features and
   its crop (the teacher's input);
2. `teach`: the teacher, each object's domain specialist on its crop;
3. `train_students`: the guided students, on the training scenes' objects, and
   `measure_students`: the students of `objects_student_measures` (trained on clean items too,
   or started from the universal head);
4. `detect`: the detector (trained once and kept), its boxes on the test scenes and their quality;
5. `embed_objects` and `object_rows`: every condition's embeddings of the test objects and of a
   gallery of clean items, scored on object retrieval;
6. `spliced_rows`: spliced queries against the test scenes, image similarity = the best pair of
   objects;
7. `cost_rows`: the milliseconds per test scene of the teacher and of each student.

`object_experiment` runs every seed of `objects_seeds` (in `workers` processes); the conditions
(``method`` in results.csv) are described in `ue_lib.objects`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ..config import ModelSettings
from ..data import Domain, Split
from ..evaluate import embed, retrieval_metrics
from ..features import FeatureStore
from ..io import result_rows
from ..models import build_trunk, caches_features, lite0_backbone, trunk_key
from ..training import cpu_threads
from ..universal import models as universal
from .detector import ObjectDetector, detection_quality, match_detections
from .models import detector, guided_student, object_scenes
from .retrieval import (
    as_scenes,
    max_pair_similarity,
    object_gallery,
    object_retrieval,
    source_recall,
    splice,
    top_matches,
)
from .scenes import SceneSet, object_patch
from .trunk import SceneTrunk, crops, scene_boxes

GALLERY_CONDITIONS = ("global", "roi_detected", "teacher_crop", "student_kl")


@dataclass
class ObjectSeed:
    """What one seed of notebook 08 measured: result ``rows`` (dicts of results.csv) and small
    examples for the figures (the seed's first test scenes with their oracle and detected boxes;
    a few object queries with their top gallery items)."""

    seed: int
    rows: list[dict]
    examples: dict


@dataclass
class SeedRun:
    """The state one seed's stages pass on (see the module doc)."""

    folder: object
    seed: int
    scenes: dict[str, SceneSet]
    trunk: SceneTrunk
    source: dict[str, Domain]  # the seed's domains whose items are in the scenes, in order
    seconds: dict[str, float] = field(default_factory=dict)  # wall time of each timed step
    maps: dict[str, torch.Tensor] = field(default_factory=dict)  # per split: the scenes' maps
    roi: dict[str, torch.Tensor] = field(default_factory=dict)  # per split: objects' RoI features
    crop: dict[str, np.ndarray] = field(default_factory=dict)  # per split: objects' crops
    teacher: dict[str, np.ndarray] = field(default_factory=dict)  # per split: teacher embeddings
    embed_teacher: Callable | None = None  # (crops, their domains, cached) -> teacher embeddings
    rows: list[dict] = field(default_factory=list)  # result rows (task, condition, metric, value)

    @property
    def profile(self):
        return self.folder.profile

    @property
    def names(self) -> list[str]:
        return list(self.source)

    @property
    def test(self) -> SceneSet:
        return self.scenes["test"]

    @property
    def side(self) -> int:
        return self.test.side

    def add(self, model: str, method: str, domain: str, metrics: dict[str, float]) -> None:
        self.rows += result_rows(metrics, notebook=self.folder.notebook, model=model, method=method,
                                 domain=domain, seed=self.seed, epoch=0)


@contextlib.contextmanager
def timer(out: dict, key: str):
    """Adds the block's wall time (seconds) to ``out[key]``."""
    start = time.perf_counter()
    try:
        yield
    finally:
        out[key] = out.get(key, 0.0) + time.perf_counter() - start


def scenes_supported(profile) -> tuple[bool, str]:
    """Whether notebook 08's scene experiment runs under `profile`: it needs the frozen, cached
    EfficientNet-Lite0 trunk of `mini` and `smoke` (its heads embed the trunk's pooled
    features, which `SceneTrunk` pools in boxes). Returns (supported, why not)."""
    if profile.backbone == "efficientnet_lite0" and caches_features(profile):
        return True, ""
    return False, (f"the scene experiment needs a frozen, cached EfficientNet-Lite0 trunk "
                   f"(profiles mini and smoke); this profile trains {profile.backbone} "
                   f"{'whole' if profile.trainable_stages < 0 else 'in part'}: see the box views "
                   f"below instead")


def object_experiment(folder) -> list[ObjectSeed]:
    """Notebook 08 over `objects_seeds`: the models the seeds share are made here first (each
    seed's specialists and the tuned kl student of notebooks 02-04), then every seed runs
    `object_seed`, in `workers` processes."""
    supported, why_not = scenes_supported(folder.profile)
    if not supported:
        raise ValueError(why_not)
    seeds = folder.profile.seed_list("objects_seeds", folder.seed)
    for seed in seeds:
        universal.student(folder, "kl", seed)
        for name in folder.profile.object_domains():
            universal.specialist(folder, name, seed)
    return folder.map(object_seed, [(seed,) for seed in seeds], "seeds")


def object_seed(folder, seed: int) -> ObjectSeed:
    """Notebook 08 at one seed (the stages of the module doc). Models come from the run folder
    (the specialists and the kl student of notebooks 02-04 are loaded, trained when missing).
    Runs on the profile's `threads` (so the numbers are the same in a worker process and here,
    and two workers do not compete for the cores)."""
    with cpu_threads(folder.profile.threads):
        run = prepare(folder, seed)
        teach(run)
        students = train_students(run)
        measured = measure_students(run)
        found, detections = detect(run)
        embedded = embed_objects(run, {**students, **measured}, found, detections)
        object_rows(run, embedded)
        clean_rows(run, embedded)
        spliced_rows(run, students, found, detections, embedded)
        cost_rows(run, students)
        test, first = run.test, list(range(min(6, len(run.test))))
        examples = {"images": test.images[first], "boxes": [test.box[test.objects_of(i)] for i in first],
                    "detections": [detections[i]["boxes"] for i in first],
                    "gallery": _gallery_example(run, embedded)}
        return ObjectSeed(seed, run.rows, examples)


# ----------------------------------------------------------------------------- the stages

def prepare(folder, seed: int) -> SeedRun:
    """The seed's scenes, and per split the trunk's maps of its scenes, its objects' RoI
    features (the students' input, timed as their own pass) and their crops (the teacher's)."""
    p = folder.profile
    domains = folder.domains(seed)
    source = {n: domains[n] for n in p.object_domains()}
    trunk = SceneTrunk(lite0_backbone(ModelSettings.part_of(p)), p.objects_roi_stage,
                       p.objects_roi_size, p.objects_pooling, p.objects_gem_p)
    run = SeedRun(folder, seed, object_scenes(folder, seed), trunk, source)
    for split, ss in run.scenes.items():
        with timer(run.seconds, f"maps-{split}"):
            run.maps[split] = trunk.maps(ss.images)
        with timer(run.seconds, f"student-{split}"):  # the student's own pass, timed on test
            run.roi[split] = trunk.objects(run.maps[split], scene_boxes(ss), run.side)
        with timer(run.seconds, f"teacher-{split}"):
            run.crop[split] = crops(ss, size=p.image_size)
    return run


def teach(run: SeedRun) -> None:
    """The teacher: each object's domain specialist on its crop. The training and validation
    crops' trunk features are cached by pixels, the test crops' computed (and timed) here."""
    p, folder = run.profile, run.folder
    settings = ModelSettings.part_of(p)
    store = FeatureStore(folder.features_root, p.eval_batch_size)
    full, key = build_trunk(settings), trunk_key(settings, p.image_size)
    specialists = {n: universal.specialist(folder, n, run.seed).model for n in run.names}

    def embed_teacher(split_crops: np.ndarray, domain: np.ndarray, cached: bool) -> np.ndarray:
        feats = store.features(full, key, "scene-objects", split_crops) if cached else \
            embed(full, split_crops, p.eval_batch_size, flatten=False)
        out = np.zeros((len(split_crops), p.embedding_dim), np.float32)
        for d, n in enumerate(run.names):
            if np.any(domain == d):
                out[domain == d] = embed(specialists[n], torch.from_numpy(feats[domain == d]), 512)
        return out

    run.embed_teacher = embed_teacher
    for split, ss in run.scenes.items():
        with timer(run.seconds, f"teacher-{split}"):
            run.teacher[split] = embed_teacher(run.crop[split], ss.domain, cached=split != "test")


def _roi_config(run: SeedRun) -> dict:
    """The settings that made the RoI features (in the guided students' and the detector's
    fingerprints)."""
    p = run.profile
    return {"stage": p.objects_roi_stage, "size": p.objects_roi_size, "pooling": p.objects_pooling,
            "gem_p": p.objects_gem_p, "scenes": run.scenes["train"].params, "counts": p.scene_counts()}


def _object_domain(run: SeedRun, d: int, clean: bool = False) -> Domain:
    """Domain `d`'s objects as a Domain: `images` their crops, `features` their RoI features
    (the guided student's inputs), labels their classes. With `clean`, its training split
    also holds the domain's clean training items (their own trunk features: a box covering a
    whole item gives exactly those), after the scene objects."""
    name, source = run.names[d], run.source[run.names[d]]
    splits = {}
    for split, ss in run.scenes.items():
        rows = ss.domain == d
        splits[split] = Split(run.crop[split][rows], ss.label[rows],
                              features=np.asarray(run.roi[split][rows], np.float32)[:, :, None, None])
    if clean:
        items, objects = source.train, splits["train"]
        images = crops_like(items.images, objects.images.shape[-1])
        splits["train"] = Split(np.concatenate([objects.images, images]),
                                np.concatenate([objects.labels, items.labels]),
                                features=np.concatenate([objects.features, np.asarray(
                                    items.features, np.float32).reshape(len(items), -1, 1, 1)]))
    return Domain(name, **splits, class_names=source.class_names, split_rule=source.split_rule,
                  provenance=f"objects of {name} in the scenes of ue_lib.objects.scenes",
                  license=source.license)


def crops_like(images: np.ndarray, size: int) -> np.ndarray:
    """uint8 (n, 3, size, size): clean items as the teacher's crops are (RGB, `size` px);
    unchanged when they already are."""
    if images.shape[1:] == (3, size, size):
        return np.asarray(images)
    return np.stack([object_patch(im, size).transpose(2, 0, 1) for im in images])


def _targets(run: SeedRun, d: int, clean: bool = False) -> np.ndarray:
    """The teacher's embeddings of domain `d`'s training objects, in the order of
    `_object_domain(run, d, clean)` (its clean items embedded by the specialist)."""
    train = run.scenes["train"]
    objects = run.teacher["train"][train.domain == d]
    if not clean:
        return objects
    name = run.names[d]
    feats = torch.from_numpy(np.asarray(run.source[name].train.features, np.float32))
    items = embed(universal.specialist(run.folder, name, run.seed).model, feats, 512)
    return np.concatenate([objects, items])


def train_students(run: SeedRun) -> dict[str, nn.Module]:
    """The guided students, one per loss of `objects_guides`: heads on RoI features trained to
    reproduce the teacher's embeddings of the training scenes' objects."""
    domains = {n: _object_domain(run, d) for d, n in enumerate(run.names)}
    targets = {n: _targets(run, d) for d, n in enumerate(run.names)}
    return {guide: guided_student(run.folder, guide, targets, _roi_config(run), domains, run.seed).model
            for guide in run.profile.methods("objects_guides")}


def measure_students(run: SeedRun) -> dict[str, nn.Module]:
    """The measured guided students of `objects_student_measures`, keyed ``<guide>+<measure>``:
    "clean" trains on the clean training items as well as the scene objects, "init" starts
    from the seed's universal kl head (notebook 04's) instead of random weights."""
    out = {}
    for guide, measures in run.profile.student_measures():
        clean = "clean" in measures
        domains = {n: _object_domain(run, d, clean) for d, n in enumerate(run.names)}
        targets = {n: _targets(run, d, clean) for d, n in enumerate(run.names)}
        init = universal.student(run.folder, "kl", run.seed).model if "init" in measures else None
        out["+".join([guide, *measures])] = guided_student(
            run.folder, guide, targets, _roi_config(run), domains, run.seed, measures, init).model
    return out


def detect(run: SeedRun) -> tuple[ObjectDetector, list[dict]]:
    """The detector (`ue_lib.objects.models.detector`), its detections on the test scenes
    (timed) and their quality; its training time is a row too."""
    found, train_seconds = detector(run.folder, run.maps["train"], run.scenes["train"],
                                    _roi_config(run), run.source, run.seed)
    with timer(run.seconds, "detector-test"):
        detections = found.detect(run.maps["test"], run.side)
    run.add("detector", "detector", "all", detection_quality(detections, run.test))
    run.add("cost", "detector_training", "all", {"train_seconds": train_seconds})
    return found, detections


def embed_features(model: nn.Module, features: torch.Tensor | np.ndarray) -> np.ndarray:
    """A head that takes pooled trunk features (B, C, 1, 1) on (N, C) features."""
    x = torch.as_tensor(np.asarray(features, np.float32))
    return embed(model, x[:, :, None, None] if x.ndim == 2 else x, 512)


@dataclass
class Embedded:
    """Every condition's embeddings of the test objects (`objects`) and of each domain's clean
    gallery items (`clean`, by (condition, domain index)), the clean items chosen (`items`, per
    domain index), one global embedding per test scene, and the detector's own features of the
    test objects."""

    objects: dict[str, np.ndarray]
    clean: dict[tuple[str, int], np.ndarray]
    items: dict[int, np.ndarray]
    scenes: np.ndarray
    detector_features: np.ndarray


def embed_objects(run: SeedRun, students: dict, found: ObjectDetector, detections: list[dict]
                  ) -> Embedded:
    """Every condition's embeddings of the test objects and of the clean gallery items."""
    p, test = run.profile, run.test
    universal_model = universal.student(run.folder, "kl", run.seed).model
    student_emb = {}
    for guide, model in students.items():
        with timer(run.seconds, f"student-head-{guide}"):
            student_emb[guide] = embed_features(model, run.roi["test"])
    scene_emb = embed_features(universal_model, run.trunk.whole(run.maps["test"]))  # (i), per scene
    matched, _ = match_detections(detections, test)
    detected_roi = run.trunk.objects(run.maps["test"], _per_scene(matched, test), run.side)
    rng = np.random.default_rng([run.seed, 80])
    items = {d: np.sort(rng.choice(len(run.source[n].test), min(p.objects_gallery,
                                                                 len(run.source[n].test)), replace=False))
             for d, n in enumerate(run.names)}
    det_feat = found.features(run.maps["test"], scene_boxes(test), run.side, p.objects_roi_size,
                              p.objects_pooling, p.objects_gem_p).numpy()
    objects = {"global": scene_emb[test.scene],
               "roi_oracle": embed_features(universal_model, run.roi["test"]),
               "roi_detected": embed_features(universal_model, detected_roi),
               "teacher_crop": run.teacher["test"],
               **{f"student_{g}": e for g, e in student_emb.items()},
               "detector_features": det_feat, "trunk_features": run.roi["test"].numpy()}
    clean = {(m, d): _clean_embedding(run, m, d, items[d], universal_model, students, found)
             for m in objects for d in range(len(run.names)) if np.any(test.domain == d)}
    return Embedded(objects, clean, items, scene_emb, det_feat)


def _clean_embedding(run: SeedRun, method: str, d: int, items: np.ndarray, universal_model,
                     students: dict, found: ObjectDetector) -> np.ndarray:
    """Condition `method`'s embeddings of domain `d`'s clean gallery `items` (test items whole,
    not in a scene)."""
    p, n = run.profile, run.names[d]
    feats = torch.from_numpy(np.asarray(run.source[n].test.features[items], np.float32))
    if method in ("global", "roi_oracle", "roi_detected"):
        return embed(universal_model, feats, 512)
    if method == "teacher_crop":
        return embed(universal.specialist(run.folder, n, run.seed).model, feats, 512)
    if method.startswith("student_"):
        return embed(students[method[len("student_"):]], feats, 512)
    if method == "trunk_features":
        return feats.reshape(len(feats), -1).numpy()
    item_side = run.source[n].image_shape[-1]  # a clean item is a scene of its own, boxed whole
    item_maps = run.trunk.maps(run.source[n].test.images[items])
    whole_box = [torch.tensor([[0, 0, item_side, item_side]], dtype=torch.float32)] * len(item_maps)
    return found.features(item_maps, whole_box, item_side, p.objects_roi_size, p.objects_pooling,
                          p.objects_gem_p).numpy()


def object_rows(run: SeedRun, embedded: Embedded) -> None:
    """Object retrieval per condition and domain (`object_retrieval`): Recall@K and MAP@R."""
    test, ks = run.test, run.profile.k_list("objects_ks")
    for method, q_emb in embedded.objects.items():
        for d, n in enumerate(run.names):
            if not np.any(test.domain == d):
                continue
            items = embedded.items[d]
            metrics = object_retrieval(q_emb, embedded.clean[method, d], test, d, items,
                                       run.source[n].test.labels[items], ks)
            run.add("objects", method, n, {m: v for m, v in metrics.items()
                                           if m.startswith("recall@") or m == "map@r"})


# the conditions whose embedding of a clean item differs (global and roi_detected embed it as
# roi_oracle does: the universal head on the item's own features)
CLEAN_CONDITIONS = ("roi_oracle", "teacher_crop", "trunk_features", "detector_features")


def clean_rows(run: SeedRun, embedded: Embedded) -> None:
    """Retrieval among each domain's clean gallery items alone (no scene: each item a query
    against the others, leave-one-out), for the conditions of `CLEAN_CONDITIONS` and the
    students: task "clean", Recall@K and MAP@R (a domain whose gallery sample has no two items
    of one class has none). Beside the object rows it separates how good an
    embedding is from how much it loses on objects cut from scenes."""
    ks = run.profile.k_list("objects_ks")
    methods = [m for m in embedded.objects if m in CLEAN_CONDITIONS or m.startswith("student_")]
    for method in methods:
        for d, n in enumerate(run.names):
            labels = run.source[n].test.labels[embedded.items[d]]
            if (method, d) not in embedded.clean or len(np.unique(labels)) == len(labels):
                continue  # no item shares a class with another: nothing to retrieve
            metrics = retrieval_metrics(embedded.clean[method, d], labels, ks)
            run.add("clean", method, n, {m: v for m, v in metrics.items()
                                         if m.startswith("recall@") or m == "map@r"})


def _detected_boxes(detections: list[dict], side: int) -> list[torch.Tensor]:
    """Each image's detected boxes; the whole image where nothing was detected."""
    return [torch.from_numpy(d["boxes"]) if len(d["boxes"]) else
            torch.tensor([[0, 0, side, side]], dtype=torch.float32) for d in detections]


def _owners(boxes: list) -> np.ndarray:
    """The image index of every box, for boxes listed per image."""
    return np.repeat(np.arange(len(boxes)), [len(b) for b in boxes])


def spliced_rows(run: SeedRun, students: dict, found: ObjectDetector, detections: list[dict],
                 embedded: Embedded) -> None:
    """Spliced retrieval: spliced queries against the test scenes, image similarity the best
    pair of their objects (`max_pair_similarity`), per condition (`source_recall`)."""
    p, test, side = run.profile, run.test, run.side
    universal_model = universal.student(run.folder, "kl", run.seed).model
    spliced = splice(test, run.source, p.objects_spliced, run.seed)
    s_maps = run.trunk.maps(spliced.images)
    s_boxes = [torch.from_numpy(b) for b in spliced.boxes]
    s_owner, s_group = _owners(spliced.boxes), np.concatenate(spliced.domain)
    s_roi = run.trunk.objects(s_maps, s_boxes, side)
    s_det_boxes = _detected_boxes(found.detect(s_maps, side), side)
    g_det_boxes = _detected_boxes(detections, side)
    s_crops = np.concatenate([crops(as_scenes(spliced, i, side), b, p.image_size)
                              for i, b in enumerate(spliced.boxes)])
    s_teacher = run.embed_teacher(s_crops, s_group, cached=True)
    sets = {  # (query objects, their owners, gallery objects, owners, groups or None)
        "global": (embed_features(universal_model, run.trunk.whole(s_maps)), np.arange(len(s_maps)),
                   embedded.scenes, np.arange(len(test)), None),
        "roi_oracle": (embed_features(universal_model, s_roi), s_owner,
                       embedded.objects["roi_oracle"], test.scene, None),
        "roi_detected": (embed_features(universal_model, run.trunk.objects(s_maps, s_det_boxes, side)),
                         _owners(s_det_boxes), embed_features(universal_model, run.trunk.objects(
                             run.maps["test"], g_det_boxes, side)), _owners(g_det_boxes), None),
        "teacher_crop": (s_teacher, s_owner, run.teacher["test"], test.scene, (s_group, test.domain)),
        **{f"student_{g}": (embed_features(m, s_roi), s_owner, embedded.objects[f"student_{g}"],
                            test.scene, None) for g, m in students.items()},
        "detector_features": (found.features(s_maps, s_boxes, side, p.objects_roi_size,
                                             p.objects_pooling, p.objects_gem_p).numpy(),
                              s_owner, embedded.detector_features, test.scene, None),
        "trunk_features": (s_roi.numpy(), s_owner, run.roi["test"].numpy(), test.scene, None),
    }
    for method, (qe, qo, ge, go, groups) in sets.items():
        sims = max_pair_similarity(qe, qo, len(spliced.images), ge, go, len(test),
                                   *(groups or (None, None)))
        run.add("spliced", method, "all", source_recall(sims, spliced.sources,
                                                        p.k_list("objects_ks")))


def cost_rows(run: SeedRun, students: dict) -> None:
    """Milliseconds per test scene: the shared scene pass, the detector's heads, then the
    teacher (crops + trunk + head per object) or each student (roi_align + rest + head)."""
    seconds, n_scenes = run.seconds, len(run.test)
    cost = {"scene_maps": seconds["maps-test"], "detector": seconds["detector-test"],
            "teacher_crop": seconds["teacher-test"],
            **{f"student_{g}": seconds["student-test"] + seconds[f"student-head-{g}"]
               for g in students}}
    for m, v in cost.items():
        run.add("cost", m, "all", {"ms_per_image": 1000 * v / n_scenes})


def _per_scene(boxes: np.ndarray, scenes: SceneSet) -> list[torch.Tensor]:
    """Per-object boxes (n, 4) regrouped per scene, as `roi_align` takes them."""
    return [torch.from_numpy(np.ascontiguousarray(boxes[scenes.objects_of(i)]))
            for i in range(len(scenes))]


def _gallery_example(run: SeedRun, embedded: Embedded, k: int = 5) -> dict:
    """For one query object per domain: its crop, and per condition of `GALLERY_CONDITIONS` its
    top `k` gallery images (clean items or other scenes' objects) and whether each is of the
    query's class."""
    test, object_crops = run.test, run.crop["test"]
    out = {"queries": [], "domains": [], "conditions": {}}
    picks = []
    for d, n in enumerate(run.names):
        rows, exclude = object_gallery(test, d, embedded.items[d])
        if len(rows):
            picks.append((d, n, rows, exclude))
            out["queries"].append(object_crops[rows[0]])
            out["domains"].append(n)
    for method in [m for m in GALLERY_CONDITIONS if m in embedded.objects]:
        images, correct = [], []
        for d, n, rows, exclude in picks:
            gallery = np.concatenate([embedded.clean[method, d], embedded.objects[method][rows]])
            top = top_matches(embedded.objects[method][rows[:1]], gallery, exclude[:1], k)[0]
            items = run.source[n].test.images[embedded.items[d]]
            labels = np.concatenate([run.source[n].test.labels[embedded.items[d]], test.label[rows]])
            images.append([object_patch(items[j], object_crops.shape[-1]).transpose(2, 0, 1)
                           if j < len(items) else object_crops[rows[j - len(items)]] for j in top])
            correct.append((labels[top] == test.label[rows[0]]).tolist())
        out["conditions"][method] = {"images": images, "correct": correct}
    return out


__all__ = ["GALLERY_CONDITIONS", "Embedded", "ObjectSeed", "SeedRun", "cost_rows",
           "clean_rows", "crops_like", "detect", "embed_features", "embed_objects",
           "measure_students", "object_experiment", "object_rows", "object_seed", "prepare",
           "scenes_supported", "spliced_rows", "teach", "timer", "train_students"]
