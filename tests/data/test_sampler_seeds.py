"""Epoch shuffles are drawn from the pair (seed, epoch), not from seed + epoch."""

from __future__ import annotations

import torch

from ssl_lightning.data.loading import ALL, ShardedBatchSampler


def order(seed: int, epoch: int) -> list[int]:
    sampler = ShardedBatchSampler(64, 64, shuffle=True, remainder=ALL, seed=seed)
    sampler.set_epoch(epoch)
    return torch.cat(list(sampler)).tolist()


def test_seed_one_epoch_zero_differs_from_seed_zero_epoch_one():
    assert order(1, 0) != order(0, 1)


def test_same_pair_same_order_and_every_index_once():
    assert order(3, 2) == order(3, 2)
    assert sorted(order(3, 2)) == list(range(64))
    assert order(3, 2) != order(3, 3)
