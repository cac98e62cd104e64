"""The downstream stage's datamodule for a run's arm: FixMatch's (the labelled subset plus the unlabelled pool) or
the plain one every other arm trains on."""

from __future__ import annotations

from ssl_lightning.config.settings import RunSettings
from ssl_lightning.data.base import ImageSet
from ssl_lightning.data.datamodules import DownstreamDataModule
from ssl_lightning.data.fixmatch_data import FixMatchDataModule
from ssl_lightning.data.fractions import LabelSplit
from ssl_lightning.evaluation.fixmatch import fixmatch_params
from ssl_lightning.methods.registry import FIXMATCH


def downstream_data(settings: RunSettings, images: ImageSet, split: LabelSplit) -> DownstreamDataModule:
    """Training on `split.labeled`, selection on `split.selection_val` (a fold's held-out images under cv)."""
    arguments = (images.train_images, images.train_labels, split.labeled, split.selection_val, images.test_images,
                 images.test_labels, settings.downstream.batch_size, settings.data.eval_batch_size,
                 settings.data.num_workers, settings.data.pin_memory)
    if settings.experiment != FIXMATCH:
        return DownstreamDataModule(*arguments, seed=settings.seed)
    return FixMatchDataModule(*arguments, seed=settings.seed, unlabeled=split.pool,
                              mu=fixmatch_params(settings.config).mu)
