"""Training, for every model: the objective interface (:mod:`.objective`), what a model is and
where it is kept (:mod:`.store`), and the loop (:mod:`.loop`)."""

from .loop import LearnedNothing, Selection, cpu_threads, deterministic_algorithms, train
from .objective import Batch, MetricLearning, Objective, Setup, seeded_metric_loss
from .store import CHECKPOINT, FINAL, HISTORY, ModelStore, TrainJob, TrainResult, load_result

__all__ = ["CHECKPOINT", "FINAL", "HISTORY", "Batch", "LearnedNothing",
           "MetricLearning", "ModelStore", "Objective",
           "Selection", "Setup", "TrainJob", "TrainResult", "cpu_threads",
           "deterministic_algorithms", "load_result", "seeded_metric_loss", "train"]
