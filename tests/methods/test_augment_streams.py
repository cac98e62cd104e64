"""The augmentation streams' seeds: one per (seed, rank, epoch, phase), the same on every call."""

from __future__ import annotations

import torch

from ssl_lightning.data.augment import simclr_view
from ssl_lightning.data.augment_streams import AugmentStreams, stream_seed


def test_stream_seeds_differ_by_rank_epoch_and_phase_and_repeat_for_equal_inputs() -> None:
    seeds = {stream_seed(0, rank, epoch, phase)
             for rank in range(4) for epoch in range(4) for phase in ("train", "val")}
    assert len(seeds) == 32
    assert stream_seed(3, 1, 2, "train") == stream_seed(3, 1, 2, "train")
    assert stream_seed(0, 1, 0, "train") != stream_seed(1, 0, 0, "train")  # seed and rank do not trade places


def test_a_stream_restarts_at_each_epoch_start_and_continues_within_an_epoch() -> None:
    streams, images = AugmentStreams(seed=0), torch.rand(4, 3, 16, 16)
    assert streams.generator("train", torch.device("cpu")) is None  # before the first epoch: the global generator
    streams.begin("train", rank=0, epoch=1)
    first = simclr_view(images, 1.0, 0.2, 0.2, generator=streams.generator("train", torch.device("cpu")))
    second = simclr_view(images, 1.0, 0.2, 0.2, generator=streams.generator("train", torch.device("cpu")))
    assert not torch.equal(first, second)  # one stream per epoch, not one fresh generator per call
    streams.begin("train", rank=0, epoch=1)
    again = simclr_view(images, 1.0, 0.2, 0.2, generator=streams.generator("train", torch.device("cpu")))
    assert torch.equal(first, again)
