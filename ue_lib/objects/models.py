"""The object-embedding system's data and models in a run folder (`ue_lib.runfolder.RunFolder`):
each seed's scenes (cached), its guided students (kept with the run's models like any other) and
its detector (kept in ``models/detector/``), each made when missing and reused when present (and
made again when its file cannot be read, the damaged file moved aside)."""

from __future__ import annotations

import dataclasses
import hashlib
import time

import numpy as np
import torch

from ..config import ModelSettings
from ..data import Domain
from ..io import read_or_build, torch_save
from ..models import trunk_key
from ..training import TrainResult
from .detector import DETECTOR_VERSION, ObjectDetector, train_detector
from .objectives import GuidedStudent
from .scenes import SceneSet, cache_file, load_scenes
from .settings import detector_settings
from .trunk import scene_boxes


def object_scenes(folder, seed: int) -> dict[str, SceneSet]:
    """Notebook 08's scenes at `seed`: made from the seed's splits of `objects_domains` with
    `objects_scene_params`, cached (`ue_lib.objects.scenes.load_scenes`)."""
    p = folder.profile
    domains = folder.domains(seed)
    return load_scenes({n: domains[n] for n in p.object_domains()},
                       scenes_per_split=p.scene_counts(), seed=seed, **p.objects_scene_params)


def guided_student(folder, guide: str, targets: dict[str, np.ndarray], roi: dict,
                   domains: dict[str, Domain], seed: int, measures: tuple[str, ...] = (),
                   init=None) -> TrainResult:
    """The guided student of loss `guide` on the objects of `domains` (their RoI features),
    trained on the teacher's embeddings `targets` ({domain: (N_train, D)}); `roi` holds the
    settings that made its inputs (part of its fingerprint). A measured student names its
    `measures` and, for "init", the network it starts from (`GuidedStudent`)."""
    return folder.train(GuidedStudent(folder.profile, guide, targets, roi, measures, init), domains,
                        seed, f"seed{seed}")


def detector(folder, maps: torch.Tensor, scenes: SceneSet, roi: dict, source: dict[str, Domain],
             seed: int) -> tuple[ObjectDetector, float]:
    """`seed`'s detector (eval mode), trained on the training scenes' `maps` and boxes, and the
    seconds its training took (as it took when it was trained). Kept in
    ``models/detector/seed<seed>-<digest>.pt``, the digest of everything that makes it."""
    p = folder.profile
    settings = detector_settings(p.objects_detector)
    scenes_file = cache_file(source, p.scene_counts(), seed=seed, **p.objects_scene_params).name
    digest = hashlib.sha256(repr((DETECTOR_VERSION, roi, dataclasses.asdict(settings),
                                  trunk_key(ModelSettings.part_of(p), scenes.side), scenes_file,
                                  seed)).encode()).hexdigest()[:10]
    path = folder.models_root / "detector" / f"seed{seed}-{digest}.pt"

    def read(path) -> tuple[ObjectDetector, float]:
        saved = torch.load(path, map_location="cpu", weights_only=True)
        made = ObjectDetector(maps.shape[1], settings)
        made.load_state_dict(saved["weights"])
        return made, float(saved["seconds"])

    def make() -> tuple[ObjectDetector, float]:
        start = time.perf_counter()
        made, losses = train_detector(maps, scene_boxes(scenes), scenes.side, settings, seed)
        saved = {"weights": made.state_dict(), "losses": losses,
                 "seconds": time.perf_counter() - start}
        torch_save(saved, path)
        return made, float(saved["seconds"])

    made, seconds = read_or_build(path, read, make)  # a damaged file is moved aside, trained again
    return made.eval(), seconds
