"""The `ue` command line."""

from __future__ import annotations

import argparse
import sys


def _cmd_data(args: argparse.Namespace) -> int:
    from .data import DataError, load_domains, resolve_data_root

    print(f"data root: {resolve_data_root(args.root).resolve()}")
    try:
        domains = load_domains(args.domains, args.root, image_size=args.image_size,
                               seed=args.seed, download=not args.no_download)
    except (DataError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for d in domains.values():
        row = d.summary()
        print(f"\n{d.name}: {d.split_rule}\n  {d.provenance} (licence: {d.license})")
        for split in ("train", "val", "test"):
            print(f"  {split:5s} {row[split + '_images']:6d} images, "
                  f"{row[split + '_classes']:4d} classes")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ue", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    data = sub.add_parser("data", help="load domains (downloading when missing) and describe them")
    data.add_argument("domains", nargs="?", default="mini",
                      help="suite name or comma-separated domains (default: mini)")
    data.add_argument("--root", default=None, help="data root (default: $UE_DATA, else ./data)")
    data.add_argument("--image-size", type=int, default=32)
    data.add_argument("--seed", type=int, default=0)
    data.add_argument("--no-download", action="store_true", help="never download")
    data.set_defaults(func=_cmd_data)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
