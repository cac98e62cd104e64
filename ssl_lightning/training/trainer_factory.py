"""Lightning Trainers for both stages, from the typed trainer settings."""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.plugins.io import TorchCheckpointIO

from ssl_lightning.config.settings import TrainerSettings
from ssl_lightning.errors import UserError
from ssl_lightning.training.epoch_log import (
    EpochLine,
    planned_epochs,
    silence_lightning_tips,
    stdout_is_terminal,
)
from ssl_lightning.training.finite_guard import FiniteLossGuard
from ssl_lightning.training.thread_policy import ThreadPolicyCallback

log = logging.getLogger(__name__)
# Our checkpoint folders also hold TensorBoard events and resumable state: expected, not worth a warning.
warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
# A few-label epoch is one step; our epoch lines log every epoch (on_epoch), so Lightning's step interval is moot.
warnings.filterwarnings("ignore", message=r"The number of training batches \(\d+\) is smaller than the logging")
# Lightning's own use of a deprecated torch pytree API: nothing a user can act on.
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)` is deprecated")


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoints written to a temporary file and renamed, so a kill never leaves half a file."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(handle)
        try:
            torch.save(checkpoint, temp_name)
            os.replace(temp_name, path)
        finally:
            Path(temp_name).unlink(missing_ok=True)


class StageStartLog(Callback):
    """Says at which epoch a stage starts, so a resumed run shows that finished epochs are not repeated."""

    def __init__(self, stage: str):
        self.stage = stage

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero:
            log.info("%s stage starts at epoch %d of %s", self.stage, trainer.current_epoch, planned_epochs(trainer))


def check_accelerator(settings: TrainerSettings) -> None:
    if settings.accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise UserError("trainer=gpu was requested but this machine has no CUDA GPU; use trainer=cpu")


_said_no_sync_batchnorm = False


def _on_gpu(settings: TrainerSettings) -> bool:
    return settings.accelerator in ("gpu", "cuda") or (settings.accelerator == "auto" and torch.cuda.is_available())


def uses_sync_batchnorm(settings: TrainerSettings) -> bool:
    """SyncBatchNorm only works on GPU modules: with another accelerator it is skipped, and the log says so once."""
    global _said_no_sync_batchnorm
    on_gpu = _on_gpu(settings)
    if settings.sync_batchnorm and not on_gpu and not _said_no_sync_batchnorm:
        _said_no_sync_batchnorm = True
        log.info("trainer.sync_batchnorm ignored: SyncBatchNorm needs GPUs, accelerator is %s "
                 "(each process keeps its own BatchNorm statistics)", settings.accelerator)
    return settings.sync_batchnorm and on_gpu


def build_trainer(settings: TrainerSettings, max_epochs: int, log_dir: Path, log_name: str,
                  callbacks: list[Callback], limit_train_batches: float, limit_val_batches: float,
                  root_dir: Path, check_val_every_n_epoch: int | None = 1, min_steps: int | None = None,
                  max_steps: int = -1, val_check_interval: int | float | None = None) -> pl.Trainer:
    """A Trainer for one stage. `max_steps` with `check_val_every_n_epoch=None` and an int `val_check_interval`
    validates every that many optimiser steps across epochs (cross-validated fine-tuning)."""
    logger = TensorBoardLogger(save_dir=str(log_dir), name="", version=log_name, default_hp_metric=False)
    callbacks = [*callbacks, StageStartLog(log_name), FiniteLossGuard(log_name),
                 ThreadPolicyCallback(settings.threads, log_name)]
    silence_lightning_tips()
    progress_bar = settings.enable_progress_bar and stdout_is_terminal()  # a bar only where someone watches it
    if not progress_bar:
        callbacks.append(EpochLine(log_name))
    return pl.Trainer(
        accelerator=settings.accelerator, devices=settings.devices, num_nodes=settings.num_nodes,
        strategy=settings.strategy, precision=settings.precision, sync_batchnorm=uses_sync_batchnorm(settings),
        benchmark=settings.benchmark, deterministic=settings.deterministic, max_epochs=max_epochs,
        logger=logger, callbacks=callbacks, enable_checkpointing=True, default_root_dir=str(root_dir),
        limit_train_batches=limit_train_batches, limit_val_batches=limit_val_batches,
        enable_progress_bar=progress_bar, log_every_n_steps=settings.log_every_n_steps,
        enable_model_summary=False, use_distributed_sampler=False, plugins=[AtomicCheckpointIO()],
        num_sanity_val_steps=0, check_val_every_n_epoch=check_val_every_n_epoch, min_steps=min_steps,
        max_steps=max_steps, val_check_interval=val_check_interval,
    )


# The CPU channels_last path is used for grey images up to this size: there (Fashion-MNIST, 28 px) it made steps
# 1.2-1.7x faster (benchmarks/cpu_paths.py) and ran every grid clean. With 3-channel images at 32 px and with
# 224 px images, torch 2.14.1's CPU channels_last kernels corrupted the heap within a few steps (glibc "double
# free or corruption", "malloc assertion failure" or a segfault; reproduced 3 times in 3 with
# `python -m benchmarks.data_scale --tiny`, clean 3 times in 3 with NCHW), and ResNet-18 gained nothing.
CPU_CHANNELS_LAST_MAX_PX = 32
_said_channels_last: set[tuple[bool, int, int]] = set()


def use_channels_last(settings: TrainerSettings, channels: int, image_size: int) -> bool:
    """`trainer.channels_last`: true or false as given; auto = on GPUs, and on the CPU for small grey images."""
    choice = settings.channels_last
    if isinstance(choice, bool):
        return choice
    on_gpu = _on_gpu(settings)
    chosen = on_gpu or (channels == 1 and image_size <= CPU_CHANNELS_LAST_MAX_PX)
    if (chosen, channels, image_size) not in _said_channels_last:
        _said_channels_last.add((chosen, channels, image_size))
        where = "the GPU" if on_gpu else f"the CPU (used for grey images up to {CPU_CHANNELS_LAST_MAX_PX} px)"
        log.info("trainer.channels_last=auto: %s for %d-channel %d px images on %s", "on" if chosen else "off",
                 channels, image_size, where)
    return chosen


def prepare_module(module: pl.LightningModule, settings: TrainerSettings, channels: int,
                   image_size: int) -> pl.LightningModule:
    """Fast path options (CPU and GPU): channels_last memory format and torch.compile of the encoder.

    Converting the weights is enough: convolutions with channels_last weights produce channels_last outputs,
    and the batched augmentation before the encoder works on either layout.
    """
    if use_channels_last(settings, channels, image_size):
        module = module.to(memory_format=torch.channels_last)
    if settings.compile:
        module.encoder.compile()  # in place: state-dict keys stay the same
    return module
