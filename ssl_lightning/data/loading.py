"""Index-batched loading: one tensor gather per batch instead of per-sample __getitem__ and collate."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from ssl_lightning.data.mapped_images import LazyImages, take


class IndexedImages(Dataset):
    """Returns whole batches: `dataset[index_array]` -> (uint8 images, labels or None)."""

    def __init__(self, images: torch.Tensor | LazyImages, labels: torch.Tensor | None, indices: np.ndarray):
        self.images = images
        self.labels = labels
        self.indices = torch.as_tensor(indices, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, positions: torch.Tensor):
        rows = self.indices[positions]
        images = take(self.images, rows)  # one gather, also straight from the store's memory maps
        if self.labels is None:
            return images
        return images, self.labels[rows]


def epoch_seed(seed: int, epoch: int) -> int:
    """A shuffle seed drawn from the pair (seed, epoch): seed 1 epoch 0 no longer shuffles like seed 0 epoch 1."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1, dtype=np.uint64)[0] >> 1)


class ShardedBatchSampler(Sampler[torch.Tensor]):
    """Yields index batches; shuffles per epoch from a seed; each process of a DDP job gets its own shard.

    Sharding is done here (not by Lightning's DistributedSampler) because batches are index arrays.
    """

    def __init__(self, size: int, batch_size: int, shuffle: bool, drop_last: bool, seed: int = 0,
                 rank: int = 0, world_size: int = 1):
        self.size, self.batch_size = size, batch_size
        self.shuffle, self.drop_last, self.seed = shuffle, drop_last, seed
        self.rank, self.world_size = rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _shard(self) -> torch.Tensor:
        if self.shuffle:
            generator = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch))
            order = torch.randperm(self.size, generator=generator)
        else:
            order = torch.arange(self.size)
        if self.world_size > 1 and self.drop_last:
            usable = self.size - self.size % self.world_size
            order = order[:usable]
        return order[self.rank :: self.world_size]

    def _batch_count(self, shard_size: int) -> int:
        if self.drop_last:
            # A labelled subset smaller than one batch still trains, as one short batch.
            return max(shard_size // self.batch_size, min(shard_size, 1))
        return -(-shard_size // self.batch_size)

    def __iter__(self) -> Iterator[torch.Tensor]:
        shard = self._shard()
        step = self.batch_size if len(shard) >= self.batch_size else len(shard)
        for b in range(self._batch_count(len(shard))):
            yield shard[b * step : (b + 1) * step]

    def __len__(self) -> int:
        return self._batch_count(len(self._shard()))
