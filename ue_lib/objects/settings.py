"""The settings of the object-embedding system (notebook 08): which domains are pasted into
scenes and how many scenes, the seeds, where the trunk is split for `roi_align` and how boxes
are pooled, the guided students' losses, the detector, the galleries and the spliced queries,
and the COCO detector of the paper profile."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..config import Validated, choice, positive
from ..settings import CoreSettings, setting

POOLINGS = ("avg", "max", "gem")

# One name per condition of notebook 08, used by every table, legend and sentence (`condition_name`;
# the result rows keep the short ids in their `method` column)
CONDITIONS = {"global": "(i) whole scene", "roi_oracle": "(ii) box-pooled, true box",
              "roi_detected": "(iii) box-pooled, detected box",
              "teacher_crop": "(iv) teacher on crops",
              "detector_features": "(vi) detector's features",
              "trunk_features": "(ref.) trunk's features, no head"}
GUIDES = {"embedding_mse": "MSE", "kl": "kl"}  # a guided student's guide, as its name says it
# The measurements of a guided student (`objects_student_measures`), as their names say them:
# "clean" adds the domains' clean training items to its training objects, "init" starts it from
# the universal kl head of notebook 04 instead of random weights
MEASURES = {"clean": "+ clean items", "init": "from the universal head"}
MEASURE_LACKS = {"clean": "clean training items", "init": "a better start"}  # what each adds


def condition_name(method: str) -> str:
    """The name of a condition id of notebook 08 (`CONDITIONS`; a guided student
    ``student_<guide>`` is "(v) student, <guide> guide", and one measured as
    ``student_<guide>+<measure>[+<measure>]`` adds the measures' names of `MEASURES`); any
    other id unchanged."""
    if method in CONDITIONS:
        return CONDITIONS[method]
    if method.startswith("student_"):
        guide, *measures = method[len("student_"):].split("+")
        return ", ".join([f"(v) student, {GUIDES.get(guide, guide)} guide"] +
                         [MEASURES.get(m, m) for m in measures])
    return method


def is_measured(method: str) -> bool:
    """Whether condition id `method` is a guided student changed by a measurement
    (``student_<guide>+<measure>``), not one of the conditions every table compares."""
    return method.startswith("student_") and "+" in method


def student_measures(value: str, guides: list[str]) -> list[tuple[str, tuple[str, ...]]]:
    """`objects_student_measures` ("kl+clean,kl+init") as [(guide, measures)], checked: each
    entry a guide of `guides` and one or more names of `MEASURES`, joined by "+"."""
    out = []
    for entry in (e.strip() for e in str(value).split(",") if e.strip()):
        guide, *measures = entry.split("+")
        if guide not in guides or not measures or any(m not in MEASURES for m in measures):
            raise ValueError(f"Profile.objects_student_measures: {entry!r} must be a guide of "
                             f"objects_guides ({', '.join(guides)}) and measures of "
                             f"{', '.join(MEASURES)} joined by '+', such as 'kl+clean'")
        out.append((guide, tuple(measures)))
    return out


@dataclass(frozen=True)
class DetectorSettings(Validated):
    """The detector of notebook 08 (our construction for the CPU; `Profile.objects_detector`
    holds changes to these defaults)."""

    neck: int = 128  # channels of the trained neck (two 3x3 convolutions) on the frozen map
    anchors: tuple = (16, 32, 64)  # anchor sides, px (one feature map; square anchors)
    aspect_ratios: tuple = (1.0,)
    roi_output: int = 3  # the box head's RoIAlign side on the stride-16 map (7x7 for 112 px)
    representation: int = 128  # the box head's two fully connected layers
    rois_per_image: int = 32  # proposals sampled per training image for the box head
    epochs: int = 6
    batch: int = 16  # scenes per step
    lr: float = 1e-3
    score_threshold: float = 0.5  # detections kept above this score ...
    max_detections: int = 6  # ... at most this many per scene, after NMS at nms_threshold
    nms_threshold: float = 0.3

    def check(self) -> None:
        positive("DetectorSettings", neck=self.neck, epochs=self.epochs, batch=self.batch,
                 lr=self.lr, max_detections=self.max_detections, roi_output=self.roi_output,
                 representation=self.representation, rois_per_image=self.rois_per_image)
        if not self.anchors or min(self.anchors) <= 0:
            raise ValueError(f"DetectorSettings.anchors must be positive sides, got {self.anchors}")
        if not 0 <= self.score_threshold < 1 or not 0 < self.nms_threshold <= 1:
            raise ValueError("DetectorSettings: score_threshold must be in [0, 1) and "
                             "nms_threshold in (0, 1]")


def detector_settings(overrides: dict) -> DetectorSettings:
    """The defaults of `DetectorSettings` with `overrides` (unknown names raise, naming the valid
    ones)."""
    names = [f.name for f in dataclasses.fields(DetectorSettings)]
    unknown = [k for k in overrides if k not in names]
    if unknown:
        raise ValueError(f"Profile.objects_detector: unknown setting(s) {unknown}; valid: "
                         f"{', '.join(names)}")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
    return DetectorSettings.from_dict({**dataclasses.asdict(DetectorSettings()), **values})


@dataclass
class ObjectsSettings(CoreSettings):
    objects_domains: str = setting("", "objects", "domains whose items are pasted into scenes (those "
                                   "of them the run has; empty: all the run's domains)")
    objects_scenes: str = setting("800,200,300", "objects", "scenes in the train, val and test splits")
    objects_scene_params: dict = setting(dict, "objects", "changes to ue_lib.objects.scenes.make_scenes' "
                                         "defaults, e.g. {'canvas': 96, 'scale': (24, 48)}")
    objects_seeds: str | int | tuple | list = setting("0,1,2", "objects")
    objects_roi_stage: int = setting(6, "objects", "trunk stages run on the whole scene before "
                                     "roi_align (6: stride 16 on EfficientNet-Lite0)")
    objects_roi_size: int = setting(4, "objects", "roi_align output side (4: a 64-px item's map there)")
    objects_pooling: str = setting("avg", "objects", "pooling after the box: avg, max or gem (ours)")
    objects_gem_p: float = setting(3.0, "objects", "GeM power (objects_pooling gem)")
    objects_guides: str = setting("embedding_mse,kl", "objects", "the guided students' losses: the "
                                  "paper's MSE of normalised embeddings, the main paper's kl, ...")
    objects_student_measures: str = setting(
        "kl+clean,kl+init", "objects", "guided students measured beside the others: "
        "<guide>+clean adds the clean training items to its training objects, <guide>+init starts "
        "it from the universal kl head; empty: none")
    objects_detector: dict = setting(dict, "objects", "changes to DetectorSettings, "
                                     "e.g. {'epochs': 20, 'neck': 64}")
    objects_gallery: int = setting(300, "objects", "clean test items per domain in the object gallery")
    objects_spliced: int = setting(200, "objects", "spliced query images per seed")
    objects_ks: str = setting("1,5", "objects", "K of Recall@K in notebook 08")
    objects_coco_weights: str = setting("coco", "objects", "paper profile, notebook 08: the COCO Faster "
                                        "R-CNN (fasterrcnn_resnet50_fpn_v2): 'coco' downloads its "
                                        "weights (online), or a local .pth file")
    objects_coco_size: int = setting(800, "objects", "its input's shorter side (torchvision's min_size)")

    def check(self) -> None:
        super().check()
        self.canonical_seeds("objects_seeds")
        self._check_objects()

    def _check_objects(self) -> None:
        """Notebook 08's settings: three scene counts, the Ks, the pooling and the detector's
        settings (its domains are checked where they are used: `object_domains`)."""
        self.scene_counts()
        self.k_list("objects_ks")
        choice("Profile", "objects_pooling", self.objects_pooling, POOLINGS)
        positive("Profile", objects_roi_size=self.objects_roi_size,
                 objects_gallery=self.objects_gallery, objects_spliced=self.objects_spliced,
                 objects_gem_p=self.objects_gem_p, objects_coco_size=self.objects_coco_size)
        from ..losses import DISTILLATION_LOSSES

        for guide in self.methods("objects_guides"):
            choice("Profile", "objects_guides", guide, DISTILLATION_LOSSES)
        self.student_measures()
        detector_settings(self.objects_detector)

    def object_domains(self) -> list[str]:
        """Notebook 08's domains: those of `objects_domains` that the profile has (`--domains`
        may narrow them), or all the profile's when it is empty; ValueError when none is left."""
        wanted = self.methods("objects_domains")
        names = [d for d in wanted if d in self.domain_names] if wanted else self.domain_names
        if not names:
            raise ValueError(f"Profile.objects_domains {wanted} has none of the profile's domains "
                             f"{self.domain_names}; e.g. -p objects_domains "
                             f"{','.join(self.domain_names)}")
        return names

    def student_measures(self) -> list[tuple[str, tuple[str, ...]]]:
        """`objects_student_measures` as [(guide, measures)] (`student_measures`)."""
        return student_measures(self.objects_student_measures, self.methods("objects_guides"))

    def scene_counts(self) -> dict[str, int]:
        """`objects_scenes` as {"train": n, "val": n, "test": n}."""
        try:
            counts = [int(v) for v in str(self.objects_scenes).split(",")]
        except ValueError:
            counts = []
        if len(counts) != 3 or min(counts) < 1:
            raise ValueError(f"Profile.objects_scenes must be three positive integers (train, val, "
                             f"test scenes) like \"800,200,300\", got {self.objects_scenes!r}")
        return dict(zip(("train", "val", "test"), counts))


# What the named profiles (`ue_lib.profiles.NAMED`) change of these settings.
PROFILES: dict[str, dict] = {
    # at toy size: three domains, few scenes, a short detector training
    "smoke": dict(
        objects_domains="fashion,glyphs,omniglot", objects_scenes="160,40,80", objects_seeds="0,1",
        objects_detector={"epochs": 4}, objects_gallery=60, objects_spliced=40),
    # faces are not objects; 600 training scenes keep it within 5 minutes
    "mini": dict(objects_domains="clipart,fashion,glyphs,omniglot", objects_scenes="600,150,250"),
}
