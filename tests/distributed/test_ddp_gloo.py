"""Real 2-process DDP on CPU (gloo): the SimCLR loss across processes, and every method's training steps.

The processes (tests/distributed/workers.py) run once per module; each test reads what they saved.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ssl_lightning.methods import registry
from ssl_lightning.methods.barlow_twins import barlow_twins_loss
from ssl_lightning.methods.losses import nt_xent
from tests.distributed import workers
from tests.distributed.spawning import free_port, run_processes

WORLD = 2
TRAINED = [name for name in workers.SCENARIOS if name != "simclr_uneven_val"]


def test_every_registered_method_has_a_ddp_scenario():
    """A newly registered method must be added to workers.SCENARIOS (its validation size, its small heads) to be
    trained under DDP. Not yet covered: a method trained on the pool's labels (supervised_features), whose batches
    carry labels that the workers' data does not hold."""
    trained_alone = {name for name, spec in registry.methods().items() if not spec.needs_labels}
    assert trained_alone <= {method for method, _ in workers.SCENARIOS.values()}


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory) -> tuple[Path, str]:
    """The workers' output folder, and how the spawn ended ('' when both processes exited cleanly)."""
    out = tmp_path_factory.mktemp("ddp")
    try:
        run_processes(workers.worker, (WORLD, free_port(), str(out)), world_size=WORLD)
    except Exception as error:  # a crashed rank: the parts it finished are still checked one by one
        return out, f"{type(error).__name__}: {error}"
    return out, ""


def _load(ddp_run: tuple[Path, str], part: str) -> list[dict]:
    out, spawn_error = ddp_run
    records = []
    for rank in range(WORLD):
        path = out / f"{part}_rank{rank}.pt"
        assert path.is_file(), f"rank {rank} never finished {part!r}; the processes ended with: {spawn_error}"
        record = torch.load(path, weights_only=True)
        assert "error" not in record, f"rank {rank} failed in {part!r}: {record.get('error')}"
        records.append(record)
    return records


def _single_process_reference() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    z1, z2 = workers.global_projections()
    z1.requires_grad_(True)
    z2.requires_grad_(True)
    loss, accuracy = nt_xent(z1, z2, workers.TEMPERATURE)
    loss.backward()
    return loss.detach(), accuracy, z1.grad, z2.grad


@pytest.mark.parametrize("gather", ["torch", "lightning"])
def test_gathered_nt_xent_equals_single_process_loss_and_gradients(ddp_run, gather):
    loss, accuracy, grad1, grad2 = _single_process_reference()
    ranks = [saved[gather] for saved in _load(ddp_run, "nt_xent")]

    assert float(torch.stack([r["loss"] for r in ranks]).mean()) == pytest.approx(float(loss), rel=1e-5)
    assert float(torch.stack([r["accuracy"] for r in ranks]).mean()) == pytest.approx(float(accuracy))
    # Each rank's backward reaches every rank's loss through the gather, so its input gradient is the sum over
    # ranks' losses; DDP's gradient averaging divides by the world size, giving the single-process gradient.
    torch.testing.assert_close(torch.cat([r["grad1"] for r in ranks]) / WORLD, grad1, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(torch.cat([r["grad2"] for r in ranks]) / WORLD, grad2, rtol=1e-4, atol=1e-6)


def test_gather_without_gradients_is_detected(ddp_run):
    """Negative control: a gather that drops gradients gives the same loss but other gradients."""
    loss, _, grad1, _ = _single_process_reference()
    ranks = [saved["without_gradients"] for saved in _load(ddp_run, "nt_xent")]
    assert float(torch.stack([r["loss"] for r in ranks]).mean()) == pytest.approx(float(loss), rel=1e-5)
    assert not torch.allclose(torch.cat([r["grad1"] for r in ranks]) / WORLD, grad1, rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize("scenario", TRAINED)
def test_ddp_training_keeps_ranks_identical(ddp_run, scenario):
    ranks = _load(ddp_run, scenario)
    assert [r["global_rank"] for r in ranks] == list(range(WORLD))
    assert [r["sampler"] for r in ranks] == [(rank, WORLD) for rank in range(WORLD)]
    # The DataModule sharded by rank, so the ranks trained on different images: disjoint shards for unlabelled
    # pretext images (a short remainder dropped); labelled images are all trained, the shards padded to one length
    # by repeating fewer than WORLD images.
    shards = [set(r["shard"].tolist()) for r in ranks]
    assert len(shards[0] & shards[1]) < WORLD
    if scenario == "classifier":
        assert shards[0] | shards[1] == set(range(max(shards[0] | shards[1]) + 1))
    assert len(ranks[0]["batches"]) == len(ranks[1]["batches"]) == 2
    assert not torch.equal(ranks[0]["batches"][0], ranks[1]["batches"][0])

    first, second = ranks[0]["state"], ranks[1]["state"]
    assert first.keys() == second.keys()
    for name in first:  # parameters and BatchNorm buffers alike
        torch.testing.assert_close(first[name], second[name], rtol=0, atol=0, msg=f"{scenario}: {name} differs")
    moved = [name for name, value in first.items()
             if value.is_floating_point() and not torch.equal(value, ranks[0]["initial"][name])]
    assert any(name.startswith("encoder.") for name in moved), f"{scenario}: training did not change the encoder"


def test_ddp_simclr_contrasts_against_the_other_rank(ddp_run):
    """Both views of both training steps went through the cross-process gather (8 local rows each)."""
    for record in _load(ddp_run, "simclr"):
        assert record["gathered_rows"][:4] == [8, 8, 8, 8]


def test_ddp_test_metrics_cover_the_whole_test_split(ddp_run):
    """Sharded test batches plus torchmetrics' sync give the whole split's accuracy on every rank."""
    ranks = _load(ddp_run, "classifier")
    # A rank's own shard scores differently, so a metric that was not synchronised would be caught.
    assert any(r["shard_test_acc"] != pytest.approx(r["full_test_acc"], abs=1e-6) for r in ranks)
    for record in ranks:
        assert record["test_acc"] == pytest.approx(record["full_test_acc"], abs=1e-6)
        assert record["per_class"] == pytest.approx(record["full_per_class"], abs=1e-6)


def test_simclr_with_uneven_validation_shards(ddp_run):
    ranks = _load(ddp_run, "simclr_uneven_val")
    torch.testing.assert_close(ranks[0]["state"], ranks[1]["state"], rtol=0, atol=0)


def test_gathered_barlow_twins_uses_the_global_batch(ddp_run):
    """Every rank computes the global batch's loss; gathered gradients, averaged by DDP, are the single-process ones."""
    z1, z2 = workers.global_projections()
    z1.requires_grad_(True)
    z2.requires_grad_(True)
    loss = barlow_twins_loss(z1, z2, 5e-3)
    loss.backward()
    ranks = _load(ddp_run, "barlow_twins_loss")
    for record in ranks:
        assert float(record["loss"]) == pytest.approx(float(loss), rel=1e-5)
    # Each rank's gradient is the sum over the ranks' (identical) losses: world x the true one; DDP divides.
    torch.testing.assert_close(torch.cat([r["grad1"] for r in ranks]) / WORLD, z1.grad, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(torch.cat([r["grad2"] for r in ranks]) / WORLD, z2.grad, rtol=1e-4, atol=1e-6)


def test_moco_queue_receives_the_keys_of_both_ranks(ddp_run):
    """2 steps x 2 views x 8 images per rank, from both ranks: 64 keys (32 if each rank kept only its own)."""
    for record in _load(ddp_run, "moco"):
        assert record["queue_position"] == 2 * 2 * 8 * WORLD


@pytest.mark.parametrize("scenario", [name for name in TRAINED if name != "classifier"])
def test_monitor_covers_the_whole_validation_split(ddp_run, scenario):
    """The k-NN monitor gathers the uneven validation shards: it equals the single-process value on all of them."""
    ranks = _load(ddp_run, scenario)
    assert ranks[0]["logged_knn"] == ranks[1]["logged_knn"] and ranks[0]["logged_rankme"] > 1.0
    if "full_val_knn" in ranks[0]:
        assert ranks[0]["logged_knn"] == pytest.approx(ranks[0]["full_val_knn"], abs=1e-6)
