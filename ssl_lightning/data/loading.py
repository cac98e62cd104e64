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


# How a sampler treats the images that do not fill a last batch:
DROP = "drop"  # unlabelled pretext batches: a short last batch is dropped (contrastive losses want full batches)
EVEN = "even"  # labelled training: every image, every epoch, in batches as even as possible
ALL = "all"  # validation and test: every image once, unpadded, in order


class ShardedBatchSampler(Sampler[torch.Tensor]):
    """Yields index batches; shuffles per epoch from a seed; each process of a DDP job gets its own shard.

    Sharding is done here (not by Lightning's DistributedSampler) because batches are index arrays. `remainder`
    says what happens to images that do not fill a batch: DROP leaves them out (pretext), EVEN keeps every image
    and spreads the epoch over ceil(n / batch_size) batches of near-equal size, so 45 labelled images at batch 32
    train as 23 + 22, never as 32 with 13 left out (and never as a last batch of one that BatchNorm cannot
    normalise). Under DDP, EVEN pads the shards to one length by repeating the first images of the shuffled order
    (every rank must take the same number of steps), so no labelled image is left out there either.
    """

    def __init__(self, size: int, batch_size: int, shuffle: bool, remainder: str = ALL, seed: int = 0,
                 rank: int = 0, world_size: int = 1):
        if remainder not in (DROP, EVEN, ALL):
            raise ValueError(f"remainder={remainder!r}; valid: {DROP}, {EVEN}, {ALL}")
        self.size, self.batch_size = size, batch_size
        self.shuffle, self.remainder, self.seed = shuffle, remainder, seed
        self.rank, self.world_size = rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _order(self, epoch: int) -> torch.Tensor:
        if self.shuffle:
            generator = torch.Generator().manual_seed(epoch_seed(self.seed, epoch))
            return torch.randperm(self.size, generator=generator)
        return torch.arange(self.size)

    def _shard(self, rank: int, epoch: int) -> torch.Tensor:
        order = self._order(epoch)
        if self.world_size > 1 and self.remainder == DROP:
            order = order[: self.size - self.size % self.world_size]
        elif self.world_size > 1 and self.remainder == EVEN and self.size > 0:
            missing = (-self.size) % self.world_size
            order = torch.cat([order, order.repeat(missing // self.size + 1)[:missing]])
        return order[rank :: self.world_size]

    def _batch_count(self, shard_size: int) -> int:
        if self.remainder == DROP:
            # A set smaller than one batch still trains, as one short batch.
            return max(shard_size // self.batch_size, min(shard_size, 1))
        return -(-shard_size // self.batch_size)

    def _batches(self, rank: int, epoch: int) -> list[torch.Tensor]:
        shard = self._shard(rank, epoch)
        count = self._batch_count(len(shard))
        if self.remainder == EVEN:
            return list(torch.tensor_split(shard, count)) if count else []
        step = min(self.batch_size, len(shard))
        return [shard[b * step : (b + 1) * step] for b in range(count)]

    def __iter__(self) -> Iterator[torch.Tensor]:
        yield from self._batches(self.rank, self.epoch)

    def __len__(self) -> int:
        return self._batch_count(len(self._shard(self.rank, self.epoch)))

    def positions_seen(self, epoch: int, batches: int | None = None) -> set[int]:
        """Distinct positions that the first `batches` batches of every rank hold in `epoch` (all of them when
        None): what a training epoch touched across the whole job, e.g. `labeled_images_seen`."""
        seen: set[int] = set()
        for rank in range(self.world_size):
            for batch in self._batches(rank, epoch)[:batches]:
                seen.update(int(i) for i in batch)
        return seen
