"""H&E stain colour jitter (Tellez et al. 2019), batched on the device.

Colour deconvolution after Ruifrok & Johnston, in scikit-image's `rgb2hed` convention: RGB is clamped to
>= 1e-6, turned into optical density (log rgb / log 1e-6), projected onto the haematoxylin, eosin and DAB
stain vectors with the inverse of `RGB_FROM_HED`, and negative stain amounts are clipped. Each image's stain
channel c becomes a_c * s_c + b_c with a_c ~ U(1 - t, 1 + t) and b_c ~ U(-t, t) (t = 0.05 "light", 0.2
"strong"), and the result is converted back to RGB (`hed2rgb`) and clipped to [0, 1]. It models the colour
variation between labs and scanners, the main nuisance in H&E slides.
"""

from __future__ import annotations

import math

import torch

from ssl_lightning.errors import UserError

# Rows: the RGB absorbance of haematoxylin, eosin and DAB (Ruifrok & Johnston 2001; scikit-image's rgb_from_hed).
RGB_FROM_HED = ((0.65, 0.70, 0.29), (0.07, 0.99, 0.11), (0.27, 0.57, 0.78))
SMALLEST_RGB = 1e-6  # scikit-image's clamp before the logarithm
_LOG_SMALLEST = math.log(SMALLEST_RGB)


def check_stain_channels(hed_jitter: float, channels: int) -> None:
    """HED jitter needs RGB: a one-line UserError for grey (or other) channel counts."""
    if hed_jitter > 0 and channels != 3:
        raise UserError(f"data.hed_jitter={hed_jitter} needs RGB images, but these have {channels} channel(s); "
                        "set data.hed_jitter=0 for grey data")


def _matrices(like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    rgb_from_hed = torch.tensor(RGB_FROM_HED, dtype=torch.float64)
    hed_from_rgb = torch.linalg.inv(rgb_from_hed)
    return (rgb_from_hed.to(device=like.device, dtype=like.dtype),
            hed_from_rgb.to(device=like.device, dtype=like.dtype))


def rgb_to_hed(images: torch.Tensor) -> torch.Tensor:
    """B x 3 x H x W RGB in [0, 1] -> stain amounts (H, E, DAB), negatives clipped (skimage's rgb2hed)."""
    _, hed_from_rgb = _matrices(images)
    density = torch.log(images.clamp(min=SMALLEST_RGB)) / _LOG_SMALLEST
    return torch.einsum("bchw,cs->bshw", density, hed_from_rgb).clamp(min=0)


def hed_to_rgb(stains: torch.Tensor) -> torch.Tensor:
    """Stain amounts -> RGB in [0, 1] (skimage's hed2rgb)."""
    rgb_from_hed, _ = _matrices(stains)
    log_rgb = torch.einsum("bshw,sc->bchw", stains, rgb_from_hed) * _LOG_SMALLEST
    return torch.exp(log_rgb).clamp(0, 1)


def scale_and_shift_stains(images: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Stain channel c of image i becomes scale[i, c] * s + shift[i, c] (scale, shift: B x 3)."""
    stains = rgb_to_hed(images)
    return hed_to_rgb(stains * scale[:, :, None, None] + shift[:, :, None, None])


def hed_jitter(images: torch.Tensor, strength: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Tellez et al.'s HED jitter with a ~ U(1 - t, 1 + t) and b ~ U(-t, t) per image and stain; t = 0: unchanged."""
    if strength <= 0:
        return images
    check_stain_channels(strength, int(images.shape[1]))
    shape = (images.shape[0], 3)
    scale = torch.empty(shape, device=images.device, dtype=images.dtype).uniform_(
        1 - strength, 1 + strength, generator=generator)
    shift = torch.empty(shape, device=images.device, dtype=images.dtype).uniform_(
        -strength, strength, generator=generator)
    return scale_and_shift_stains(images, scale, shift)
