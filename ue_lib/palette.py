"""One palette: a model or a domain has the same colour in every figure of every notebook.

The colours are the Okabe-Ito colour-blind-safe set (`OKABE_ITO`) for models and Paul Tol's
colour-blind-safe 'muted' set for domains (`DOMAIN_COLORS`). Each paper's system registers the
colours of its own model labels (`register_colors`, in ``ue_lib/<system>/__init__.py``, so
that any use of the system has them) from these sets; a label registered twice with two colours
is refused, so no two figures can disagree. `model_color` and `domain_color` are what every
figure asks.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping

import numpy as np

OKABE_ITO: dict[str, str] = {
    "blue": "#0072B2", "vermillion": "#D55E00", "bluish green": "#009E73",
    "reddish purple": "#CC79A7", "orange": "#E69F00", "sky blue": "#56B4E9", "black": "#000000",
    "yellow": "#F0E442",
    "grey": "#999999",  # not Okabe-Ito's: the colour of baselines
}

PALETTE: dict[str, str] = {}
"""The colour of every registered model label (filled by `register_colors`)."""

DOMAIN_COLORS: dict[str, str] = {
    "clipart": "#CC6677", "fashion": "#332288", "glyphs": "#DDCC77", "omniglot": "#117733",
    "orl": "#88CCEE", "cub": "#882255", "cars": "#44AA99", "sop": "#999933", "inshop": "#AA4499",
}
"""The colour of every registered domain (`ue_lib.data.LOADERS`)."""

# other domains (e.g. `folder:<path>`) get one of these, chosen by a checksum of the name
_FALLBACK_COLORS = ("#228833", "#66CCEE", "#AA3377", "#009988", "#4477AA", "#EE6677", "#CCBB44",
                    "#BBCC33")

HIT, MISS = OKABE_ITO["bluish green"], OKABE_ITO["vermillion"]  # a neighbour of the query's class or not


def register_colors(colors: Mapping[str, str]) -> None:
    """Give model labels their colours; ValueError when a label already has another one."""
    clash = {k: (PALETTE[k], v) for k, v in colors.items() if PALETTE.get(k, v) != v}
    if clash:
        raise ValueError(f"model labels with two colours: {clash}")
    PALETTE.update(colors)


def model_color(name: str) -> str:
    """The colour of a registered model label (`register_colors`); KeyError naming the label
    and the known labels for any other name."""
    if name not in PALETTE:
        raise KeyError(f"no colour for model label {name!r}; known labels: {', '.join(PALETTE)}")
    return PALETTE[name]


def domain_color(name: str) -> str:
    """The colour of a domain: its `DOMAIN_COLORS` entry, else one of a fixed fallback list
    chosen by a CRC-32 checksum of the name (the same in every process and notebook)."""
    if name in DOMAIN_COLORS:
        return DOMAIN_COLORS[name]
    return _FALLBACK_COLORS[zlib.crc32(str(name).encode()) % len(_FALLBACK_COLORS)]


def colors_of(values, color) -> dict[str, str]:
    """{value: color(value)} for the distinct values, in order of appearance."""
    return {v: color(v) for v in dict.fromkeys(values)}


def fixed(x: float, digits: int = 3, sign: bool = False) -> str:
    """`x` with `digits` decimals, rounded first so it is never '-0.000'; negative values get a
    minus sign '−', and with `sign` positive ones a '+' (zero has none): '+0.012', '−0.004',
    '0.000'. 'n/a' for NaN."""
    if not np.isfinite(x):
        return "n/a"
    r = round(float(x), digits) + 0.0  # + 0.0 turns -0.0 into 0.0
    text = f"{abs(r):.{digits}f}"
    return ("+" if sign else "") + text if r > 0 else "−" + text if r < 0 else text
