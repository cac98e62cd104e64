"""RotNet (Gidaris et al. 2018): predict which of 0/90/180/270 degrees an image was rotated by.

Every image appears in all four rotations in the same batch; `jitter=True` is the rotation+jitter
experiment, where each rotated copy also gets its own colour jitter.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ssl_lightning.data.augment import color_jitter, rotate_all_four, standardize
from ssl_lightning.data.augment_streams import augment_options
from ssl_lightning.data.stain import hed_jitter
from ssl_lightning.methods.base import PretextMethod
from ssl_lightning.methods.optim import OptimConfig
from ssl_lightning.methods.registry import MethodParams, MethodSpec, register
from ssl_lightning.models.backbones import Encoder
from ssl_lightning.schema_fields import PRETEXT, setting


class RotationPretext(PretextMethod):
    def __init__(self, encoder: Encoder, optim: OptimConfig, epochs: int, jitter: bool = False,
                 jitter_strength: float | None = None):
        super().__init__(encoder, optim, epochs)
        self.jitter = jitter
        self.jitter_strength = RotationParams().jitter_strength if jitter_strength is None else jitter_strength
        self.head = nn.Linear(encoder.feature_dim, 4)

    def pretext_step(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rotated, labels = rotate_all_four(images)
        if self.training:  # each rotated copy gets its own stain (data.hed_jitter) and colour jitter
            options = augment_options(self)
            rotated = hed_jitter(rotated, options["hed_jitter"], options["generator"])
            if self.jitter:
                s = self.jitter_strength
                rotated = color_jitter(rotated, 0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s, p=0.8,
                                       generator=options["generator"])
        logits = self.head(self.encoder(standardize(rotated)))
        loss = F.cross_entropy(logits, labels)
        accuracy = (logits.argmax(dim=1) == labels).float().mean()
        return loss, accuracy


@dataclass(frozen=True)
class RotationParams(MethodParams):
    """`rotation:` section of rotation_jitter (conf/experiment/rotation_jitter.yaml)."""

    jitter_strength: float = setting(0.5, ">=0", "rotation_jitter: colour jitter strength s (brightness/contrast/"
                                     "saturation 0.8 s, hue 0.2 s, p=0.8); plain rotation ignores it", PRETEXT)


@dataclass(frozen=True)
class PlainRotationParams(RotationParams):
    """Plain rotation reads the same section but uses none of it: nothing enters its store key."""

    def identity(self) -> dict:
        return {}


def build_rotation(encoder: Encoder, optim: OptimConfig, epochs: int, params: RotationParams) -> RotationPretext:
    return RotationPretext(encoder, optim, epochs, jitter=False)


def build_rotation_jitter(encoder: Encoder, optim: OptimConfig, epochs: int,
                          params: RotationParams) -> RotationPretext:
    return RotationPretext(encoder, optim, epochs, jitter=True, jitter_strength=params.jitter_strength)


_REFERENCE = "Gidaris et al., ICLR 2018 (RotNet)"
register(MethodSpec("rotation", "Rotation", "rotation", PlainRotationParams, build_rotation, 0, _REFERENCE))
register(MethodSpec("rotation_jitter", "Rotation+Jitter", "rotation", RotationParams, build_rotation_jitter, 1,
                    _REFERENCE))
