"""The supervised-features ceiling (`+experiment=supervised_features`): the encoder trained with every label.

Where does an SSL method sit between the floor (raw pixels) and what labels can buy? The "pretext" stage here
trains the same backbone supervised: cross-entropy through a linear head (thrown away, like every pretext head)
on every labelled image of the training pool (all training images outside the validation pool; the validation
pool and the test split never train it), with the downstream fine-tuning's augmentation (random shift and flip,
the run's stain jitter). It runs `pretext.epochs` with the pretext optimiser settings and keeps the last epoch,
like every pretext method: nothing is selected on the validation pool, whose labels only draw the monitoring
curves (`pretext/val_loss`, `pretext/val_acc`, the k-NN monitor). The encoder goes to the pretext store like any
other, so every budget, split seed and probe of a seed reuses it; it is then frozen and probed with
`downstream=linear` (L-BFGS) or `downstream=knn` at each budget. Fine-tuning it is refused: it has already seen
every pool label, so the budget would mean nothing (that comparison is `+experiment=supervised`'s).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ssl_lightning.data.augment import downstream_view, standardize, to_unit_float
from ssl_lightning.data.augment_streams import augment_options
from ssl_lightning.data.pool_labels import NO_LABEL
from ssl_lightning.errors import UserError
from ssl_lightning.methods.base import PretextMethod
from ssl_lightning.methods.optim import OptimConfig
from ssl_lightning.methods.registry import RAW_PIXELS_RANK, MethodParams, MethodSpec, register
from ssl_lightning.models.backbones import Encoder
from ssl_lightning.schema_fields import PRETEXT, setting

NAME = "supervised_features"
ENCODER_KIND = "supervised_all_labels"  # results.json `encoder`
DISPLAY = "Supervised features, all labels"
RANK = RAW_PIXELS_RANK + 1  # the two bounds close every frozen table: raw pixels (floor), then this (ceiling)


class SupervisedFeatures(PretextMethod):
    """Cross-entropy on (image, pool label) batches; the head's size comes from the labelled data module."""

    def __init__(self, encoder: Encoder, optim: OptimConfig, epochs: int, augment: bool | None = None,
                 num_classes: int | None = None):
        super().__init__(encoder, optim, epochs)
        self.augment = SupervisedFeaturesParams().augment if augment is None else augment
        self.head: nn.Linear | None = None if num_classes is None else nn.Linear(encoder.feature_dim, num_classes)

    def setup(self, stage: str) -> None:
        """The head, sized by the labelled pretext data module (LabelledPretextDataModule.num_classes); built
        before the optimiser and before a resumed checkpoint is loaded."""
        if self.head is None:
            classes = getattr(getattr(self.trainer, "datamodule", None), "num_classes", None)
            if classes is None:
                raise RuntimeError(f"+experiment={NAME} needs the labelled pretext data module (the pool's labels)")
            self.head = nn.Linear(self.encoder.feature_dim, classes)

    def pretext_step(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> tuple[torch.Tensor,
                                                                                              torch.Tensor]:
        """(cross-entropy, accuracy) of a float [0, 1] batch and its pool labels; augmented while training."""
        if labels is None or self.head is None:
            raise RuntimeError(f"+experiment={NAME} trains on the pool's labels: pretext_step needs them")
        if bool((labels == NO_LABEL).any()):
            raise RuntimeError(f"+experiment={NAME} got a training row without a pool label")
        if self.training and self.augment:
            images = downstream_view(images, **augment_options(self))
        logits = self.head(self.encoder(standardize(images)))
        loss = F.cross_entropy(logits, labels)
        return loss, (logits.argmax(dim=1) == labels).float().mean()

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        if not isinstance(batch, list | tuple):
            raise RuntimeError(f"+experiment={NAME} trains on labelled batches; this one holds images only")
        images, labels = batch
        loss, accuracy = self.pretext_step(to_unit_float(images), labels)
        self.log("pretext/train_loss", loss, on_step=False, on_epoch=True, prog_bar=True, sync_dist=True)
        self.log("pretext/train_acc", accuracy, on_step=False, on_epoch=True, prog_bar=True, sync_dist=True)
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        """Monitoring only: the validation pool's loss and accuracy through the head, and its features for the
        k-NN and RankMe monitors of the base class."""
        images, labels = batch if isinstance(batch, list | tuple) else (batch, None)
        images = to_unit_float(images)
        features = self.encoder(standardize(images))
        if labels is not None and self.head is not None:
            logits = self.head(features)
            self.log("pretext/val_loss", F.cross_entropy(logits, labels), on_epoch=True, sync_dist=True)
            self.log("pretext/val_acc", (logits.argmax(dim=1) == labels).float().mean(), on_epoch=True,
                     prog_bar=True, sync_dist=True)
            self._val_labels.append(labels)
        self._val_features.append(features.float())


@dataclass(frozen=True)
class SupervisedFeaturesParams(MethodParams):
    """`supervised_features:` section (conf/experiment/supervised_features.yaml)."""

    augment: bool = setting(True, "", "the downstream fine-tuning's augmentation (random shift, flip, "
                            "data.hed_jitter) while training", PRETEXT)


def build(encoder: Encoder, optim: OptimConfig, epochs: int, params: SupervisedFeaturesParams) -> SupervisedFeatures:
    return SupervisedFeatures(encoder, optim, epochs, augment=params.augment)


def refuse_finetuning(experiment: str, method: str | None, protocol: str) -> None:
    """A method trained on every pool label is probed frozen only: fine-tuning it at a budget would use labels
    beyond the budget."""
    if method is None or protocol != "finetune":
        return
    from ssl_lightning.methods import registry

    if registry.get(method).needs_labels:
        raise UserError(f"+experiment={experiment} trains its encoder with every label of the training pool, so "
                        f"downstream={protocol} at a label budget would use labels beyond it (that comparison is "
                        "+experiment=supervised's); use a frozen protocol: downstream=linear (L-BFGS) or "
                        "downstream=knn")


register(MethodSpec(NAME, DISPLAY, NAME, SupervisedFeaturesParams, build, RANK,
                    "the supervised-features ceiling (issue 24): cross-entropy on every pool label",
                    needs_labels=True))
