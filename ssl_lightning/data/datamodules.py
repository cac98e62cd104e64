"""LightningDataModules: unlabelled images for the pretext stage; fraction/val/test for the downstream stage.

Batches stay uint8 until they reach the training device, where the method augments them.
"""

from __future__ import annotations

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from ssl_lightning.data.loading import ALL, DROP, EVEN, IndexedImages, ShardedBatchSampler


class _IndexedDataModule(pl.LightningDataModule):
    def __init__(self, batch_size: int, eval_batch_size: int, num_workers: int, pin_memory: bool, seed: int):
        super().__init__()
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.num_workers, self.pin_memory, self.seed = num_workers, pin_memory, seed

    def _rank_and_world(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def _loader(self, dataset: IndexedImages, train: bool, remainder: str = ALL) -> DataLoader:
        """Training loaders shuffle per epoch; `remainder` (loading.DROP / EVEN / ALL) says what a short last
        batch does: dropped for unlabelled pretext images, kept (even batches) for labelled ones."""
        rank, world = self._rank_and_world()
        sampler = ShardedBatchSampler(
            len(dataset), self.batch_size if train else self.eval_batch_size, shuffle=train,
            remainder=remainder if train else ALL, seed=self.seed, rank=rank, world_size=world,
        )
        return DataLoader(
            dataset, sampler=sampler, batch_size=None, num_workers=self.num_workers,
            pin_memory=self.pin_memory, persistent_workers=self.num_workers > 0,
        )


class PretextDataModule(_IndexedDataModule):
    """Unlabelled images: `train_indices` for training, `val_indices` for the pretext validation curves.

    `val_labels` (labels of the rows of `images`, where the validation split is carved from a labelled pool)
    makes validation batches (images, labels) for the k-NN monitor; training batches never carry labels.
    """

    def __init__(self, images: torch.Tensor, train_indices: np.ndarray, val_indices: np.ndarray,
                 batch_size: int, eval_batch_size: int, num_workers: int = 0, pin_memory: bool = False,
                 seed: int = 0, val_labels: torch.Tensor | None = None):
        super().__init__(batch_size, eval_batch_size, num_workers, pin_memory, seed)
        self.train_set = IndexedImages(images, None, train_indices)
        self.val_set = IndexedImages(images, val_labels, val_indices)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, train=True, remainder=DROP)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, train=False)


class DownstreamDataModule(_IndexedDataModule):
    """Labelled fraction for training, the validation split for model selection, the test split once.

    Training never drops a labelled image (loading.EVEN): how many labels a budget uses must not depend on
    `downstream.batch_size`."""

    def __init__(self, train_images: torch.Tensor, train_labels: torch.Tensor, labeled: np.ndarray,
                 val: np.ndarray, test_images: torch.Tensor, test_labels: torch.Tensor, batch_size: int,
                 eval_batch_size: int, num_workers: int = 0, pin_memory: bool = False, seed: int = 0):
        super().__init__(batch_size, eval_batch_size, num_workers, pin_memory, seed)
        self.train_set = IndexedImages(train_images, train_labels, labeled)
        self.val_set = IndexedImages(train_images, train_labels, val)
        self.test_set = IndexedImages(test_images, test_labels, np.arange(len(test_labels)))

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, train=True, remainder=EVEN)  # every labelled image, every epoch

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, train=False)
