"""Glyphs: characters rendered from the TrueType fonts that matplotlib ships.

A class is a character; its images are that character in each text font that
really contains it (checked in the font's cmap *and* by rendering it: some
fonts map characters to empty glyphs), each with a few deterministic small
jitters (rotation, scale, shift). Characters that look alike across fonts
(o/O/0, l/I/1, lower/upper case pairs that differ only in size, Greek capitals
identical to Latin ones) are left out so that every class is visually distinct.
Nothing is downloaded: the fonts come with matplotlib.

Every image keeps its source in ``Split.paths`` as ``<font file>/<character>/<jitter>`` (e.g.
``DejaVuSerif-BoldItalic.ttf/g/0``; jitter 0 is the plain rendering): no file on disk, but the
per-item fact the image-level attributes come from.

Attributes (``Domain.attribute_names``, :data:`ATTRIBUTE_NAMES`, 15, binary):

* character-level, from the character alone: ``uppercase``, ``lowercase``, ``digit``,
  ``letter``, ``latin``, ``greek``; and four stroke classes, *our choice*, defined by the
  hand-written character sets :data:`STROKE_CLASSES` for the usual upright (roman) form of each
  character: ``descender`` (reaches below the baseline), ``ascender`` (a lowercase letter rising
  above the x-height), ``closed_loop`` (an enclosed counter, e.g. A, b, 8, θ) and
  ``diagonal_stroke`` (a straight slanted stroke, e.g. K, y, 7, λ). An italic or unusual font can
  differ from these sets (an italic f descends): they describe the character, not the image.
* image-level, from the font file that rendered the image (:func:`font_style`, the mapping
  is our choice): exactly one family of ``serif`` / ``sans`` / ``mono`` (monospaced fonts are
  ``mono`` whatever their serifs), plus ``bold`` and ``italic`` (italic or oblique)::

      DejaVuSans*.ttf                  sans     DejaVuSansMono*.ttf   mono
      DejaVuSerif*.ttf                 serif    STIXGeneral*.ttf      serif (Times-like)
      cmr10 (roman), cmb10 (bold),     serif    cmss10                sans
      cmti10 (text italic),                     cmtt10 (typewriter)   mono
      cmmi10 (math italic)
      bold: "Bold" (DejaVu), "Bol" (STIX), cmb10;  italic: "Oblique" / "Italic" (DejaVu),
      "Ita" / "Italic" (STIX), cmti10, cmmi10.

  A font the table does not know gets its family guessed from "Mono" / "Sans" / "Serif" in its
  name, else no family (all three 0), and is listed in ``Domain.notes["unknown_font_styles"]``.

Coarse groups (``Domain.group_names``, :data:`GROUP_NAMES`, 5): the character's kind, ``Latin
upper``, ``Latin lower``, ``digit``, ``Greek upper``, ``Greek lower``.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .core import Domain, check_image_args, domain_from_items, pil_to_array
from .decoded import cached_decode

LATIN_UPPER = "ABCDEFGHJKLMNPQRSTUVWXYZ"  # no I, O
LATIN_LOWER = "abdefghijkmnpqrty"  # no o, l and no c s u v w x z (same shape as capitals)
DIGITS = "23456789"  # no 0, 1
GREEK_UPPER = "ΓΔΘΛΞΠΣΦΨΩ"  # the capitals that differ from Latin ones
GREEK_LOWER = "αβγδεζηθικλμνξπστυφχψω"  # no omicron, no rho (like p)
CHARACTERS = LATIN_UPPER + LATIN_LOWER + DIGITS + GREEK_UPPER + GREEK_LOWER

# Stroke classes (our choice) for the usual upright form of the characters of CHARACTERS.
STROKE_CLASSES: dict[str, str] = {
    "descender": "gjpqy" + "βγζημξφχψ",
    "ascender": "bdfhkt" + "βδζθλξ",
    "closed_loop": "ABDPQR" + "abdegpq" + "4689" + "ΔΘΦ" + "αβδθσφ",
    "diagonal_stroke": "AKMNVWXYZ" + "ky" + "47" + "ΔΛΣ" + "γκλνχ",
}
CHARACTER_ATTRIBUTES = ("uppercase", "lowercase", "digit", "letter", "latin", "greek",
                        *STROKE_CLASSES)
FONT_ATTRIBUTES = ("serif", "sans", "mono", "bold", "italic")
ATTRIBUTE_NAMES = [*CHARACTER_ATTRIBUTES, *FONT_ATTRIBUTES]
GROUP_NAMES = ["Latin upper", "Latin lower", "digit", "Greek upper", "Greek lower"]
_GROUP_CHARS = (LATIN_UPPER, LATIN_LOWER, DIGITS, GREEK_UPPER, GREEK_LOWER)
# Computer Modern (BaKoMa) fonts: file stem -> (family, bold, italic)
_CM_FONTS = {"cmr10": ("serif", False, False), "cmb10": ("serif", True, False),
             "cmti10": ("serif", False, True), "cmmi10": ("serif", False, True),
             "cmss10": ("sans", False, False), "cmtt10": ("mono", False, False)}

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
                  ) -> tuple[np.ndarray, np.ndarray, list[str], dict, list[str]]:
    """All (character, font, jitter) images: images, labels, class names, the fonts of each
    class and each image's source ``<font file>/<character>/<jitter>``. The first jitter of
    each pair is the plain rendering; the others draw angle in ±10°, scale in [0.8, 1.0],
    shift in ±3 px from a generator seeded by the (character, font) pair, so the images never
    depend on the split seed. Characters available in fewer than `min_fonts` fonts are
    dropped."""
    fonts = fonts if fonts is not None else text_fonts()
    images, labels, class_names, fonts_per_class, sources = [], [], [], {}, []
    for char in CHARACTERS:
        rendered, rendered_from = [], []
        for fi, path in enumerate(fonts):
            plain = render_char(char, path) if ord(char) in _cmap(path) else None
            if plain is None:  # not in the font, or a blank glyph
                continue
            rendered.append(pil_to_array(plain, image_size, channels))
            rendered_from.append(f"{path.name}/{char}/0")
            rng = np.random.default_rng([ord(char), fi])
            for j in range(1, jitters):
                angle, scale = rng.uniform(-10, 10), rng.uniform(0.8, 1.0)
                shift = tuple(rng.uniform(-3, 3, size=2))
                img = render_char(char, path, angle, scale, shift)
                if img is not None:
                    rendered.append(pil_to_array(img, image_size, channels))
                    rendered_from.append(f"{path.name}/{char}/{j}")
            fonts_per_class.setdefault(char, []).append(path.stem)
        if len(fonts_per_class.get(char, [])) < min_fonts:
            fonts_per_class.pop(char, None)
            continue
        images += rendered
        sources += rendered_from
        labels += [len(class_names)] * len(rendered)
        class_names.append(char)
    return (np.stack(images), np.asarray(labels, dtype=np.int64), class_names, fonts_per_class,
            sources)


# ----------------------------------------------------------------------------- attributes

def character_attributes(char: str) -> np.ndarray:
    """float32 (len(CHARACTER_ATTRIBUTES),) 0/1 attributes of a character of CHARACTERS."""
    if char not in CHARACTERS:
        raise ValueError(f"{char!r} is not a glyph character")
    upper, lower = char in LATIN_UPPER + GREEK_UPPER, char in LATIN_LOWER + GREEK_LOWER
    values = [upper, lower, char in DIGITS, upper or lower, char in LATIN_UPPER + LATIN_LOWER,
              char in GREEK_UPPER + GREEK_LOWER, *(char in chars for chars in STROKE_CLASSES.values())]
    return np.asarray(values, dtype=np.float32)


def character_group(char: str) -> int:
    """The character's coarse group: an index into GROUP_NAMES."""
    return next(g for g, chars in enumerate(_GROUP_CHARS) if char in chars)


def font_style(font: str | Path) -> tuple[str | None, bool, bool] | None:
    """(family, bold, italic) of a font file (name or path), family one of serif / sans /
    mono; None when the name is not one of matplotlib's fonts (see the module doc)."""
    stem = Path(font).stem
    if stem in _CM_FONTS:
        return _CM_FONTS[stem]
    if stem.startswith("DejaVu"):
        family = "mono" if stem.startswith("DejaVuSansMono") else \
            "sans" if stem.startswith("DejaVuSans") else "serif" if stem.startswith("DejaVuSerif") else None
        return (family, "Bold" in stem, "Oblique" in stem or "Italic" in stem) if family else None
    if stem.startswith("STIXGeneral"):
        style = stem.removeprefix("STIXGeneral")
        return ("serif", style.startswith("Bol"), "Ita" in style)
    return None


def font_attributes(font: str | Path) -> np.ndarray:
    """float32 (len(FONT_ATTRIBUTES),) 0/1: serif, sans, mono, bold, italic of a font file. A
    font :func:`font_style` does not know: family guessed from its name, bold / italic from
    "Bold" / "Italic" / "Oblique" in it."""
    style = font_style(font)
    if style is None:
        stem = Path(font).stem
        family = next((f for key, f in (("Mono", "mono"), ("Sans", "sans"), ("Serif", "serif"))
                       if key in stem), None)
        style = (family, "Bold" in stem, "Italic" in stem or "Oblique" in stem)
    family, bold, italic = style
    return np.asarray([family == "serif", family == "sans", family == "mono", bold, italic],
                      dtype=np.float32)


def glyph_attributes(sources) -> tuple[np.ndarray, np.ndarray]:
    """Attributes (N, 15) and groups (N,) of images given by their sources
    ``<font file>/<character>/<jitter>`` (``Split.paths`` of the glyph domain)."""
    attributes, groups = [], []
    for source in sources:
        font, char, _ = str(source).split("/")
        attributes.append(np.concatenate([character_attributes(char), font_attributes(font)]))
        groups.append(character_group(char))
    return (np.asarray(attributes, dtype=np.float32).reshape(-1, len(ATTRIBUTE_NAMES)),
            np.asarray(groups, dtype=np.int64))


def load_glyphs(root=None, *, image_size: int = 32, channels: int = 1, seed: int = 0,
                test_fraction: float = 0.5, val_fraction: float = 0.2,
                max_per_class: int | None = None, max_classes: int | None = None,
                download: bool = True, jitters: int = 3) -> Domain:
    """`root` and `download` are accepted for a uniform interface: glyphs need no files.
    Attributes and groups: see the module doc."""
    check_image_args(image_size, channels)
    images, labels, class_names, fonts, sources = cached_decode(  # rendered once per machine
        "glyphs", {"image_size": image_size, "channels": channels, "jitters": jitters},
        text_fonts(), lambda: render_glyphs(image_size, channels, jitters))
    attributes, groups = glyph_attributes(sources)
    used = sorted({f for v in fonts.values() for f in v})
    notes = {"fonts_per_class": fonts,
             "font_styles": {f: font_style(f + ".ttf") for f in used},
             "unknown_font_styles": [f for f in used if font_style(f + ".ttf") is None]}
    return domain_from_items("glyphs", images, labels, class_names, seed=seed,
                             test_fraction=test_fraction, val_fraction=val_fraction,
                             max_per_class=max_per_class, max_classes=max_classes,
                             provenance=PROVENANCE, license=LICENSE, notes=notes,
                             paths=sources, attributes=attributes, groups=groups,
                             attribute_names=ATTRIBUTE_NAMES, group_names=GROUP_NAMES)
