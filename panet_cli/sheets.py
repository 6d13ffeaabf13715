"""Comparison sheets: crops of several images side by side, each labelled, in one PNG.

Restoration is judged by eye, so ``panet eval --save`` and ``panet compare`` draw the pictures a user
looks at before trusting a number. Everything here works on uint8 RGB arrays and uses Pillow alone
(its default font), so the base install can draw a sheet. Writing goes through
:func:`panet_cli.images.write_image`: atomic, and never over an existing file unless asked.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from panet_cli.errors import PanetError

GAP = 6  # pixels around and between panels
FONT_SIZE = 13
LINE_HEIGHT = 17  # pixels per label line (FONT_SIZE plus descenders and spacing)
BACKGROUND = (32, 32, 32)
TEXT = (235, 235, 235)
DIVIDER = (255, 255, 255)


@dataclass(frozen=True)
class Panel:
    """One picture of a sheet and the lines of text above it."""

    pixels: np.ndarray  # uint8 (h, w, 3)
    lines: tuple[str, ...] = ()
    right: tuple[str, ...] = ()  # lines set flush right, each in the right half (a split view's second label)


# ------------------------------------------------------------------------------------- pixels


def to_rgb8(image: np.ndarray) -> np.ndarray:
    """Float (H, W, C) in [0, 1], C = 1 or 3, as the uint8 RGB a viewer shows (rounded, grey replicated)."""
    array = np.asarray(image, dtype=np.float32)
    if array.ndim == 2:
        array = array[:, :, None]
    u8 = np.rint(np.clip(array, 0.0, 1.0) * 255).astype(np.uint8)
    return np.repeat(u8, 3, axis=2) if u8.shape[2] == 1 else np.ascontiguousarray(u8[:, :, :3])


def enlarge(pixels: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour enlargement: every pixel becomes a factor x factor block, nothing is invented."""
    if factor == 1:
        return pixels
    return np.repeat(np.repeat(pixels, factor, axis=0), factor, axis=1)


def cfa_as_colour(cfa: np.ndarray, pattern: str) -> np.ndarray:
    """A one-channel Bayer CFA (H, W, 1) shown as the sensor saw it: each sample in its own colour."""
    from panet_cli.degradations import bayer_masks

    h, w = cfa.shape[:2]
    masks = bayer_masks(pattern, h, w).permute(1, 2, 0).numpy()
    return (masks * cfa[:, :, :1]).astype(np.float32)


def whole_factor(small: tuple[int, int], large: tuple[int, int]) -> int | None:
    """The whole number k with large == k * small (height and width), or None."""
    (sh, sw), (lh, lw) = small, large
    if sh and sw and lh % sh == 0 and lw % sw == 0 and lh // sh == lw // sw:
        return lh // sh
    return None


# ---------------------------------------------------------------------------------- the crop


def differ_most(
    images: Sequence[np.ndarray],
    side: int,
    *,
    reference: np.ndarray | None = None,
    step: int = 1,
    margin: int = 0,
) -> tuple[int, int]:
    """Top-left (y, x) of the ``side`` x ``side`` square where ``images`` disagree most.

    Disagreement per pixel is the spread of the images (their standard deviation, averaged over
    channels); with one image and a ``reference`` it is the distance to the reference instead.
    The square lies ``margin`` pixels inside the border (SR's shaved pixels are not scored) and its
    corner on multiples of ``step`` (so an SR crop maps onto whole input pixels).
    """
    stack = np.stack([np.asarray(im, dtype=np.float32) for im in images])
    if len(stack) == 1 and reference is not None:
        stack = np.concatenate([stack, np.asarray(reference, dtype=np.float32)[None]])
    spread = stack.std(axis=0).mean(axis=2) if len(stack) > 1 else np.zeros(stack.shape[1:3], np.float32)
    h, w = spread.shape
    low = -(-margin // step) * step  # first multiple of step at or inside the margin
    if side > min(h, w) - 2 * low:
        raise PanetError(f"a {side} px crop does not fit a {w}x{h} image inside {margin} px borders")
    # Box sums of every side x side square from the summed-area table, then the best allowed corner.
    table = np.zeros((h + 1, w + 1), np.float64)
    table[1:, 1:] = spread.cumsum(0).cumsum(1)
    sums = table[side:, side:] - table[:-side, side:] - table[side:, :-side] + table[:-side, :-side]
    allowed = np.full(sums.shape, -np.inf)
    ys = np.arange(low, h - side - margin + 1, step)
    xs = np.arange(low, w - side - margin + 1, step)
    allowed[np.ix_(ys, xs)] = sums[np.ix_(ys, xs)]
    y, x = np.unravel_index(int(np.argmax(allowed)), allowed.shape)
    return int(y), int(x)


def crop_side(height: int, width: int, wanted: int, *, step: int = 1, margin: int = 0) -> int:
    """The crop side to use: ``wanted``, or less for a small image, a multiple of ``step``."""
    low = -(-margin // step) * step
    side = min(wanted, height - 2 * low, width - 2 * low)
    side -= side % step
    if side < step:
        raise PanetError(f"a {width}x{height} image is too small for a comparison crop")
    return side


# -------------------------------------------------------------------------------------- layout


def _font():
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=FONT_SIZE)
    except (TypeError, OSError, ImportError):  # Pillow without FreeType: the small bitmap font
        return ImageFont.load_default()


def _fit(draw, text: str, width: int, font) -> str:
    """``text`` cut with an ellipsis so that it fits ``width`` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "...", font=font) > width:
        text = text[:-1]
    return text + "..."


def label_height(lines: int) -> int:
    return lines * LINE_HEIGHT


def sheet_size(panel_sizes: Sequence[tuple[int, int]], lines: int, title_lines: int = 0) -> tuple[int, int]:
    """(width, height) of :func:`tile`'s sheet for panels of these (height, width) in one row."""
    width = GAP + sum(w + GAP for _, w in panel_sizes)
    height = label_height(title_lines) + (GAP if title_lines else 0) + GAP + label_height(lines) + max(
        h for h, _ in panel_sizes) + GAP
    return width, height


def tile(panels: Sequence[Panel], title: Sequence[str] = ()) -> np.ndarray:
    """The panels in one row, each under its label lines, with ``title`` lines across the top.

    Layout (see :func:`sheet_size`): a GAP margin, the title, a GAP, then every panel's label strip and
    picture; panels are GAP apart. Pictures are pasted pixel for pixel.
    """
    from PIL import Image, ImageDraw

    if not panels:
        raise PanetError("nothing to put on a sheet")
    lines = max(max(len(p.lines), len(p.right)) for p in panels)
    width, height = sheet_size([p.pixels.shape[:2] for p in panels], lines, len(title))
    sheet = Image.new("RGB", (width, height), BACKGROUND)
    draw, font = ImageDraw.Draw(sheet), _font()
    top = GAP
    for k, line in enumerate(title):
        draw.text((GAP, top + k * LINE_HEIGHT), _fit(draw, line, width - 2 * GAP, font), fill=TEXT, font=font)
    if title:
        top += label_height(len(title)) + GAP
    x = GAP
    for panel in panels:
        h, w = panel.pixels.shape[:2]
        for k, line in enumerate(panel.lines):
            draw.text((x, top + k * LINE_HEIGHT), _fit(draw, line, w // 2 if panel.right else w, font),
                      fill=TEXT, font=font)
        for k, line in enumerate(panel.right):
            line = _fit(draw, line, w // 2 - GAP, font)
            draw.text((x + w - draw.textlength(line, font=font), top + k * LINE_HEIGHT), line, fill=TEXT, font=font)
        sheet.paste(Image.fromarray(np.ascontiguousarray(panel.pixels), "RGB"), (x, top + label_height(lines)))
        x += w + GAP
    return np.asarray(sheet)


# ------------------------------------------------------------------------------ panet compare


def match_sizes(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Both pictures at the larger one's size (the smaller enlarged nearest-neighbour, as an SR input).

    Returns the two and the factor each was enlarged by (1 for the larger).
    """
    if a.shape[:2] == b.shape[:2]:
        return a, b, 1, 1
    if (k := whole_factor(a.shape[:2], b.shape[:2])) is not None:
        return enlarge(a, k), b, k, 1
    if (k := whole_factor(b.shape[:2], a.shape[:2])) is not None:
        return a, enlarge(b, k), 1, k
    (ah, aw), (bh, bw) = a.shape[:2], b.shape[:2]
    raise PanetError(f"the images are {aw}x{ah} and {bw}x{bh}: neither is a whole multiple of the other")


def compare_sheet(
    a: np.ndarray,
    b: np.ndarray,
    labels: tuple[str, str],
    *,
    split: bool = False,
    crop: int | None = None,
    zoom: int = 1,
) -> np.ndarray:
    """An input and its result (float (H, W, C) in [0, 1]) side by side, or split down the middle.

    The smaller is enlarged nearest-neighbour to the other's size first (an SR input beside its
    output). ``crop`` keeps the ``crop`` x ``crop`` square where they differ most; ``zoom`` enlarges
    the pictures nearest-neighbour. In a split view the left half is A's and the right half B's, with a
    GAP-wide divider between them, so no pixel of either is painted over.
    """
    a8, b8 = to_rgb8(a), to_rgb8(b)
    a8, b8, ka, kb = match_sizes(a8, b8)
    labels = (labels[0] + (f" (x{ka}, nearest)" if ka > 1 else ""), labels[1] + (f" (x{kb}, nearest)" if kb > 1 else ""))
    if crop is not None:
        h, w = a8.shape[:2]
        side = crop_side(h, w, crop)
        y, x = differ_most([a8.astype(np.float32) / 255, b8.astype(np.float32) / 255], side)
        a8, b8 = a8[y:y + side, x:x + side], b8[y:y + side, x:x + side]
    a8, b8 = enlarge(a8, zoom), enlarge(b8, zoom)
    if not split:
        return tile([Panel(a8, (labels[0],)), Panel(b8, (labels[1],))])
    h, w = a8.shape[:2]
    half = w // 2
    left, right = a8[:, :half], b8[:, half:]
    divider = np.empty((h, GAP, 3), np.uint8)
    divider[:] = DIVIDER
    picture = np.concatenate([left, divider, right], axis=1)
    return tile([Panel(picture, (f"< {labels[0]}",), (f"{labels[1]} >",))])


def save_sheet(path: str | Path, sheet: np.ndarray, *, overwrite: bool = False) -> None:
    """Write a sheet as an 8-bit image (PNG for a .png path), atomically; an existing file needs ``overwrite``."""
    from panet_cli.images import LoadedImage, write_image

    write_image(path, LoadedImage(pixels=sheet.astype(np.float32) / 255.0, bit_depth=8), overwrite=overwrite)
