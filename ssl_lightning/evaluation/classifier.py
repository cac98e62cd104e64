"""The one downstream classifier for every method and for the supervised baseline.

`protocol="finetune"` trains the whole network; `protocol="linear"` freezes the encoder, BatchNorm
statistics included, and trains only the new head. The pretext head or projector is never carried over.

Validation logs accuracy and balanced accuracy (names from `downstream_selection.validation_key`, which
checkpointing and early stopping watch). Testing keeps every test image's class probabilities, gathered from
all processes in the test split's order, and turns them into the shared test metrics
(`ssl_lightning.evaluation.metrics`).
"""

from __future__ import annotations

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torchmetrics.classification import MulticlassAccuracy

from ssl_lightning.data.augment import downstream_view, standardize, to_unit_float
from ssl_lightning.data.augment_streams import augment_options
from ssl_lightning.evaluation.downstream_selection import validation_key
from ssl_lightning.evaluation.metrics import ClassificationMetrics, classification_metrics
from ssl_lightning.methods.optim import OptimConfig, configure
from ssl_lightning.models.backbones import Encoder
from ssl_lightning.models.heads import classifier_head
from ssl_lightning.record import TEST_METRICS

PROTOCOLS = ("finetune", "linear")
VALIDATION_PREFIX = "downstream/val_"
CHECKPOINT_VALIDATION = "validation_metrics"  # checkpoint entry: the validation metrics of the epoch it was saved at


class BalancedAccuracy(MulticlassAccuracy):
    """Mean recall over the classes that have validation images in the epoch (synchronised across processes).

    torchmetrics' `average="macro"` leaves out only classes with neither images nor predictions: a class without
    validation images that the model predicts anyway enters with recall 0. Balanced accuracy (as
    `ssl_lightning.evaluation.metrics.balanced_accuracy` and scikit-learn define it) averages over the classes present.
    """

    def __init__(self, num_classes: int):
        super().__init__(num_classes, average="none")

    def compute(self) -> torch.Tensor:
        true_positive, _, _, false_negative = self._final_state()
        support = true_positive + false_negative
        present = support > 0
        if not bool(present.any()):
            return torch.tensor(float("nan"), device=support.device)
        return (true_positive[present].float() / support[present].float()).mean()


def gather_in_split_order(module: pl.LightningModule, local: torch.Tensor) -> torch.Tensor:
    """Every process's rows of the test split, back in the split's order.

    The test loader shards the unshuffled split by striding (`ShardedBatchSampler`: rank r holds rows r, r + W,
    r + 2W, ...), so shards differ in length by at most one row; they are padded to one length for all_gather.
    """
    trainer = module.trainer
    world = trainer.world_size if trainer is not None else 1
    if world == 1:
        return local
    count = torch.tensor(len(local), device=local.device)
    counts = [int(c) for c in module.all_gather(count).reshape(-1)]
    padded = local.new_zeros((max(counts), *local.shape[1:]))
    padded[: len(local)] = local
    gathered = module.all_gather(padded)  # world x longest x ...
    ordered = local.new_empty((sum(counts), *local.shape[1:]))
    for rank, rows in enumerate(counts):
        ordered[rank::world] = gathered[rank, :rows]
    return ordered


class Classifier(pl.LightningModule):
    stage = "downstream"

    def __init__(self, encoder: Encoder, num_classes: int, optim: OptimConfig, epochs: int,
                 protocol: str = "finetune", head: str = "linear", augment: bool = True,
                 schedule_steps: int | None = None):
        super().__init__()
        self.encoder = encoder
        self.head = classifier_head(head, encoder.feature_dim, num_classes)
        self.num_classes = num_classes
        self.optim, self.epochs, self.protocol, self.augment = optim, epochs, protocol, augment
        self.schedule_steps = schedule_steps  # the lr schedule's length when not the Trainer's run (a refit)
        if protocol == "linear":
            self.encoder.requires_grad_(False)
            self.encoder.eval()  # Lightning >= 2.2 no longer calls .train() when fit starts
        self.train_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_balanced_acc = BalancedAccuracy(num_classes)
        # Test: group id per test image (None = one group per image), set by the caller before testing.
        self.test_groups: np.ndarray | None = None
        self.test_metrics: ClassificationMetrics | None = None
        self.test_labels_seen = torch.empty(0, dtype=torch.long)  # the labels the metrics saw, in split order
        self._test_probabilities: list[torch.Tensor] = []
        self._test_labels: list[torch.Tensor] = []

    @property
    def per_class_accuracy(self) -> list[float]:
        """Recall per class on the whole test split (NaN for a class without test images)."""
        return list(self.test_metrics.per_class_acc) if self.test_metrics is not None else []

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
        self.val_balanced_acc(logits, labels)
        self.log("downstream/val_loss", F.cross_entropy(logits, labels), on_epoch=True, sync_dist=True)
        self.log(validation_key("acc"), self.val_acc, on_epoch=True, prog_bar=True)
        self.log(validation_key("balanced_acc"), self.val_balanced_acc, on_epoch=True)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Keep the validation metrics of the checkpoint's epoch in it, for the results of the tested checkpoint."""
        metrics = self._trainer.callback_metrics if self._trainer is not None else {}
        checkpoint[CHECKPOINT_VALIDATION] = {name[len(VALIDATION_PREFIX):]: float(value)
                                             for name, value in metrics.items() if name.startswith(VALIDATION_PREFIX)}

    def on_test_epoch_start(self) -> None:
        self._test_probabilities, self._test_labels = [], []
        self.test_metrics = None

    def test_step(self, batch, batch_idx: int) -> None:
        images, labels = batch
        logits = self(to_unit_float(images))
        self._test_probabilities.append(torch.softmax(logits.float(), dim=1).detach())
        self._test_labels.append(labels.detach())
        self.log("test/loss", F.cross_entropy(logits, labels), on_epoch=True, sync_dist=True)

    def on_test_epoch_end(self) -> None:
        """Metrics of the whole test split from every process's probabilities, the same on every process."""
        local_probabilities = (torch.cat(self._test_probabilities) if self._test_probabilities
                               else torch.empty(0, self.num_classes, device=self.device))
        local_labels = (torch.cat(self._test_labels) if self._test_labels
                        else torch.empty(0, dtype=torch.long, device=self.device))
        probabilities = gather_in_split_order(self, local_probabilities).cpu()
        self.test_labels_seen = gather_in_split_order(self, local_labels).cpu()
        self._test_probabilities, self._test_labels = [], []
        self.test_metrics = classification_metrics(probabilities, self.test_labels_seen, self.num_classes,
                                                   self.test_groups)  # ValueError when the group ids do not fit
        self._log_test_metrics(self.test_metrics)

    def _log_test_metrics(self, metrics: ClassificationMetrics) -> None:
        """Test scalars for TensorBoard (identical on every process), and the confusion matrix as text."""
        recorded = metrics.as_results()  # test/<name> for every declared test metric measured (ssl_lightning/record.py)
        scalars = {metric.option: recorded[metric.key] for metric in TEST_METRICS if metric.key in recorded}
        for name, value in scalars.items():
            self.log(f"test/{name}", float(value), on_epoch=True, sync_dist=True)
        experiment = getattr(self.logger, "experiment", None) if self.trainer.is_global_zero else None
        if experiment is not None and hasattr(experiment, "add_text"):
            rows = "\n".join("    " + " ".join(f"{count:6d}" for count in row) for row in metrics.confusion)
            experiment.add_text("test/confusion", f"rows: true class, columns: predicted class\n\n{rows}")

    def on_train_epoch_start(self) -> None:
        self.log("downstream/lr", self.trainer.optimizers[0].param_groups[0]["lr"], on_step=False, on_epoch=True)

    def configure_optimizers(self):
        params = [p for p in self.parameters() if p.requires_grad]
        return configure(params, self.optim, self._trainer, self.schedule_steps, self.epochs)
