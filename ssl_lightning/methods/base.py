"""What every pretext method shares: the encoder, optimisation, logging, the divergence guard and the monitor.

A method subclasses `PretextMethod` and implements `pretext_step(images) -> (loss, accuracy)` on a
batch of uint8 images already on the device (solo-learn's base/method split). Once per validation epoch
every method also logs the label-free-comparable monitors of `methods/monitor.py` on the encoder's features:
`pretext/val_knn_acc` (when the validation images have labels) and `pretext/val_rankme`.
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch

from ssl_lightning.data.augment import standardize, to_unit_float
from ssl_lightning.methods.monitor import knn_leave_one_out_accuracy, rankme
from ssl_lightning.methods.optim import OptimConfig, configure
from ssl_lightning.models.backbones import Encoder


class PretextMethod(pl.LightningModule):
    """Base LightningModule of the pretext stage; logs `pretext/{train,val}_{loss,acc}`, `pretext/lr` and the
    monitors `pretext/val_knn_acc` and `pretext/val_rankme`."""

    stage = "pretext"

    def __init__(self, encoder: Encoder, optim: OptimConfig, epochs: int):
        super().__init__()
        self.encoder = encoder
        self.optim = optim
        self.epochs = epochs
        self._val_features: list[torch.Tensor] = []
        self._val_labels: list[torch.Tensor] = []
        self.total_steps = 1  # optimizer steps of the whole fit, known once training starts (EMA schedules)

    def pretext_step(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def evaluated_encoder(self) -> Encoder:
        """The encoder the method's paper evaluates and the store keeps: the trained one (BYOL's online and
        MoCo's query encoder included); DINO overrides it with its teacher. A function of the weights, not a
        hook, so a fit resumed from its final checkpoint (where Lightning runs no training hooks) hands over
        the same encoder as an uninterrupted one."""
        return self.encoder

    # --- distributed helpers ------------------------------------------------------------------------------------

    @property
    def world_size(self) -> int:
        trainer = self._trainer  # None when the module is used outside a Trainer (tests, benchmarks)
        return trainer.world_size if trainer is not None else 1

    @property
    def gathers_in_this_step(self) -> bool:
        """Cross-process collectives only while training: validation shards may differ by an image between
        ranks (no padding), and all_gather needs equal shapes and equal call counts on every rank."""
        return self.world_size > 1 and self.training

    def gather_rows(self, rows: torch.Tensor, with_gradients: bool) -> torch.Tensor:
        """All processes' rows (equal counts), concatenated in rank order."""
        return self.all_gather(rows, sync_grads=with_gradients).reshape(-1, *rows.shape[1:])

    def gather_uneven_rows(self, rows: torch.Tensor) -> torch.Tensor:
        """All processes' rows when the counts may differ (validation shards): pad, gather, cut."""
        sizes = self.all_gather(torch.tensor([len(rows)], device=rows.device)).reshape(-1)
        padded = rows.new_zeros((int(sizes.max()), *rows.shape[1:]))
        padded[: len(rows)] = rows
        gathered = self.all_gather(padded)
        return torch.cat([gathered[rank, : int(size)] for rank, size in enumerate(sizes)])

    # --- Lightning hooks -----------------------------------------------------------------------------------------

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        loss, accuracy = self.pretext_step(to_unit_float(batch))
        self.log("pretext/train_loss", loss, on_step=False, on_epoch=True, prog_bar=True, sync_dist=True)
        self.log("pretext/train_acc", accuracy, on_step=False, on_epoch=True, prog_bar=True, sync_dist=True)
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        images, labels = batch if isinstance(batch, list | tuple) else (batch, None)
        images = to_unit_float(images)
        loss, accuracy = self.pretext_step(images)
        self.log("pretext/val_loss", loss, on_epoch=True, sync_dist=True)
        self.log("pretext/val_acc", accuracy, on_epoch=True, prog_bar=True, sync_dist=True)
        with torch.no_grad():
            self._val_features.append(self.encoder(standardize(images)).float())
        if labels is not None:
            self._val_labels.append(labels)

    def on_validation_epoch_start(self) -> None:
        self._val_features, self._val_labels = [], []

    def on_validation_epoch_end(self) -> None:
        """k-NN accuracy and RankMe on the whole validation split's features (all processes' shards)."""
        features, labels = self._val_features, self._val_labels
        self._val_features, self._val_labels = [], []
        if self.trainer.sanity_checking or not features:
            return
        all_features = torch.cat(features)
        all_labels = torch.cat(labels) if len(labels) == len(features) else None
        if self.world_size > 1:
            all_features = self.gather_uneven_rows(all_features)
            all_labels = self.gather_uneven_rows(all_labels) if all_labels is not None else None
        self.log("pretext/val_rankme", rankme(all_features), sync_dist=True)
        if all_labels is not None and len(all_labels) > 1:
            self.log("pretext/val_knn_acc", knn_leave_one_out_accuracy(all_features, all_labels), sync_dist=True)

    def on_train_start(self) -> None:
        self.total_steps = max(1, int(self.trainer.estimated_stepping_batches))

    def on_train_epoch_start(self) -> None:
        self.log("pretext/lr", self.trainer.optimizers[0].param_groups[0]["lr"], on_step=False, on_epoch=True)

    def configure_optimizers(self):
        """Only trainable parameters: momentum (EMA) target networks are left out of the optimizer."""
        params = [p for p in self.parameters() if p.requires_grad]
        return configure(params, self.optim, self._trainer, epochs=self.epochs)
