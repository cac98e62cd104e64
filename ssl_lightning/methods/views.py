"""Two augmented views per image as BYOL, MoCo v2 and Barlow Twins draw them, batched on the device.

The papers' asymmetric recipe: colour jitter (p=0.8), grayscale (p=0.2), Gaussian blur with p=1.0 on the first
view and 0.1 on the second, solarisation with p=0 and 0.2. Methods inherit these fields into their parameters.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ssl_lightning.data.augment import simclr_view
from ssl_lightning.methods.registry import MethodParams, probability, require


@dataclass(frozen=True)
class ViewParams(MethodParams):
    jitter_strength: float = 0.5
    crop_min_scale: float = 0.08
    grayscale_p: float = 0.2
    blur_p1: float = 1.0
    blur_p2: float = 0.1
    solarize_p1: float = 0.0
    solarize_p2: float = 0.2

    def validate(self) -> None:
        probability(self, "grayscale_p", "blur_p1", "blur_p2", "solarize_p1", "solarize_p2")
        require(self.jitter_strength >= 0, "jitter_strength", self.jitter_strength, "must be >= 0")
        require(0 < self.crop_min_scale <= 1, "crop_min_scale", self.crop_min_scale, "must be in (0, 1]")


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
