"""The divergence guard: a NaN or infinite training loss stops the stage, naming stage, epoch and step.

Turning the loss into a Python number every step would force a device synchronisation per step on a GPU.
Instead the guard keeps, on the device, the global step of the first non-finite loss, and reads it back
only every `interval` steps and at the last batch of every epoch (before validation and the epoch's
checkpoint, so no checkpoint of diverged weights is ever written by a finished epoch).
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback

DEFAULT_INTERVAL = 32


class DivergenceError(RuntimeError):
    """A NaN or infinite loss: training cannot recover, the stage stops and the cell is marked failed."""


def _loss_of(outputs) -> torch.Tensor | None:
    if isinstance(outputs, torch.Tensor):
        return outputs
    if isinstance(outputs, dict) and isinstance(outputs.get("loss"), torch.Tensor):
        return outputs["loss"]
    return None


class FiniteLossGuard(Callback):
    """Records the first non-finite training loss on the device; raises DivergenceError when it reads it back."""

    def __init__(self, stage: str, interval: int = DEFAULT_INTERVAL):
        if interval < 1:
            raise ValueError("interval must be at least 1")
        self.stage, self.interval = stage, interval
        self._first_bad: torch.Tensor | None = None  # global step of the first bad loss, -1 while none
        self._bad_loss: torch.Tensor | None = None
        self._epoch_of_bad: torch.Tensor | None = None

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch,
                           batch_idx: int) -> None:
        loss = _loss_of(outputs)
        if loss is None:
            return
        loss = loss.detach()
        if self._first_bad is None or self._first_bad.device != loss.device:
            self._first_bad = torch.full((), -1, dtype=torch.long, device=loss.device)
            self._bad_loss = torch.zeros((), dtype=loss.dtype, device=loss.device)
            self._epoch_of_bad = torch.full((), -1, dtype=torch.long, device=loss.device)
        newly_bad = ~torch.isfinite(loss) & (self._first_bad < 0)
        # global_step has already advanced past this batch's optimizer step: the batch's own step is one less.
        step = max(trainer.global_step - 1, 0)
        self._first_bad = torch.where(newly_bad, torch.full_like(self._first_bad, step), self._first_bad)
        self._bad_loss = torch.where(newly_bad, loss.to(self._bad_loss.dtype), self._bad_loss)
        self._epoch_of_bad = torch.where(newly_bad, torch.full_like(self._epoch_of_bad, trainer.current_epoch),
                                         self._epoch_of_bad)
        last_of_epoch = batch_idx + 1 >= _batches_per_epoch(trainer)
        if last_of_epoch or (batch_idx + 1) % self.interval == 0:
            self.check()

    def check(self) -> None:
        """Read the flag back (one synchronisation) and raise if any loss so far was not finite."""
        if self._first_bad is None:
            return
        first_bad = int(self._first_bad)
        if first_bad >= 0:
            raise DivergenceError(
                f"{self.stage} loss became {float(self._bad_loss)} at epoch {int(self._epoch_of_bad)}, "
                f"step {first_bad}; lower {self.stage}.lr (e.g. by 10x) and run again"
            )

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.check()


def _batches_per_epoch(trainer: pl.Trainer) -> float:
    """Training batches per epoch; infinity while Lightning does not know yet (then only the interval checks)."""
    return trainer.num_training_batches or float("inf")
