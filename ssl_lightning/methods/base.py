"""What every pretext method shares: the encoder, optimisation, logging and the divergence guard.

A method subclasses `PretextMethod` and implements `pretext_step(images) -> (loss, accuracy)` on a
batch of uint8 images already on the device (solo-learn's base/method split).
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch

from ssl_lightning.data.augment import to_unit_float
from ssl_lightning.methods.optim import OptimConfig, configure
from ssl_lightning.models.backbones import Encoder


class PretextMethod(pl.LightningModule):
    """Base LightningModule of the pretext stage; logs `pretext/{train,val}_{loss,acc}` and `pretext/lr`."""

    stage = "pretext"

    def __init__(self, encoder: Encoder, optim: OptimConfig, epochs: int):
        super().__init__()
        self.encoder = encoder
        self.optim = optim
        self.epochs = epochs

    def pretext_step(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        loss, accuracy = self.pretext_step(to_unit_float(batch))
        self.log("pretext/train_loss", loss, on_step=False, on_epoch=True, prog_bar=True, sync_dist=True)
        self.log("pretext/train_acc", accuracy, on_step=False, on_epoch=True, prog_bar=True, sync_dist=True)
        return loss

    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        loss, accuracy = self.pretext_step(to_unit_float(batch))
        self.log("pretext/val_loss", loss, on_epoch=True, sync_dist=True)
        self.log("pretext/val_acc", accuracy, on_epoch=True, prog_bar=True, sync_dist=True)

    def on_train_epoch_start(self) -> None:
        self.log("pretext/lr", self.trainer.optimizers[0].param_groups[0]["lr"], on_step=False, on_epoch=True)

    def configure_optimizers(self):
        return configure(self.parameters(), self.optim, self.epochs)
