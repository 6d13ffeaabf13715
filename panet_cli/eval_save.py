"""``panet eval --save DIR``: every method's output per image, and one comparison sheet of each image.

A score says how much better; the sheet shows where and how. Layout of DIR:

    input/<image>.png     the degraded input every method saw (clipped to 8 bits: float noise is not kept)
    <method>/<image>.png  each method's output, rounded to 8 bits as it was scored
    sheets/<image>.png    the same crop of the input, every method and the clean image, labelled with PSNR

Every path is checked before the evaluation starts, so a long run never stops at its first write
because a file is already there.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from panet_cli.errors import PanetError
from panet_cli.evaluation import ImageResult, Protocol, Sample, Score, score
from panet_cli.sheets import Panel, cfa_as_colour, crop_side, differ_most, enlarge, save_sheet, tile, to_rgb8
from panet_cli.tasks import task_spec

INPUT, SHEETS = "input", "sheets"
CROP = 96  # side of the compared square, in output pixels
ZOOM = 2  # nearest-neighbour enlargement of the crops on the sheet


def method_folders(methods: Sequence[str]) -> dict[str, str]:
    """A distinct folder name per method: "NLM (OpenCV)" -> "nlm-opencv"."""
    folders: dict[str, str] = {}
    for method in methods:
        base = re.sub(r"[^a-z0-9]+", "-", method.lower()).strip("-") or "method"
        if base in (INPUT, SHEETS):
            base += "-output"
        name, k = base, 2
        while name in folders.values():
            name, k = f"{base}-{k}", k + 1
        folders[method] = name
    return folders


def _psnr(value: float) -> str:
    return "inf" if np.isinf(value) else f"{value:.2f} dB"


def _quantized(image: np.ndarray) -> np.ndarray:
    return np.rint(np.clip(np.asarray(image, dtype=np.float32), 0, 1) * 255).astype(np.float32) / 255


def _input_panel(sample: Sample, protocol: Protocol, y: int, x: int, side: int, zoom: int) -> Panel:
    """The degraded input's crop at the output scale, with what it is and (where comparable) its PSNR."""
    spec = task_spec(protocol.task)
    if spec.scaled:
        s = protocol.scale
        lr = sample.degraded[y // s:(y + side) // s, x // s:(x + side) // s]
        return Panel(enlarge(to_rgb8(lr), s * zoom), (f"input: {s}x smaller", "nearest, at output scale"))
    if spec.bayer:
        view = cfa_as_colour(sample.degraded, protocol.pattern)[y:y + side, x:x + side]
        return Panel(enlarge(to_rgb8(view), zoom), (f"input: {protocol.pattern} mosaic", "each sample in its colour"))
    what = f"{spec.level.label} {protocol.level:g}" if spec.level is not None and protocol.level is not None else "degraded"
    psnr = score(sample.degraded, sample.target, protocol)[0]
    crop = sample.degraded[y:y + side, x:x + side]
    return Panel(enlarge(to_rgb8(crop), zoom), (f"input: {what}", f"PSNR {_psnr(psnr)}"))


def eval_sheet(sample: Sample, outputs: dict[str, np.ndarray], scores: dict[str, Score], protocol: Protocol, *,
               dataset: str = "", crop: int = CROP, zoom: int = ZOOM) -> np.ndarray:
    """One image's sheet: input, every method, clean; the square where the methods differ most.

    With a single method the square is where it is furthest from the clean image. Scores on the labels
    are those of the whole image (the table's), not of the crop.
    """
    h, w = sample.target.shape[:2]
    step = protocol.scale if task_spec(protocol.task).scaled else 1
    side = crop_side(h, w, crop, step=step, margin=protocol.shave)
    rounded = {m: _quantized(out) for m, out in outputs.items()}
    y, x = differ_most(list(rounded.values()), side, reference=sample.target, step=step, margin=protocol.shave)
    panels = [_input_panel(sample, protocol, y, x, side, zoom)]
    for method, out in rounded.items():
        s = scores[method]
        panels.append(Panel(enlarge(to_rgb8(out[y:y + side, x:x + side]), zoom),
                            (method, f"PSNR {_psnr(s.psnr)}, SSIM {s.ssim:.4f}")))
    panels.append(Panel(enlarge(to_rgb8(sample.target[y:y + side, x:x + side]), zoom), ("clean", "")))
    where = f"{dataset}/{sample.name}" if dataset else sample.name
    title = (f"{where}: {protocol.describe()}",
             f"crop {side} x {side} at x {x}, y {y} (where the methods differ most), shown x{zoom}; "
             "scores are of the whole image")
    return tile(panels, title)


@dataclass
class EvalSaver:
    """Writes what :func:`panet_cli.evaluation.evaluate` hands its ``keep`` hook, image by image."""

    folder: Path
    protocol: Protocol
    methods: Sequence[str]
    dataset: str = ""
    crop: int = CROP
    zoom: int = ZOOM
    overwrite: bool = False
    sheets: list[Path] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.folder = Path(self.folder)
        self.folders = method_folders(self.methods)

    def paths(self, name: str) -> list[Path]:
        """Every file written for the image called ``name``: input, one per method, the sheet."""
        folders = [INPUT, *self.folders.values(), SHEETS]
        return [self.folder / sub / f"{name}.png" for sub in folders]

    def plan(self, files: Sequence[Path]) -> None:
        """Refuse before any work: a folder that is a file, two images of one name, files already there."""
        if self.folder.exists() and not self.folder.is_dir():
            raise PanetError(f"{self.folder}: exists and is not a folder (--save needs a folder)")
        seen: dict[str, Path] = {}
        for path in files:
            if path.stem in seen:
                raise PanetError(f"{seen[path.stem]} and {path} have the same name: --save writes one file per name")
            seen[path.stem] = path
        if not self.overwrite:
            taken = [p for name in seen for p in self.paths(name) if p.exists()]
            if taken:
                more = f" (and {len(taken) - 1} more)" if len(taken) > 1 else ""
                raise PanetError(f"{taken[0]}: already exists{more}; use --overwrite to replace, or another --save folder")

    def __call__(self, sample: Sample, outputs: dict[str, np.ndarray], result: ImageResult) -> None:
        from panet_cli.images import LoadedImage, write_image

        name = sample.name
        write_image(self.folder / INPUT / f"{name}.png", LoadedImage(np.clip(sample.degraded, 0, 1)),
                    overwrite=self.overwrite)
        for method, out in outputs.items():
            write_image(self.folder / self.folders[method] / f"{name}.png", LoadedImage(_quantized(out)),
                        overwrite=self.overwrite)
        sheet = eval_sheet(sample, outputs, result.scores, self.protocol, dataset=self.dataset, crop=self.crop,
                           zoom=self.zoom)
        path = self.folder / SHEETS / f"{name}.png"
        save_sheet(path, sheet, overwrite=self.overwrite)
        self.sheets.append(path)
