"""Domains: the data sets a model retrieves in, each split into train / val / test.

    >>> from ue_lib.data import load_domain
    >>> omniglot = load_domain("omniglot", image_size=32)      # files under $UE_DATA
    >>> omniglot.train.images.shape, omniglot.test.num_classes

Names: the `mini` suite (`omniglot`, `fashion`, `glyphs`), the `paper` suite (`cub`, `cars`,
`sop`, `inshop`: the deep-metric-learning benchmarks, read from their official layouts and never
downloaded, see `ue_lib.data.benchmarks`), `clipart` (curated Open Clip Art drawings, read from
Debian's openclipart-svg package and rendered once into the user cache, see
`ue_lib.data.clipart`), `orl` (the ORL / AT&T faces: 40 identities, see `ue_lib.data.orl`) and
`folder:<path>` for an ImageFolder-style tree of your own.
"""

from __future__ import annotations

from pathlib import Path

from . import benchmarks, clipart, fashion, omniglot, orl
from . import folder as folder_module
from .benchmarks import load_cars, load_cub, load_inshop, load_sop
from .clipart import load_clipart
from .core import (
    DataCorruptError,
    DataError,
    DataNotFoundError,
    Domain,
    Split,
    ensure_files,
    resolve_data_root,
)
from .fashion import load_fashion
from .files import ImageFiles
from .folder import load_folder
from .glyphs import load_glyphs
from .omniglot import load_omniglot
from .orl import load_orl

LOADERS = {"omniglot": load_omniglot, "fashion": load_fashion, "glyphs": load_glyphs,
           "cub": load_cub, "cars": load_cars, "sop": load_sop, "inshop": load_inshop,
           "clipart": load_clipart, "orl": load_orl}
SUITES = {"mini": ("clipart", "fashion", "glyphs", "omniglot", "orl"),
          "scratch": ("omniglot", "fashion", "glyphs"), "paper": ("cub", "cars", "sop", "inshop")}
FOLDER_PREFIX = "folder:"
# the domains whose loaders download their files when missing (from the sources their modules
# name); the others are read from what is there: the `paper` benchmarks, `clipart` (Debian's
# package), `glyphs` (matplotlib's fonts). Colab's setup cell and Binder fetch these up front.
DOWNLOADED = ("omniglot", "fashion", "orl")

__all__ = ["DataCorruptError", "DataError", "DataNotFoundError", "Domain", "ImageFiles", "Split",
           "DOWNLOADED", "LOADERS", "SUITES", "check_domain", "load_domain", "load_domains",
           "parse_domains", "resolve_data_root"]


def parse_domains(spec: str | list[str] | tuple[str, ...]) -> list[str]:
    """'omniglot,glyphs,folder:/x' (or a list, or a suite name) -> validated list of names."""
    names = [s.strip() for s in spec.split(",")] if isinstance(spec, str) else list(spec)
    names = [n for n in names if n]
    if len(names) == 1 and names[0] in SUITES:
        return list(SUITES[names[0]])
    for n in names:
        if n not in LOADERS and not (n.startswith(FOLDER_PREFIX) and len(n) > len(FOLDER_PREFIX)):
            raise ValueError(f"unknown domain {n!r}; known domains: {', '.join(LOADERS)}, or "
                             f"'{FOLDER_PREFIX}<path>' for an ImageFolder-style tree")
    if not names:
        raise ValueError("no domain given: name at least one, e.g. 'omniglot,fashion,glyphs'")
    if len(set(names)) != len(names):
        raise ValueError(f"a domain is named twice in {names}")
    return names


def check_domain(name: str, root=None, download: bool = True) -> None:
    """Make sure a domain's files are there (downloading them when allowed) without reading
    the images: a quick check before a long run, raising the loaders' named errors. The
    `paper` benchmarks and `clipart` are never downloaded: for them `download` is ignored.
    (`orl`'s small zip is checked by its content, which reads its images.)"""
    (name,) = parse_domains([name])
    if name.startswith(FOLDER_PREFIX):
        path = Path(name[len(FOLDER_PREFIX):]).expanduser()
        if not path.is_dir():
            raise DataNotFoundError(f"Data for domain '{name}' not found: {path.resolve()} is "
                                    f"not a folder.\n  expected: {folder_module.HOW}")
        return
    if name in benchmarks.SOURCES:  # index files and image folders; the images are not read
        benchmarks.require_files(name, root)
        return
    if name == "clipart":  # the .deb, an unpacked tree or the installed package
        clipart.find_source(root)
        clipart.renderer_name()  # resvg-py is needed unless the renders are cached
        return
    if name == "orl":
        orl.read_faces(orl.ensure_zip(root, download))
        return
    module = {"omniglot": omniglot, "fashion": fashion}.get(name)
    if module is not None:
        ensure_files(name, resolve_data_root(root) / module.SUBDIR, module.FILES, module.HOW,
                     download)


def load_domain(name: str, root=None, *, lazy: bool = False, num_workers: int = 0,
                **kwargs) -> Domain:
    """Load one domain by name; kwargs go to its loader (image_size, channels, seed,
    test_fraction, val_fraction, max_per_class, max_classes, download). `lazy` and
    `num_workers` make the `paper` benchmarks file-backed (see `ue_lib.data.files`); the other
    domains are small and always decoded into memory, so they ignore both."""
    (name,) = parse_domains([name])
    if name in benchmarks.SOURCES:
        kwargs.update(lazy=lazy, num_workers=num_workers)
    if name.startswith(FOLDER_PREFIX):
        kwargs.pop("download", None)
        return load_folder(name[len(FOLDER_PREFIX):], **kwargs)
    return LOADERS[name](root, **kwargs)


def load_domains(names, root=None, per_domain: dict | None = None, **kwargs) -> dict[str, Domain]:
    """Load several domains; `per_domain[name]` overrides kwargs for one of them."""
    per_domain = per_domain or {}
    return {n: load_domain(n, root, **{**kwargs, **per_domain.get(n, {})})
            for n in parse_domains(names)}
