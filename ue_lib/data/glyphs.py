"""Glyphs: characters rendered from the TrueType fonts that matplotlib ships.

A class is a character; its images are that character in each text font that
really contains it (checked in the font's cmap *and* by rendering it: some
fonts map characters to empty glyphs), each with a few deterministic small
jitters (rotation, scale, shift). Characters that look alike across fonts
(o/O/0, l/I/1, lower/upper case pairs that differ only in size, Greek capitals
identical to Latin ones) are left out so that every class is visually distinct.
Nothing is downloaded: the fonts come with matplotlib.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .core import Domain, check_image_args, domain_from_items, pil_to_array

LATIN_UPPER = "ABCDEFGHJKLMNPQRSTUVWXYZ"  # no I, O
LATIN_LOWER = "abdefghijkmnpqrty"  # no o, l and no c s u v w x z (same shape as capitals)
DIGITS = "23456789"  # no 0, 1
GREEK_UPPER = "ΓΔΘΛΞΠΣΦΨΩ"  # the capitals that differ from Latin ones
GREEK_LOWER = "αβγδεζηθικλμνξπστυφχψω"  # no omicron, no rho (like p)
CHARACTERS = LATIN_UPPER + LATIN_LOWER + DIGITS + GREEK_UPPER + GREEK_LOWER

# Not text fonts, or fonts that render no letters at all (measured, see SPEC §9).
EXCLUDED_FONT_PREFIXES = ("DejaVuSansDisplay", "DejaVuSerifDisplay", "cmex10", "cmsy10",
                          "STIXSiz", "STIXNonUni", "LastResort")
CANVAS, FONT_SIZE = 64, 50
PROVENANCE = ("rendered locally from the DejaVu, STIX and Computer Modern (BaKoMa) TrueType "
              "fonts shipped with matplotlib")
LICENSE = "fonts: DejaVu (Bitstream Vera derivative, free), STIX (SIL OFL 1.1), BaKoMa (free)"


def font_dir() -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


def text_fonts(folder: Path | None = None) -> list[Path]:
    folder = folder or font_dir()
    return sorted(p for p in folder.glob("*.ttf") if not p.name.startswith(EXCLUDED_FONT_PREFIXES))


@lru_cache(maxsize=64)
def _cmap(path: Path) -> frozenset[int]:
    from fontTools.ttLib import TTFont

    with TTFont(path, lazy=True) as font:
        return frozenset(font.getBestCmap() or {})


def render_char(char: str, font_path: Path, angle: float = 0.0, scale: float = 1.0,
                shift: tuple[float, float] = (0.0, 0.0)) -> Image.Image | None:
    """Render one character centred on a 64x64 black canvas (white glyph); None if blank."""
    size = FONT_SIZE * scale
    font = ImageFont.truetype(str(font_path), size=round(size))
    left, top, right, bottom = font.getbbox(char)
    if right - left <= 0 or bottom - top <= 0:
        return None
    biggest = max(right - left, bottom - top)
    if biggest > CANVAS - 6:  # tall glyphs (descenders, accents): shrink to fit
        font = ImageFont.truetype(str(font_path), size=max(8, round(size * (CANVAS - 6) / biggest)))
        left, top, right, bottom = font.getbbox(char)
    img = Image.new("L", (CANVAS, CANVAS), 0)
    origin = ((CANVAS - (right - left)) / 2 - left, (CANVAS - (bottom - top)) / 2 - top)
    ImageDraw.Draw(img).text(origin, char, fill=255, font=font)
    if np.asarray(img).max() < 128:
        return None
    if angle or shift != (0.0, 0.0):
        img = img.rotate(angle, resample=Image.Resampling.BILINEAR, translate=shift)
    return img


def render_glyphs(image_size: int = 32, channels: int = 1, jitters: int = 3,
                  min_fonts: int = 4, fonts: list[Path] | None = None
                  ) -> tuple[np.ndarray, np.ndarray, list[str], dict]:
    """All (character, font, jitter) images. The first jitter of each pair is the plain
    rendering; the others draw angle in ±10°, scale in [0.8, 1.0], shift in ±3 px from a
    generator seeded by the (character, font) pair, so the images never depend on the
    split seed. Characters available in fewer than `min_fonts` fonts are dropped."""
    fonts = fonts if fonts is not None else text_fonts()
    images, labels, class_names, fonts_per_class = [], [], [], {}
    for char in CHARACTERS:
        rendered = []
        for fi, path in enumerate(fonts):
            plain = render_char(char, path) if ord(char) in _cmap(path) else None
            if plain is None:  # not in the font, or a blank glyph
                continue
            rendered.append(pil_to_array(plain, image_size, channels))
            rng = np.random.default_rng([ord(char), fi])
            for _ in range(jitters - 1):
                angle, scale = rng.uniform(-10, 10), rng.uniform(0.8, 1.0)
                shift = tuple(rng.uniform(-3, 3, size=2))
                img = render_char(char, path, angle, scale, shift)
                if img is not None:
                    rendered.append(pil_to_array(img, image_size, channels))
            fonts_per_class.setdefault(char, []).append(path.stem)
        if len(fonts_per_class.get(char, [])) < min_fonts:
            fonts_per_class.pop(char, None)
            continue
        images += rendered
        labels += [len(class_names)] * len(rendered)
        class_names.append(char)
    return np.stack(images), np.asarray(labels, dtype=np.int64), class_names, fonts_per_class


def load_glyphs(root=None, *, image_size: int = 32, channels: int = 1, seed: int = 0,
                test_fraction: float = 0.5, val_fraction: float = 0.2,
                max_per_class: int | None = None, max_classes: int | None = None,
                download: bool = True, jitters: int = 3) -> Domain:
    """`root` and `download` are accepted for a uniform interface: glyphs need no files."""
    check_image_args(image_size, channels)
    images, labels, class_names, fonts = render_glyphs(image_size, channels, jitters)
    return domain_from_items("glyphs", images, labels, class_names, seed=seed,
                             test_fraction=test_fraction, val_fraction=val_fraction,
                             max_per_class=max_per_class, max_classes=max_classes,
                             provenance=PROVENANCE, license=LICENSE,
                             notes={"fonts_per_class": fonts})
