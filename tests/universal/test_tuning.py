"""Equal tuning budgets for the distillation methods (`Profile.distill_tuning`,
`RunFolder.tuning`), on tiny synthetic domains in a real run folder (seconds)."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from helpers import blob_domain

from ue_lib import runfolder
from ue_lib.data import Domain
from ue_lib.profiles import NAMED, Profile, load_profile
from ue_lib.runfolder import RunFolder
from ue_lib.spec import RunSpec
from ue_lib.training import TrainJob, TrainResult
from ue_lib.universal import experiments, models
from ue_lib.universal import verdicts as universal_verdicts
from ue_lib.universal.models import VAL_SCORE
from ue_lib.universal.objectives import Distillation

GRID = [1e-3, 3e-3]
TINY = Profile(domains="omniglot,fashion", embedding_dim=8, width=8, p=3, k=2, eval_batch_size=64,
               epochs_specialist=2, epochs_naive=2, epochs_distill=2, threads=1, seeds="0,1",
               lr=1e-3, distill_methods="kl,distance_mse", final_methods="kl",
               ablation_grid={"kl.temperature": [0.05, 0.2]}, distill_tuning={"lr": GRID})


def _faint(name: str, seed: int, n_classes: int) -> Domain:
    """Blobs at a third of their contrast in strong noise: hard enough that the learning rate
    changes the validation score (plain blobs reach recall@1 1.0 at any)."""
    d, rng = blob_domain(name, n_classes=n_classes, seed=seed), np.random.default_rng(seed + 100)

    def faint(split):
        x = split.images * 0.3 + rng.normal(0, 40, split.images.shape)
        return dataclasses.replace(split, images=np.clip(x, 0, 255).astype(np.uint8))

    return dataclasses.replace(d, train=faint(d.train), val=faint(d.val), test=faint(d.test))


def _domains(names, seed, **_):
    return {n: _faint(n, 10 * seed + i, 14 + 2 * i) for i, n in enumerate(names)}


@pytest.fixture
def trainings(monkeypatch):
    """Blob domains instead of the real ones; every call of the training loop recorded as
    (model folder, seed, lr, seconds of this call: 0 when loaded finished)."""
    calls = []
    real = runfolder.train

    def counted(job, **kw):
        result = real(job, **kw)
        calls.append((job.objective.folder, job.seed, job.profile.lr, result.seconds, result.loaded))
        return result

    monkeypatch.setattr(runfolder, "load_domains", _domains)
    monkeypatch.setattr(runfolder, "train", counted)
    return calls


def _folder(out, **changes) -> RunFolder:
    settings = {k: v for k, v in dataclasses.asdict(TINY).items() if k != "name"}
    return RunFolder(RunSpec("smoke", str(out), overrides={**settings, **changes}), "test",
                     progress=False)


def _trained(calls, folder: str | None = None) -> list[tuple]:
    return [c for c in calls if not c[4] and (folder is None or c[0] == folder)]


def test_each_method_gets_the_same_grid_once_and_the_best_validation_point(tmp_path, trainings):
    run = _folder(tmp_path)
    tunings = {m: models.tuning(run, m) for m in ("kl", "distance_mse")}
    # the teachers, each tuned once over the grid's optimiser settings (`tune_baselines`)
    assert sorted(c[1:3] for c in _trained(trainings, "specialist")) == [(0, lr) for lr in GRID for _ in "ab"]
    for method, t in tunings.items():
        # exactly one student per grid point, all at the run's base seed
        assert sorted((c[1], c[2]) for c in _trained(trainings, f"distill-{method}")) == \
            [(0, lr) for lr in GRID]
        table = t.table
        assert list(table.lr) == GRID and list(table.epochs) == [2, 2]
        assert (table.seconds > 0).all() and (table.error == "").all()
        # the chosen point: the best mean validation recall@1 (the first on ties)
        best = int(np.argmax(table[VAL_SCORE].to_numpy()))
        assert t.chosen == {"lr": GRID[best]} and list(table.chosen) == [i == best for i in range(2)]
        assert t.profile.lr == GRID[best] and t.profile.distill_tuning == TINY.distill_tuning
        for point, (_, row) in zip(t.profile.tuning_points(), table.iterrows()):
            model = models.distill(run, method, overrides=point)  # in memory: not trained again
            val = model.final[(model.final.split == "val") & (model.final.metric == "recall@1")]
            assert np.isclose(val.value.mean(), row[VAL_SCORE])
            assert row.best_epoch == model.best_epoch
    assert any(t.table[VAL_SCORE].nunique() > 1 for t in tunings.values())  # a real choice
    n = len(_trained(trainings))
    assert models.tuning(run, "kl") is tunings["kl"]

    # the base seed's student is the chosen point's model; another seed's is trained with the
    # chosen lr (and the tuning is not run at that seed); the untuned one keeps the profile's lr
    kl = tunings["kl"]
    assert models.student(run, "kl") is models.distill(run, "kl", overrides=kl.chosen)
    assert len(_trained(trainings)) == n
    other = models.student(run, "kl", seed=1)
    teachers = {d: r.model for d, r in models.specialists(run, 1).items()}
    expected = TrainJob(run.domains(1), Distillation(kl.profile, "kl", teachers), 1)
    assert other.config == expected.config and other.config["optim"]["lr"] == kl.chosen["lr"]
    assert [c[1:3] for c in _trained(trainings)[n:] if c[0] == "distill-kl"] == [(1, kl.chosen["lr"])]
    # the untuned student (the profile's lr) is the tuning's first point: not trained again
    untuned = models.student(run, "kl", tuned=False)
    assert untuned.config["optim"]["lr"] == TINY.lr
    assert untuned is models.distill(run, "kl", overrides={"lr": GRID[0]})

    # the ablation varies one knob around the tuned student: at the profile's own value
    # (kl.temperature 0.05) it is that very student; untuned, around the profile's lr
    n = len(_trained(trainings))
    for tuned in (True, False):
        rows = experiments.ablation(run, "kl.temperature", [0.05], [0], tuned=tuned)
        same = run.rows_of("distill", "kl", models.student(run, "kl", tuned=tuned))
        assert rows.value.tolist() == same.value.tolist() and rows["kl.temperature"].eq(0.05).all()
    assert len(_trained(trainings)) == n
    experiments.ablation(run, "kl.temperature", [0.2], [0])  # another value: at the chosen lr
    assert [c[:3] for c in _trained(trainings)[n:]] == [("distill-kl", 0, kl.chosen["lr"])]

    # another kernel on the same folder loads every model: nothing is trained, same table,
    # and the recorded training seconds (not the 0 of a loaded model)
    trainings.clear()
    again = _folder(tmp_path)
    for method, t in tunings.items():
        reloaded = models.tuning(again, method)
        assert reloaded.chosen == t.chosen
        assert np.allclose(reloaded.table[VAL_SCORE], t.table[VAL_SCORE])
        assert np.allclose(reloaded.table.seconds, t.table.seconds)
    assert trainings and not _trained(trainings)
    assert [models.baseline_tuning(again, f"specialist:{d}").chosen for d in again.domains()] == \
        [models.baseline_tuning(run, f"specialist:{d}").chosen for d in run.domains()]
    seconds = again.seconds()
    assert set(seconds) == {"specialist", "distill"} and all(v > 0 for v in seconds.values())
    assert np.isclose(seconds["distill"], np.mean([s for t in tunings.values() for s in t.table.seconds]))


def test_ties_keep_the_first_point_and_a_diverged_point_is_never_chosen(tmp_path, trainings,
                                                                        monkeypatch):
    run = _folder(tmp_path, epochs_specialist=1, epochs_distill=1)
    monkeypatch.setattr(TrainResult, "split_mean", lambda *a: 0.5)  # every point ties
    assert models.tuning(run, "kl").chosen == {"lr": GRID[0]}
    real = runfolder.train

    def diverges(job, **kw):
        if job.objective.folder == "distill-distance_mse" and job.profile.lr == GRID[0]:
            raise FloatingPointError("non-finite loss (nan)")
        return real(job, **kw)

    monkeypatch.setattr(runfolder, "train", diverges)
    t = models.tuning(run, "distance_mse")
    assert t.chosen == {"lr": GRID[1]} and np.isnan(t.table[VAL_SCORE][0])
    assert "non-finite" in t.table.error[0] and "diverged" in t.describe()


def test_references_are_the_naive_model_and_the_specialists_on_test(tmp_path, trainings):
    run = _folder(tmp_path, epochs_specialist=1, epochs_naive=1)
    refs = models.references(run)
    naive = models.naive(run).final
    assert np.isclose(refs["naive"], naive[(naive.split == "test")
                                           & (naive.metric == "recall@1")].value.mean())
    own = [r.final[(r.final.split == "test") & (r.final.metric == "recall@1")].value.item()
           for r in models.specialists(run).values()]
    assert np.isclose(refs["specialist"], np.mean(own)) and set(refs) == {"naive", "specialist"}
    assert models.references(run, "map@r")["naive"] != refs["naive"]
    assert set(run.seconds()) == {"specialist", "naive"}
    with pytest.raises(ValueError, match="no test bogus"):
        models.references(run, "bogus")


def test_the_baselines_get_the_students_grid_and_their_own_choice(tmp_path, trainings):
    run = _folder(tmp_path)
    naive = models.baseline_tuning(run, "naive")
    assert list(naive.table.lr) == GRID and naive.method == "naive"
    assert sorted(c[1:3] for c in _trained(trainings, "naive")) == [(0, lr) for lr in GRID]
    best = int(np.argmax(naive.table[VAL_SCORE].to_numpy()))
    assert naive.chosen == {"lr": GRID[best]}
    # naive fusion at every seed trains with its chosen lr; the base seed's is the chosen point
    assert models.naive(run) is naive.results[best]
    assert models.naive(run, 1).config["optim"]["lr"] == GRID[best]
    for d in run.domains():
        t = models.baseline_tuning(run, f"specialist:{d}")
        assert models.specialist(run, d) is t.results[list(t.table.chosen).index(True)]
    # a student's teachers are the tuned specialists
    kl = models.student(run, "kl")
    tuned = {d: r.model for d, r in models.specialists(run).items()}
    assert kl.config == TrainJob(run.domains(), Distillation(models.tuning(run, "kl").profile, "kl",
                                                             tuned), 0).config
    # before the tuning: the profile's own lr (the grid's first point), found, not trained again
    n = len(_trained(trainings))
    before = models.untuned(run.profile)
    assert models.naive(run, profile=before) is naive.results[0]
    assert all(models.specialist(run, d, profile=before).config["optim"]["lr"] == TINY.lr
               for d in run.domains())
    assert len(_trained(trainings)) == n
    # only the optimiser's settings tune a baseline: a loss parameter means nothing to it
    p = run.profile.with_overrides({"distill_tuning": {"kl.temperature": [0.05, 0.2], "lr": GRID}})
    assert p.baseline_points() == [{"lr": GRID[0]}, {"lr": GRID[1]}]
    assert models.untuned(p).baseline_points() == [{}]
    assert p.with_overrides({"distill_tuning": {"kl.temperature": [0.05, 0.2]}}).baseline_points() == [{}]


def _point(score: float, best: int, epochs: int = 30) -> SimpleNamespace:
    history = pd.DataFrame([{"epoch": e, "domain": "blobs", "split": "val", "metric": "recall@1",
                             "value": score} for e in range(1, epochs + 1)])
    return SimpleNamespace(history=history, best_epoch=best, seconds=1.0,
                           config={"objective": {"epochs": epochs}}, split_mean=lambda split, metric: score)


@pytest.mark.parametrize("scores, bests, chosen", [
    ([0.854, 0.843], [2, 17], 1),   # the review's embedding_mse: 0.843 at epoch 17, not 0.854 at 2
    ([0.854, 0.843], [5, 17], 0),   # both healthy: the best score
    ([0.10, 0.843], [20, 17], 1),   # near chance (chance 0.294): never chosen
    ([0.854, 0.86], [30, 17], 1),   # still improving at its last epoch is no defect: 0.86 wins
    ([0.854, 0.86], [30, 30], 1),
    ([0.854, 0.843], [1, 2], 0),    # every point flagged: the best of them, and it says so
])
def test_tuning_never_picks_a_flagged_point_unless_every_point_is(scores, bests, chosen):
    from helpers import blob_domain

    domain = blob_domain(n_classes=14)  # validation chance 0.294
    points = [{"lr": 2e-3}, {"lr": 6e-4}]
    results = dict(zip(map(str, points), (_point(s, b) for s, b in zip(scores, bests))))
    folder = SimpleNamespace(log=lambda *a: None, note=lambda text: None)
    t = models._tune(folder, "embedding_mse", TINY, points, lambda point: results[str(point)],
                     {"blobs": domain})
    assert t.chosen == points[chosen]
    flags = t.table.flag.tolist()
    assert t.qualified == (not flags[chosen].startswith(("collapsed", "peaked early")))
    for i, (score, best) in enumerate(zip(scores, bests)):
        assert flags[i].startswith("peaked early") == (best <= 2 and score > 0.6)
        assert flags[i].startswith("collapsed") == (score - 0.294 < 0.2 * (1 - 0.294))


def test_final_methods_bring_the_validation_best_other_loss(monkeypatch):
    scores = {"kl": (0.865, ""), "distance_mse": (0.85, ""), "embedding_mse": (0.871, "peaked early: …"),
              "rkd_distance": (0.870, ""), "darkrank": (0.80, "")}

    def fake(folder, method, profile=None):
        table = pd.DataFrame({VAL_SCORE: [scores[method][0]], "flag": [scores[method][1]], "chosen": [True]})
        return models.Tuning(method, table, {}, profile)

    monkeypatch.setattr(models, "tuning", fake)
    p = load_profile("mini", overrides={"final_methods": "kl,distance_mse,best"})
    run = SimpleNamespace(profile=p)
    # embedding_mse scored higher but peaked early: rkd_distance is the validation-best other loss
    assert models.final_methods(run) == ["kl", "distance_mse", "rkd_distance"]
    assert models.final_methods(run, p.with_overrides({"final_methods": "kl"})) == ["kl"]
    only = p.with_overrides({"distill_methods": "kl,distance_mse", "final_methods": "kl,distance_mse,best"})
    assert models.final_methods(run, only) == ["kl", "distance_mse"]  # none left: "best" is dropped
    with pytest.raises(ValueError, match="final_methods"):
        load_profile("mini", overrides={"final_methods": "kl,bestest"})


# ----------------------------------------------------------------------------- the setting

def test_every_named_profile_validates_and_tunes_around_its_own_value():
    for name in NAMED:
        p = load_profile(name)
        for key, values in p.distill_tuning.items():
            assert values[0] == p.setting(key), name  # a tie keeps the profile's own value
    mini = load_profile("mini")
    assert "rkd_angle" not in mini.methods("distill_methods") and len(mini.methods("distill_methods")) == 5
    assert mini.distill_tuning == {"lr": [2e-3, 6e-4]} and Profile().distill_tuning == {}
    assert load_profile("mini", overrides={"distill_methods": "kl,rkd_angle"}).methods("distill_methods") == \
        ["kl", "rkd_angle"]


def test_the_tuning_grid_is_validated_with_a_fix():
    fix = r".*; e\.g\. -p distill_tuning \"\{'lr': \[1e-3, 3e-4\]\}\", or \{\} for no tuning"
    with pytest.raises(ValueError, match=r"distill_tuning\['lrr'\]: unknown parameter.*" + fix):
        load_profile("mini", overrides={"distill_tuning": {"lrr": [1e-3]}})
    with pytest.raises(ValueError, match=r"distill_tuning\['lr'\] must be a non-empty list" + fix):
        load_profile("mini", overrides={"distill_tuning": {"lr": []}})
    with pytest.raises(ValueError, match="'fast' is not a valid lr"):
        load_profile("mini", overrides={"distill_tuning": {"lr": [1e-3, "fast"]}})
    with pytest.raises(ValueError, match="-1.0 is not a valid lr"):
        load_profile("mini", overrides={"distill_tuning": {"lr": [-1.0]}})
    with pytest.raises(ValueError, match="0 is not a valid kl.temperature"):
        load_profile("mini", overrides={"distill_tuning": {"kl.temperature": [0]}})
    with pytest.raises(ValueError, match="'kl.tau'.*loss 'kl' takes temperature"):
        load_profile("mini", overrides={"distill_tuning": {"kl.tau": [1]}})
    for other in ("embedding_dim", "domains", "seeds"):  # the network, the data, a notebook's
        with pytest.raises(ValueError, match=f"{other} is a '.*' setting; tuning varies only"):
            load_profile("mini", overrides={"distill_tuning": {other: [1]}})
    p = load_profile("mini", overrides={"distill_tuning": {"lr": (1, 2e-3), "kl.temperature": [0.1]}})
    assert p.distill_tuning == {"lr": [1.0, 2e-3], "kl.temperature": [0.1]}  # canonical: lists
    assert p.tuning_points() == [{"lr": 1.0, "kl.temperature": 0.1},
                                 {"lr": 2e-3, "kl.temperature": 0.1}]
    assert NAMED["mini"]["distill_tuning"] == {"lr": [2e-3, 6e-4]}  # not changed in place
    assert load_profile("mini", overrides={"distill_tuning": {}}).tuning_points() == [{}]


def test_ablation_plan_takes_knobs_seeds_and_seconds_from_the_tables_and_the_run():
    p = load_profile("smoke")  # two tuning points: 2 x 2.5 s per point
    tables = {"kl.temperature": ([0.05, 0.5], pd.DataFrame({"seed": [1, 0, 1]}))}
    plan = universal_verdicts.ablation_plan(tables, p, {"distill": 2.5, "naive": 9.0}, base_seed=3)
    assert plan.startswith("- Ran: kl.temperature (0.05, 0.5), on 2 seeds (0, 1).")
    assert "x 2 seeds x 5.0 s (one kl student's training time in this run, 2.5 s" in plan
    assert "--seeds 0 1 " in plan
    assert "on 1 seed (3): one seed has no spread" in universal_verdicts.ablation_plan({}, p, {}, 3)


def test_conditions_train_each_distinct_student_once_around_the_tuned_ones(tmp_path, trainings):
    conditions = {"capacity": {"own": {}, "linear": {"embedding_dim": 4}},
                  "temperature": {"own": {}, "sharp": {"kl.temperature": 0.2}}}
    run = _folder(tmp_path, epochs_specialist=1, epochs_distill=1, seeds="0,1",
                  kl_conditions=conditions, kl_competitors="distance_mse")
    rows = experiments.conditions(run)
    assert set(rows.method) == {"kl", "distance_mse"} and set(rows.seed) == {0, 1}
    assert set(map(tuple, rows[["factor", "level"]].drop_duplicates().to_numpy())) == {
        ("capacity", "own"), ("capacity", "linear"), ("temperature", "own"), ("temperature", "sharp")}
    students = [c for c in _trained(trainings) if c[0].startswith("distill")]
    # tunings (2 methods x 2 points), seed 1's own students (2), the 4-d students (2 x 2), sharp kl (2)
    assert len(students) == 4 + 2 + 4 + 2
    mse = rows[(rows.method == "distance_mse") & (rows.metric == "recall@1")]
    own = mse[mse.level == "own"].groupby(["factor", "seed", "domain"]).value.first()
    sharp = mse[mse.level == "sharp"].set_index(["seed", "domain"]).value
    assert np.allclose(sharp.sort_index(), own.loc["temperature"].sort_index())  # the same model
    kl = rows[(rows.method == "kl") & (rows.level == "own") & (rows.factor == "capacity")]
    same = run.rows_of("distill", "kl", models.student(run, "kl", 1), 1)
    assert kl[kl.seed == 1].value.tolist() == same.value.tolist()  # the run's own students
