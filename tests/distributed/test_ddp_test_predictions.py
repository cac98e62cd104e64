"""Real 2-process DDP on CPU (gloo): the test metrics come from every process's predictions, in the split's order.

Each process tests a sharded part of the test split (61 images: 31 on one rank, 30 on the other, in several
batches); the Classifier gathers the class probabilities and must end with the whole split, in order, on every
process, so balanced accuracy, macro-F1 and the patient-level metrics equal a single-process computation.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
import torch.distributed as dist
from pytorch_lightning.strategies import DDPStrategy

from ssl_lightning.config.settings import TrainerSettings
from ssl_lightning.data import synthetic
from ssl_lightning.data.augment import to_unit_float
from ssl_lightning.data.config import DataConfig
from ssl_lightning.data.datamodules import DownstreamDataModule
from ssl_lightning.evaluation.classifier import Classifier
from ssl_lightning.evaluation.metrics import classification_metrics
from ssl_lightning.methods.optim import OptimConfig
from ssl_lightning.models.backbones import BackboneConfig, build_encoder
from ssl_lightning.training.trainer_factory import build_trainer
from tests.distributed.spawning import free_port, run_processes, use_ranks_from_environment

WORLD = 2
DATA = DataConfig(name="synthetic", train_size=48, test_size=61, image_size=16, num_classes=4)
GROUPS = np.asarray([f"patient{k // 3:02d}" for k in range(DATA.test_size)])
EVAL_BATCH = 8


def _classifier() -> Classifier:
    pl.seed_everything(0, verbose=False)
    encoder = build_encoder(BackboneConfig(name="compact", width=8), 3, DATA.image_size)
    return Classifier(encoder, DATA.num_classes, OptimConfig(lr=0.1), epochs=1)


def worker(rank: int, world_size: int, port: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    use_ranks_from_environment(rank, world_size, port)
    dist.init_process_group("gloo", rank=rank, world_size=world_size, timeout=timedelta(seconds=60))
    out = Path(out_dir)
    try:
        images = synthetic.load(DATA)
        module = _classifier()
        module.test_groups = GROUPS
        train = np.arange(DATA.train_size)
        data = DownstreamDataModule(images.train_images, images.train_labels, train, train, images.test_images,
                                    images.test_labels, 8, EVAL_BATCH)
        settings = TrainerSettings(accelerator="cpu", devices=world_size,
                                   strategy=DDPStrategy(process_group_backend="gloo"), enable_progress_bar=False)
        tester = build_trainer(settings, 1, out / "tb", "test", [], 1.0, 1.0, out / "root")
        tester.test(module, datamodule=data, verbose=False)
        shard = torch.cat(list(tester.test_dataloaders.sampler))
        record = {"labels": module.test_labels_seen, "metrics": dataclasses.asdict(module.test_metrics),
                  "shard": shard, "state": {k: v.detach().clone() for k, v in module.state_dict().items()}}
    except Exception as error:  # reported to the test process
        record = {"error": f"{type(error).__name__}: {error}"}
    finally:
        dist.destroy_process_group()
    torch.save(record, out / f"rank{rank}.pt")


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> list[dict]:
    out = tmp_path_factory.mktemp("ddp_test")
    run_processes(worker, (WORLD, free_port(), str(out)), world_size=WORLD)
    records = [torch.load(out / f"rank{rank}.pt", weights_only=True) for rank in range(WORLD)]
    for rank, record in enumerate(records):
        assert "error" not in record, f"rank {rank}: {record['error']}"
    return records


def test_every_rank_ends_with_the_whole_test_split_in_order(ranks):
    images = synthetic.load(DATA)
    shards = [record["shard"] for record in ranks]
    assert sorted(len(s) for s in shards) == [30, 31], "the test split must be sharded unevenly for this test"
    for record in ranks:
        assert torch.equal(record["labels"], images.test_labels)


def test_ddp_test_metrics_equal_one_process_over_the_whole_split(ranks):
    images = synthetic.load(DATA)
    module = _classifier()
    module.load_state_dict(ranks[0]["state"])
    module.eval()
    with torch.no_grad():
        probabilities = torch.softmax(module(to_unit_float(images.test_images)), dim=1)
    expected = dataclasses.asdict(classification_metrics(probabilities, images.test_labels, DATA.num_classes,
                                                         GROUPS))
    for record in ranks:
        got = record["metrics"]
        assert got["confusion"] == expected["confusion"] and got["num_groups"] == expected["num_groups"] == 21
        for name in ("acc", "balanced_acc", "macro_f1", "group_acc", "group_balanced_acc"):
            assert got[name] == pytest.approx(expected[name], abs=1e-9), name
        assert got["per_class_acc"] == pytest.approx(expected["per_class_acc"], nan_ok=True)
