"""`RunFolder.map`: notebooks 06-07 train and score independent models in worker processes."""

from __future__ import annotations

import os

import pytest
import torch
from helpers import folder_task

from ue_lib.runfolder import RunFolder
from ue_lib.spec import RunSpec


def _folder(tmp_path, workers: int) -> RunFolder:
    spec = RunSpec(profile="smoke", out_dir=str(tmp_path), overrides={"workers": workers,
                                                                      "backbone": "small_cnn",
                                                                      "weights": None,
                                                                      "trainable_stages": -1})
    return RunFolder(spec, "07_semantic_granularity", progress=False)


def test_map_runs_in_worker_processes_and_keeps_the_order(tmp_path):
    folder = _folder(tmp_path, 2)
    out = folder.map(folder_task, [(x,) for x in range(5)])
    assert [o[0] for o in out] == [0, 1, 4, 9, 16]  # in the order of the items
    assert {o[1] for o in out} == {"07_semantic_granularity"}  # the same run folder and notebook
    assert {o[2] for o in out} == {2}
    assert os.getpid() not in {o[3] for o in out} and len({o[3] for o in out}) <= 2
    assert {o[4] for o in out} == {torch.get_num_threads()}  # the thread settings of this process


def test_map_with_one_worker_runs_here(tmp_path):
    out = _folder(tmp_path, 1).map(folder_task, [(3,)])
    assert out[0][0] == 9 and out[0][3] == os.getpid()


def test_a_workers_error_is_raised_here(tmp_path):
    with pytest.raises(ValueError, match="task 1 failed on purpose"):
        _folder(tmp_path, 2).map(folder_task, [(0,), (1, True), (2,)])


def test_workers_must_be_positive():
    from ue_lib.profiles import Profile

    with pytest.raises(ValueError, match="workers must be >= 1"):
        Profile(workers=0)


@pytest.mark.usefixtures("data_root")
def test_models_trained_in_workers_equal_those_trained_here(tmp_path):
    """Notebook 07's ladder (two rungs, one domain, one seed) in two worker processes and in
    this one: the same rows, exactly."""
    from ue_lib.sgml import experiments

    ladder = {"bd": {"metric_loss": "binomial_deviance"},
              "sbd-b": {"metric_loss": "soft_binomial_deviance", "attribute_weight": 1.0,
                        "soft_binomial_deviance.form": "targets", "soft_binomial_deviance.gamma": 0.25}}
    rows = {}
    for workers in (1, 2):
        spec = RunSpec(profile="smoke", out_dir=str(tmp_path / str(workers)), domains="glyphs",
                       overrides={"workers": workers, "sgml_seeds": "0", "sgml_ladder": ladder,
                                  "sgml_teachers": "bd"})
        rows[workers] = experiments.ladder(RunFolder(spec, "07_semantic_granularity", progress=False))
    assert len(rows[1]) > 0 and set(rows[1].model) == {"bd", "sbd-b"}
    assert rows[1].equals(rows[2])


def test_missing_lists_only_what_is_not_trained(tmp_path):
    from helpers import blob_domain

    from ue_lib.universal.objectives import Specialist

    folder = _folder(tmp_path, 1)
    p = folder.profile.with_overrides({"epochs_specialist": 1, "p": 3, "k": 2})
    domain = blob_domain()

    def make(f, seed):
        f.train(Specialist(p), {"blobs": domain}, seed, f"blobs-seed{seed}")

    assert folder.missing(make, [(0,), (1,)]) == [(0,), (1,)]
    assert not list((tmp_path / "models").glob("*/*"))  # planning trained nothing
    make(folder, 1)
    assert folder.missing(make, [(0,), (1,)]) == [(0,)]


KILLED_PARENT = """
import sys, time
sys.path.insert(0, {tests!r})
{setup}
print("ready", flush=True)
time.sleep(600)
"""
POOL = """
from helpers import sleeping_task
import ue_lib.runfolder as rf
from ue_lib.spec import RunSpec
rf.caches_features = lambda profile: False  # no trunk features to compute first
folder = rf.RunFolder(RunSpec(profile="smoke", out_dir={out!r}, overrides={{"workers": 2}}),
                      "07_semantic_granularity", progress=False)
import threading
threading.Thread(target=folder.map, args=(sleeping_task, [({out!r},), ({out!r},)]), daemon=True).start()
while len(list(__import__("pathlib").Path({out!r}).glob("[0-9]*"))) < 2:
    time.sleep(0.2)
"""
POOL_STARTING = """
from helpers import process_tree, sleeping_task
import os
import ue_lib.runfolder as rf
from ue_lib.spec import RunSpec
rf.caches_features = lambda profile: False
folder = rf.RunFolder(RunSpec(profile="smoke", out_dir={out!r}, overrides={{"workers": 2}}),
                      "07_semantic_granularity", progress=False)
import threading
threading.Thread(target=folder.map, args=(sleeping_task, [({out!r},), ({out!r},)]), daemon=True).start()
while len(process_tree(os.getpid())) < 3:  # two workers and the resource tracker, still importing
    time.sleep(0.05)
"""
DASK = """
from ue_lib.sweep import local_cluster
cluster = local_cluster(2)
"""


@pytest.mark.parametrize("setup", [POOL, POOL_STARTING, DASK],
                         ids=["RunFolder.map", "RunFolder.map, workers still starting",
                              "ue sweep's Dask cluster"])
def test_a_killed_parents_workers_are_gone_within_10_s(tmp_path, setup):
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    from helpers import alive, process_tree

    script = KILLED_PARENT.format(tests=str(Path(__file__).parents[1]),
                                  setup=setup.format(out=str(tmp_path)))
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout.readline().strip() == "ready"
        workers = process_tree(parent.pid)
        assert len(workers) >= 2  # the two workers (and the pool's resource tracker)
    finally:
        os.kill(parent.pid, signal.SIGKILL)  # as kill -9, an OOM kill or a dead kernel would
        parent.wait()
    deadline = time.monotonic() + 10
    while any(alive(p) for p in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = [p for p in workers if alive(p)]
    for p in left:  # do not leave them to the next test
        os.kill(p, signal.SIGKILL)
    assert not left, f"{len(left)} of {len(workers)} child processes outlived their parent by 10 s"


def test_map_keeps_its_worker_processes_for_the_next_map(tmp_path):
    folder = _folder(tmp_path, 2)
    first = {o[3] for o in folder.map(folder_task, [(x,) for x in range(4)])}
    pool = folder._pool
    second = {o[3] for o in folder.map(folder_task, [(x,) for x in range(4)])}
    kept = set(pool._processes)
    assert folder._pool is pool and first | second <= kept and os.getpid() not in kept  # kept
    folder.shutdown_workers()
    third = {o[3] for o in folder.map(folder_task, [(x,) for x in range(4)])}
    assert not third & kept  # new processes after a shutdown
    folder.shutdown_workers()


@pytest.mark.usefixtures("data_root")
def test_universal_models_trained_ahead_in_workers_equal_those_trained_here(tmp_path):
    """`models.train_ahead` (notebooks 01-04): the tuned specialists and naive fusion of two
    domains, trained ahead in two worker processes and one after another here: the same
    selected epochs and test rows, exactly; the workers trained every model, this process none."""
    from ue_lib.universal import models

    out = {}
    for workers in (1, 2):
        spec = RunSpec(profile="smoke", out_dir=str(tmp_path / str(workers)), domains="orl,glyphs",
                       overrides={"workers": workers, "distill_tuning": {"lr": [0.002, 0.0006]}})
        folder = RunFolder(spec, "02_specialists", progress=False)
        trained = {**models.specialists(folder), "naive": models.naive(folder)}
        out[workers] = {name: (r.best_epoch, r.final.sort_values(["domain", "split", "metric"])
                               .reset_index(drop=True)) for name, r in trained.items()}
        if workers == 2:
            assert all(r.loaded for r in trained.values())  # found: the workers made them
            folder.shutdown_workers()
    assert out[1].keys() == out[2].keys() == {"glyphs", "orl", "naive"}
    for name in out[1]:
        assert out[1][name][0] == out[2][name][0]
        assert out[1][name][1].equals(out[2][name][1])


@pytest.mark.parametrize("workers, tasks, expected", [(2, 1, 1), (2, 2, 2), (2, 3, 3), (2, 4, 2),
                                                      (2, 9, 2), (4, 5, 5), (4, 7, 7), (4, 8, 4)])
def test_a_last_round_that_would_leave_workers_idle_gets_a_process_per_task(workers, tasks, expected):
    from ue_lib.runfolder import processes

    assert processes(workers, tasks) == expected


def test_three_tasks_on_two_workers_run_at_once(tmp_path):
    folder = _folder(tmp_path, 2)
    pids = {o[3] for o in folder.map(folder_task, [(x,) for x in range(3)])}
    assert len(pids) <= 3 and folder._pool_size == 3
    assert {o[3] for o in folder.map(folder_task, [(x,) for x in range(4)])} <= set(folder._pool._processes)
    folder.shutdown_workers()
