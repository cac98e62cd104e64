"""`trainer.channels_last=auto`: on GPUs, and on the CPU only for the small grey images where it was measured
faster; with RGB or 224 px images torch's CPU channels_last kernels corrupted the heap (trainer_factory)."""

from __future__ import annotations

import pytest
import torch

from ssl_lightning.config.settings import TrainerSettings
from ssl_lightning.evaluation.classifier import Classifier
from ssl_lightning.methods.optim import OptimConfig
from ssl_lightning.models.backbones import BackboneConfig, build_encoder
from ssl_lightning.training.trainer_factory import CPU_CHANNELS_LAST_MAX_PX, prepare_module, use_channels_last


@pytest.mark.parametrize(("choice", "accelerator", "channels", "size", "expected"), [
    ("auto", "cpu", 1, 28, True), ("auto", "cpu", 1, CPU_CHANNELS_LAST_MAX_PX, True),
    ("auto", "cpu", 1, CPU_CHANNELS_LAST_MAX_PX + 1, False), ("auto", "cpu", 3, 32, False),
    ("auto", "cpu", 1, 224, False), ("auto", "gpu", 3, 224, True),
    (True, "cpu", 3, 224, True), (False, "cpu", 1, 28, False), (False, "gpu", 3, 32, False),
])
def test_channels_last_choice(choice, accelerator, channels, size, expected):
    settings = TrainerSettings(accelerator=accelerator, channels_last=choice)
    assert use_channels_last(settings, channels, size) is expected


@pytest.mark.parametrize(("channels", "size", "channels_last"), [(1, 28, True), (1, 64, False), (3, 32, False)])
def test_prepared_classifier_weights_follow_the_choice(channels, size, channels_last):
    encoder = build_encoder(BackboneConfig(width=4), channels, size)
    module = prepare_module(Classifier(encoder, 3, OptimConfig(), epochs=1), TrainerSettings(channels_last="auto"),
                            channels, size)
    # a 3x3 convolution with several input channels (a 1-channel stem is both layouts at once)
    conv = next(p for p in module.encoder.parameters() if p.dim() == 4 and p.shape[1] > 1 and p.shape[2] > 1)
    assert conv.is_contiguous(memory_format=torch.channels_last) is channels_last
    assert conv.is_contiguous() is not channels_last
