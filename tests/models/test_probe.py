"""Intermediate-stage probes and BatchNorm re-estimation for the random-encoder floor."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ssl_lightning.errors import UserError
from ssl_lightning.models.backbones import BackboneConfig, build_encoder
from ssl_lightning.models.batchnorm_stats import reestimate_batchnorm
from ssl_lightning.models.probe import stage_count, truncated


@pytest.mark.parametrize(("name", "dims"), [("compact", [16, 32, 64]), ("resnet18", [64, 128, 256, 512])])
def test_each_stage_gives_pooled_features_of_its_width(name, dims):
    encoder = build_encoder(BackboneConfig(name=name), 3, 32).eval()
    assert stage_count(encoder) == len(dims)
    images = torch.rand(2, 3, 32, 32)
    for stage, dim in enumerate(dims, start=1):
        probe = truncated(encoder, stage)
        assert probe.feature_dim == dim
        assert probe(images).shape == (2, dim)
    assert truncated(encoder, len(dims)) is encoder


def test_a_truncated_encoder_shares_the_trained_weights():
    encoder = build_encoder(BackboneConfig(), 1, 28)
    first_conv = next(truncated(encoder, 1).parameters())
    assert first_conv is next(encoder.parameters())


def test_out_of_range_stage_is_a_user_error():
    with pytest.raises(UserError, match="stages 1..3"):
        truncated(build_encoder(BackboneConfig(), 1, 28), 4)


def test_batchnorm_statistics_come_from_the_data():
    torch.manual_seed(0)
    encoder = build_encoder(BackboneConfig(), 1, 28).eval()
    images = (torch.rand(300, 1, 28, 28) * 60 + 150).to(torch.uint8)  # bright images: input mean far from 0
    first_norm = encoder.body[1]
    used = reestimate_batchnorm(encoder, images, np.arange(300), batch_size=64)
    assert used == 300 and not encoder.training
    with torch.no_grad():
        stem = encoder.body[0](images.float().div(255) * 2 - 1)
    torch.testing.assert_close(first_norm.running_mean, stem.mean(dim=(0, 2, 3)), rtol=1e-3, atol=1e-4)
    assert first_norm.momentum == 0.1  # restored
