"""Real 2-process DDP on CPU (gloo): each rank draws its own augmentation, and a rerun draws the same.

Before per-rank streams, `seed_everything(seed)` gave both ranks the same global generator, so rank 1's k-th
view was rank 0's k-th view: with identical pictures on both ranks the test below saw equal views.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.distributed import augment_workers
from tests.distributed.spawning import free_port, run_processes

WORLD = 2


@pytest.fixture(scope="module")
def views(tmp_path_factory) -> list[list[list[torch.Tensor]]]:
    """views[rank][run][step]: the encoder inputs of each training step."""
    out: Path = tmp_path_factory.mktemp("augment_ddp")
    run_processes(augment_workers.worker, (WORLD, free_port(), str(out)), world_size=WORLD)
    return [torch.load(out / f"views_rank{rank}.pt", weights_only=True)["runs"] for rank in range(WORLD)]


def test_every_rank_trained_every_step(views) -> None:
    steps = augment_workers.EPOCHS * augment_workers.BATCHES_PER_EPOCH
    assert [len(run) for rank in views for run in rank] == [steps] * (WORLD * 2)


def test_two_ranks_views_of_the_same_batch_position_differ(views) -> None:
    for step, (zero, one) in enumerate(zip(views[0][0], views[1][0], strict=True)):
        assert zero.shape == one.shape
        for row in range(len(zero)):
            assert not torch.allclose(zero[row], one[row]), f"step {step} row {row}: rank 1 drew rank 0's view"


def test_a_rerun_reproduces_every_rank_s_views(views) -> None:
    for rank in range(WORLD):
        for first, second in zip(views[rank][0], views[rank][1], strict=True):
            assert torch.equal(first, second)


def test_each_epoch_draws_new_views(views) -> None:
    per_epoch = augment_workers.BATCHES_PER_EPOCH
    for rank in range(WORLD):
        assert not torch.allclose(views[rank][0][0], views[rank][0][per_epoch])
