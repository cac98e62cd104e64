"""What each process of the DDP tests runs (module level, so that spawn, where fork is missing, can import it).

One start of the processes does everything (starting processes is the expensive part): the
gathered NT-Xent check on a fixed batch, then real Lightning training of every method. Each part saves
plain tensors to `out_dir`; the test process compares ranks with each other and with a single process.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
import torch.distributed as dist
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.strategies import DDPStrategy

from ssl_lightning.config.settings import TrainerSettings
from ssl_lightning.data import synthetic
from ssl_lightning.data.augment import to_unit_float
from ssl_lightning.data.base import ImageSet
from ssl_lightning.data.config import DataConfig
from ssl_lightning.data.datamodules import DownstreamDataModule, PretextDataModule
from ssl_lightning.evaluation.classifier import Classifier
from ssl_lightning.methods import registry
from ssl_lightning.methods.barlow_twins import barlow_twins_loss
from ssl_lightning.methods.losses import nt_xent
from ssl_lightning.methods.monitor import knn_leave_one_out_accuracy
from ssl_lightning.methods.optim import OptimConfig
from ssl_lightning.methods.rotation import RotationPretext
from ssl_lightning.methods.simclr import SimCLRPretext
from ssl_lightning.models.backbones import BackboneConfig, build_encoder
from ssl_lightning.training.trainer_factory import build_trainer
from tests.distributed.spawning import use_ranks_from_environment

TEMPERATURE = 0.5
BACKBONE = BackboneConfig(name="compact", width=8)
DATA = DataConfig(name="synthetic", train_size=160, test_size=61, image_size=16, num_classes=4)
EVAL_BATCH = 64  # one validation and one test batch per rank
COLLECTIVE_TIMEOUT_S = 60  # a collective that can never complete fails instead of hanging the suite
# scenario -> (method, validation images). 33 puts 17 images on rank 0 and 16 on rank 1, as an odd-sized
# validation split does on a real cluster; the uneven SimCLR scenario runs last, its failure may abort the group.
SCENARIOS = {
    "rotation": ("rotation", 33),
    "rotation_jitter": ("rotation_jitter", 33),
    "classifier": ("classifier", 33),
    "simclr": ("simclr", 32),
    "byol": ("byol", 33),
    "moco": ("moco", 33),
    "barlow_twins": ("barlow_twins", 32),
    "dino": ("dino", 33),
    "simclr_uneven_val": ("simclr", 33),
}
# Small heads for the registered methods (the rest of their hyper-parameters are the experiment files' values).
SMALL_PARAMS = {
    "byol": {"proj_hidden_dim": 32, "proj_dim": 16, "pred_hidden_dim": 32},
    "moco": {"proj_hidden_dim": 32, "proj_dim": 16, "queue_size": 100},
    "barlow_twins": {"proj_dim": 32},
    "dino": {"out_dim": 32, "hidden_dim": 32, "bottleneck_dim": 16, "local_crops": 2},
}


def global_projections(rows: int = 8, dim: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    """The fixed global batch of two views' projections that the ranks split between them."""
    generator = torch.Generator().manual_seed(1234)
    return torch.randn(rows, dim, generator=generator), torch.randn(rows, dim, generator=generator)


def _lightning_gather(world_size: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """SimCLRPretext's own `_gather` (LightningModule.all_gather, sync_grads=True) on a DDP Trainer."""
    trainer = pl.Trainer(accelerator="cpu", devices=world_size, strategy="ddp", logger=False,
                         enable_progress_bar=False, enable_model_summary=False)
    module = SimCLRPretext(build_encoder(BACKBONE, 3, 16), OptimConfig(), epochs=1)
    module.trainer = trainer
    return module._gather


def _gather_without_gradients(rank: int, world_size: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """Plain all_gather: other ranks' rows arrive as constants (the mistake the gathered loss must avoid)."""

    def gather(local: torch.Tensor) -> torch.Tensor:
        parts = [torch.empty_like(local) for _ in range(world_size)]
        dist.all_gather(parts, local.detach().contiguous())
        parts[rank] = local
        return torch.cat(parts)

    return gather


def _gathered_barlow_twins(rank: int, world_size: int) -> dict:
    """Each rank holds its slice; the loss through Lightning's gather (with gradients) and the input gradients."""
    z1, z2 = global_projections()
    n = len(z1) // world_size
    gather = _lightning_gather(world_size)
    mine1 = z1[rank * n:(rank + 1) * n].clone().requires_grad_(True)
    mine2 = z2[rank * n:(rank + 1) * n].clone().requires_grad_(True)
    loss = barlow_twins_loss(mine1, mine2, 5e-3, gather=gather)
    loss.backward()
    return {"loss": loss.detach(), "grad1": mine1.grad, "grad2": mine2.grad}


def _gathered_nt_xent(rank: int, world_size: int) -> dict:
    """Each rank holds its slice of the global batch; loss, accuracy and input gradients per gather function."""
    z1, z2 = global_projections()
    n = len(z1) // world_size
    gathers = {
        "torch": lambda t: torch.cat(torch.distributed.nn.functional.all_gather(t)),
        "lightning": _lightning_gather(world_size),
        "without_gradients": _gather_without_gradients(rank, world_size),
    }
    saved = {}
    for name, gather in gathers.items():
        mine1 = z1[rank * n:(rank + 1) * n].clone().requires_grad_(True)
        mine2 = z2[rank * n:(rank + 1) * n].clone().requires_grad_(True)
        loss, accuracy = nt_xent(mine1, mine2, TEMPERATURE, gather=gather, rank=rank)
        loss.backward()
        saved[name] = {"loss": loss.detach(), "accuracy": accuracy, "grad1": mine1.grad, "grad2": mine2.grad}
    return saved


class BatchRecorder(Callback):
    """Keeps the uint8 images of every training batch this rank saw."""

    def __init__(self) -> None:
        self.batches: list[torch.Tensor] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        images = batch[0] if isinstance(batch, (list, tuple)) else batch
        self.batches.append(images.detach().clone())


def _module_and_data(method: str, images: ImageSet, pool: np.ndarray, val: np.ndarray):
    optim = OptimConfig(lr=0.05)
    encoder = build_encoder(BACKBONE, images.channels, images.image_size[0])
    if method == "classifier":
        module = Classifier(encoder, images.num_classes, optim, epochs=1)
        data = DownstreamDataModule(images.train_images, images.train_labels, pool, val, images.test_images,
                                    images.test_labels, batch_size=8, eval_batch_size=EVAL_BATCH)
        return module, data
    if method == "simclr":
        module = SimCLRPretext(encoder, optim, epochs=1, proj_dim=8, proj_hidden_dim=16)
    elif method in SMALL_PARAMS:
        spec = registry.get(method)
        module = spec.build(encoder, optim, 1, spec.params(**SMALL_PARAMS[method]))
    else:
        module = RotationPretext(encoder, optim, epochs=1, jitter=method == "rotation_jitter")
    return module, PretextDataModule(images.train_images, pool, val, batch_size=8, eval_batch_size=EVAL_BATCH,
                                     val_labels=images.train_labels)


def _full_val_knn(module, images: ImageSet, val: np.ndarray) -> float:
    """Single-process k-NN monitor on the whole validation split with this rank's final weights."""
    module.eval()
    with torch.no_grad():
        features = module.encoder(to_unit_float(images.train_images[val]) * 2 - 1)
    return knn_leave_one_out_accuracy(features, images.train_labels[val])


def _accuracy(module: Classifier, images: torch.Tensor, labels: torch.Tensor, num_classes: int):
    """Single-process accuracy (overall, per class) of this rank's weights on the given images."""
    module.eval()
    with torch.no_grad():
        correct = module(to_unit_float(images)).argmax(dim=1) == labels
    return float(correct.float().mean()), [float(correct[labels == c].float().mean()) for c in range(num_classes)]


def _count_gathers(module: SimCLRPretext) -> list[int]:
    """Wrap the module's own `_gather` to note each call's local rows (the real gather still runs)."""
    calls: list[int] = []
    original = module._gather

    def noted(z: torch.Tensor) -> torch.Tensor:
        calls.append(int(z.shape[0]))
        return original(z)

    module._gather = noted
    return calls


def _train(scenario: str, world_size: int, images: ImageSet, out: Path) -> dict:
    method, val_size = SCENARIOS[scenario]
    order = np.random.default_rng(0).permutation(DATA.train_size)
    val, pool = np.sort(order[:val_size]), np.sort(order[val_size:])
    pl.seed_everything(0, verbose=False)
    module, data = _module_and_data(method, images, pool, val)
    initial = {k: v.detach().clone() for k, v in module.state_dict().items()}
    gathered = _count_gathers(module) if method == "simclr" else []
    recorder = BatchRecorder()
    strategy = DDPStrategy(process_group_backend="gloo")  # a fresh one per Trainer
    settings = TrainerSettings(accelerator="cpu", devices=world_size, strategy=strategy, enable_progress_bar=False,
                               log_every_n_steps=1)
    trainer = build_trainer(settings, max_epochs=1, log_dir=out / "tb" / scenario, log_name="fit",
                            callbacks=[recorder], limit_train_batches=2, limit_val_batches=1.0,
                            root_dir=out / "root" / scenario)
    trainer.fit(module, datamodule=data)
    sampler = trainer.train_dataloader.sampler
    record = {
        "state": {k: v.detach().clone() for k, v in module.state_dict().items()},
        "initial": initial, "batches": recorder.batches, "global_rank": trainer.global_rank,
        "sampler": (sampler.rank, sampler.world_size), "shard": torch.cat(list(sampler)),
        "gathered_rows": gathered,
    }
    if method != "classifier":
        record["logged_knn"] = float(trainer.callback_metrics["pretext/val_knn_acc"])
        record["logged_rankme"] = float(trainer.callback_metrics["pretext/val_rankme"])
        # the encoder is still the one validation saw (DINO's teacher is handed over by the stage, after the fit)
        record["full_val_knn"] = _full_val_knn(module, images, val)
    if method == "moco":
        record["queue_position"] = int(module.queue_position)
    if method == "classifier":
        tested = trainer.test(module, datamodule=data, verbose=False)[0]
        full_acc, full_per_class = _accuracy(module, images.test_images, images.test_labels, images.num_classes)
        shard = torch.cat(list(trainer.test_dataloaders.sampler))
        shard_acc, _ = _accuracy(module, images.test_images[shard], images.test_labels[shard], images.num_classes)
        record.update(test_acc=tested["test/acc"], per_class=module.per_class_accuracy, full_test_acc=full_acc,
                      full_per_class=full_per_class, shard_test_acc=shard_acc)
    return record


def worker(rank: int, world_size: int, port: int, out_dir: str) -> None:
    """Run every part on this rank; a part that raises is recorded (`error`) so the test can name it."""
    torch.set_num_threads(1)
    use_ranks_from_environment(rank, world_size, port)
    out = Path(out_dir)
    # Lightning reuses this group; its timeout turns a never-matched collective into an error.
    dist.init_process_group("gloo", rank=rank, world_size=world_size,
                            timeout=timedelta(seconds=COLLECTIVE_TIMEOUT_S))
    try:
        torch.save(_gathered_nt_xent(rank, world_size), out / f"nt_xent_rank{rank}.pt")
        torch.save(_gathered_barlow_twins(rank, world_size), out / f"barlow_twins_loss_rank{rank}.pt")
        images = synthetic.load(DATA)
        for scenario in SCENARIOS:
            try:
                record = _train(scenario, world_size, images, out)
            except Exception as error:  # reported to the test process, which names the scenario
                record = {"error": f"{type(error).__name__}: {error}"}
            torch.save(record, out / f"{scenario}_rank{rank}.pt")
    finally:
        dist.destroy_process_group()
