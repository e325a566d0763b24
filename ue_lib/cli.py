"""The `ue` command line: run the notebooks, check results against a baseline, describe data."""

from __future__ import annotations

import argparse
import errno
import logging
import os
import sys
from pathlib import Path

from .book import BookError, build_book
from .check import CheckError, check, format_check, record_baseline
from .data import DataError, load_domains, resolve_data_root
from .profiles import parse_value
from .runner import RunError, run
from .spec import RunSpec
from .sweep import expand_grid, sweep

EPILOG = """examples:
  ue run --profile mini --out runs/mini
  ue run --profile smoke --out runs/smoke --only 02 03 -p kl.temperature 0.1
  ue check runs/smoke --baseline tests/baselines/smoke.json
  torchrun --nproc_per_node 4 -m ue_lib.cli train --profile paper --out runs/paper
  ue sweep notebooks/03_absolute_vs_distribution_distillation.ipynb --out runs/tau \\
      -p kl.temperature 0.02 0.05 0.1 --seeds 0 1
  ue data mini
  ue book runs/mini --out site
  ue index runs/mini ~/Pictures --model kl --out pictures.ue-index
  ue search pictures.ue-index ~/Pictures/cat.jpg -k 10 --sheet cat-neighbours.png
"""


def _overrides(pairs: list[list[str]] | None) -> dict:
    out = {}
    for pair in pairs or []:
        name, *values = pair
        if len(values) != 1:
            raise ValueError(f"-p {name}: give exactly one value (got {len(values)}); "
                             f"use `ue sweep` to try several")
        out[name] = parse_value(values[0])
    return out


def _spec(args: argparse.Namespace, models_dir: str = ""):
    """The run specification of `ue run` / `ue train` (validated here, once)."""
    return RunSpec(profile=args.profile, out_dir=str(args.out), seed=args.seed,
                   domains=args.domains or "", overrides=_overrides(args.p), models_dir=models_dir)


def _cmd_run(args: argparse.Namespace) -> int:
    run(_spec(args), only=args.only)
    return 0


def _cmd_profile(args: argparse.Namespace) -> int:
    from .profile_report import profile_run, report

    if args.report_only:
        print(report(args.out))
        return 0
    print(profile_run(run, _spec(args), only=args.only))
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from . import distributed  # torch: only `ue train` needs it
    from .runfolder import RunFolder
    from .universal.experiments import train_models

    try:
        parts = {"parts": tuple(args.parts)} if args.parts else {}
        folder = RunFolder(_spec(args, models_dir=args.models_dir or ""), "train")
        done = train_models(folder, **parts)
        if distributed.context().is_main:
            for name, result in done:
                print(f"{name:32s} " + ("found" if result.loaded else f"trained in {result.seconds:.1f} s"))
    finally:
        distributed.shutdown()
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    params = {}
    for name, *values in args.p:
        if not values:
            raise ValueError(f"-p {name}: give at least one value")
        params[name] = [parse_value(v) for v in values]
    total = len(expand_grid(params, args.seeds))
    base = RunSpec(profile=args.profile, out_dir=args.out, domains=args.domains or "",
                   models_dir=args.models_dir or "")
    table, failures = sweep(args.notebook, args.out, params, seeds=args.seeds, base=base,
                            workers=args.workers, scheduler=args.scheduler)
    print(f"sweep table: {args.out}/sweep.csv ({len(table)} rows); plots: {args.out}/summary.html")
    if len(failures):
        print(f"ue sweep: {len(failures)} of {total} points failed; see {args.out}/failures.csv",
              file=sys.stderr)
    return min(len(failures), 100)


def _cmd_check(args: argparse.Namespace) -> int:
    if args.record:
        print(f"baseline recorded: {record_baseline(args.dir, args.baseline)}")
        return 0
    ok, table = check(args.dir, args.baseline, notebooks=args.notebooks, tolerance=args.tolerance)
    print(format_check(table, all_rows=args.all))
    return 0 if ok else 1


def _cmd_data(args: argparse.Namespace) -> int:
    print(f"data root: {resolve_data_root(args.root).resolve()}")
    domains = load_domains(args.domains, args.root, image_size=args.image_size, seed=args.seed,
                           download=not args.no_download, lazy=True)  # benchmarks: files checked, not decoded
    for d in domains.values():
        row = d.summary()
        print(f"\n{d.name}: {d.split_rule}\n  {d.provenance} (licence: {d.license})")
        for split in ("train", "val", "test"):
            print(f"  {split:5s} {row[split + '_images']:6d} images, "
                  f"{row[split + '_classes']:4d} classes")
    return 0


def _cmd_book(args: argparse.Namespace) -> int:
    book = build_book(args.run_dir, args.out)
    print(f"book: {book.out / 'index.html'} ({len(book.pages)} pages, {book.seconds:.1f} s)")
    for line in book.warnings[:3]:
        print(f"  warning: {line}")
    if len(book.warnings) > 3:
        print(f"  … and {len(book.warnings) - 3} more warnings")
    return 0


def _cmd_index(args: argparse.Namespace) -> int:
    from .own_images import index_folder, skipped_line

    meta = index_folder(args.run_dir, args.folder, args.out, model=args.model, seed=args.seed,
                        compress=args.compress, batch_size=args.batch_size)
    if meta["skipped"]:
        print(f"ue index: {skipped_line(meta['skipped'])} (left out of the index)", file=sys.stderr)
    print(f"indexed {meta['counts']['indexed']} images of {meta['root']} with {meta['model']} "
          f"(seed {meta['seed']}, {meta['embedding_dim']}-d, {meta['compression']}) in "
          f"{meta['seconds']['embed'] + meta['seconds']['index']:.1f} s "
          f"({meta['images_per_second']:.0f} images/s): "
          f"{meta['out']}")
    return 0


def _cmd_search(args: argparse.Namespace) -> int:
    from .own_images import contact_sheet, format_hits, search_image

    index, hits = search_image(args.index, args.image, args.k)
    print(format_hits(hits, index.root))
    if args.sheet:
        print(f"contact sheet: {contact_sheet(Path(args.image), hits, index.root, args.sheet)}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from .own_images import export_images

    made = export_images(args.run_dir, args.out, split=args.split, per_domain=args.per_domain,
                         per_class=args.per_class, seed=args.seed)
    domains = len({item["domain"] for item in made["items"]})
    print(f"exported {len(made['items'])} {args.split} images of {domains} domains (seed "
          f"{made['seed']}) to {args.out}")
    return 0


def _own_images_parsers(sub) -> None:
    """`ue index`, `ue search` and `ue export` (`ue_lib.own_images`)."""
    i = sub.add_parser("index", help="embed a folder of your images with a run's universal model "
                       "into a searchable index")
    i.add_argument("run_dir", help="a finished run folder (the --out of `ue run`)")
    i.add_argument("folder", help="the folder of images (searched recursively; never written to)")
    i.add_argument("--model", default="kl", help="naive, a distillation method (kl, …) or "
                   "specialist:<domain> (default: kl, the KL-distilled student)")
    i.add_argument("--seed", type=int, default=None, help="which seed's model (default: the run's)")
    i.add_argument("--compress", default=None, metavar="opq:M[xB]",
                   help="an OPQ+PQ index of M sub-vectors of B bits (default 8) instead of the "
                        "exact one, e.g. opq:32")
    i.add_argument("--out", default=None,
                   help="the index folder (default: ./<folder name>.ue-index)")
    i.add_argument("--batch-size", type=int, default=None,
                   help="images embedded at once (default: the profile's eval_batch_size)")
    i.set_defaults(func=_cmd_index)

    s = sub.add_parser("search", help="the indexed images nearest to an image")
    s.add_argument("index", help="an index folder made by `ue index`")
    s.add_argument("image", help="the image to search with")
    s.add_argument("-k", type=int, default=10, help="how many neighbours (default 10)")
    s.add_argument("--sheet", default=None, metavar="PNG",
                   help="also save a contact sheet: the query and its neighbours")
    s.set_defaults(func=_cmd_search)

    e = sub.add_parser("export", help="write a run's test images as PNG files "
                       "<domain>/<class>/<n>.png (images its models never trained on)")
    e.add_argument("run_dir", help="a finished run folder")
    e.add_argument("out", help="a new folder to write them to")
    e.add_argument("--split", default="test", help="train, val or test (default: test)")
    e.add_argument("--per-domain", type=int, default=200, help="images per domain (default 200)")
    e.add_argument("--per-class", type=int, default=10,
                   help="at least this many images of each class taken (default 10)")
    e.add_argument("--seed", type=int, default=None,
                   help="the seed whose splits are used, and the choice (default: the run's)")
    e.set_defaults(func=_cmd_export)


def _run_settings(parser: argparse.ArgumentParser, out_help: str) -> None:
    """The options `ue run` and `ue train` share: which run, and its profile settings."""
    parser.add_argument("--profile", default="mini", help="smoke | mini | scratch | paper (default: mini)")
    parser.add_argument("--out", required=True, help=out_help)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--domains", default="", help="comma-separated domains (default: profile's)")
    parser.add_argument("-p", nargs="+", action="append", metavar=("NAME", "VALUE"),
                        help="override a profile setting, e.g. -p epochs_naive 30 or "
                             "-p kl.temperature 0.1 (repeatable)")


def _book_parser(sub) -> None:
    b = sub.add_parser("book", help="build a static website (a book) of a run folder's executed "
                       "notebooks, readable offline and publishable as is (docs/book.md)")
    b.add_argument("run_dir", help="run folder made by `ue run --out`")
    b.add_argument("--out", default=None, help="book folder (default: RUN_DIR/book; an earlier "
                   "book there is replaced)")
    b.set_defaults(func=_cmd_book)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ue", description=__doc__, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="execute the notebooks in order with papermill")
    _run_settings(r, "run folder (created; rerun to resume)")
    r.add_argument("--only", nargs="+", metavar="NB", help="notebook numbers or names, e.g. 01 03")
    r.set_defaults(func=_cmd_run)

    f = sub.add_parser("profile", help="run the notebooks with every process profiled, and "
                       "tabulate where the time goes against each notebook's compute floor")
    _run_settings(f, "run folder (use a new one: notebooks already done are not re-measured)")
    f.add_argument("--only", nargs="+", metavar="NB", help="notebook numbers or names, e.g. 06")
    f.add_argument("--report-only", action="store_true",
                   help="only make the table again from a profiled run folder")
    f.set_defaults(func=_cmd_profile)

    t = sub.add_parser("train", help="train the models notebooks 01-04 use (before `ue run`; "
                       "under torchrun on several GPUs)")
    _run_settings(t, "run folder that `ue run` will use")
    t.add_argument("--parts", nargs="+", metavar="PART",
                   help="which models: specialists naive students (default: all)")
    t.add_argument("--models-dir", default="", help="model folder (default: <out>/models)")
    t.set_defaults(func=_cmd_train)

    w = sub.add_parser("sweep", help="run one notebook over a parameter grid (x seeds)")
    w.add_argument("notebook", help="the notebook to run, e.g. notebooks/03_….ipynb")
    w.add_argument("--out", required=True, help="sweep folder (rerun to resume)")
    w.add_argument("--profile", default="mini", help="smoke | mini | scratch | paper (default: mini)")
    w.add_argument("--seeds", nargs="+", type=int, default=[0])
    w.add_argument("--domains", default="", help="comma-separated domains (default: profile's)")
    w.add_argument("-p", nargs="+", action="append", required=True, metavar=("NAME", "VALUE"),
                   help="a swept setting and its values, e.g. -p kl.temperature 0.02 0.05 0.1")
    w.add_argument("--models-dir", default="",
                   help="reuse and keep models here (default: <out>/models), e.g. runs/mini/models")
    w.add_argument("--workers", type=int, default=1,
                   help="run the points on a local Dask cluster of N worker processes (default 1: "
                        "one after another, here)")
    w.add_argument("--scheduler", default="",
                   help="run the points on an existing Dask cluster, e.g. tcp://host:8786 (workers "
                        "see the sweep folder and the data root on a shared filesystem)")
    w.set_defaults(func=_cmd_sweep)

    c = sub.add_parser("check", help="compare a run's results.csv with a recorded baseline")
    c.add_argument("dir", help="run folder holding results.csv")
    c.add_argument("--baseline", required=True, help="baseline JSON file")
    c.add_argument("--all", action="store_true", help="show every row, not only the failures")
    c.add_argument("--record", action="store_true",
                   help="write the baseline from this run instead of checking")
    c.add_argument("--notebooks", nargs="+", metavar="NB",
                   help="compare only these notebooks' rows (after `ue run --only`), e.g. 03")
    c.add_argument("--tolerance", default=None,
                   help="a named tolerance instead of the baseline's own: exact (same machine), "
                        "cross-machine (see docs/regression-check.md)")
    c.set_defaults(func=_cmd_check)

    d = sub.add_parser("data", help="load domains (downloading when missing) and describe them")
    d.add_argument("domains", nargs="?", default="mini",
                   help="suite name or comma-separated domains (default: mini)")
    d.add_argument("--root", default=None, help="data root (default: $UE_DATA, else ./data)")
    d.add_argument("--image-size", type=int, default=32)
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--no-download", action="store_true", help="never download")
    d.set_defaults(func=_cmd_data)
    _book_parser(sub)
    _own_images_parsers(sub)
    return parser


def os_error(exc: OSError) -> str:
    """An OS error as '<cause>; <fix>', naming the path (its folder, for the temporary file of
    an atomic write: `ue_lib.io.atomic_write`)."""
    path = exc.filename if exc.filename is not None else exc.filename2
    if path is None or exc.errno is None:  # raised with a message of ours
        return str(exc)
    path = Path(os.fsdecode(path))
    if path.name.startswith(".") and ".tmp" in path.name:
        path = path.parent
    cause = f"{(exc.strerror or 'error').lower()}: {path}"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"{cause}; free some space there, or choose a folder on another disk"
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return f"{cause}; make it writable for you, or choose another folder"
    return f"{cause}; check that path, then run the same command again"


def main(argv: list[str] | None = None) -> int:
    """Run a command; every failure a user can cause ends in one line, '<command>: error:
    <cause>; <fix>' on stderr, and a non-zero status (a bug still shows its traceback)."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (BookError, CheckError, DataError, RunError, ValueError, TypeError) as exc:
        message, status = str(exc), 2
    except OSError as exc:  # FileNotFoundError too: read-only, full, not allowed, not there
        message, status = os_error(exc), 2
    except KeyboardInterrupt:
        logging.getLogger("asyncio").setLevel(logging.CRITICAL)  # the tasks left pending
        message, status = "interrupted; run the same command again to resume", 130
    print(f"ue {args.command}: error: {message}", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
