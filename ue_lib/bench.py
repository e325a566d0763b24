"""Benchmarks. ``python -m ue_lib.bench eval [--n 20000 --dim 128 --classes 200 --repeat 3]``.

``eval`` times :func:`ue_lib.evaluate.retrieval_metrics` against a brute-force torch reference
(full similarity rows in chunks) and, when installed, pytorch-metric-learning's AccuracyCalculator,
on random clustered embeddings, and checks that the metric values agree.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence

import faiss
import numpy as np
import torch

from ue_lib.evaluate import retrieval_metrics


def clustered_embeddings(
    n: int, dim: int, classes: int, noise: float = 2.0, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` float32 points: a random Gaussian centre per class plus isotropic Gaussian noise."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((classes, dim))
    labels = rng.integers(0, classes, n)
    x = centres[labels] + noise * rng.standard_normal((n, dim))
    return x.astype(np.float32), labels


def torch_bruteforce_metrics(
    embeddings: np.ndarray, labels: np.ndarray, ks: Sequence[int] = (1, 2, 4, 8), chunk: int = 1024
) -> dict[str, float]:
    """Plain reference: cosine rows via torch.mm in query chunks, self masked with -inf, topk.

    Same metrics as :func:`retrieval_metrics`, but ties are ordered however topk returns them.
    """
    x = torch.nn.functional.normalize(torch.from_numpy(embeddings).float(), dim=1)
    y = torch.from_numpy(labels)
    n = len(x)
    _, inverse, counts = torch.unique(y, return_inverse=True, return_counts=True)
    r_all = counts[inverse] - 1
    kmax = min(max(ks), n - 1)
    width = int(max(kmax, int(r_all.max())))
    sums = {f"recall@{k}": 0.0 for k in ks} | {"map@r": 0.0, "mmp@5": 0.0}
    pos = torch.arange(1, width + 1)
    for start in range(0, n, chunk):
        rows = torch.arange(start, min(start + chunk, n))
        sims = x[rows] @ x.T
        sims[torch.arange(len(rows)), rows] = -float("inf")
        nbr = sims.topk(width, dim=1).indices
        r = r_all[rows]
        ok = r > 0
        rel = (y[nbr] == y[rows, None])[ok].double()
        r = r[ok, None].double()
        for k in ks:
            sums[f"recall@{k}"] += float(rel[:, : min(k, kmax)].amax(1).sum())
        prec = rel.cumsum(1) / pos
        sums["map@r"] += float((prec * rel * (pos <= r)).sum(1).div(r[:, 0]).sum())
        m5 = r.clamp(max=5)
        sums["mmp@5"] += float((rel * (pos <= m5)).sum(1).div(m5[:, 0]).sum())
    count = int((r_all > 0).sum())
    return {key: value / count for key, value in sums.items()}


def _pml_metrics(embeddings: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator

    calc = AccuracyCalculator(
        include=("precision_at_1", "mean_average_precision_at_r"),
        k="max_bin_count",
        device=torch.device("cpu"),
    )
    # Default knn is faiss IndexFlatL2: on unit vectors its order is the cosine order.
    x = torch.nn.functional.normalize(torch.from_numpy(embeddings).float(), dim=1)
    # reference=None: the query set is its own reference and self-matches are removed.
    acc = calc.get_accuracy(x, torch.from_numpy(labels))
    return {"recall@1": acc["precision_at_1"], "map@r": acc["mean_average_precision_at_r"]}


def _time(fn: Callable[[], dict[str, float]], repeat: int) -> tuple[float, dict[str, float]]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def bench_eval(args: argparse.Namespace) -> None:
    ks = (1, 2, 4, 8)
    x, y = clustered_embeddings(args.n, args.dim, args.classes, args.noise, args.seed)
    print(
        f"N={args.n} D={args.dim} classes={args.classes} noise={args.noise} "
        f"repeat={args.repeat} | torch threads={torch.get_num_threads()} "
        f"faiss omp threads={faiss.omp_get_max_threads()}"
    )
    runs = {
        "ue_lib.evaluate (faiss)": lambda: retrieval_metrics(x, y, ks),
        "torch brute force": lambda: torch_bruteforce_metrics(x, y, ks),
    }
    try:
        import pytorch_metric_learning

        runs[f"pml AccuracyCalculator {pytorch_metric_learning.__version__}"] = lambda: (
            _pml_metrics(x, y)
        )
    except ImportError:
        print("pytorch_metric_learning not installed (pip install pytorch-metric-learning)")

    keys = [f"recall@{k}" for k in ks] + ["map@r", "mmp@5"]
    results = {name: _time(fn, args.repeat) for name, fn in runs.items()}
    print(f"\n{'implementation':<34}{'median s':>10}" + "".join(f"{k:>10}" for k in keys))
    for name, (seconds, metrics) in results.items():
        cells = "".join(f"{metrics[k]:>10.4f}" if k in metrics else f"{'-':>10}" for k in keys)
        print(f"{name:<34}{seconds:>10.3f}{cells}")
    ours = results["ue_lib.evaluate (faiss)"][1]
    for name, (_, metrics) in list(results.items())[1:]:
        diff = max(abs(ours[k] - metrics[k]) for k in metrics)
        print(f"max |diff| vs {name}: {diff:.2e} (nonzero only through tie order)")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ue_lib.bench", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("eval", help="retrieval metrics: ue_lib vs torch brute force vs pml")
    p.add_argument("--n", type=int, default=20000, help="number of embeddings")
    p.add_argument("--dim", type=int, default=128, help="embedding dimension")
    p.add_argument("--classes", type=int, default=200, help="number of classes")
    p.add_argument("--noise", type=float, default=2.0, help="noise std relative to centres")
    p.add_argument("--repeat", type=int, default=3, help="timed repeats (median reported)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=bench_eval)
    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
