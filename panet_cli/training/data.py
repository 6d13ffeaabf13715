"""Training crops from a folder of clean images, kept in memory as uint8."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from panet_cli import images
from panet_cli.degradations import bicubic_downscale
from panet_cli.errors import PanetError
from panet_cli.inference import BT601_LUMA
from panet_cli.metrics import y_channel_8bit


def list_images(folder: str | Path) -> list[Path]:
    """Every image under ``folder`` (sub-folders too), sorted: the package's one lister."""
    paths = images.list_images(folder, recursive=True)
    if not paths:
        raise PanetError(f"no images found in {folder}")
    return paths


JPEG_SUFFIXES = {".jpg", ".jpeg"}


def load_uint8(paths: list[Path], channels: int, shrink: int = 1, shrink_jpeg_only: bool = False) -> list[torch.Tensor]:
    """Images as (C, H, W) uint8 tensors, read through :func:`panet_cli.images.read_image`.

    ``channels`` 1 converts colour images to MATLAB's 8-bit Y (studio range), the grey images
    the grayscale benchmarks (LIVE1, classic5) are scored on, so training sees what eval sees.
    ``shrink`` > 1 first downscales by that factor (antialiased bicubic): JPEG training images such as
    BSDS store colour at half resolution (4:2:0), so a model learns that colour is smooth; after shrinking
    by 2 it is full resolution again, which demosaicing, and any colour detail, needs. ``shrink_jpeg_only``
    leaves lossless files (PNG, TIFF ...) at full size: their colour is already full resolution.
    """
    out = []
    for p in paths:
        # read as the task commands read (EXIF orientation, 16-bit, grey, alpha dropped), then 8-bit RGB
        pixels = images.read_image(p).pixels
        if pixels.shape[2] == 1:
            pixels = np.repeat(pixels, 3, axis=2)
        rgb = torch.from_numpy(np.rint(pixels * 255).astype(np.uint8)).permute(2, 0, 1).contiguous()
        if shrink > 1 and (not shrink_jpeg_only or p.suffix.lower() in JPEG_SUFFIXES):
            small = bicubic_downscale(rgb.float().div(255)[None], shrink)[0]
            rgb = small.clamp(0, 1).mul(255).round().to(torch.uint8)
        if channels == 1:
            y = y_channel_8bit(rgb.float().div(255)).mul(255).round()
            rgb = y.to(torch.uint8)
        out.append(rgb)
    return out


def split_holdout(folders: list[list[Path]], holdout: int) -> tuple[list[Path], list[Path]]:
    """(training, validation) paths: the last ``holdout`` images of *each* folder are held out.

    Validating on every folder keeps a model honest on each kind of image it trains on (small BSDS
    JPEGs and large lossless photos differ; a model can gain on one and lose on the other).
    """
    train: list[Path] = []
    val: list[Path] = []
    for paths in folders:
        k = min(holdout, len(paths) - 1)
        train += paths[: len(paths) - k]
        val += paths[len(paths) - k :]
    return train, val


class CropSampler:
    """Random crops with random flips and 90-degree rotations, drawn from a seeded generator.

    ``by_area`` picks each crop's image with probability proportional to its pixel count, so every
    pixel of the training set is equally likely (a 1.3 MP photo is not worth one 0.15 MP BSDS image).
    ``colour`` (colour crops only) shuffles each crop's channels and scales its saturation (see
    :func:`colour_augment`).
    """

    def __init__(self, images: list[torch.Tensor], patch: int, seed: int, by_area: bool = False,
                 colour: bool = False) -> None:
        self.images = [im for im in images if min(im.shape[1:]) >= patch]
        if not self.images:
            raise PanetError(f"no training image is at least {patch} pixels on each side")
        self.patch = patch
        self.colour = colour and self.images[0].shape[0] == 3
        self.generator = torch.Generator().manual_seed(seed)
        areas = torch.tensor([float(im.shape[1] * im.shape[2]) for im in self.images])
        self.weights = areas / areas.sum() if by_area else None

    def _pick(self) -> torch.Tensor:
        g = self.generator
        if self.weights is None:
            return self.images[int(torch.randint(len(self.images), (1,), generator=g))]
        return self.images[int(torch.multinomial(self.weights, 1, generator=g))]

    def batch(self, size: int) -> torch.Tensor:
        g = self.generator
        crops = []
        for _ in range(size):
            im = self._pick()
            y = int(torch.randint(im.shape[1] - self.patch + 1, (1,), generator=g))
            x = int(torch.randint(im.shape[2] - self.patch + 1, (1,), generator=g))
            crop = im[:, y : y + self.patch, x : x + self.patch]
            if torch.rand(1, generator=g) < 0.5:
                crop = crop.flip(2)
            crop = torch.rot90(crop, int(torch.randint(4, (1,), generator=g)), dims=(1, 2))
            crops.append(crop)
        batch = torch.stack(crops).float().div_(255)
        return colour_augment(batch, g) if self.colour else batch


# Saturation factors are drawn log-uniformly in this range: more often up than down, because the
# training photos are mostly duller than benchmark scenes such as McMaster's saturated close-ups.
SATURATION_RANGE = (0.7, 1.8)


def colour_augment(rgb: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each (3, H, W) crop of a batch with its channels in a random order and its saturation scaled.

    Why: BSDS and the photos hold few saturated reds and blues, and a demosaicer or denoiser that never
    saw them smears their edges (McMaster). Saturation moves each pixel away from (or towards) its
    luma, clipped to [0, 1] as a saturated sensor would; the channel order makes every hue as common as
    any other. Luma stays put, so the image's structure does too.
    """
    n = rgb.shape[0]
    order = torch.stack([torch.randperm(3, generator=generator) for _ in range(n)])
    shuffled = torch.gather(rgb, 1, order[:, :, None, None].expand_as(rgb))
    low, high = (float(np.log(v)) for v in SATURATION_RANGE)
    factor = torch.exp(torch.empty(n, 1, 1, 1).uniform_(low, high, generator=generator))
    luma = (shuffled * torch.tensor(BT601_LUMA).view(1, 3, 1, 1)).sum(1, keepdim=True)
    return (luma + factor * (shuffled - luma)).clamp_(0, 1)


def center_crops(images: list[torch.Tensor], size: int) -> torch.Tensor:
    """Fixed validation crops: the centre ``size`` x ``size`` of every image."""
    crops = []
    for im in images:
        y = (im.shape[1] - size) // 2
        x = (im.shape[2] - size) // 2
        crops.append(im[:, y : y + size, x : x + size])
    return torch.stack(crops).float().div(255)
