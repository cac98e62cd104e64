"""FixMatch's training batches: the labelled subset as every arm sees it, plus unlabelled images of the pool.

An epoch is one pass over the labelled images (`loading.EVEN`: every labelled image, every epoch), so the step
plan (`downstream.min_steps`, `downstream.epochs`) and `labeled_images_seen` mean what they mean for the other
arms. The unlabelled loader yields exactly as many batches per epoch, each `mu` times the labelled batch, drawn
from an endless stream of shuffles of the pool: epoch e continues where epoch e - 1 stopped, so over a run the
pool is cycled through evenly and a run resumed at an epoch boundary draws what the uninterrupted run would have.
The unlabelled images are `LabelSplit.pool` (every training image outside the validation pool, the pretext
methods' images); they are loaded without labels.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from pytorch_lightning.utilities import CombinedLoader
from torch.utils.data import DataLoader, Sampler

from ssl_lightning.data.datamodules import DownstreamDataModule
from ssl_lightning.data.loading import IndexedImages, ShardedBatchSampler

LABELED, UNLABELED = "labeled", "unlabeled"  # the keys of a FixMatch training batch

_UNLABELED_STREAM = 0xF1C  # keeps the unlabelled shuffles apart from the labelled ones of the same seed


class UnlabeledBatchSampler(Sampler[torch.Tensor]):
    """`batches` index batches of `batch_size` per epoch from an endless sequence of shuffles of `size` positions.

    The sequence is shared by every process: step s takes the next `batch_size * world_size` positions and rank r
    keeps every world_size-th of them from the r-th, so ranks never draw the same image in one step.
    """

    def __init__(self, size: int, batch_size: int, batches: int, seed: int = 0, rank: int = 0, world_size: int = 1):
        if size < 1 or batch_size < 1:
            raise ValueError(f"an unlabelled sampler needs images and a batch size (size={size}, batch={batch_size})")
        self.size, self.batch_size, self.batches = size, batch_size, batches
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _shuffle(self, index: int) -> torch.Tensor:
        state = np.random.SeedSequence([self.seed, _UNLABELED_STREAM, index]).generate_state(1, dtype=np.uint64)[0]
        return torch.randperm(self.size, generator=torch.Generator().manual_seed(int(state >> 1)))

    def _positions(self, start: int, stop: int) -> torch.Tensor:
        """Positions start..stop-1 of the endless sequence of shuffles."""
        first, last = start // self.size, (stop - 1) // self.size
        stream = torch.cat([self._shuffle(index) for index in range(first, last + 1)])
        return stream[start - first * self.size: stop - first * self.size]

    def __iter__(self) -> Iterator[torch.Tensor]:
        per_step = self.batch_size * self.world_size
        start = self.epoch * self.batches * per_step
        if self.batches == 0:
            return
        positions = self._positions(start, start + self.batches * per_step)
        for step in range(self.batches):
            yield positions[step * per_step:(step + 1) * per_step][self.rank::self.world_size]

    def __len__(self) -> int:
        return self.batches


class LabelledEpochs(CombinedLoader):
    """{labeled, unlabeled} batches, an epoch as long as the labelled loader (both have that many batches)."""

    @property
    def sampler(self) -> ShardedBatchSampler:  # type: ignore[override]
        """The labelled loader's sampler: what an epoch and `labeled_images_seen` are counted on, as for every arm
        (Lightning sets the epoch of each loader's own sampler, not through this)."""
        return self.iterables[LABELED].sampler


class FixMatchDataModule(DownstreamDataModule):
    """DownstreamDataModule whose training batches add `mu` unlabelled images per labelled image."""

    def __init__(self, *args: Any, unlabeled: np.ndarray, mu: int, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.unlabeled_set = IndexedImages(self.train_set.images, None, unlabeled)  # no labels: never read
        self.mu = mu

    def train_dataloader(self) -> LabelledEpochs:  # type: ignore[override]
        labelled = super().train_dataloader()
        rank, world = self._rank_and_world()
        batches = len(labelled.sampler)
        shard = -(-len(self.train_set) // world)
        labelled_batch = -(-shard // batches) if batches else self.batch_size  # EVEN batches: at most this many
        sampler = UnlabeledBatchSampler(len(self.unlabeled_set), self.mu * labelled_batch, batches, self.seed,
                                        rank, world)
        unlabelled = DataLoader(self.unlabeled_set, sampler=sampler, batch_size=None, num_workers=self.num_workers,
                                pin_memory=self.pin_memory, persistent_workers=self.num_workers > 0)
        return LabelledEpochs({LABELED: labelled, UNLABELED: unlabelled}, mode="max_size_cycle")
