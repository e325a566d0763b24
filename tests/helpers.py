"""Tiny synthetic domains for fast tests (no files needed)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ue_lib.data import Domain, Split
from ue_lib.io import RESULT_COLUMNS
from ue_lib.universal.histories import peak_epochs
from ue_lib.universal.verdicts import claims
from ue_lib.verdicts import Rules


def blob_domain(name: str = "blobs", n_classes: int = 12, per_class: int = 6, size: int = 16,
                seed: int = 0) -> Domain:
    """Each class is a bright square at its own place on a dark canvas, plus noise;
    classes 0..5 train, 6..8 val, 9.. test (class-disjoint)."""
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for c in range(n_classes):
        r, col = divmod(c, 4)
        for _ in range(per_class):
            im = rng.integers(0, 40, size=(1, size, size))
            y, x = 1 + 3 * r + rng.integers(0, 2), 1 + 3 * col + rng.integers(0, 2)
            im[:, y:y + 3, x:x + 3] = 230
            images.append(im.astype(np.uint8))
            labels.append(c)
    images, labels = np.stack(images), np.asarray(labels)
    cut = [np.isin(labels, part) for part in (range(0, 6), range(6, 9), range(9, n_classes))]
    splits = [Split(images[m], labels[m]) for m in cut]
    return Domain(name, *splits, class_names=[str(c) for c in range(n_classes)],
                  split_rule="class-disjoint", provenance="synthetic", license="none")


# ----------------------------------------------------------------------------- metrics

def patch_search(monkeypatch, name: str, value) -> None:
    """Set `name` (a constant or function of the exact search, `ue_lib.evaluate.search`) in every
    evaluation module that holds it, so the metrics use the patched one."""
    from ue_lib.evaluate import graded, ranking, retrieval, search

    for module in (search, retrieval, graded, ranking):
        if hasattr(module, name):
            monkeypatch.setattr(module, name, value)


def at_angles(*degrees: float) -> np.ndarray:
    """Unit vectors in the plane at these angles (degrees): exact, easy-to-read cosines."""
    rad = np.deg2rad(np.asarray(degrees, dtype=np.float64))
    return np.stack([np.cos(rad), np.sin(rad)], axis=1).astype(np.float32)


def assert_metrics(got: dict[str, float], expected: dict[str, float]) -> None:
    """The same metric names in the same order, each value within 1e-12."""
    assert list(got) == list(expected)
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, abs=1e-12), key


# ----------------------------------------------------------------------------- paper benchmarks

def _photo(path, color, rng: np.random.Generator, size=(40, 30)) -> None:
    """A small JPEG: the class colour plus noise and a random dark bar (so crops differ)."""
    from PIL import Image

    w, h = size
    im = np.clip(np.array(color, float) + rng.normal(0, 12, (h, w, 3)), 0, 255)
    x = rng.integers(0, w - 6)
    im[:, x:x + 5] *= 0.3
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(im.astype(np.uint8)).save(path, "JPEG", quality=90)


def class_color(c: int) -> tuple[int, int, int]:
    return (53 * c) % 200 + 40, (97 * c) % 200 + 40, (29 * c) % 200 + 40


def write_benchmarks(root, train_classes: int = 8, test_classes: int = 4, per_class: int = 5,
                     seed: int = 0, names=("cub", "cars", "sop", "inshop")):
    """The four `paper` benchmarks in their official layouts under `root`, `per_class` JPEGs of
    `train_classes` + `test_classes` classes each (In-Shop test items: half query, half gallery).
    Returns root."""
    from pathlib import Path

    import scipy.io

    root, rng = Path(root), np.random.default_rng(seed)
    if "cub" in names:  # classes 1.. train, 101.. test
        folder = root / "CUB_200_2011"
        classes = list(range(1, train_classes + 1)) + list(range(101, 101 + test_classes))
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "classes.txt").write_text("".join(f"{c} {c:03d}.Bird_{c}\n" for c in range(1, 201)))
        rows = {"images.txt": [], "image_class_labels.txt": [], "bounding_boxes.txt": []}
        for i, c in enumerate(c for c in classes for _ in range(per_class)):
            rel = f"{c:03d}.Bird_{c}/Bird_{i:04d}.jpg"
            _photo(folder / "images" / rel, class_color(c), rng)
            rows["images.txt"].append(f"{i + 1} {rel}\n")
            rows["image_class_labels.txt"].append(f"{i + 1} {c}\n")
            rows["bounding_boxes.txt"].append(f"{i + 1} 2.0 3.0 30.0 20.0\n")
        for file, lines in rows.items():
            (folder / file).write_text("".join(lines))
    if "cars" in names:  # classes 1.. train, 99.. test
        folder = root / "cars196"
        classes = list(range(1, train_classes + 1)) + list(range(99, 99 + test_classes))
        fields = ("relative_im_path", "bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "test")
        items = [c for c in classes for _ in range(per_class)]
        ann = np.empty((1, len(items)), dtype=[(f, object) for f in fields])
        for i, c in enumerate(items):
            rel = f"car_ims/{i + 1:06d}.jpg"
            _photo(folder / rel, class_color(c + 300), rng)
            ann[0, i] = (rel, np.uint16(1), np.uint16(1), np.uint16(30), np.uint16(20),
                         np.uint8(c), np.uint8(c > 98))
        class_names = np.empty((1, 196), dtype=object)
        class_names[0, :] = [f"Make{c} Model" for c in range(1, 197)]
        scipy.io.savemat(folder / "cars_annos.mat", {"annotations": ann, "class_names": class_names})
    if "sop" in names:
        folder, image_id = root / "Stanford_Online_Products", 0
        for file, classes in (("Ebay_train.txt", range(1, train_classes + 1)),
                              ("Ebay_test.txt", range(1001, 1001 + test_classes))):
            lines = ["image_id class_id super_class_id path"]
            for c in classes:
                for k in range(per_class):
                    image_id += 1
                    rel = f"bicycle_final/{c}_{k}.JPG"
                    _photo(folder / rel, class_color(c + 600), rng)
                    lines.append(f"{image_id} {c} 1 {rel}")
            (folder / file).write_text("\n".join(lines) + "\n")
    if "inshop" in names:
        folder, lines = root / "InShop", []
        for item in range(1, train_classes + test_classes + 1):
            test = item > train_classes
            for k in range(per_class):
                status = ("query" if k % 2 == 0 else "gallery") if test else "train"
                rel = f"img/WOMEN/Dresses/id_{item:08d}/{k + 1:02d}_1_front.jpg"
                _photo(folder / rel, class_color(item + 900), rng)
                lines.append(f"{rel} id_{item:08d} {status}")
        header = [str(len(lines)), "image_name item_id evaluation_status"]
        (folder / "list_eval_partition.txt").write_text("\n".join(header + lines) + "\n")
    return root


# ----------------------------------------------------------------------------- parallel work

def folder_task(folder, x: int, fail: bool = False) -> tuple:
    """A task of `RunFolder.map` (module-level: workers import it): what the worker's folder is."""
    import os

    import torch

    if fail:
        raise ValueError(f"task {x} failed on purpose")
    return x * x, folder.notebook, folder.profile.workers, os.getpid(), torch.get_num_threads()


def sleeping_task(folder, where: str) -> None:
    """A task of `RunFolder.map` that announces its worker's PID (a file named by it in `where`)
    and then sleeps: for the tests that kill the parent of a busy pool."""
    import os
    import time
    from pathlib import Path

    Path(where, str(os.getpid())).touch()
    time.sleep(600)


def process_tree(root: int) -> set[int]:
    """The live (not zombie) descendants of process `root`, from /proc."""
    from pathlib import Path

    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            parents[int(stat.parent.name)] = int(fields[1])
    out, frontier = set(), {root}
    while frontier:
        frontier = {pid for pid, ppid in parents.items() if ppid in frontier} - out
        out |= frontier
    return out


def alive(pid: int) -> bool:
    """Whether process `pid` runs (a zombie, dead but not yet reaped, does not)."""
    from pathlib import Path

    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


# ----------------------------------------------------------------------------- result tables

DOMAINS = ["A", "B", "C"]


def history(val: dict[str, list[float]], test: dict[str, list[float]] | None = None,
            every: int = 2, metric: str = "recall@1") -> pd.DataFrame:
    """A learning-curve history: per domain the values at epochs every, 2*every, …"""
    rows = []
    for split, curves in (("val", val), ("test", test or {})):
        for domain, values in curves.items():
            rows += [{"epoch": every * (i + 1), "domain": domain, "split": split, "metric": metric,
                      "value": v} for i, v in enumerate(values)]
    return pd.DataFrame(rows, columns=["epoch", "domain", "split", "metric", "value"])


def results(spec: dict[str, dict[str, list[float]]], metric: str = "recall@1",
            notebook: str = "04_final_results") -> pd.DataFrame:
    """Result rows from {model name: {domain: [value per seed 0, 1, …]}}; 'distill:kl' is the
    distill model with method kl."""
    rows = []
    for name, per_domain in spec.items():
        model, _, method = name.partition(":")
        for domain, values in per_domain.items():
            rows += [{"notebook": notebook, "model": model, "method": method or "multi_similarity",
                      "domain": domain, "split": "test", "metric": metric, "value": v, "seed": s,
                      "epoch": 4} for s, v in enumerate(values)]
    # the name as given is each row's model name (`ue_lib.verdicts.model_names`)
    table = pd.DataFrame(rows, columns=RESULT_COLUMNS)
    return table.assign(model_name=[f"{r.model}:{r.method}" if r.model == "distill" else r.model
                                    for r in table.itertuples()])


def paired(a: str, b: str, diffs: dict[str, list[float]], base: float = 0.5) -> pd.DataFrame:
    """Results where a - b equals `diffs` per domain and seed."""
    return results({a: {d: [base + x for x in v] for d, v in diffs.items()},
                    b: {d: [base] * len(v) for d, v in diffs.items()}})


def peak_table(curves: dict[str, list[float]], rules: Rules | None = None) -> pd.DataFrame:
    return peak_epochs(history(curves), rules=rules or Rules())


def cost_table(costs: dict[str, float]) -> pd.DataFrame:
    return pd.DataFrame({"domain": list(costs), "cost": list(costs.values())})


RISING = [0.1, 0.2, 0.3, 0.4]


OVERFIT = [0.6, 0.5, 0.5, 0.5]


FLAT = [0.5, 0.5, 0.5, 0.5]


def claim(verdict: pd.DataFrame, text: str) -> pd.Series:
    rows = verdict[verdict.claim == text]
    assert len(rows) == 1, list(verdict.claim)
    return rows.iloc[0]


def full_results(**diffs: dict[str, list[float]]) -> pd.DataFrame:
    """specialist, naive, distill:kl, distill:distance_mse on DOMAINS with one seed; keyword
    arguments replace the per-domain values of a model (named with '_' for ':')."""
    spec = {"specialist": {d: [0.60] for d in DOMAINS}, "naive": {d: [0.50] for d in DOMAINS},
            "distill:kl": {d: [0.59] for d in DOMAINS}, "distill:distance_mse": {d: [0.55] for d in DOMAINS}}
    for name, values in diffs.items():
        spec[name.replace("_", ":", 1) if name.startswith("distill") else name] = values
    return results(spec)


def run_claims(res: pd.DataFrame | None = None, peaks=None, costs=None, **kw) -> pd.DataFrame:
    peaks = peaks if peaks is not None else [peak_table({"A": OVERFIT, "B": RISING, "C": FLAT})]
    costs = costs if costs is not None else [cost_table({"A": 0.05, "B": 0.0, "C": 0.0})]
    return claims(full_results() if res is None else res, peaks, costs, DOMAINS, **kw)


def trained(batches: dict[str, list[int]], best: int, record_batches: bool = True):
    """A TrainResult-like model: per domain and epoch 1, 2, … its loss, its batches and val recall@1."""
    from types import SimpleNamespace

    rows = []
    for domain, counts in batches.items():
        for epoch, n in enumerate(counts, 1):
            at = {"epoch": epoch, "domain": domain}
            rows += [{**at, "split": "train", "metric": "loss", "value": 1 / epoch},
                     {**at, "split": "val", "metric": "recall@1", "value": 0.1}]
            if record_batches:
                rows.append({**at, "split": "train", "metric": "batches", "value": float(n)})
    return SimpleNamespace(history=pd.DataFrame(rows), best_epoch=best)
