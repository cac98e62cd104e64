"""`trainer.channels_last=auto`: on GPUs, and on the CPU only for the small images where it was measured faster;
at 224 px torch's CPU channels_last kernels corrupted the heap (see trainer_factory.CPU_CHANNELS_LAST_MAX_PX)."""

from __future__ import annotations

import pytest
import torch

from ssl_lightning.methods.classifier import Classifier
from ssl_lightning.methods.optim import OptimConfig
from ssl_lightning.models.backbones import BackboneConfig, build_encoder
from ssl_lightning.settings import TrainerSettings
from ssl_lightning.trainer_factory import CPU_CHANNELS_LAST_MAX_PX, prepare_module, use_channels_last


@pytest.mark.parametrize(("choice", "accelerator", "size", "expected"), [
    ("auto", "cpu", 28, True), ("auto", "cpu", CPU_CHANNELS_LAST_MAX_PX, True),
    ("auto", "cpu", CPU_CHANNELS_LAST_MAX_PX + 1, False), ("auto", "cpu", 224, False), ("auto", "gpu", 224, True),
    (True, "cpu", 224, True), (False, "cpu", 28, False), (False, "gpu", 28, False),
])
def test_channels_last_choice(choice, accelerator, size, expected):
    assert use_channels_last(TrainerSettings(accelerator=accelerator, channels_last=choice), size) is expected


@pytest.mark.parametrize(("size", "channels_last"), [(28, True), (64, False)])
def test_prepared_classifier_weights_follow_the_choice(size, channels_last):
    encoder = build_encoder(BackboneConfig(width=4), 1, size)
    module = prepare_module(Classifier(encoder, 3, OptimConfig(), epochs=1), TrainerSettings(channels_last="auto"),
                            size)
    # a 3x3 convolution with several input channels (a 1-channel stem is both layouts at once)
    conv = next(p for p in module.encoder.parameters() if p.dim() == 4 and p.shape[1] > 1 and p.shape[2] > 1)
    assert conv.is_contiguous(memory_format=torch.channels_last) is channels_last
    assert conv.is_contiguous() is not channels_last
