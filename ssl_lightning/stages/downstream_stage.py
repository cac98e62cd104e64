"""The downstream stage: train a classifier on the labelled fraction until the monitored validation metric stops
rising (early stopping), pick the best epoch (and, when asked, learning rate and probe layer) on the validation
split, and touch the test split once with that checkpoint.

The monitored metric is `downstream.monitor` (accuracy, or balanced accuracy for imbalanced labelled classes).
A candidate of the lr grid whose loss diverges is dropped; without validation the stage refuses to choose unless
`downstream.select=last` asks for the last epoch."""

from __future__ import annotations

import copy
import json
import logging
import math
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint

from ssl_lightning.atomic import write_json
from ssl_lightning.config.settings import DownstreamSettings, RunSettings
from ssl_lightning.data.augment_streams import AugmentStreams
from ssl_lightning.data.base import ImageSet
from ssl_lightning.data.datamodules import DownstreamDataModule
from ssl_lightning.data.fractions import LabelSplit
from ssl_lightning.errors import UserError
from ssl_lightning.evaluation.classifier import CHECKPOINT_VALIDATION, Classifier
from ssl_lightning.evaluation.downstream_selection import (
    METRICS,
    no_validation_message,
    resolve_monitor,
    resolve_select,
    selected_on,
    validation_key,
)
from ssl_lightning.evaluation.fixmatch import classifier_type
from ssl_lightning.evaluation.metrics import ClassificationMetrics
from ssl_lightning.evaluation.step_plan import StepPlan, plan_steps, process_count
from ssl_lightning.models.backbones import Encoder
from ssl_lightning.models.probe import stage_count, truncated
from ssl_lightning.stages.downstream_data import downstream_data
from ssl_lightning.stages.embeddings import save_test_embeddings
from ssl_lightning.stages.finetune_cv import cross_validate, eval_steps, labelled_folds
from ssl_lightning.training.finite_guard import DivergenceError
from ssl_lightning.training.resume_checkpoint import usable_resume
from ssl_lightning.training.trainer_factory import build_trainer, prepare_module

log = logging.getLogger(__name__)


@dataclass
class DownstreamOutcome:
    """What one downstream protocol hands back; `as_results` gives its results.json fields.

    Any protocol that ends in test-set class probabilities fills `metrics` with `classification_metrics`.
    """

    test_loss: float
    metrics: ClassificationMetrics
    best_epoch_checkpoint: Path
    epochs: int
    seconds: float
    monitor: str = "acc"  # the resolved validation metric (`downstream.monitor`)
    selected_on: str = "best_val_acc"  # best_val_<monitor> | cv_<monitor> | last
    select: str = "val"  # the resolved downstream.select
    selection_note: str = ""
    cv_folds: int | None = None  # folds of the labelled set under select=cv
    selection_score: float | None = None  # the monitored metric the choice was made on (validation or fold mean)
    selection_loss: float | None = None  # the folds' mean held-out loss there (select=cv)
    validation: dict[str, float] = field(default_factory=dict)  # validation metrics of the tested checkpoint
    best_epoch: int = 0  # 1-based epoch of the tested checkpoint
    chosen_lr: float = 0.0
    probe_layer: int | str = "last"
    diverged: list[dict[str, object]] = field(default_factory=list)  # candidates dropped because they diverged
    steps: int = 0  # optimiser steps the tested candidate took
    best_step: int = 0  # optimiser steps behind the tested checkpoint
    labeled_images_seen: int = 0  # distinct labelled images its first training epoch touched

    @property
    def test_acc(self) -> float:
        return self.metrics.acc

    @property
    def per_class_acc(self) -> list[float]:
        return list(self.metrics.per_class_acc)

    @property
    def best_val_acc(self) -> float | None:
        return self.validation.get("acc")

    def as_results(self, classes: list[str]) -> dict[str, object]:
        """The downstream fields of results.json (validation values are null when there was no validation)."""
        values: dict[str, object] = {"test_loss": self.test_loss, **self.metrics.as_results(),
                                     "per_class_acc": dict(zip(classes, self.per_class_acc, strict=False)),
                                     "monitor": self.monitor, "selected_on": self.selected_on}
        for metric in METRICS:
            values[f"best_val_{metric}"] = self.validation.get(metric)
        values.update(best_epoch=self.best_epoch, best_step=self.best_step, chosen_lr=self.chosen_lr,
                      probe_layer=self.probe_layer, diverged_candidates=list(self.diverged),
                      downstream_steps=self.steps, labeled_images_seen=self.labeled_images_seen,
                      select=self.select, selection_note=self.selection_note, cv_folds=self.cv_folds,
                      selection_score=self.selection_score, selection_loss=self.selection_loss)
        return values


@dataclass(frozen=True)
class Candidate:
    """One (learning rate, probe layer) choice; every candidate is fitted, the best on validation is tested."""

    index: int
    lr: float
    layer: int | str


@dataclass
class Fitted:
    candidate: Candidate
    score: float  # the monitored validation metric of the selected checkpoint (NaN without validation)
    validation: dict[str, float]  # every validation metric of the selected checkpoint's epoch
    path: Path  # the selected checkpoint
    epoch: int  # its 1-based epoch
    epochs: int  # epochs run
    steps: int = 0  # optimiser steps taken
    labeled_images_seen: int = 0  # distinct labelled images the first training epoch touched (all processes)
    best_step: int = 0  # optimiser steps behind the selected checkpoint
    cv_folds: int | None = None  # select=cv: the folds `score` is the mean over
    cv_loss: float | None = None  # select=cv: the folds' mean held-out loss at the chosen step


@dataclass(frozen=True)
class Selection:
    """How every candidate of one cell is fitted and chosen."""

    monitor: str  # acc | balanced_acc (resolved)
    select: str  # val | cv | last (resolved)
    has_validation: bool
    note: str = ""  # why `auto` or a fallback resolved to `select`

    @property
    def key(self) -> str:
        return validation_key(self.monitor)


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


def _classifier(settings: RunSettings, encoder: Encoder, images: ImageSet, candidate: Candidate,
                schedule_steps: int | None = None) -> Classifier:
    """A fresh classifier for the candidate, its head drawn from the cell's seed (the same for every candidate)."""
    stage = settings.downstream
    pl.seed_everything(settings.seed, workers=True, verbose=False)
    optim = replace(stage.optim, lr=candidate.lr)
    arm = classifier_type(settings.experiment, settings.config)  # Classifier, or FixMatch with its parameters
    module = arm(_probe_encoder(encoder, candidate.layer), images.num_classes, optim, stage.epochs, stage.protocol,
                 stage.head, stage.augment, schedule_steps)
    return prepare_module(module, settings.trainer, images.channels, images.image_size[0])


def _read_checkpoint(path: Path) -> tuple[int, dict[str, float], int]:
    """(1-based epoch at which a Lightning checkpoint was written, the validation metrics of that epoch, the
    optimiser steps behind it)."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    validation = {str(k): float(v) for k, v in dict(checkpoint.get(CHECKPOINT_VALIDATION) or {}).items()}
    # Lightning's `epoch` counts from 0
    return int(checkpoint.get("epoch", -1)) + 1, validation, int(checkpoint.get("global_step", 0))


def _fit(settings: RunSettings, encoder: Encoder, images: ImageSet, data: DownstreamDataModule,
         candidate: Candidate, work_dir: Path, selection: Selection) -> Fitted:
    """Fit one candidate with early stopping on the monitored validation metric; resumable, skipped once done.

    Raises DivergenceError (the finite guard) when its loss stops being finite.
    """
    summary = work_dir / "fitted.json"
    if summary.is_file():
        done = json.loads(summary.read_text())
        return Fitted(candidate, done["score"], done["validation"], Path(done["path"]), done["epoch"], done["epochs"],
                      int(done.get("steps", 0)), int(done.get("labeled_images_seen", 0)), int(done.get("best_step", 0)))
    stage = settings.downstream
    plan = step_plan(settings, len(data.train_set))
    module = _classifier(settings, encoder, images, candidate)
    last = ModelCheckpoint(dirpath=str(work_dir), filename="last", save_top_k=1, every_n_epochs=plan.eval_every,
                           enable_version_counter=False)
    best: ModelCheckpoint | None = None
    callbacks: list = [last, AugmentStreams(settings.seed, settings.data.hed_jitter)]
    if selection.has_validation:
        best = ModelCheckpoint(dirpath=str(work_dir), filename="best", monitor=selection.key, mode="max",
                               save_top_k=1, enable_version_counter=False)
        callbacks.insert(0, best)
        if stage.patience is not None:
            callbacks.append(EarlyStopping(monitor=selection.key, mode="max", patience=stage.patience,
                                           check_on_train_epoch_end=False))
    trainer = build_trainer(settings.trainer, plan.epochs, work_dir / "tb", "downstream", callbacks,
                            stage.limit_train_batches, stage.limit_val_batches, work_dir,
                            check_val_every_n_epoch=plan.eval_every, min_steps=plan.min_steps or None)
    resume = usable_resume(work_dir / "last.ckpt")  # an unreadable one is set aside: restart
    if resume.is_file():
        log.info("resuming the downstream stage from %s", resume)
    trainer.fit(module, datamodule=data, ckpt_path=str(resume) if resume.is_file() else None, weights_only=True)
    if selection.select == "last":
        path = resume
    elif best is not None and best.best_model_path:
        path = Path(best.best_model_path)
    else:  # never silently test the last epoch as if it had been chosen
        raise NoValidationMetric(
            f"no validation metric {selection.key} was logged ({len(data.val_set)} validation images), so no "
            "checkpoint could be chosen on validation; give validation images or downstream.select=last")
    epoch, validation, best_step = _read_checkpoint(path)
    seen = data.train_dataloader().sampler.positions_seen(epoch=0, batches=int(trainer.num_training_batches))
    fitted = Fitted(candidate, validation.get(selection.monitor, float("nan")), validation, path, epoch,
                    int(trainer.current_epoch), int(trainer.global_step), len(seen), best_step)
    if trainer.is_global_zero:
        write_json(summary, {"monitor": selection.monitor, "select": selection.select, "score": fitted.score,
                             "validation": validation, "path": str(path), "epoch": epoch, "epochs": fitted.epochs,
                             "steps": fitted.steps, "labeled_images_seen": fitted.labeled_images_seen,
                             "best_step": best_step})
    return fitted


def step_plan(settings: RunSettings, labelled: int) -> StepPlan:
    """The run's length in steps (downstream.min_steps) and validation spacing; said once in the log when the
    floor lengthens it."""
    stage, trainer = settings.downstream, settings.trainer
    plan = plan_steps(labelled, stage.batch_size, stage.epochs, stage.min_steps,
                      process_count(trainer.devices, trainer.num_nodes, trainer.accelerator), stage.limit_train_batches)
    if plan.lengthened:
        log.info("downstream: %d labelled images = %d step(s) per epoch; downstream.min_steps=%d lengthens %d epochs "
                 "to %d (%d steps), validated every %d epochs", labelled, plan.steps_per_epoch, stage.min_steps,
                 stage.epochs, plan.epochs, plan.max_steps, plan.eval_every)
    return plan


class NoValidationMetric(RuntimeError):
    """The monitored validation metric never appeared, and `downstream.select=last` was not given."""


def check_validation_images(stage: DownstreamSettings, count: int, shortfall: str | None = None) -> None:
    """Before anything trains: a label split without validation images (e.g. every class too small to spare
    one) cannot choose a checkpoint; one-line UserError unless `downstream.select=last` was given. `shortfall`:
    why data.val_split>0 carved nothing (LabelSplit.val_shortfall), said instead of "give data.val_split>0"."""
    if count > 0:
        return
    message = no_validation_message("the label split has no validation images and", stage.select,
                                    len(stage.lr_grid or ()) > 1 or stage.probe_layer == "best")
    if message and shortfall:
        other = ("a single learning rate and probe layer" if stage.select == "last" else
                 "test the last epoch with downstream.select=last")
        message = f"{shortfall}; without validation images nothing chooses the downstream checkpoint (or {other})"
    if message:
        raise UserError(message)


def labelled_per_class(images: ImageSet, split: LabelSplit) -> list[int]:
    """Labelled training images per class (what `downstream.monitor=auto` looks at)."""
    labels = images.train_labels[torch.as_tensor(split.labeled, dtype=torch.long)]
    return [int(c) for c in torch.bincount(labels, minlength=images.num_classes)]


def selection_for(settings: RunSettings, images: ImageSet, split: LabelSplit) -> Selection:
    """The resolved monitor (`auto` by the labelled class sizes), `downstream.select`, and whether there is
    validation data; shared by every downstream protocol so that all of them choose the same way."""
    stage = settings.downstream
    counts = labelled_per_class(images, split)
    monitor = resolve_monitor(stage.monitor, counts)
    if stage.monitor == "auto":
        log.info("downstream.monitor=auto: validation %s (labelled images per class %s)",
                 "balanced accuracy" if monitor == "balanced_acc" else "accuracy", "/".join(map(str, counts)))
    has_validation = len(split.selection_val) > 0 and float(stage.limit_val_batches) > 0
    select, note, _ = resolve_select(
        stage.select, images.train_labels.numpy(), images.train_groups, split.labeled, split.selection_val,
        stage.cv_folds, has_validation, len(stage.lr_grid or ()) > 1 or stage.probe_layer == "best",
        "give data.val_split>0 or more labels")
    if note:
        log.info("downstream %s", note)
    return Selection(monitor, select, has_validation, note)


def _fit_candidates(settings: RunSettings, encoder: Encoder, images: ImageSet, data: DownstreamDataModule,
                    work_dir: Path, selection: Selection) -> tuple[list[tuple[Fitted, Path]], list[dict[str, object]]]:
    """Fit every candidate; one whose loss diverges is logged and dropped. Raises only when all diverged."""
    candidates = _candidates(settings, encoder)
    fitted, diverged, errors = [], [], []
    for candidate in candidates:
        folder = work_dir if len(candidates) == 1 else work_dir / f"candidate{candidate.index}"
        if len(candidates) > 1:
            log.info("downstream candidate %d/%d: lr=%g probe_layer=%s", candidate.index + 1, len(candidates),
                     candidate.lr, candidate.layer)
        try:
            fitted.append((_fit(settings, encoder, images, data, candidate, folder, selection), folder))
            if len(candidates) > 1:  # what the choice below is made on, kept in the cell's log
                log.info("downstream candidate lr=%g probe_layer=%s: val_%s %.4f", candidate.lr, candidate.layer,
                         selection.monitor, fitted[-1][0].score)
        except DivergenceError as error:
            if len(candidates) == 1:
                raise
            log.warning("downstream candidate lr=%g probe_layer=%s diverged and is dropped: %s", candidate.lr,
                        candidate.layer, error)
            diverged.append({"lr": candidate.lr, "probe_layer": candidate.layer})
            errors.append(error)
    if not fitted:
        raise DivergenceError(f"every one of the {len(candidates)} downstream candidates diverged (lr "
                              f"{', '.join(f'{c.lr:g}' for c in candidates)}); first: {errors[0]}")
    return fitted, diverged


def _cross_validated_refit(settings: RunSettings, encoder: Encoder, images: ImageSet, split: LabelSplit,
                           data: DownstreamDataModule, work_dir: Path,
                           selection: Selection) -> tuple[list[tuple[Fitted, Path]], list[dict[str, object]]]:
    """`downstream.select=cv` (finetune_cv.py): the candidate and step chosen on folds of the labelled set, then
    one refit on every labelled image stopped at that step; resumable (fold curves and the refit are kept)."""
    stage = settings.downstream
    plan = step_plan(settings, len(split.labeled))
    candidates = _candidates(settings, encoder)
    folds = labelled_folds(images, split, stage.cv_folds, settings.data.split_seed)
    choice, diverged = cross_validate(settings, lambda c: _classifier(settings, encoder, images, c), candidates,
                                      images, split, plan, selection.monitor, folds, work_dir)
    candidate = candidates[choice.candidate_index]
    folder = work_dir / "refit"
    summary = folder / "fitted.json"
    if summary.is_file():
        done = json.loads(summary.read_text())
        return [(Fitted(candidate, choice.score, dict(done["validation"]), Path(done["path"]), done["epoch"],
                        done["epochs"], done["steps"], done["labeled_images_seen"], choice.step, choice.folds,
                        choice.loss), folder)], diverged
    module = _classifier(settings, encoder, images, candidate, schedule_steps=plan.max_steps)
    # The refit is validated at the folds' check points when there are validation images: TensorBoard's downstream
    # curves, not a choice (the step is fixed by the folds).
    validate = selection.has_validation
    trainer = build_trainer(settings.trainer, -1, folder / "tb", "downstream",
                            [AugmentStreams(settings.seed, settings.data.hed_jitter)], stage.limit_train_batches,
                            stage.limit_val_batches if validate else 0, folder, check_val_every_n_epoch=None,
                            max_steps=choice.step, val_check_interval=eval_steps(plan) if validate else None)
    trainer.fit(module, datamodule=data)
    path = folder / "refit.ckpt"
    trainer.save_checkpoint(path, weights_only=True)
    seen = data.train_dataloader().sampler.positions_seen(epoch=0, batches=int(trainer.num_training_batches))
    # best_val_* stay what they are for every protocol: the tested network on the validation split (none without)
    validation = {metric: float(trainer.callback_metrics[validation_key(metric)]) for metric in METRICS
                  if validate and validation_key(metric) in trainer.callback_metrics}
    fitted = Fitted(candidate, choice.score, validation, path, int(trainer.current_epoch) + 1,
                    int(trainer.current_epoch) + 1, int(trainer.global_step), len(seen), choice.step, choice.folds,
                    choice.loss)
    if trainer.is_global_zero:
        write_json(summary, {"validation": validation, "path": str(path), "epoch": fitted.epoch,
                             "epochs": fitted.epochs, "steps": fitted.steps, "labeled_images_seen": len(seen)})
    return [(fitted, folder)], diverged


def _rank(fitted: Fitted) -> tuple[float, int]:
    """Higher validation score first, then the earlier candidate; a NaN score ranks last."""
    score = fitted.score if math.isfinite(fitted.score) else float("-inf")
    return score, -fitted.candidate.index


def run_downstream(settings: RunSettings, encoder: Encoder, images: ImageSet, split: LabelSplit,
                   work_dir: Path, run_dir: Path) -> DownstreamOutcome:
    """Fit every candidate with early stopping and a resumable last checkpoint, pick the best on validation,
    then test that one checkpoint once."""
    started = time.perf_counter()
    stage = settings.downstream
    data = downstream_data(settings, images, split)  # the arm's: FixMatch's adds the unlabelled pool
    selection = selection_for(settings, images, split)
    if selection.select == "cv":
        fitted, diverged = _cross_validated_refit(settings, encoder, images, split, data, work_dir, selection)
    else:
        fitted, diverged = _fit_candidates(settings, encoder, images, data, work_dir, selection)
    (chosen, chosen_dir) = max(fitted, key=lambda pair: _rank(pair[0]))
    if len(fitted) + len(diverged) > 1 and selection.select != "cv":
        log.info("chosen on validation: lr=%g probe_layer=%s (val_%s %.4f)", chosen.candidate.lr,
                 chosen.candidate.layer, selection.monitor, chosen.score)
    module = _classifier(settings, encoder, images, chosen.candidate)
    # The test metrics join the chosen candidate's curves (same TensorBoard run, one more event file).
    tester = build_trainer(settings.trainer, stage.epochs, chosen_dir / "tb", "downstream", [], 1.0, 1.0, chosen_dir)
    checkpoint = torch.load(chosen.path, map_location="cpu", weights_only=True)
    module.load_state_dict(checkpoint["state_dict"])
    module.test_groups = images.test_groups
    results = tester.test(module, datamodule=data, verbose=False)
    logged = results[0] if results else {}
    metrics = module.test_metrics
    if metrics is None or not torch.equal(module.test_labels_seen, images.test_labels.long().cpu()):
        raise RuntimeError("the gathered test predictions do not line up with the test split (test loader order)")
    kept = run_dir / "checkpoints" / "best.ckpt"
    if tester.is_global_zero:
        kept.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(chosen.path, kept)
        tb_target = run_dir / "tb" / "downstream"
        shutil.rmtree(tb_target, ignore_errors=True)
        shutil.copytree(chosen_dir / "tb" / "downstream", tb_target)
        # the tested encoder's test-set embeddings, for the report's 2-D maps
        save_test_embeddings(module.encoder, images, run_dir, settings.data.split_seed, settings.data.eval_batch_size)
    return DownstreamOutcome(
        test_loss=float(logged.get("test/loss", float("nan"))),
        metrics=metrics,
        best_epoch_checkpoint=kept,
        epochs=chosen.epochs,
        seconds=time.perf_counter() - started,
        monitor=selection.monitor,
        selected_on=selected_on(selection.select, selection.monitor),
        select=selection.select,
        selection_note=selection.note,
        cv_folds=chosen.cv_folds,
        selection_score=chosen.score if math.isfinite(chosen.score) else None,
        selection_loss=chosen.cv_loss,
        validation=chosen.validation,
        best_epoch=chosen.epoch,
        chosen_lr=chosen.candidate.lr,
        probe_layer=chosen.candidate.layer,
        diverged=diverged,
        steps=chosen.steps,
        best_step=chosen.best_step,
        labeled_images_seen=chosen.labeled_images_seen,
    )
