"""The one downstream classifier for every method and for the supervised baseline.

`protocol="finetune"` trains the whole network; `protocol="linear"` freezes the encoder, BatchNorm
statistics included, and trains only the new head. The pretext head or projector is never carried over.
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torchmetrics.classification import MulticlassAccuracy

from ssl_lightning.data.augment import downstream_view, standardize, to_unit_float
from ssl_lightning.data.augment_streams import augment_options
from ssl_lightning.methods.optim import OptimConfig, configure
from ssl_lightning.models.backbones import Encoder
from ssl_lightning.models.heads import classifier_head

PROTOCOLS = ("finetune", "linear")


class Classifier(pl.LightningModule):
    stage = "downstream"

    def __init__(self, encoder: Encoder, num_classes: int, optim: OptimConfig, epochs: int,
                 protocol: str = "finetune", head: str = "linear", augment: bool = True):
        super().__init__()
        self.encoder = encoder
        self.head = classifier_head(head, encoder.feature_dim, num_classes)
        self.optim, self.epochs, self.protocol, self.augment = optim, epochs, protocol, augment
        if protocol == "linear":
            self.encoder.requires_grad_(False)
            self.encoder.eval()  # Lightning >= 2.2 no longer calls .train() when fit starts
        self.train_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_per_class = MulticlassAccuracy(num_classes, average="none")
        self.per_class_accuracy: list[float] = []

    def train(self, mode: bool = True):
        """Keep a frozen encoder in eval mode so its BatchNorm running statistics never move."""
        super().train(mode)
        if self.protocol == "linear":
            self.encoder.eval()
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(standardize(images)))

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        images, labels = batch
        images = to_unit_float(images)
        if self.augment:
            images = downstream_view(images, **augment_options(self))
        logits = self(images)
        loss = F.cross_entropy(logits, labels)
        self.train_acc(logits, labels)
        self.log("downstream/train_loss", loss, on_step=False, on_epoch=True, prog_bar=True, sync_dist=True)
        self.log("downstream/train_acc", self.train_acc, on_step=False, on_epoch=True, prog_bar=True)
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        images, labels = batch
        logits = self(to_unit_float(images))
        self.val_acc(logits, labels)
        self.log("downstream/val_loss", F.cross_entropy(logits, labels), on_epoch=True, sync_dist=True)
        self.log("downstream/val_acc", self.val_acc, on_epoch=True, prog_bar=True)

    def test_step(self, batch, batch_idx: int) -> None:
        images, labels = batch
        logits = self(to_unit_float(images))
        self.test_acc(logits, labels)
        self.test_per_class.update(logits, labels)
        self.log("test/loss", F.cross_entropy(logits, labels), on_epoch=True, sync_dist=True)
        self.log("test/acc", self.test_acc, on_epoch=True)

    def on_test_epoch_end(self) -> None:
        self.per_class_accuracy = [float(v) for v in self.test_per_class.compute()]
        self.test_per_class.reset()

    def on_train_epoch_start(self) -> None:
        self.log("downstream/lr", self.trainer.optimizers[0].param_groups[0]["lr"], on_step=False, on_epoch=True)

    def configure_optimizers(self):
        params = [p for p in self.parameters() if p.requires_grad]
        return configure(params, self.optim, self.epochs)
