"""Two augmented views per image as BYOL, MoCo v2 and Barlow Twins draw them, batched on the device.

The papers' asymmetric recipe: colour jitter (p=0.8), grayscale (p=0.2), Gaussian blur with p=1.0 on the first
view and 0.1 on the second, solarisation with p=0 and 0.2. Methods inherit these fields into their parameters.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ssl_lightning.data.augment import simclr_view
from ssl_lightning.methods.registry import MethodParams
from ssl_lightning.schema_fields import PRETEXT, setting


@dataclass(frozen=True)
class ViewParams(MethodParams):
    jitter_strength: float = setting(0.5, ">=0", "colour jitter strength s: 0.8 s brightness/contrast/saturation, "
                                     "0.2 s hue, p=0.8", PRETEXT)
    crop_min_scale: float = setting(0.08, "(0, 1]", "random resized crop: smallest share of the image", PRETEXT)
    grayscale_p: float = setting(0.2, "[0, 1]", "probability of a grey view", PRETEXT)
    blur_p1: float = setting(1.0, "[0, 1]", "Gaussian blur probability, view 1", PRETEXT)
    blur_p2: float = setting(0.1, "[0, 1]", "Gaussian blur probability, view 2", PRETEXT)
    solarize_p1: float = setting(0.0, "[0, 1]", "solarisation probability, view 1", PRETEXT)
    solarize_p2: float = setting(0.2, "[0, 1]", "solarisation probability, view 2", PRETEXT)


def two_views(images: torch.Tensor, views: ViewParams, generator: torch.Generator | None = None,
              hed_jitter: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """The two asymmetric views of a batch of [0, 1] images (random draws from `generator`)."""
    first = simclr_view(images, views.jitter_strength, views.crop_min_scale, views.grayscale_p,
                        blur_p=views.blur_p1, solarize_p=views.solarize_p1, generator=generator,
                        hed_jitter=hed_jitter)
    second = simclr_view(images, views.jitter_strength, views.crop_min_scale, views.grayscale_p,
                         blur_p=views.blur_p2, solarize_p=views.solarize_p2, generator=generator,
                         hed_jitter=hed_jitter)
    return first, second


def view_settings(params: ViewParams) -> ViewParams:
    """Only the view fields of a method's parameters (what `two_views` needs)."""
    return ViewParams(params.jitter_strength, params.crop_min_scale, params.grayscale_p, params.blur_p1,
                      params.blur_p2, params.solarize_p1, params.solarize_p2)
