"""``panet degrade``: make test inputs from clean images with the same code training and eval use.

One degradation per call. Outputs are 8-bit files named after the inputs in the output folder:
PNG, except ``--jpeg`` which writes the compressed .jpg itself (the file a user would have).
A bad input gets one line on stderr and the others are still processed (exit 1 at the end).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, List, Optional

import typer

from panet_cli.cli.options import Pattern, print_error, stderr_console, usage_error, user_errors

if TYPE_CHECKING:
    import numpy as np


def _write_bytes(path: Path, data: bytes, overwrite: bool) -> None:
    """Write atomically (temporary file, then rename), refusing to replace a file without ``overwrite``."""
    from panet_cli.errors import ImageWriteError

    exists = f"{path}: already exists (use --overwrite to replace it)"
    if path.exists() and not overwrite:
        raise ImageWriteError(exists)
    from panet_cli.files import atomic_open

    try:
        with atomic_open(path, replace=overwrite) as f:  # a file that appears meanwhile is kept too
            f.write(data)
    except FileExistsError:
        raise ImageWriteError(exists) from None
    except OSError as e:
        raise ImageWriteError(f"{path}: cannot write ({e.strerror or e})") from None


def degrade_one(path: Path, out_dir: Path, *, noise: float | None, jpeg: int | None, downscale: int | None,
                mosaic: str | None, gray: bool, seed: int, overwrite: bool) -> Path:
    """Degrade one file and write the result; returns the path written."""
    import torch

    from panet_cli import degradations as d
    from panet_cli.errors import ImageReadError
    from panet_cli.images import LoadedImage, read_image, write_image
    from panet_cli.metrics import y_channel_8bit

    pixels = read_image(path).pixels
    if downscale is not None and min(pixels.shape[:2]) < downscale:
        h, w = pixels.shape[:2]
        raise ImageReadError(f"{path}: {w}x{h} pixels is smaller than the --downscale factor {downscale}")
    x = torch.from_numpy(pixels.transpose(2, 0, 1).copy())
    x = d.quantize_8bit(x)  # 16-bit sources become the 8-bit files the protocols start from
    if gray:
        x = y_channel_8bit(x)
    if jpeg is not None:
        target = out_dir / f"{path.stem}.jpg"
        _write_bytes(target, d.jpeg_bytes(d.to_uint8_hwc(x), jpeg), overwrite)
        return target
    if noise is not None:
        generator = torch.Generator().manual_seed(d.image_seed(path.stem, seed))
        y = d.add_gaussian_noise(x, noise, generator)
    elif downscale is not None:
        y = d.quantize_8bit(d.bicubic_downscale(d.crop_to_multiple(x, downscale), downscale))
    else:
        assert mosaic is not None
        if x.shape[0] == 1:
            x = x.expand(3, -1, -1)
        y = d.bayer_cfa(x, mosaic)
    target = out_dir / f"{path.stem}.png"
    array: np.ndarray = y.permute(1, 2, 0).numpy()
    write_image(target, LoadedImage(pixels=array, bit_depth=8), overwrite=overwrite)
    return target


def degrade_command(
    inputs: List[Path] = typer.Argument(..., help="Clean images, or folders of them."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (created if needed)."),
    noise: Optional[float] = typer.Option(None, "--noise", min=0, help="Add Gaussian noise of this std (0-255 scale); clipped and rounded to 8 bits."),
    jpeg: Optional[int] = typer.Option(None, "--jpeg", min=1, max=100, help="JPEG-compress at this quality (Pillow, 4:2:0 for colour); writes the .jpg."),
    downscale: Optional[int] = typer.Option(None, "--downscale", min=2, max=8, help="Shrink by this factor, MATLAB-style bicubic (image cropped to a multiple first)."),
    mosaic: Optional[Pattern] = typer.Option(None, "--mosaic", case_sensitive=False, help="Bayer-sample with this pattern; writes the one-channel CFA as a grey PNG."),
    gray: bool = typer.Option(False, "--gray", help="Convert to grey first (Y of BT.601 YCbCr, as the JPEG benchmarks)."),
    seed: int = typer.Option(0, help="Noise seed (each image gets its own, derived from its file name)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing output files."),
) -> None:
    """Degrade clean images: noise, JPEG, bicubic downscaling or a Bayer mosaic (pick one).

    Alpha, EXIF and ICC data are not carried over: outputs are plain 8-bit test inputs.
    """
    chosen = [flag for flag, value in (("--noise", noise), ("--jpeg", jpeg), ("--downscale", downscale),
                                       ("--mosaic", mosaic)) if value is not None]
    console = stderr_console()
    if len(chosen) != 1:
        raise usage_error(console, "pick exactly one of --noise, --jpeg, --downscale, --mosaic"
                          + (f" (got {', '.join(chosen)})" if chosen else ""))
    with user_errors(console):
        from panet_cli.errors import PanetError
        from panet_cli.evaluation import collect_images

        files: list[Path] = []
        failed = written = 0
        for item in inputs:
            try:
                files.extend(collect_images([item]))
            except PanetError as error:
                print_error(console, str(error))
                failed += 1
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise PanetError(f"{out}: cannot create the output folder ({e.strerror or e})") from None
        from panet_cli.files import remove_stale_temporaries

        remove_stale_temporaries(out)  # an earlier run killed mid-write
        for path in files:
            try:
                degrade_one(path, out, noise=noise, jpeg=jpeg, downscale=downscale,
                            mosaic=mosaic.value if mosaic else None, gray=gray, seed=seed, overwrite=overwrite)
                written += 1
            except PanetError as error:
                print_error(console, str(error))
                failed += 1
    if failed:
        console.print(f"{failed} input(s) failed; {written} written to {out}", markup=False)
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("degrade")(degrade_command)
