"""The raw-pixel arm (`+experiment=raw_pixels`): no encoder, the pixels themselves are the features.

A reviewer's first question about a frozen-feature table is the floor that needs no network: the frozen probes
(logistic regression standardises every feature with the labelled images' statistics, k-NN compares them) fitted
on the evaluation-scaled pixels ([-1, 1], like every encoder's input). Images with more than
`raw_pixels.max_features` values (default 4096) are downsampled by area averaging (adaptive average pooling) to the
largest size of the same aspect ratio that fits, e.g. 3 x 96 x 96 STL-10 images to 3 x 36 x 36 = 3,888 values;
Fashion-MNIST's 784 and CIFAR-10's 3,072 are kept as they are.
"""

from __future__ import annotations

import math
from typing import Any

from torch import nn

from ssl_lightning.errors import UserError
from ssl_lightning.models.backbones import Encoder

DEFAULT_MAX_FEATURES = 4096


def pixel_grid(channels: int, height: int, width: int, max_features: int) -> tuple[int, int]:
    """The (height, width) the pixels are averaged down to: unchanged when channels x height x width fits."""
    if channels * height * width <= max_features:
        return height, width
    scale = math.sqrt(max_features / (channels * height * width))
    return max(1, math.floor(height * scale)), max(1, math.floor(width * scale))


def pixel_encoder(channels: int, image_size: tuple[int, int], max_features: int = DEFAULT_MAX_FEATURES) -> Encoder:
    """An `Encoder` without parameters: (area-averaged) pixels, flattened."""
    height, width = pixel_grid(channels, image_size[0], image_size[1], max_features)
    pool: list[nn.Module] = [] if (height, width) == tuple(image_size) else [nn.AdaptiveAvgPool2d((height, width))]
    body = nn.Sequential(*pool, nn.Flatten())
    return Encoder(body, channels * height * width, f"raw_pixels[{channels}x{height}x{width}]", channels)


def max_features(config: dict[str, Any]) -> int:
    """`raw_pixels.max_features` from the resolved config; UserError unless a whole number >= 1."""
    value = (config.get("raw_pixels") or {}).get("max_features", DEFAULT_MAX_FEATURES)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UserError(f"raw_pixels.max_features={value} must be a whole number >= 1, e.g. 4096")
    return value
