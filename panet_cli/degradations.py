"""Degradations used to train and evaluate: pure functions with explicit seeds.

Images are float tensors in [0, 1], shaped (..., C, H, W), batched or not. Noise levels use
the 0-255 scale of the papers. One module serves training, ``panet degrade`` and ``panet eval``
so that a model is always measured on exactly the inputs it was trained for.
"""

from __future__ import annotations

import functools
import io
import math
import zlib

import numpy as np
import torch

from panet_cli.errors import PanetError
from panet_cli.tasks import BAYER_PATTERNS



# --- 8-bit files and seeds ------------------------------------------------------------------


def quantize_8bit(image: torch.Tensor) -> torch.Tensor:
    """Clip to [0, 1] and round to the 256 levels of an 8-bit file, as users' images are."""
    return image.clamp(0, 1).mul(255).round().div(255)


def image_seed(name: str, seed: int = 0) -> int:
    """A per-image seed from a file name and a run seed.

    Keyed on the name (not the position in a folder) so that ``--limit``, file order or a
    different baseline set never change the noise an image receives.
    """
    return zlib.crc32(f"{seed}:{name}".encode()) & 0x7FFFFFFF


# --- Gaussian noise -------------------------------------------------------------------------


def add_gaussian_noise(
    image: torch.Tensor,
    sigma: float | torch.Tensor,
    generator: torch.Generator | None = None,
    clip_round: bool = True,
) -> torch.Tensor:
    """Add white Gaussian noise of std ``sigma``/255 to a clean image.

    ``sigma`` may be a tensor with one value per batch item (blind training). With
    ``clip_round`` (the default) the result is clipped and rounded to 8 bits, since a model
    trained on unclipped float noise loses about 0.6 dB on real 8-bit files. A fixed
    ``sigma`` with ``torch.Generator().manual_seed(image_seed(name, seed))`` gives the same
    noisy image to every method compared.
    """
    sigma_t = torch.as_tensor(sigma, dtype=image.dtype, device=image.device)
    if sigma_t.ndim == 1:
        sigma_t = sigma_t.view(-1, *([1] * (image.ndim - 1)))
    noise = torch.randn(image.shape, generator=generator, dtype=image.dtype, device=image.device)
    noisy = image + noise * (sigma_t / 255.0)
    return quantize_8bit(noisy) if clip_round else noisy


def sample_sigmas(n: int, low: float, high: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """``n`` noise levels drawn uniformly from [low, high] (0-255 scale), for blind training."""
    if not 0 <= low <= high:
        raise PanetError(f"noise range {low}-{high} is not a valid range of sigmas (0 <= low <= high)")
    return low + torch.rand(n, generator=generator) * (high - low)


QUALITY_SAMPLINGS = ("uniform", "log")


def sample_qualities(
    n: int, low: int, high: int, generator: torch.Generator | None = None, sampling: str = "uniform"
) -> list[int]:
    """``n`` JPEG qualities, integers in [low, high], drawn uniformly or (``sampling="log"``) log-uniformly.

    ``log``: below 50 libjpeg's quantisation step is proportional to 1/quality, so this gives every factor
    of coarseness the same share of training (q 10-20 gets 41% of a 10-60 range instead of 22%), where the
    artifacts are worst and a fixed-capacity model has the most to learn.
    """
    _check_quality(low)
    _check_quality(high)
    if low > high:
        raise PanetError(f"JPEG quality range {low}-{high} is empty")
    if sampling == "uniform":
        return [int(q) for q in torch.randint(low, high + 1, (n,), generator=generator)]
    if sampling == "log":
        u = torch.rand(n, generator=generator, dtype=torch.float64)
        q = torch.exp(math.log(low) + u * (math.log(high + 1) - math.log(low)))
        return [int(v) for v in q.floor().long().clamp(low, high)]
    raise ValueError(f"unknown quality sampling {sampling!r}; use one of {QUALITY_SAMPLINGS}")


# --- JPEG -----------------------------------------------------------------------------------


def _check_quality(quality: int) -> None:
    if not 1 <= int(quality) <= 100:
        raise PanetError(f"JPEG quality {quality} is outside 1-100")


def to_uint8_hwc(image: torch.Tensor) -> np.ndarray:
    """One (C, H, W) float image as the (H, W, C) uint8 array an 8-bit file holds."""
    return quantize_8bit(image.detach().float().cpu()).mul(255).round().to(torch.uint8).permute(1, 2, 0).numpy()


def jpeg_bytes(image_u8: np.ndarray, quality: int) -> bytes:
    """Encode an (H, W) / (H, W, 1) grey or (H, W, 3) colour uint8 array as JPEG with Pillow.

    Colour uses Pillow's default 4:2:0 chroma subsampling, as cameras and the papers do.
    """
    from PIL import Image

    _check_quality(quality)
    array = image_u8[..., 0] if image_u8.ndim == 3 and image_u8.shape[2] == 1 else image_u8
    if array.ndim == 3 and array.shape[2] != 3:
        raise PanetError(f"JPEG needs 1 or 3 channels, got {array.shape[2]}")
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buffer, format="JPEG", quality=int(quality))
    return buffer.getvalue()


def decode_jpeg(data: bytes, channels: int) -> np.ndarray:
    """Decode JPEG bytes to an (H, W, channels) uint8 array."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        array = np.asarray(im.convert("L" if channels == 1 else "RGB"))
    return array[..., None] if array.ndim == 2 else array


def jpeg_compress(image: torch.Tensor, quality: int) -> torch.Tensor:
    """Pillow JPEG round trip at ``quality`` of a (..., C, H, W) image, C = 1 (grey) or 3 (colour, 4:2:0)."""
    channels = image.shape[-3]
    if channels not in (1, 3):
        raise PanetError(f"JPEG needs 1 or 3 channels, got {channels}")
    flat = image.reshape(-1, *image.shape[-3:])
    out = []
    for item in flat:
        decoded = decode_jpeg(jpeg_bytes(to_uint8_hwc(item), quality), channels)
        out.append(torch.from_numpy(decoded.copy()).permute(2, 0, 1))
    return torch.stack(out).to(image.dtype).div(255).reshape(image.shape).to(image.device)


# --- MATLAB-style bicubic resizing ----------------------------------------------------------


def _cubic(x: torch.Tensor) -> torch.Tensor:
    """Keys' cubic convolution kernel with a = -0.5 (MATLAB's 'bicubic')."""
    ax = x.abs()
    ax2, ax3 = ax * ax, ax * ax * ax
    near = 1.5 * ax3 - 2.5 * ax2 + 1
    far = -0.5 * ax3 + 2.5 * ax2 - 4 * ax + 2
    return torch.where(ax <= 1, near, torch.where(ax <= 2, far, torch.zeros_like(ax)))


@functools.lru_cache(maxsize=64)
def _resize_matrix(in_len: int, out_len: int, scale: float, antialias: bool = True) -> torch.Tensor:
    """(out_len, in_len) float64 matrix doing MATLAB imresize's 1-D bicubic resampling.

    Output pixel x (1-based) samples input coordinate u = x/scale + (1 - 1/scale)/2. When
    shrinking with antialiasing the kernel is stretched by 1/scale (and scaled by ``scale``),
    so it low-passes before subsampling. Taps outside the image are mirrored back in
    (index sequence 1..n, n..1 repeated), and each row's weights are normalised to sum to 1.
    """
    x = torch.arange(1, out_len + 1, dtype=torch.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)
    stretch = scale < 1 and antialias
    width = 4.0 / scale if stretch else 4.0
    left = torch.floor(u - width / 2)
    taps = math.ceil(width) + 2
    idx = left[:, None] + torch.arange(taps, dtype=torch.float64)[None, :]
    dist = u[:, None] - idx
    weights = scale * _cubic(scale * dist) if stretch else _cubic(dist)
    weights = weights / weights.sum(dim=1, keepdim=True)
    period = 2 * in_len
    folded = torch.remainder(idx - 1, period).long()
    mirrored = torch.where(folded < in_len, folded, period - 1 - folded)
    matrix = torch.zeros(out_len, in_len, dtype=torch.float64)
    return matrix.scatter_add_(1, mirrored, weights)


def _resize(image: torch.Tensor, out_h: int, out_w: int, scale: float) -> torch.Tensor:
    h, w = image.shape[-2:]
    dtype = torch.float64 if image.dtype == torch.float64 else torch.float32
    rows = _resize_matrix(h, out_h, scale).to(image.device, dtype)
    cols = _resize_matrix(w, out_w, scale).to(image.device, dtype)
    out = torch.matmul(torch.matmul(rows, image.to(dtype)), cols.transpose(0, 1))
    return out.to(image.dtype) if image.is_floating_point() else out


def _check_scale(scale: int) -> int:
    if int(scale) != scale or scale < 1:
        raise PanetError(f"scale {scale} must be a positive whole number")
    return int(scale)


def bicubic_downscale(image: torch.Tensor, scale: int) -> torch.Tensor:
    """MATLAB ``imresize(image, 1/scale, 'bicubic')`` with antialiasing, the SR protocol.

    Works on (..., C, H, W); the output is ceil(H/scale) x ceil(W/scale), float and unclipped
    (the caller quantizes, as an 8-bit LR file would).
    """
    s = _check_scale(scale)
    h, w = image.shape[-2:]
    return _resize(image, math.ceil(h / s), math.ceil(w / s), 1.0 / s)


def bicubic_upscale(image: torch.Tensor, scale: int) -> torch.Tensor:
    """MATLAB ``imresize(image, scale, 'bicubic')``: the bicubic SR baseline, float and unclipped."""
    s = _check_scale(scale)
    h, w = image.shape[-2:]
    return _resize(image, h * s, w * s, float(s))


def crop_to_multiple(image: torch.Tensor, scale: int) -> torch.Tensor:
    """Crop the bottom/right so both sides are multiples of ``scale`` (the HR of the SR protocol)."""
    h, w = image.shape[-2:]
    return image[..., : h - h % scale, : w - w % scale]


# --- Bayer mosaic ---------------------------------------------------------------------------


def _check_pattern(pattern: str) -> str:
    p = pattern.upper()
    if p not in BAYER_PATTERNS:
        raise PanetError(f"unknown Bayer pattern {pattern!r}; use one of {', '.join(BAYER_PATTERNS)}")
    return p


def bayer_masks(
    pattern: str, height: int, width: int, *, dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """(3, H, W) 0/1 masks of the positions where the sensor samples R, G and B.

    ``pattern`` names the top-left 2x2 cell row by row: RGGB has R at (0, 0) and B at (1, 1).
    """
    p = _check_pattern(pattern)
    masks = torch.zeros(3, height, width, dtype=dtype, device=device)
    for k, letter in enumerate(p):
        channel = "RGB".index(letter)
        masks[channel, k // 2 :: 2, k % 2 :: 2] = 1
    return masks


def bayer_mosaic(image: torch.Tensor, pattern: str = "RGGB") -> torch.Tensor:
    """The 3-channel mosaic of an RGB image: each pixel keeps only its sampled colour, others are 0.

    This is the network input of the demosaicing protocol.
    """
    if image.shape[-3] != 3:
        raise PanetError(f"a Bayer mosaic needs an RGB image, got {image.shape[-3]} channel(s)")
    h, w = image.shape[-2:]
    return image * bayer_masks(pattern, h, w, dtype=image.dtype, device=image.device)


def bayer_cfa(image: torch.Tensor, pattern: str = "RGGB") -> torch.Tensor:
    """The one-channel colour filter array (..., 1, H, W): what a raw sensor file holds."""
    return bayer_mosaic(image, pattern).sum(dim=-3, keepdim=True)


def cfa_to_mosaic(cfa: torch.Tensor, pattern: str = "RGGB") -> torch.Tensor:
    """Spread a one-channel CFA (..., 1, H, W) into the 3-channel mosaic the network takes."""
    if cfa.shape[-3] != 1:
        raise PanetError(f"a Bayer CFA has one channel, got {cfa.shape[-3]}")
    h, w = cfa.shape[-2:]
    return cfa * bayer_masks(pattern, h, w, dtype=cfa.dtype, device=cfa.device)
