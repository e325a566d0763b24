"""`ue_lib.timing`: the in-process sampler's categories and FLOP counts, on hand-made stacks."""

from __future__ import annotations

import json

import pytest
import torch

from ue_lib import timing

LOOP = ("/x/ue_lib/training/loop.py", "train_epoch")
TRAIN = ("/x/ue_lib/training/loop.py", "_train")
CELL = ("<ipython-input-3>", "<module>")


@pytest.mark.parametrize("innermost, category", [
    (("/v/torch/autograd/graph.py", "_engine_run_backward"), "training: backward"),
    (("/v/torch/optim/adam.py", "_multi_tensor_adam"), "training: optimiser"),
    (("/x/ue_lib/losses/metric.py", "forward"), "training: loss"),
    (("/x/ue_lib/universal/objectives.py", "loss"), "training: loss"),
    (("/v/torch/nn/modules/linear.py", "forward"), "training: forward"),
    (("/x/ue_lib/samplers.py", "__iter__"), "training: other"),
    (("/x/ue_lib/evaluate/search.py", "_search_sorted"), "evaluation"),  # evaluated between epochs
])
def test_a_training_stack_is_split_by_its_innermost_work(innermost, category):
    stack = [innermost, ("/v/torch/nn/modules/module.py", "_call_impl"), LOOP, TRAIN, CELL]
    if category == "training: other":  # batches drawn: no module, loss or optimiser on the stack
        stack = [innermost, LOOP, TRAIN, CELL]
    if category == "evaluation":
        stack = [innermost, ("/x/ue_lib/evaluate/inference.py", "evaluate_domains"),
                 ("/x/ue_lib/training/loop.py", "after_epoch"), TRAIN, CELL]
    assert timing.classify(stack) == category


def test_the_other_categories_and_a_waiting_thread():
    assert timing.classify([("<frozen importlib._bootstrap>", "_find_and_load"), CELL]) \
        == "start-up and imports"
    # the trunk's pass that fills the feature cache embeds, but it is data preparation
    assert timing.classify([("/x/ue_lib/evaluate/inference.py", "embed"),
                            ("/x/ue_lib/features.py", "features"), CELL]) == "data"
    assert timing.classify([("/v/faiss/class_wrappers.py", "replacement_train"),
                            ("/x/ue_lib/opqn/indexes.py", "faiss_index"), CELL]) \
        == "index building and search"
    assert timing.classify([("/v/matplotlib/figure.py", "savefig"), CELL]) == "figures"
    assert timing.classify([("/x/ue_lib/data/glyphs.py", "render_char"), CELL]) == "data"
    assert timing.classify([CELL]) == "other"
    assert timing.classify([("/usr/lib/python3.11/threading.py", "wait"), CELL]) is None
    assert timing.classify([]) is None


def test_a_profiler_adds_each_sample_to_its_category_and_writes_its_record(tmp_path):
    prof = timing.Profiler(tmp_path, "06_x", interval=0.01)
    for _ in range(3):
        prof.sample([("/v/torch/optim/sgd.py", "step"), LOOP], 0.01)
    prof.sample([("/usr/lib/python3.11/threading.py", "wait")], 0.5)
    prof.add_flops("training", 2e9)
    prof.add_flops("training", 1e9)
    prof.write()
    (path,) = tmp_path.glob("06_x.*.json")
    rec = json.loads(path.read_text())
    assert rec["tag"] == "06_x" and rec["waiting"] == 0.5
    assert rec["seconds"]["training: optimiser"] == pytest.approx(0.03)
    assert rec["flops"] == {"training": 3e9}
    assert rec["seconds"]["start-up and imports"] >= 0.0


def test_flops_of_a_linear_layer_and_their_kind(monkeypatch, tmp_path):
    layer = torch.nn.Linear(8, 4, bias=False)
    out, flops = timing.count_flops(layer, torch.ones(5, 8))
    assert out.shape == (5, 4) and flops == 2 * 5 * 8 * 4
    prof = timing.Profiler(tmp_path, "t")
    monkeypatch.setattr(timing, "_PROFILER", prof)
    timing.add_flops("evaluation", 10)
    with timing.counted_as("data"):
        timing.add_flops("evaluation", 5)
    assert dict(prof.flops) == {"evaluation": 10.0, "data": 5.0}


def test_nothing_is_counted_unless_profiled(monkeypatch):
    monkeypatch.setattr(timing, "_PROFILER", None)
    assert not timing.enabled()
    timing.add_flops("training", 1.0)  # no error, nothing kept


def test_models_saved_and_loaded_and_a_detectors_inference():
    saving = [("/v/torch/serialization.py", "save"), ("/x/ue_lib/training/store.py", "save_checkpoint"),
              TRAIN, CELL]
    assert timing.classify(saving) == "models saved and loaded"
    detecting = [("/v/torchvision/models/detection/roi_heads.py", "forward"), CELL]
    assert timing.classify(detecting) == "evaluation"
    assert timing.classify([("/x/ue_lib/objects/scenes.py", "compose"), CELL]) == "data"
