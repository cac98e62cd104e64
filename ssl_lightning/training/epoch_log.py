"""Logs a person can read anywhere: one line per epoch instead of a progress bar when stdout is not a terminal.

Under `make run > log`, nohup, SLURM or CI, Lightning's progress bar writes thousands of carriage-return updates
per epoch. `EpochLine` writes one line per epoch and stage instead, e.g.

    pretext epoch 3/10: train_loss=1.2345 train_acc=54.10% val_loss=1.3012 val_acc=51.20% | 1,732 img/s | 41.2 s

and `silence_lightning_tips` removes Lightning's advertisement lines ("Tip: ... litlogger / litmodels") and other
lines that say nothing.
"""

from __future__ import annotations

import logging
import math
import re
import sys
import time
import warnings
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback

log = logging.getLogger("ssl_lightning.epochs")
# Lightning's rank_zero_info writes through this logger; its tips are plain advertisements, not information.
_LIGHTNING_RANK_ZERO_LOGGER = "pytorch_lightning.utilities.rank_zero"


def stdout_is_terminal() -> bool:
    """True when a person watches stdout live (a terminal), where a progress bar is useful."""
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):  # replaced or closed stdout
        return False


# Lines that tell a reader nothing: advertisements, and the default limit_*_batches=1.0 echoed at every stage.
_NOISE = re.compile(r"Tip:|litlogger|litmodels|`Trainer\(limit_\w+_batches=1\.0\)` was configured so 100%")


class _DropNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not _NOISE.search(record.getMessage())


_NOISE_FILTER = _DropNoise()


def silence_lightning_tips() -> None:
    """Drop Lightning's "Tip: ... litlogger/litmodels" lines and its echo of the default batch limits, and its
    warning about modules in eval mode (the linear probe freezes the encoder on purpose). Idempotent."""
    logger = logging.getLogger(_LIGHTNING_RANK_ZERO_LOGGER)
    if _NOISE_FILTER not in logger.filters:
        logger.addFilter(_NOISE_FILTER)
    warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode at the start of training")


def _batch_size(batch: Any) -> int:
    """Images in a batch: a tensor of images, or (images, labels)."""
    if isinstance(batch, torch.Tensor):
        return int(batch.shape[0])
    if isinstance(batch, list | tuple) and batch and isinstance(batch[0], torch.Tensor):
        return int(batch[0].shape[0])
    return 0


def _format_metric(name: str, value: float) -> str:
    if "acc" in name and math.isfinite(value):
        return f"{name}={100 * value:.2f}%"
    return f"{name}={value:.4f}"


class EpochLine(Callback):
    """After each training epoch (its validation included): one log line with the stage's epoch metrics,
    the training throughput in images per second (per process, validation excluded) and the time since the stage
    started."""

    def __init__(self, stage: str):
        self.stage = stage
        self._stage_started = 0.0
        self._epoch_started = 0.0
        self._images = 0
        self._train_seconds = 0.0

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._stage_started = time.perf_counter()

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._epoch_started = time.perf_counter()
        self._images = 0
        self._train_seconds = 0.0

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self._images += _batch_size(batch)
        self._train_seconds = time.perf_counter() - self._epoch_started  # training only, not validation

    def line(self, trainer: pl.Trainer) -> str:
        """The text of the line for the epoch that just ended."""
        prefix = f"{self.stage}/"
        metrics = {name[len(prefix):]: float(value) for name, value in trainer.callback_metrics.items()
                   if name.startswith(prefix) and name != f"{prefix}lr" and torch.as_tensor(value).numel() == 1}
        order = ("train_loss", "train_acc", "val_loss", "val_acc")
        names = [n for n in order if n in metrics] + sorted(n for n in metrics if n not in order)
        rate = self._images / self._train_seconds if self._train_seconds > 0 else 0.0
        shown = " ".join(_format_metric(name, metrics[name]) for name in names) or "no metrics logged"
        return (f"{self.stage} epoch {trainer.current_epoch + 1}/{planned_epochs(trainer)}: {shown} | "
                f"{rate:,.0f} img/s | {time.perf_counter() - self._stage_started:.1f} s")

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero:
            log.info("%s", self.line(trainer))


def planned_epochs(trainer: pl.Trainer) -> str:
    """max_epochs, or for a run bounded by max_steps (cross-validated fine-tuning) its epochs rounded up."""
    if trainer.max_epochs is not None and trainer.max_epochs > 0:
        return str(trainer.max_epochs)
    per_epoch = trainer.num_training_batches
    if trainer.max_steps > 0 and isinstance(per_epoch, int) and per_epoch > 0:
        return str(-(-trainer.max_steps // per_epoch))
    return "?"
