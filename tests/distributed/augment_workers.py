"""What each process of the DDP augmentation-stream test runs (module level, so that spawn can import it).

Every image of the data set is the same picture, so two ranks' encoder inputs at the same batch position can
differ only through the augmentation's random draws. Each rank fits SimCLR twice (fresh module and Trainer,
same seed) and records the views its encoder received while training.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
import torch.distributed as dist
from pytorch_lightning.strategies import DDPStrategy

from ssl_lightning.config.settings import TrainerSettings
from ssl_lightning.data.augment_streams import AugmentStreams
from ssl_lightning.data.datamodules import PretextDataModule
from ssl_lightning.methods.optim import OptimConfig
from ssl_lightning.methods.simclr import SimCLRPretext
from ssl_lightning.models.backbones import BackboneConfig, build_encoder
from ssl_lightning.training.trainer_factory import build_trainer
from tests.distributed.spawning import use_ranks_from_environment

SEED = 5
EPOCHS = 2
BATCHES_PER_EPOCH = 2


def same_picture(count: int = 40, size: int = 16) -> torch.Tensor:
    """`count` copies of one random uint8 RGB picture."""
    picture = torch.randint(0, 256, (1, 3, size, size), generator=torch.Generator().manual_seed(0),
                            dtype=torch.uint8)
    return picture.expand(count, -1, -1, -1).contiguous()


def _fit_and_record(world_size: int, out: Path, run: int) -> list[torch.Tensor]:
    """Views the encoder saw in each training step, in order (epoch-major)."""
    pl.seed_everything(SEED, verbose=False)
    module = SimCLRPretext(build_encoder(BackboneConfig(name="compact", width=8), 3, 16), OptimConfig(), EPOCHS)
    views: list[torch.Tensor] = []

    def record(encoder, inputs) -> None:
        if module.training:
            views.append(inputs[0].detach().clone())

    module.encoder.register_forward_pre_hook(record)
    images = same_picture()
    data = PretextDataModule(images, np.arange(32), np.arange(32, 40), batch_size=8, eval_batch_size=8, seed=SEED)
    strategy = DDPStrategy(process_group_backend="gloo")
    settings = TrainerSettings(accelerator="cpu", devices=world_size, strategy=strategy,
                               enable_progress_bar=False, log_every_n_steps=1)
    trainer = build_trainer(settings, max_epochs=EPOCHS, log_dir=out / "tb", log_name=f"run{run}",
                            callbacks=[AugmentStreams(SEED)], limit_train_batches=BATCHES_PER_EPOCH,
                            limit_val_batches=1, root_dir=out / f"root{run}")
    trainer.fit(module, datamodule=data)
    return views


def worker(rank: int, world_size: int, port: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    use_ranks_from_environment(rank, world_size, port)
    out = Path(out_dir)
    dist.init_process_group("gloo", rank=rank, world_size=world_size, timeout=timedelta(seconds=60))
    try:
        runs = [_fit_and_record(world_size, out, run) for run in (0, 1)]
        torch.save({"runs": runs}, out / f"views_rank{rank}.pt")
    finally:
        dist.destroy_process_group()
