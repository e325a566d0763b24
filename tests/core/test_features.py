"""The frozen-trunk path: trunk outputs cached once per image, and training on them equals
training the same network on the images."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import blob_domain

from ue_lib.config import ModelSettings
from ue_lib.evaluate import embed, model_inputs
from ue_lib.features import FeatureStore, attach_features
from ue_lib.models import FeatureEmbeddingNet, TrunkAndRest, build_model, build_trunk, trunk_key
from ue_lib.profiles import Profile
from ue_lib.training import TrainJob, train
from ue_lib.universal.objectives import Distillation, NaiveFusion, Specialist

# a randomly initialised Lite0 (no download, no package needed) on 16-px blobs, last stage trained
SPLIT = Profile(backbone="efficientnet_lite0", weights=None, channels=1, embedding_dim=8,
                head_hidden=16, trainable_stages=1, frozen_bn=True, p=3, k=2, eval_batch_size=64,
                epochs_specialist=2, epochs_naive=2, epochs_distill=2, lr=1e-3)


class Boom(torch.nn.Module):
    def forward(self, x):
        raise AssertionError("the trunk ran although its outputs were cached")


def _domains():
    return {"a": blob_domain("a", seed=0), "b": blob_domain("b", n_classes=14, seed=1)}


def test_the_store_computes_each_image_once_and_reuses_it_from_disk(tmp_path):
    settings = ModelSettings.part_of(SPLIT)
    trunk, key = build_trunk(settings), trunk_key(settings, 16)
    assert key == "efficientnet_lite0-None-frozen8-16px-c1"
    d = blob_domain("a")
    store = FeatureStore(tmp_path)
    first = store.features(trunk, key, "a", d.train.images)
    assert first.shape == (len(d.train), 320, 1, 1) and first.dtype == np.float32
    np.testing.assert_array_equal(first, embed(trunk, d.train.images, flatten=False))
    # a new store (another process) reads the file; a subset (another seed's split) too
    again = FeatureStore(tmp_path).features(Boom(), key, "a", d.train.images[::-1])
    np.testing.assert_array_equal(again, first[::-1])
    assert [p.name for p in tmp_path.iterdir()] == [f"a-{key}.npz"]  # no temporary files left
    # images never seen are computed and appended
    both = np.concatenate([d.train.images, d.val.images])
    np.testing.assert_array_equal(store.features(trunk, key, "a", both)[: len(first)], first)


def test_attached_features_feed_the_models_that_take_them(tmp_path):
    domains = attach_features(_domains(), FeatureStore(tmp_path), build_trunk(ModelSettings.part_of(SPLIT)),
                              "k")
    model = build_model(ModelSettings.part_of(SPLIT))
    assert isinstance(model, FeatureEmbeddingNet) and model.takes_features
    assert model_inputs(model, domains["a"].test) is domains["a"].test.features
    assert model_inputs(build_model(ModelSettings.part_of(Profile())), domains["a"].test) is \
        domains["a"].test.images
    with pytest.raises(ValueError, match="cached trunk features, but the split has none"):
        model_inputs(model, blob_domain("a").test)


def test_the_cached_path_equals_the_uncached_one(tmp_path):
    """Same seed: the network trained on cached trunk outputs and the same network trained on
    the images (trunk run every batch) give the same curves and the same embeddings."""
    # ImageNet weights: a random trunk maps these 16-px blobs to one and the same feature vector,
    # and the students would have nothing to learn (the training loop stops such a run)
    split = SPLIT.replace(weights="imagenet")
    cached_domains = attach_features(_domains(), FeatureStore(tmp_path),
                                     build_trunk(ModelSettings.part_of(split)), "k")
    uncached = split.replace(cache_features=False)
    assert isinstance(build_model(ModelSettings.part_of(uncached)), TrunkAndRest)
    teachers = {}
    for profile, domains in ((split, cached_domains), (uncached, _domains())):
        spec = {n: train(TrainJob({n: d}, Specialist(profile)), progress=False) for n, d in domains.items()}
        naive = train(TrainJob(domains, NaiveFusion(profile)), progress=False)
        student = train(TrainJob(domains, Distillation(profile, "kl", {n: r.model for n, r in spec.items()})),
                        progress=False)
        emb = embed(student.model, model_inputs(student.model, domains["b"].test))
        teachers[profile.cache_features] = (naive.history, student.history, emb)
    (h1, s1, e1), (h2, s2, e2) = teachers[True], teachers[False]
    for a, b in ((h1, h2), (s1, s2)):
        pd.testing.assert_frame_equal(a.drop(columns="value"), b.drop(columns="value"))
        np.testing.assert_allclose(a.value, b.value, atol=1e-4)
    np.testing.assert_allclose(e1, e2, atol=1e-4)
