"""Encoders: every backbone takes grey or RGB input and returns `feature_dim` features; bad names are user errors.

`feature_dim` is what the heads are sized from, so a wrong value only shows up later as a shape error deep in
a training run; the stem choice decides whether 32 px images keep enough resolution.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ssl_lightning.errors import UserError
from ssl_lightning.models.backbones import BACKBONES, BackboneConfig, build_encoder


def features(config: BackboneConfig, channels: int, size: int, batch: int = 2) -> tuple[torch.Tensor, int]:
    encoder = build_encoder(config, channels, size)
    assert encoder.in_channels == channels and encoder.name == config.name
    encoder.eval()
    with torch.no_grad():
        out = encoder(torch.rand(batch, channels, size, size))
    return out, encoder.feature_dim


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize(("width", "stem_stride", "blocks", "size"), [(16, 2, 1, 28), (8, 1, 2, 16), (32, 2, 1, 32)])
def test_compact_outputs_four_times_width_features(channels: int, width: int, stem_stride: int, blocks: int,
                                                   size: int) -> None:
    config = BackboneConfig(name="compact", width=width, stem_stride=stem_stride, blocks=blocks)
    out, feature_dim = features(config, channels, size, batch=3)
    assert feature_dim == 4 * width
    assert out.shape == (3, feature_dim)


def test_compact_trains_in_train_mode_with_gradients() -> None:
    encoder = build_encoder(BackboneConfig(name="compact", width=8), 1, 16)
    out = encoder(torch.rand(4, 1, 16, 16))
    out.sum().backward()
    assert all(p.grad is not None for p in encoder.parameters())


@pytest.mark.parametrize("channels", [1, 3])
def test_resnet18_uses_the_cifar_stem_for_small_images(channels: int) -> None:
    encoder = build_encoder(BackboneConfig(name="resnet18"), channels, 32)
    conv1 = encoder.body.conv1
    assert isinstance(conv1, nn.Conv2d)
    assert conv1.kernel_size == (3, 3) and conv1.stride == (1, 1) and conv1.in_channels == channels
    assert isinstance(encoder.body.maxpool, nn.Identity)
    out, feature_dim = features(BackboneConfig(name="resnet18"), channels, 32)
    assert feature_dim == 512 and out.shape == (2, 512)


@pytest.mark.parametrize("channels", [1, 3])
def test_resnet18_imagenet_stem_on_request(channels: int) -> None:
    config = BackboneConfig(name="resnet18", stem="imagenet")
    encoder = build_encoder(config, channels, 32)
    conv1 = encoder.body.conv1
    assert conv1.kernel_size == (7, 7) and conv1.stride == (2, 2) and conv1.in_channels == channels
    assert isinstance(encoder.body.maxpool, nn.MaxPool2d)
    out, feature_dim = features(config, channels, 64)
    assert feature_dim == 512 and out.shape == (2, 512)


def test_auto_stem_switches_to_imagenet_above_96_px() -> None:
    assert build_encoder(BackboneConfig(name="resnet18"), 3, 96).body.conv1.kernel_size == (3, 3)
    assert build_encoder(BackboneConfig(name="resnet18"), 3, 128).body.conv1.kernel_size == (7, 7)
    forced = build_encoder(BackboneConfig(name="resnet18", stem="cifar"), 3, 224)
    assert forced.body.conv1.kernel_size == (3, 3)


@pytest.mark.parametrize("channels", [1, 3])
def test_resnet50_outputs_2048_features(channels: int) -> None:
    out, feature_dim = features(BackboneConfig(name="resnet50"), channels, 16, batch=2)
    assert feature_dim == 2048 and out.shape == (2, 2048)


def test_unknown_backbone_is_a_user_error_listing_valid_names() -> None:
    with pytest.raises(UserError) as error:
        build_encoder(BackboneConfig(name="vgg11"), 3, 32)
    message = str(error.value)
    assert "'vgg11'" in message
    assert all(name in message for name in ("compact", "resnet18", "resnet50"))
    assert set(BACKBONES) == {"compact", "resnet18", "resnet50", "timm"}


def test_unknown_stem_is_a_user_error() -> None:
    with pytest.raises(UserError, match="auto, cifar, imagenet"):
        build_encoder(BackboneConfig(name="resnet18", stem="wide"), 3, 32)
