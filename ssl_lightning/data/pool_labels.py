"""The pretext pool's labels, for the one pretext method that trains on them (the supervised-features ceiling).

Every other method's training batches are images only. A method registered with `needs_labels` gets the labels
of the pretext pool, i.e. of every training image outside the validation pool, and of nothing else: the rows of
the validation pool (and any row that is not a target training image) hold `NO_LABEL`, so a batch that reached
one would fail loudly instead of training on it; the test split is never among the pretext images at all.
"""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np
import torch

from ssl_lightning.data.base import ImageSet
from ssl_lightning.data.config import DataConfig
from ssl_lightning.data.datamodules import PretextDataModule
from ssl_lightning.data.fractions import LabelSplit
from ssl_lightning.data.loading import IndexedImages
from ssl_lightning.data.mapped_images import LazyImages
from ssl_lightning.data.pretext_sources import PretextImages
from ssl_lightning.errors import UserError

log = logging.getLogger(__name__)
NO_LABEL = -1  # a row whose label the labelled pretext method may not see


def pool_label_rows(row_count: int, train_labels: torch.Tensor, split: LabelSplit) -> torch.Tensor:
    """int64 label per pretext row: the pool's labels, NO_LABEL everywhere else (validation pool, other rows)."""
    labels = torch.full((row_count,), NO_LABEL, dtype=torch.long)
    pool = torch.as_tensor(split.pool, dtype=torch.long)
    labels[pool] = train_labels[pool].long()
    return labels


def with_pool_labels(pretext: PretextImages, sources: dict[str, DataConfig | None], target: ImageSet,
                     split: LabelSplit, experiment: str) -> PretextImages:
    """The pretext images restricted to the target's training pool, with its labels; UserError when the pretext
    data names another data set (its images carry no labels of this task)."""
    others = sorted(entry for entry, config in sources.items() if config is not None)
    if others:
        raise UserError(f"+experiment={experiment} trains its encoder on the labels of the target's training pool; "
                        f"pretext_data entries {others} have none: use pretext_data=target")
    if len(pretext.train_indices) != len(split.pool):
        log.info("+experiment=%s trains on the %d labelled pool images only (%d unlabelled pretext images left out)",
                 experiment, len(split.pool), len(pretext.train_indices) - len(split.pool))
    labels = pool_label_rows(len(pretext.images), target.train_labels, split)
    return replace(pretext, train_indices=np.asarray(split.pool, dtype=np.int64), train_labels=labels)


class LabelledPretextDataModule(PretextDataModule):
    """PretextDataModule whose training batches are (images, labels): the pool's labels, for a `needs_labels`
    method. Refuses training rows without a label and any overlap with the validation rows."""

    def __init__(self, images: torch.Tensor | LazyImages, train_indices: np.ndarray, val_indices: np.ndarray,
                 batch_size: int, eval_batch_size: int, train_labels: torch.Tensor, num_workers: int = 0,
                 pin_memory: bool = False, seed: int = 0, val_labels: torch.Tensor | None = None):
        super().__init__(images, train_indices, val_indices, batch_size, eval_batch_size, num_workers, pin_memory,
                         seed, val_labels)
        rows = torch.as_tensor(train_indices, dtype=torch.long)
        if bool((train_labels[rows] == NO_LABEL).any()) or np.intersect1d(train_indices, val_indices).size:
            raise RuntimeError("the labelled pretext training rows include rows without a pool label "
                               "(validation pool or unlabelled images)")
        self.num_classes = int(train_labels.max()) + 1
        self.train_set = IndexedImages(images, train_labels, train_indices)
