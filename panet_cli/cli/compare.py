"""``panet compare A B``: an input and its result in one labelled picture, for a user's own photo.

No ground truth is needed: this is for looking, not scoring. The drawing is in :mod:`panet_cli.sheets`;
this module picks the output name, refuses to replace files, and reports errors as one line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from panet_cli.cli.options import stderr_console, usage_error, user_errors

SUFFIX = "_compare"


def default_output(result: Path) -> Path:
    """Where the sheet goes without -o: next to the result, e.g. photo_denoised_compare.png."""
    return result.with_name(f"{result.stem}{SUFFIX}.png")


def compare_command(
    a: Path = typer.Argument(..., help="The input, e.g. photo.png.", show_default=False),
    b: Path = typer.Argument(..., help="Its result, e.g. photo_denoised.png (or any second image).", show_default=False),
    output: Optional[Path] = typer.Option(
        None, "--output", "-o", show_default=False,
        help="Sheet file (PNG unless its suffix says otherwise). Default: next to B, e.g. photo_denoised_compare.png."),
    split: bool = typer.Option(False, "--split", help="One picture: A's left half beside B's right half."),
    crop: Optional[int] = typer.Option(
        None, "--crop", min=8, show_default=False, help="Only the SIDE x SIDE square where A and B differ most."),
    zoom: int = typer.Option(1, "--zoom", min=1, max=16, help="Enlarge by this factor, nearest neighbour, to see pixels."),
    label_a: Optional[str] = typer.Option(None, "--label-a", show_default=False, help="Label of A (default: its file name)."),
    label_b: Optional[str] = typer.Option(None, "--label-b", show_default=False, help="Label of B (default: its file name)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the sheet file if it exists."),
) -> None:
    """Put an image and its result side by side (or split down the middle), labelled, in one picture.

    A smaller input (an SR input beside its output) is enlarged nearest-neighbour to the result's size.
    """
    console = stderr_console()
    target = output if output is not None else default_output(b)
    try:
        same = [p for p in (a, b) if p.exists() and target.exists() and target.resolve() == p.resolve()]
    except OSError:
        same = []
    if same:
        raise usage_error(console, f"{target}: is one of the images compared; name another file with -o")
    with user_errors(console):
        from panet_cli.images import read_image
        from panet_cli.sheets import compare_sheet, save_sheet

        if target.exists() and not overwrite:  # before reading anything: the answer is the same
            from panet_cli.errors import ImageWriteError

            raise ImageWriteError(f"{target}: already exists (use --overwrite to replace it)")
        first, second = read_image(a), read_image(b)
        sheet = compare_sheet(first.pixels, second.pixels, (label_a or a.name, label_b or b.name),
                              split=split, crop=crop, zoom=zoom)
        save_sheet(target, sheet, overwrite=overwrite)
    console.print(f"wrote {target}", markup=False, highlight=False)


def register(app: typer.Typer) -> None:
    app.command("compare")(compare_command)
