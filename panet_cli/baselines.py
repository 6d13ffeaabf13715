"""The classical tools a user would otherwise run, as plain functions on float HWC arrays.

``panet eval --baselines`` scores these next to our model on the same inputs. Each package is
imported only when its baseline runs; they come with the optional extra ``panet[bench]``.
All functions take and return float32 (H, W, C) arrays in [0, 1].
"""

from __future__ import annotations

import functools
import importlib
import warnings
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from panet_cli.errors import PanetError


class BaselineUnavailable(PanetError):
    """A baseline whose package is not installed; the message says how to install it."""


def _import(module: str, package: str, method: str) -> Any:
    try:
        with warnings.catch_warnings():
            # colour-science warns at import when matplotlib is absent; nothing here plots.
            warnings.simplefilter("ignore")
            return importlib.import_module(module)
    except ImportError:
        raise BaselineUnavailable(
            f"{method} needs the {package} package: pip install {package} (or pip install 'panet[bench]')"
        ) from None


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)


def _finish(image: np.ndarray, channels: int) -> np.ndarray:
    out = np.clip(np.asarray(image, dtype=np.float32), 0, 1)
    return out[..., None] if out.ndim == 2 else out.reshape(*out.shape[:2], channels)


def cbm3d(noisy: np.ndarray, sigma: float) -> np.ndarray:
    """BM3D (Dabov et al.; CBM3D in the opponent colour space for RGB) at known noise std ``sigma``/255."""
    bm3d = _import("bm3d", "bm3d", "CBM3D")
    z = noisy.astype(np.float64)
    if z.shape[2] == 3:
        out = bm3d.bm3d_rgb(z, sigma_psd=sigma / 255.0)
    else:
        out = bm3d.bm3d(z[..., 0], sigma_psd=sigma / 255.0)
    return _finish(out, z.shape[2])


# OpenCV weights patches by exp(-d^2 / h^2) on the mean squared patch distance, about 2 sigma^2
# between two noisy copies of one patch, so h grows in proportion to sigma. The colour routine
# filters CIELAB lightness with h and the chroma pair with a separate h. Factors and the 5 x 5
# patch are the best of a grid (h 0.5-0.8, chroma 0.6-1.6 x sigma, 5 or 7 px patches) on every
# 8th CBSD68 image at sigma 15, 25 and 50; OpenCV's own defaults (h 3 / 10) assume weak noise.
NLM_H_PER_SIGMA = 0.65
NLM_CHROMA_H_PER_SIGMA = 0.8
NLM_PATCH = 5
NLM_SEARCH = 21


def nlm(noisy: np.ndarray, sigma: float) -> np.ndarray:
    """OpenCV fast non-local means (Buades et al.) with its strength set from the noise std ``sigma``.

    OpenCV works on 8-bit images: float noise is clipped and rounded first.
    """
    cv2 = _import("cv2", "opencv-python-headless", "OpenCV non-local means")
    h = max(1.0, NLM_H_PER_SIGMA * sigma)
    h_chroma = max(1.0, NLM_CHROMA_H_PER_SIGMA * sigma)
    src = _to_uint8(noisy)
    if src.shape[2] == 3:
        bgr = np.ascontiguousarray(src[..., ::-1])  # OpenCV's colour conversion expects BGR
        out = cv2.fastNlMeansDenoisingColored(bgr, None, h, h_chroma, NLM_PATCH, NLM_SEARCH)[..., ::-1]
    else:
        out = cv2.fastNlMeansDenoising(np.ascontiguousarray(src[..., 0]), None, h, NLM_PATCH, NLM_SEARCH)
    return _finish(out.astype(np.float32) / 255.0, src.shape[2])


def _demosaic(function: str, label: str, cfa: np.ndarray, pattern: str) -> np.ndarray:
    module = _import("colour_demosaicing", "colour-demosaicing", label)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = getattr(module, function)(cfa[..., 0].astype(np.float64), pattern.upper())
    return _finish(out, 3)


def menon2007(cfa: np.ndarray, pattern: str = "RGGB") -> np.ndarray:
    """Menon et al. 2007 (directional filtering with a posteriori decision) on an (H, W, 1) CFA."""
    return _demosaic("demosaicing_CFA_Bayer_Menon2007", "Menon2007", cfa, pattern)


def malvar2004(cfa: np.ndarray, pattern: str = "RGGB") -> np.ndarray:
    """Malvar, He and Cutler 2004 (gradient-corrected linear interpolation) on an (H, W, 1) CFA."""
    return _demosaic("demosaicing_CFA_Bayer_Malvar2004", "Malvar2004", cfa, pattern)


# demosaicnet's released network expects a zero-filled GRBG mosaic and trims its borders (unpadded convs).
# Shifting the input by (rows, columns) brings each pattern into GRBG phase; DEMOSAICNET_MARGIN reflected
# pixels per side (even, so the phase holds) give it the context it trims, and are cropped off after.
_TO_GRBG = {"GRBG": (0, 0), "RGGB": (0, 1), "BGGR": (1, 0), "GBRG": (1, 1)}
DEMOSAICNET_MARGIN = 40


@functools.cache
def _demosaicnet_network() -> Any:
    """The released network, loaded once per process."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pkg_resources deprecation, torch.load defaults
        return _import("demosaicnet", "demosaicnet", "demosaicnet").BayerDemosaick(pretrained=True).eval()


def demosaicnet(cfa: np.ndarray, pattern: str = "RGGB") -> np.ndarray:
    """Gharbi et al. 2016 (Deep joint demosaicking; the weights shipped in the demosaicnet package), fp32."""
    import torch

    dy, dx = _TO_GRBG[pattern.upper()]
    h, w = cfa.shape[:2]
    m = DEMOSAICNET_MARGIN
    # (dy, dx) extra reflected rows/columns on top/left put the image's pattern in GRBG phase
    padded = np.pad(cfa[..., 0], ((m + dy, m + (h + dy) % 2), (m + dx, m + (w + dx) % 2)), mode="reflect")
    mosaic = np.zeros((3, *padded.shape), dtype=np.float32)
    mosaic[1, 0::2, 0::2] = padded[0::2, 0::2]  # G r / b G
    mosaic[0, 0::2, 1::2] = padded[0::2, 1::2]
    mosaic[2, 1::2, 0::2] = padded[1::2, 0::2]
    mosaic[1, 1::2, 1::2] = padded[1::2, 1::2]
    with torch.no_grad():
        out = _demosaicnet_network()(torch.from_numpy(mosaic)[None])[0].numpy()
    top = (padded.shape[0] - out.shape[1]) // 2
    left = (padded.shape[1] - out.shape[2]) // 2
    y0, x0 = m + dy - top, m + dx - left
    return _finish(out[:, y0 : y0 + h, x0 : x0 + w].transpose(1, 2, 0), 3)


def decoded_jpeg(image: np.ndarray) -> np.ndarray:
    """The decoded JPEG itself: what a user sees without artifact reduction."""
    return np.clip(image, 0, 1).astype(np.float32)


def bicubic(lr: np.ndarray, scale: int) -> np.ndarray:
    """MATLAB-style bicubic upscaling, the classic SR baseline."""
    import torch

    from panet_cli.degradations import bicubic_upscale

    tensor = torch.from_numpy(np.ascontiguousarray(lr.transpose(2, 0, 1)))
    up = bicubic_upscale(tensor, scale).permute(1, 2, 0).numpy()
    return _finish(up, lr.shape[2])


@dataclass(frozen=True)
class Baseline:
    """One classical method in the comparison table.

    ``run(degraded, setting)`` takes the same input the model gets and an object with the
    protocol's ``level``, ``scale`` and ``pattern`` attributes.
    """

    name: str
    module: str
    package: str
    run: Callable[[np.ndarray, Any], np.ndarray]

    def check(self) -> None:
        """Raise :class:`BaselineUnavailable` if the package is missing (before any image is processed)."""
        _import(self.module, self.package, self.name)


# By name; each task's row (panet_cli.tasks) lists the names of its own.
BASELINES: dict[str, Baseline] = {b.name: b for b in (
    Baseline("CBM3D", "bm3d", "bm3d", lambda im, p: cbm3d(im, p.level)),
    Baseline("NLM (OpenCV)", "cv2", "opencv-python-headless", lambda im, p: nlm(im, p.level)),
    Baseline("Menon2007", "colour_demosaicing", "colour-demosaicing", lambda im, p: menon2007(im, p.pattern)),
    Baseline("Malvar2004", "colour_demosaicing", "colour-demosaicing", lambda im, p: malvar2004(im, p.pattern)),
    Baseline("demosaicnet", "demosaicnet", "demosaicnet", lambda im, p: demosaicnet(im, p.pattern)),
    Baseline("JPEG (decoded)", "PIL", "pillow", lambda im, p: decoded_jpeg(im)),
    Baseline("Bicubic", "torch", "torch", lambda im, p: bicubic(im, p.scale)),
)}
