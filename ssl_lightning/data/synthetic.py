"""Procedurally generated labelled images for tests and smoke runs (never the default).

Each class is an oriented stripe pattern plus a bright corner marker, so both the class and the
rotation of an image can be learned quickly.
"""

from __future__ import annotations

import math

import torch

from ssl_lightning.data.base import ImageSet
from ssl_lightning.data.config import DataConfig
from ssl_lightning.data.registry import DatasetSpec, register

DEFAULT_SIZE = 16


def _generate(count: int, num_classes: int, size: int, channels: int, generator: torch.Generator):
    labels = torch.arange(count) % num_classes
    labels = labels[torch.randperm(count, generator=generator)]
    coords = torch.linspace(-1.0, 1.0, size)
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    angles = labels.float() * math.pi / num_classes
    phase = torch.rand(count, generator=generator) * 2 * math.pi
    frequency = 3.0 + labels.float() % 3
    projection = xx[None] * torch.cos(angles)[:, None, None] + yy[None] * torch.sin(angles)[:, None, None]
    stripes = 0.5 + 0.35 * torch.sin(frequency[:, None, None] * math.pi * projection + phase[:, None, None])
    marker = ((xx < -0.5) & (yy < -0.5)).float()  # top-left corner: breaks rotational symmetry
    images = stripes + 0.4 * marker[None]
    images = images[:, None].repeat(1, channels, 1, 1)
    if channels == 3:
        tint = 0.7 + 0.3 * torch.rand(count, 3, 1, 1, generator=generator)
        images = images * tint
    images = images + 0.08 * torch.randn(images.shape, generator=generator)
    return (images.clamp(0, 1) * 255).round().to(torch.uint8), labels.long()


def load(config: DataConfig) -> ImageSet:
    size = config.image_size or DEFAULT_SIZE
    generator = torch.Generator().manual_seed(config.synthetic_seed)
    train_x, train_y = _generate(config.train_size, config.num_classes, size, config.channels, generator)
    test_x, test_y = _generate(config.test_size, config.num_classes, size, config.channels, generator)
    classes = [f"class_{i}" for i in range(config.num_classes)]
    return ImageSet(train_x, train_y, test_x, test_y, classes, notes=[f"synthetic {size}px, {config.channels}ch"])


register(DatasetSpec("synthetic", load, test_split="own", leakage="generated",
                     same_data=("synthetic_seed",)))
