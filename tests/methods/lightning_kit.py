"""Shared pieces for the method tests: tiny synthetic data, a compact encoder and a real CPU Trainer.

Everything is sized so that a few dozen real optimisation steps take seconds on 2 busy cores.
"""

from __future__ import annotations

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback

from ssl_lightning.data import synthetic
from ssl_lightning.data.base import ImageSet
from ssl_lightning.data.config import DataConfig
from ssl_lightning.data.datamodules import DownstreamDataModule, PretextDataModule
from ssl_lightning.methods.optim import OptimConfig
from ssl_lightning.models.backbones import BackboneConfig, Encoder, build_encoder

IMAGE_SIZE = 16
WIDTH = 8


def synthetic_images(channels: int = 3, train_size: int = 256, num_classes: int = 4, seed: int = 0) -> ImageSet:
    """The real synthetic loader (uint8 NCHW tensors), 16 px."""
    config = DataConfig(name="synthetic", image_size=IMAGE_SIZE, channels=channels, train_size=train_size,
                        test_size=64, num_classes=num_classes, synthetic_seed=seed)
    return synthetic.load(config)


def compact_encoder(channels: int = 3, width: int = WIDTH) -> Encoder:
    return build_encoder(BackboneConfig(name="compact", width=width), channels, IMAGE_SIZE)


def constant_sgd(lr: float) -> OptimConfig:
    """SGD without a schedule, so the loss curve reflects the learning and not the lr decay."""
    return OptimConfig(optimizer="sgd", lr=lr, momentum=0.9, nesterov=True, weight_decay=0.0, scheduler="constant")


def pretext_data(images: ImageSet, batch_size: int) -> PretextDataModule:
    pool = np.arange(len(images.train_images))
    return PretextDataModule(images.train_images, pool, pool[:batch_size], batch_size, batch_size)


def downstream_data(images: ImageSet, batch_size: int) -> DownstreamDataModule:
    count = len(images.train_images)
    labeled, val = np.arange(count - count // 4), np.arange(count - count // 4, count)
    return DownstreamDataModule(images.train_images, images.train_labels, labeled, val, images.test_images,
                                images.test_labels, batch_size, batch_size)


class StepLosses(Callback):
    """Records the training loss of every optimisation step, as Lightning hands it to the callbacks."""

    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        self.losses.append(float(loss))


def fit(module: pl.LightningModule, datamodule: pl.LightningDataModule, steps: int, root: str,
        validate_every: int | None = None) -> list[float]:
    """Train with a real CPU Trainer for `steps` optimisation steps and return the step losses.

    `validate_every` runs one validation batch every that many steps (the train/eval mode switches included).
    """
    recorder = StepLosses()
    validation = {"limit_val_batches": 0} if validate_every is None else {
        "limit_val_batches": 1, "val_check_interval": validate_every, "check_val_every_n_epoch": None}
    trainer = pl.Trainer(
        accelerator="cpu", devices=1, max_steps=steps, max_epochs=-1, **validation, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        use_distributed_sampler=False, num_sanity_val_steps=0, callbacks=[recorder], default_root_dir=root,
    )
    trainer.fit(module, datamodule=datamodule)
    assert len(recorder.losses) == steps
    assert validate_every is None or any("val" in key for key in trainer.callback_metrics), "validation did not run"
    return recorder.losses


def state_copy(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Parameters and buffers (BatchNorm running statistics included), detached and cloned."""
    return {name: tensor.detach().clone() for name, tensor in module.state_dict().items()}


def watch_encoder_inputs(module: pl.LightningModule,
                         hed_jitter: float) -> tuple[list[torch.Tensor], torch.Tensor, Callback]:
    """Attach a Trainer with a seeded augmentation stream (this stain jitter) to `module`, record every tensor its
    encoder receives from now on, and return that list, a fixed uint8 batch of 4 RGB 16 px images to train on and
    the stream."""
    from ssl_lightning.data.augment_streams import AugmentStreams

    streams = AugmentStreams(seed=1, hed_jitter=hed_jitter)
    module.trainer = pl.Trainer(accelerator="cpu", devices=1, logger=False, callbacks=[streams],
                                enable_progress_bar=False, enable_model_summary=False)
    streams.begin("train", rank=0, epoch=0)
    seen: list[torch.Tensor] = []
    module.encoder.register_forward_pre_hook(lambda _, inputs: seen.append(inputs[0].detach().clone()))
    images = (torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(2)) * 255).to(torch.uint8)
    module.train()
    return seen, images, streams
