"""The downstream stage: train a classifier on the labelled fraction until validation accuracy stops rising
(early stopping), pick the best epoch (and, when asked, learning rate and probe layer) on the validation split,
and touch the test split once with that checkpoint."""

from __future__ import annotations

import copy
import json
import logging
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint

from ssl_lightning.atomic import write_json
from ssl_lightning.data.augment_streams import AugmentStreams
from ssl_lightning.data.base import ImageSet
from ssl_lightning.data.datamodules import DownstreamDataModule
from ssl_lightning.data.fractions import LabelSplit
from ssl_lightning.embeddings import save_test_embeddings
from ssl_lightning.methods.classifier import Classifier
from ssl_lightning.models.backbones import Encoder
from ssl_lightning.models.probe import stage_count, truncated
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
    best_epoch: int = 0  # 1-based epoch of the tested checkpoint
    chosen_lr: float = 0.0
    probe_layer: int | str = "last"


@dataclass(frozen=True)
class Candidate:
    """One (learning rate, probe layer) choice; every candidate is fitted, the best on validation is tested."""

    index: int
    lr: float
    layer: int | str


@dataclass
class Fitted:
    candidate: Candidate
    best_val_acc: float
    best_path: Path
    best_epoch: int
    epochs: int


def _candidates(settings: RunSettings, encoder: Encoder) -> list[Candidate]:
    stage = settings.downstream
    lrs = stage.lr_grid or (stage.optim.lr,)
    if stage.probe_layer == "best":
        layers: list[int | str] = list(range(1, stage_count(encoder) + 1))
    else:
        layers = [stage.probe_layer]
    return [Candidate(i, lr, layer) for i, (lr, layer) in enumerate((lr, layer) for layer in layers for lr in lrs)]


def _probe_encoder(encoder: Encoder, layer: int | str) -> Encoder:
    fresh = copy.deepcopy(encoder)
    return fresh if layer in ("last", "best") else truncated(fresh, int(layer))


def _classifier(settings: RunSettings, encoder: Encoder, images: ImageSet, candidate: Candidate) -> Classifier:
    """A fresh classifier for the candidate, its head drawn from the cell's seed (the same for every candidate)."""
    stage = settings.downstream
    pl.seed_everything(settings.seed, workers=True, verbose=False)
    optim = replace(stage.optim, lr=candidate.lr)
    module = Classifier(_probe_encoder(encoder, candidate.layer), images.num_classes, optim, stage.epochs,
                        stage.protocol, stage.head, stage.augment)
    return prepare_module(module, settings.trainer, images.channels, images.image_size[0])


def _checkpoint_epoch(path: Path) -> int:
    """1-based epoch at which a Lightning checkpoint was written (its `epoch` counts from 0)."""
    return int(torch.load(path, map_location="cpu", weights_only=True).get("epoch", -1)) + 1


def _fit(settings: RunSettings, encoder: Encoder, images: ImageSet, data: DownstreamDataModule,
         candidate: Candidate, work_dir: Path) -> Fitted:
    """Fit one candidate with early stopping on validation accuracy; resumable, and skipped once done."""
    summary = work_dir / "fitted.json"
    if summary.is_file():
        done = json.loads(summary.read_text())
        return Fitted(candidate, done["best_val_acc"], Path(done["best_path"]), done["best_epoch"], done["epochs"])
    stage = settings.downstream
    module = _classifier(settings, encoder, images, candidate)
    best = ModelCheckpoint(dirpath=str(work_dir), filename="best", monitor="downstream/val_acc", mode="max",
                           save_top_k=1, enable_version_counter=False)
    last = ModelCheckpoint(dirpath=str(work_dir), filename="last", save_top_k=1, every_n_epochs=1,
                           enable_version_counter=False)
    callbacks: list = [best, last, AugmentStreams(settings.seed, settings.data.hed_jitter)]
    if stage.patience is not None:
        callbacks.append(EarlyStopping(monitor="downstream/val_acc", mode="max", patience=stage.patience,
                                       check_on_train_epoch_end=False))
    trainer = build_trainer(settings.trainer, stage.epochs, work_dir / "tb", "downstream", callbacks,
                            stage.limit_train_batches, stage.limit_val_batches, work_dir)
    resume = work_dir / "last.ckpt"
    if resume.is_file():
        log.info("resuming the downstream stage from %s", resume)
    trainer.fit(module, datamodule=data, ckpt_path=str(resume) if resume.is_file() else None, weights_only=True)
    best_path = Path(best.best_model_path) if best.best_model_path else resume
    score = best.best_model_score
    fitted = Fitted(candidate, float(score) if score is not None else float("nan"), best_path,
                    _checkpoint_epoch(best_path), int(trainer.current_epoch))
    if trainer.is_global_zero:
        write_json(summary, {"best_val_acc": fitted.best_val_acc, "best_path": str(best_path),
                             "best_epoch": fitted.best_epoch, "epochs": fitted.epochs})
    return fitted


def run_downstream(settings: RunSettings, encoder: Encoder, images: ImageSet, split: LabelSplit,
                   work_dir: Path, run_dir: Path) -> DownstreamOutcome:
    """Fit every candidate with early stopping and a resumable last checkpoint, pick the best on validation,
    then test that one checkpoint once."""
    started = time.perf_counter()
    stage = settings.downstream
    data = DownstreamDataModule(
        images.train_images, images.train_labels, split.labeled, split.selection_val, images.test_images,
        images.test_labels, stage.batch_size, settings.data.eval_batch_size, settings.data.num_workers,
        settings.data.pin_memory, seed=settings.seed,
    )
    candidates = _candidates(settings, encoder)
    fitted = []
    for candidate in candidates:
        folder = work_dir if len(candidates) == 1 else work_dir / f"candidate{candidate.index}"
        if len(candidates) > 1:
            log.info("downstream candidate %d/%d: lr=%g probe_layer=%s", candidate.index + 1, len(candidates),
                     candidate.lr, candidate.layer)
        fitted.append((_fit(settings, encoder, images, data, candidate, folder), folder))
    (chosen, chosen_dir) = max(fitted, key=lambda pair: (pair[0].best_val_acc, -pair[0].candidate.index))
    if len(candidates) > 1:
        log.info("chosen on validation: lr=%g probe_layer=%s (val_acc %.4f)", chosen.candidate.lr,
                 chosen.candidate.layer, chosen.best_val_acc)
    module = _classifier(settings, encoder, images, chosen.candidate)
    # The test metrics join the chosen candidate's curves (same TensorBoard run, one more event file).
    tester = build_trainer(settings.trainer, stage.epochs, chosen_dir / "tb", "downstream", [], 1.0, 1.0, chosen_dir)
    checkpoint = torch.load(chosen.best_path, map_location="cpu", weights_only=True)
    module.load_state_dict(checkpoint["state_dict"])
    results = tester.test(module, datamodule=data, verbose=False)
    metrics = results[0] if results else {}
    kept = run_dir / "checkpoints" / "best.ckpt"
    if tester.is_global_zero:
        kept.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(chosen.best_path, kept)
        tb_target = run_dir / "tb" / "downstream"
        shutil.rmtree(tb_target, ignore_errors=True)
        shutil.copytree(chosen_dir / "tb" / "downstream", tb_target)
        # the tested encoder's test-set embeddings, for the report's 2-D maps
        save_test_embeddings(module.encoder, images, run_dir, settings.data.split_seed, settings.data.eval_batch_size)
    return DownstreamOutcome(
        test_loss=float(metrics.get("test/loss", float("nan"))),
        test_acc=float(metrics.get("test/acc", float("nan"))),
        per_class_acc=list(module.per_class_accuracy),
        best_val_acc=chosen.best_val_acc,
        best_epoch_checkpoint=kept,
        epochs=chosen.epochs,
        seconds=time.perf_counter() - started,
        best_epoch=chosen.best_epoch,
        chosen_lr=chosen.candidate.lr,
        probe_layer=chosen.candidate.layer,
    )
