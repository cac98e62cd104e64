"""Grey images and the downstream classifier learn: a real Lightning Trainer lowers the training loss on the
synthetic images. (Every registered pretext method on RGB images: test_every_method_learns.py.)

The synthetic classes (oriented stripes plus a corner marker) are learnable in a few dozen steps, so a loss that
does not fall means a broken gradient path (detached targets, frozen parameters, wrong labels), not bad luck.
Measured over 3 seeds at these settings, the last-steps/first-steps loss ratio is about 0.01 for rotation and the
classifier and about 0.83 for SimCLR; the thresholds leave a wide margin.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl

from ssl_lightning.evaluation.classifier import Classifier
from ssl_lightning.methods.rotation import RotationPretext
from ssl_lightning.methods.simclr import SimCLRPretext
from tests.methods.lightning_kit import (
    compact_encoder,
    constant_sgd,
    downstream_data,
    fit,
    pretext_data,
    synthetic_images,
)

STEPS = 30
WINDOW = 5
LR = 0.05

Build = Callable[[int, int], tuple[pl.LightningModule, pl.LightningDataModule]]


def rotation(jitter: bool) -> Build:
    def build(channels: int, seed: int):
        images = synthetic_images(channels=channels, train_size=256, seed=seed)
        module = RotationPretext(compact_encoder(channels), constant_sgd(LR), epochs=1, jitter=jitter)
        return module, pretext_data(images, batch_size=32)

    return build


def simclr(channels: int, seed: int):
    images = synthetic_images(channels=channels, train_size=256, seed=seed)
    module = SimCLRPretext(compact_encoder(channels), constant_sgd(LR), epochs=1, proj_dim=32, proj_hidden_dim=64)
    return module, pretext_data(images, batch_size=64)


def supervised(channels: int, seed: int):
    images = synthetic_images(channels=channels, train_size=256, seed=seed)
    module = Classifier(compact_encoder(channels), images.num_classes, constant_sgd(LR), epochs=1,
                        protocol="finetune")
    return module, downstream_data(images, batch_size=32)


@pytest.mark.parametrize(
    ("build", "channels", "max_ratio"),
    [
        (rotation(jitter=True), 1, 0.5),
        (simclr, 1, 0.93),
        (supervised, 3, 0.5),
        (supervised, 1, 0.5),
    ],
    ids=["rotation_jitter_grey", "simclr_grey", "supervised", "supervised_grey"],
)
def test_training_loss_falls(build: Build, channels: int, max_ratio: float, tmp_path: Path) -> None:
    pl.seed_everything(0, verbose=False)
    module, data = build(channels, 0)
    losses = fit(module, data, STEPS, str(tmp_path))
    assert all(np.isfinite(losses))
    first, last = float(np.mean(losses[:WINDOW])), float(np.mean(losses[-WINDOW:]))
    assert last < max_ratio * first, f"loss went from {first:.3f} to {last:.3f} (want below {max_ratio} x)"
