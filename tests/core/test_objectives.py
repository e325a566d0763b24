"""The objective interface: a new model or loss plugs into the real training loop in a few
lines (this file is the proof), and the built-in objectives keep their settings apart."""

from __future__ import annotations

import numpy as np
import torch
from helpers import blob_domain
from torch import nn

from ue_lib.profiles import Profile
from ue_lib.training import Batch, Objective, Setup, TrainJob, train
from ue_lib.universal.objectives import Distillation, NaiveFusion, Specialist

TINY = Profile(embedding_dim=8, width=8, p=3, k=2, eval_batch_size=64, epochs_naive=3)


class CentroidObjective(Objective):
    """A toy objective: pull each embedding towards a learned centroid of its class, and away
    from the other classes' centroids (softmax over cosine similarities)."""

    kind = "toy-centroids"
    epochs_setting = "epochs_naive"

    def config(self) -> dict:
        return {**super().config(), "scale": 10.0}

    def prepare(self, setup: Setup) -> None:
        g = torch.Generator().manual_seed(setup.seed)
        self.centroids = nn.Parameter(torch.randn(setup.num_classes, setup.embedding_dim, generator=g))

    def loss(self, batch: Batch, embeddings: torch.Tensor) -> torch.Tensor:
        logits = 10.0 * embeddings @ nn.functional.normalize(self.centroids, dim=1).T
        return nn.functional.cross_entropy(logits, batch.labels)


def test_a_toy_objective_trains_through_the_real_loop(tmp_path):
    domains = {"a": blob_domain("a", seed=0), "b": blob_domain("b", n_classes=14, seed=1)}
    objective = CentroidObjective(TINY)
    result = train(TrainJob(domains, objective, seed=0), out_dir=tmp_path, progress=False)
    # its own parameters were optimised with the network and saved in the checkpoint's place
    assert objective.centroids.shape == (6 + 6, 8)  # the training classes of both domains
    first, last = (result.history[(result.history.split == "train") & (result.history.epoch == e)]
                   .value.mean() for e in (1, 3))
    assert last < first  # the loss went down
    val = result.history[(result.history.split == "val") & (result.history.metric == "recall@1")]
    assert set(val.domain) == {"a", "b"} and val.value.max() > 0.5  # chance is about 1/3
    assert result.config["objective"]["kind"] == "toy-centroids"
    assert result.config["objective"]["scale"] == 10.0
    # the finished model is found again, not retrained
    again = train(TrainJob(domains, CentroidObjective(TINY), seed=0), out_dir=tmp_path, progress=False)
    assert again.loaded and again.seconds == result.seconds and again.best_epoch == result.best_epoch


def test_each_objective_names_only_its_own_settings():
    """A distillation knob retrains the students only; the specialists' and naive fusion's
    fingerprints do not name it (so a sweep over it reuses them)."""
    teachers = {"a": nn.Linear(2, 2)}
    for change in ({"kl.temperature": 0.5}, {"kl.neighbors": 4}, {"metric_weight": 0.3},
                   {"domain_schedule": "dynamic"}):
        changed = TINY.with_overrides(change)
        for objective in (Specialist, NaiveFusion):
            assert objective(TINY).config() == objective(changed).config(), (change, objective)
        assert (Distillation(TINY, "kl", teachers).config()
                != Distillation(changed, "kl", teachers).config()), change
    # a student's loss parameters are its own loss's: the others' do not reach it
    other = TINY.with_overrides({"darkrank.alpha": 5.0})
    assert Distillation(TINY, "kl", teachers).config() == Distillation(other, "kl", teachers).config()
    assert Distillation(TINY, "kl", teachers).config()["loss_params"] == {
        "temperature": 0.05, "neighbors": None, "direction": "teacher_student"}
    assert np.isclose(Distillation(TINY, "kl", teachers).config()["metric_weight"], 0.0)


class DeadObjective(CentroidObjective):
    """A loss with nothing to learn from: exactly 0.0 (times the embeddings, so it has a graph)."""

    kind = "toy-dead"

    def loss(self, batch: Batch, embeddings: torch.Tensor) -> torch.Tensor:
        return embeddings.sum() * 0.0


def test_a_loss_of_zero_on_every_batch_stops_the_training_with_a_named_error(tmp_path):
    import pytest

    from ue_lib.training import LearnedNothing

    domains = {"a": blob_domain("a", seed=0)}
    with pytest.raises(LearnedNothing, match=r"toy-dead \(toy-dead\) learned nothing: its loss was "
                                             r"0\.0 on every one of the \d+ batches of epoch 1; check "
                                             r"the batch \(-p p 3"):
        train(TrainJob(domains, DeadObjective(TINY), seed=0), out_dir=tmp_path, progress=False)
    assert not (tmp_path / "model.pt").exists()  # nothing is kept as if trained
    # one class per batch leaves multi-similarity without negatives: the loop's check catches it
    # too, were the profile's check bypassed
    one = Profile(embedding_dim=8, width=8, p=2, k=2, eval_batch_size=64, epochs_naive=1)
    object.__setattr__(one, "p", 1)
    with pytest.raises(LearnedNothing, match="multi_similarity"):
        train(TrainJob(domains, NaiveFusion(one), seed=0), out_dir=tmp_path / "ms", progress=False)
