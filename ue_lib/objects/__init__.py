"""The object-embedding system (notebook 08): a detector as hard attention, and a guided
student-teacher.

The paper: Bor-Chun Chen, Larry S. Davis and Ser-Nam Lim, *An Analysis of Object Embeddings for
Image Retrieval* (arXiv 1905.11903, 2019); later *Efficient Object Embedding for Spliced Image
Retrieval* (CVPR 2021, with Zuxuan Wu). Its findings, from the abstracts:

1. embeddings of detection models retrieve worse than those of classification models;
2. a detector still helps as *hard attention*: pooling the feature map inside the detected box
   gives an object embedding;
3. a *guided student* (an embedding head on the detector's RoI features, trained to reproduce
   a classification network's embedding of each cropped object) costs one pass per image
   instead of one per object;
4. an image is the set of its object embeddings; two images are as similar as their most
   similar pair of objects, which finds the sources of a spliced image.

The full text could not be obtained; **our reconstruction** for the CPU, every choice a
setting of the profile (``objects_*``):

* Scenes: `scenes` (items of the domains pasted onto cluttered canvases).
* The scene network is the run's frozen ImageNet trunk (EfficientNet-Lite0), split like Faster
  R-CNN's C4 design: the first ``objects_roi_stage`` stages run once per scene (stride 16:
  a 7x7 map for a 112-px scene); `torchvision.ops.roi_align` cuts each box out of that map at
  ``objects_roi_size`` (4x4: the size of a 64-px item's map there) and the remaining stages
  run on the cut, then pool (``objects_pooling``: avg, max or GeM). A box covering a whole
  64-px item gives exactly that item's cached trunk features (tested), so an object's RoI
  feature and an image's feature live in one space.
* The heads: the run's universal model (the kl student of notebooks 03-04) embeds pooled
  features; the teacher is the object's domain specialist (notebook 02) on the crop, resized to
  the run's image size (one trunk pass per object; it is *given the object's domain*); the guided
  student is a head like theirs on the RoI features, trained with `objectives.GuidedStudent` on the
  teacher's embeddings of the training scenes' objects (guides: ``embedding_mse``, the paper's
  MSE of normalised embeddings, and ``kl``, the main paper's distribution distillation).
* The detector (`detector.ObjectDetector`): torchvision's Faster R-CNN parts (RPN, RoIAlign box head)
  on the frozen trunk's stride-16 map plus a trained neck, class-agnostic (object or not),
  trained on the training scenes' boxes. Its own features (finding 1) are its neck's map pooled
  in the box.

The conditions (``method`` in results.csv): ``global`` (i), ``roi_oracle`` (ii),
``roi_detected`` (iii), ``teacher_crop`` (iv), ``student_<guide>`` (v), ``detector_features``
(vi), and the reference ``trunk_features`` (the classification trunk's features pooled in the
box, no trained head: what finding 1 compares the detector's features with).

The role files, as in every system folder: `settings`, `objectives`, `models`, `experiments`,
`verdicts`, `figures`; here also `scenes` (the scenes), `trunk` (the split trunk and box
pooling), `detector`, `retrieval` (object and spliced retrieval) and `paper_scale` (the box views
of CUB and Cars).
"""

from ..palette import OKABE_ITO, register_colors
from ..universal import COLORS as UNIVERSAL_COLORS
from .settings import condition_name

# the colours of this system's conditions in every figure (`ue_lib.palette`), under their names
# (`settings.condition_name`)
COLORS = {condition_name(k): c for k, c in {
    "global": OKABE_ITO["grey"],               # the whole image, the baseline
    "roi_oracle": OKABE_ITO["sky blue"],
    "roi_detected": OKABE_ITO["blue"],
    "teacher_crop": OKABE_ITO["black"],        # the teacher, one pass per object
    "detector_features": OKABE_ITO["orange"],
    "trunk_features": OKABE_ITO["bluish green"],
    **{f"student_{k[len('distill:'):]}": c for k, c in UNIVERSAL_COLORS.items() if k.startswith("distill:")},
}.items()}
register_colors(COLORS)
