"""`downstream.select=cv` for networks trained by the Trainer (fine-tuning, the SGD linear head): the learning
rate, probe layer and stopping step chosen by stratified, group-aware k-fold cross-validation on the labelled set,
then one refit on every labelled image, stopped at the chosen step and tested.

Why: at a few labels per class the validation split holds a handful of images (one patient per class in the grouped
study), so the epoch and learning rate chosen on it are mostly noise. Here every labelled image scores the
candidates once. Each fold run trains the full step plan of the whole labelled set (the same `downstream.epochs`
validation checks, `eval_steps` apart, no early stopping) so that the fold curves line up step for step; the mean
monitored metric over the folds picks (candidate, step), ties going to the lower mean held-out loss, then to the
earlier step and candidate. The refit follows the same learning-rate schedule (its length is the full plan's) and
stops at the chosen step. FixMatch's folds keep the whole unlabelled pool, the held-out fold's images included (as
unlabelled images, as in the refit): the held-out score only ranks candidates and is never reported as a result.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback

from ssl_lightning.atomic import write_json
from ssl_lightning.config.settings import RunSettings
from ssl_lightning.data.augment_streams import AugmentStreams
from ssl_lightning.data.base import ImageSet
from ssl_lightning.data.fractions import LabelSplit
from ssl_lightning.evaluation.cross_validation import stratified_group_folds
from ssl_lightning.evaluation.downstream_selection import validation_key
from ssl_lightning.evaluation.step_plan import StepPlan
from ssl_lightning.stages.downstream_data import downstream_data
from ssl_lightning.training.finite_guard import DivergenceError
from ssl_lightning.training.trainer_factory import build_trainer

log = logging.getLogger(__name__)
VAL_LOSS = "downstream/val_loss"


class CurveRecorder(Callback):
    """(optimiser step, monitored metric, validation loss) at every validation check of a fold run."""

    def __init__(self, key: str):
        self.key = key
        self.points: list[tuple[int, float, float]] = []

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        metrics = trainer.callback_metrics
        if trainer.sanity_checking or self.key not in metrics:
            return
        self.points.append((int(trainer.global_step), float(metrics[self.key]), float(metrics.get(VAL_LOSS, math.nan))))


@dataclass(frozen=True)
class CvChoice:
    candidate_index: int
    step: int  # optimiser steps of the refit
    score: float  # mean monitored metric over the folds at that step
    loss: float  # mean held-out loss there
    folds: int


def labelled_folds(images: ImageSet, split: LabelSplit, k: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The folds as training-image indices (not positions): group-aware where the data has groups."""
    labelled = np.asarray(split.labeled)
    labels = images.train_labels.numpy()[labelled]
    groups = images.train_groups[labelled] if images.train_groups is not None else None
    return [(labelled[train], labelled[held]) for train, held in stratified_group_folds(labels, groups, k, seed)]


def fold_curve(settings: RunSettings, module: pl.LightningModule, images: ImageSet, split: LabelSplit,
               train: np.ndarray, held: np.ndarray, plan: StepPlan, key: str,
               work_dir: Path) -> list[tuple[int, float, float]]:
    """Train one fold for the plan's steps, validating on its held-out images every `eval_steps`; resumable per
    fold (a finished fold's curve is kept in curve.json). Raises DivergenceError when its loss stops being finite."""
    done = work_dir / "curve.json"
    if done.is_file():
        return [tuple(point) for point in json.loads(done.read_text())["points"]]
    stage = settings.downstream
    data = downstream_data(settings, images, replace(split, labeled=train, selection=held))
    recorder = CurveRecorder(key)
    trainer = build_trainer(settings.trainer, -1, work_dir / "tb", "downstream_cv", [recorder,
                            AugmentStreams(settings.seed, settings.data.hed_jitter)], stage.limit_train_batches,
                            1.0, work_dir, check_val_every_n_epoch=None, max_steps=plan.max_steps,
                            val_check_interval=eval_steps(plan))
    trainer.fit(module, datamodule=data)
    if trainer.is_global_zero:
        write_json(done, {"points": recorder.points})
    return recorder.points


def eval_steps(plan: StepPlan) -> int:
    """Optimiser steps between the validation checks of the plan (its `epochs` checks over `max_steps`)."""
    return plan.eval_every * plan.steps_per_epoch


def choose(curves: dict[int, list[list[tuple[int, float, float]]]]) -> CvChoice:
    """The (candidate, step) with the best mean monitored metric over the folds; ties to the lower mean held-out
    loss, then the earlier step, then the earlier candidate. Only steps every fold reached count."""
    best: tuple | None = None
    for index, folds in curves.items():
        by_step: dict[int, list[tuple[float, float]]] = {}
        for points in folds:
            for step, score, loss in points:
                by_step.setdefault(step, []).append((score, loss))
        for step, values in by_step.items():
            if len(values) < len(folds):
                continue
            score = float(np.mean([v[0] for v in values]))
            loss = float(np.mean([v[1] for v in values]))
            rank = (-score if math.isfinite(score) else math.inf, loss if math.isfinite(loss) else math.inf,
                    step, index)
            if best is None or rank < best[0]:
                best = (rank, CvChoice(index, step, score, loss, len(folds)))
    if best is None:
        raise DivergenceError("cross-validation produced no validation check in every fold")
    return best[1]


def cross_validate(settings: RunSettings, make_module, candidates: list, images: ImageSet, split: LabelSplit,
                   plan: StepPlan, monitor: str, folds: list[tuple[np.ndarray, np.ndarray]],
                   work_dir: Path) -> tuple[CvChoice, list[dict[str, object]]]:
    """Every candidate on every fold; a candidate that diverges on any fold is dropped (and listed)."""
    key = validation_key(monitor)
    curves: dict[int, list] = {}
    diverged: list[dict[str, object]] = []
    for candidate in candidates:
        try:
            curves[candidate.index] = [
                fold_curve(settings, make_module(candidate), images, split, train, held, plan, key,
                           work_dir / f"cv_candidate{candidate.index}" / f"fold{f}")
                for f, (train, held) in enumerate(folds)]
        except DivergenceError as error:
            if len(candidates) == 1:
                raise
            log.warning("downstream candidate lr=%g probe_layer=%s diverged in cross-validation and is dropped: %s",
                        candidate.lr, candidate.layer, error)
            diverged.append({"lr": candidate.lr, "probe_layer": candidate.layer})
    if not curves:
        raise DivergenceError(f"every one of the {len(candidates)} downstream candidates diverged in cross-validation")
    choice = choose(curves)
    chosen = candidates[choice.candidate_index]
    log.info("downstream.select=cv (%d folds of %d labelled images): lr=%g probe_layer=%s, %d steps (mean held-out "
             "%s %.4f)", choice.folds, len(split.labeled), chosen.lr, chosen.layer, choice.step, monitor, choice.score)
    return choice, diverged
