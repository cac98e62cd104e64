"""The downstream stage: train a classifier on the labelled fraction, pick the best epoch on the
validation split, and touch the test split once with that checkpoint."""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelCheckpoint

from ssl_lightning.data.base import ImageSet
from ssl_lightning.data.datamodules import DownstreamDataModule
from ssl_lightning.data.fractions import LabelSplit
from ssl_lightning.embeddings import save_test_embeddings
from ssl_lightning.methods.classifier import Classifier
from ssl_lightning.models.backbones import Encoder
from ssl_lightning.settings import RunSettings
from ssl_lightning.trainer_factory import build_trainer, prepare_module

log = logging.getLogger(__name__)


@dataclass
class DownstreamOutcome:
    test_loss: float
    test_acc: float
    per_class_acc: list[float]
    best_val_acc: float
    best_epoch_checkpoint: Path
    epochs: int
    seconds: float


def run_downstream(settings: RunSettings, encoder: Encoder, images: ImageSet, split: LabelSplit,
                   work_dir: Path, run_dir: Path) -> DownstreamOutcome:
    """Fit with a best-on-validation checkpoint and a resumable last checkpoint, then test the best once."""
    started = time.perf_counter()
    pl.seed_everything(settings.seed, workers=True, verbose=False)
    stage = settings.downstream
    module = prepare_module(
        Classifier(encoder, images.num_classes, stage.optim, stage.epochs, stage.protocol, stage.head, stage.augment),
        settings.trainer,
    )
    data = DownstreamDataModule(
        images.train_images, images.train_labels, split.labeled, split.val, images.test_images, images.test_labels,
        stage.batch_size, settings.data.eval_batch_size, settings.data.num_workers, settings.data.pin_memory,
        seed=settings.seed,
    )
    best = ModelCheckpoint(dirpath=str(work_dir), filename="best", monitor="downstream/val_acc", mode="max",
                           save_top_k=1, enable_version_counter=False)
    last = ModelCheckpoint(dirpath=str(work_dir), filename="last", save_top_k=1, every_n_epochs=1,
                           enable_version_counter=False)
    trainer = build_trainer(settings.trainer, stage.epochs, work_dir / "tb", "downstream", [best, last],
                            stage.limit_train_batches, stage.limit_val_batches, work_dir)
    resume = work_dir / "last.ckpt"
    if resume.is_file():
        log.info("resuming the downstream stage from %s", resume)
    trainer.fit(module, datamodule=data, ckpt_path=str(resume) if resume.is_file() else None, weights_only=True)
    best_path = Path(best.best_model_path) if best.best_model_path else resume
    results = trainer.test(module, datamodule=data, ckpt_path=str(best_path), weights_only=True, verbose=False)
    metrics = results[0] if results else {}
    kept = run_dir / "checkpoints" / "best.ckpt"
    if trainer.is_global_zero:
        kept.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(best_path, kept)
        tb_target = run_dir / "tb" / "downstream"
        shutil.rmtree(tb_target, ignore_errors=True)
        shutil.copytree(work_dir / "tb" / "downstream", tb_target)
    if trainer.is_global_zero:  # the tested encoder's test-set embeddings, for the report's 2-D maps
        save_test_embeddings(module.encoder, images, run_dir, settings.data.split_seed, settings.data.eval_batch_size)
    best_score = best.best_model_score
    return DownstreamOutcome(
        test_loss=float(metrics.get("test/loss", float("nan"))),
        test_acc=float(metrics.get("test/acc", float("nan"))),
        per_class_acc=list(module.per_class_accuracy),
        best_val_acc=float(best_score) if best_score is not None else float("nan"),
        best_epoch_checkpoint=kept,
        epochs=stage.epochs,
        seconds=time.perf_counter() - started,
    )
