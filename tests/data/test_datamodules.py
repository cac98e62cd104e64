"""DataModules hand out uint8 index-gathered batches; the batch sampler shards DDP ranks and reshuffles each epoch."""

from __future__ import annotations

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ssl_lightning.data.datamodules import DownstreamDataModule, PretextDataModule
from ssl_lightning.data.loading import ALL, DROP, EVEN, ShardedBatchSampler


def numbered_images(count: int, channels: int = 3, side: int = 8) -> torch.Tensor:
    """Image i is filled with the value i (count <= 256), so a batch tells which rows it gathered."""
    return torch.arange(count, dtype=torch.uint8)[:, None, None, None].expand(count, channels, side, side).clone()


def row_ids(batch: torch.Tensor) -> list[int]:
    return batch[:, 0, 0, 0].tolist()


def test_pretext_datamodule_yields_uint8_batches_from_its_indices():
    images = numbered_images(100)
    train_idx, val_idx = np.arange(0, 90, dtype=np.int64), np.arange(90, 100, dtype=np.int64)
    module = PretextDataModule(images, train_idx, val_idx, batch_size=16, eval_batch_size=4)
    train = list(module.train_dataloader())
    assert len(train) == 90 // 16
    for batch in train:
        assert isinstance(batch, torch.Tensor) and batch.dtype == torch.uint8 and batch.shape == (16, 3, 8, 8)
    seen = [i for batch in train for i in row_ids(batch)]
    assert len(set(seen)) == len(seen) and set(seen) <= set(train_idx.tolist())
    val = list(module.val_dataloader())
    assert [len(b) for b in val] == [4, 4, 2]  # evaluation keeps the last, short batch
    assert [i for b in val for i in row_ids(b)] == val_idx.tolist()


def test_downstream_datamodule_pairs_images_with_their_labels():
    images, labels = numbered_images(120, channels=1), torch.arange(120) % 5
    test_images, test_labels = numbered_images(30, channels=1), torch.arange(30) % 5
    labelled = np.arange(0, 120, 3, dtype=np.int64)  # 40 images
    val = np.arange(1, 120, 3, dtype=np.int64)
    module = DownstreamDataModule(images, labels, labelled, val, test_images, test_labels, batch_size=8,
                                  eval_batch_size=16)
    train = list(module.train_dataloader())
    assert len(train) == 5
    for x, y in train:
        assert x.dtype == torch.uint8 and x.shape == (8, 1, 8, 8) and y.dtype == torch.int64
        assert torch.equal(x[:, 0, 0, 0].long() % 5, y)
        assert set(row_ids(x)) <= set(labelled.tolist())
    assert sorted(i for x, _ in train for i in row_ids(x)) == labelled.tolist()
    assert [i for x, _ in module.val_dataloader() for i in row_ids(x)] == val.tolist()
    test = list(module.test_dataloader())
    assert [len(x) for x, _ in test] == [16, 14]
    assert torch.equal(torch.cat([y for _, y in test]), test_labels)


def test_labelled_subset_smaller_than_a_batch_still_trains():
    images, labels = numbered_images(20), torch.zeros(20, dtype=torch.long)
    module = DownstreamDataModule(images, labels, np.arange(5), np.arange(5, 10), images, labels, batch_size=32,
                                  eval_batch_size=32)
    assert [len(x) for x, _ in module.train_dataloader()] == [5]


def shards(size: int, batch_size: int, epoch: int, remainder: str = DROP, shuffle: bool = True,
           seed: int = 0, world_size: int = 2) -> list[list[torch.Tensor]]:
    out = []
    for rank in range(world_size):
        sampler = ShardedBatchSampler(size, batch_size, shuffle=shuffle, remainder=remainder, seed=seed, rank=rank,
                                      world_size=world_size)
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler)
        out.append(batches)
    return out


@settings(max_examples=50, deadline=None)
@given(size=st.integers(2, 400), batch_size=st.integers(2, 64), epoch=st.integers(0, 5), seed=st.integers(0, 99))
def test_training_shards_are_disjoint_with_equal_batch_counts(size, batch_size, epoch, seed):
    rank0, rank1 = shards(size, batch_size, epoch, seed=seed)
    assert len(rank0) == len(rank1) >= 1
    ids0, ids1 = (set(torch.cat(batches).tolist()) for batches in (rank0, rank1))
    assert ids0.isdisjoint(ids1) and ids0 | ids1 <= set(range(size))
    assert all(len(b) == len(rank0[0]) for b in rank0 + rank1)  # equal batch shapes on every rank


@settings(max_examples=40, deadline=None)
@given(size=st.integers(1, 300), batch_size=st.integers(2, 64))
def test_evaluation_shards_cover_every_index_once(size, batch_size):
    rank0, rank1 = shards(size, batch_size, epoch=0, remainder=ALL, shuffle=False)
    seen = [i for batches in (rank0, rank1) for b in batches for i in b.tolist()]
    assert sorted(seen) == list(range(size))


@settings(max_examples=60, deadline=None)
@given(size=st.integers(1, 300), batch_size=st.integers(1, 64), epoch=st.integers(0, 3),
       world_size=st.integers(1, 3))
def test_labelled_training_uses_every_image_every_epoch(size, batch_size, epoch, world_size):
    """EVEN (labelled training): every image in every epoch, on one process or several; the same number of
    steps on every rank; batches never larger than batch_size and within one image of each other in size."""
    ranks = shards(size, batch_size, epoch, remainder=EVEN, world_size=world_size)
    assert len({len(batches) for batches in ranks}) == 1
    seen = {i for batches in ranks for b in batches for i in b.tolist()}
    assert seen == set(range(size))
    sizes = [len(b) for batches in ranks for b in batches]
    assert max(sizes) <= batch_size and max(sizes) - min(sizes) <= 1
    if world_size == 1:
        assert sum(sizes) == size  # nothing repeated on one process


def test_45_labels_at_batch_32_train_as_two_even_batches():
    """The grouped study's 5% cell: 45 labelled tiles were one step of 32 with 13 left out."""
    sampler = ShardedBatchSampler(45, 32, shuffle=True, remainder=EVEN, seed=3)
    assert sorted(len(b) for b in sampler) == [22, 23]
    assert sampler.positions_seen(epoch=0) == set(range(45))
    assert len(ShardedBatchSampler(45, 32, shuffle=True, remainder=DROP, seed=3).positions_seen(epoch=0)) == 32


def test_sampler_reshuffles_per_epoch_and_repeats_for_the_same_epoch():
    epoch0, epoch0_again, epoch1 = (shards(200, 16, epoch)[0] for epoch in (0, 0, 1))
    assert all(torch.equal(a, b) for a, b in zip(epoch0, epoch0_again, strict=True))
    assert not torch.equal(torch.cat(epoch0), torch.cat(epoch1))


class RecordingModule(pl.LightningModule):
    """Keeps the image ids of every training batch, per epoch."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.seen: dict[int, list[int]] = {}

    def training_step(self, batch, batch_idx):
        assert batch.dtype == torch.uint8
        self.seen.setdefault(self.current_epoch, []).extend(row_ids(batch))
        return (self.weight * batch.float().mean()).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


@pytest.mark.filterwarnings("ignore::pytorch_lightning.utilities.warnings.PossibleUserWarning")
def test_trainer_sees_a_new_order_each_epoch(tmp_path):
    module = RecordingModule()
    data = PretextDataModule(numbered_images(64), np.arange(64), np.arange(0), batch_size=8, eval_batch_size=8,
                             seed=3)
    trainer = pl.Trainer(max_epochs=2, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                         default_root_dir=tmp_path, use_distributed_sampler=False)
    trainer.fit(module, datamodule=data)
    assert sorted(module.seen[0]) == sorted(module.seen[1]) == list(range(64))
    assert module.seen[0] != module.seen[1]
