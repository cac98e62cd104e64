"""One cell end to end: data -> label split -> pretext stage (trained or reused) -> downstream -> test -> results.

Configuration becomes typed settings here, at the edge; nothing below sees the Hydra config.
"""

from __future__ import annotations

import copy
import logging
import shutil
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from omegaconf import DictConfig

from ssl_lightning.config import settings as settings_module
from ssl_lightning.config.identity import DOWNSTREAM, PRETEXT, images_identity, pretext_data_identity, stage_values
from ssl_lightning.config.settings import RunSettings
from ssl_lightning.data import load_dataset
from ssl_lightning.data.base import ImageSet
from ssl_lightning.data.config import eval_batch
from ssl_lightning.data.fractions import LabelSplit, make_label_split
from ssl_lightning.data.leakage import check_group_leakage, check_pretext_leakage
from ssl_lightning.data.pool_labels import with_pool_labels
from ssl_lightning.data.pretext_sources import (
    PretextImages,
    assemble,
    channel_count,
    load_sources,
    resize_square,
    source_configs,
    to_channels,
)
from ssl_lightning.data.stain import check_stain_channels
from ssl_lightning.errors import UserError
from ssl_lightning.evaluation.fixmatch import fixmatch_results
from ssl_lightning.methods import registry
from ssl_lightning.methods.registry import FIXMATCH, RAW_PIXELS
from ssl_lightning.methods.supervised_features import ENCODER_KIND
from ssl_lightning.models.backbones import Encoder
from ssl_lightning.models.batchnorm_stats import reestimate_batchnorm
from ssl_lightning.models.init import build_initialised
from ssl_lightning.models.pixels import max_features, pixel_encoder
from ssl_lightning.record import RunRecord
from ssl_lightning.stages import test_folds
from ssl_lightning.stages.downstream_stage import check_validation_images, run_downstream
from ssl_lightning.stages.frozen_stage import plan_selection, run_frozen, uses_frozen_stage
from ssl_lightning.stages.pretext_stage import pretext_key, run_pretext
from ssl_lightning.stages.pretext_store import config_key
from ssl_lightning.stages.results import balance_fields, git_commit, split_fields, write_results, write_subset
from ssl_lightning.training import thread_policy
from ssl_lightning.training.distributed import forget_shared, is_global_zero
from ssl_lightning.training.trainer_factory import check_accelerator

log = logging.getLogger("ssl_lightning")


def downstream_key(settings: RunSettings, pretext_key: str | None, images: dict[str, Any]) -> str:
    """The downstream work folder's key: the pretext key, the config keys declared for the downstream stage
    (ssl_lightning/config/identity.py) and the images' digest (`images_identity`), so a resumed cell never reuses
    candidates fitted under other settings or on other images."""
    return config_key({"pretext": pretext_key, "config": stage_values(settings.config, DOWNSTREAM), "images": images})


def _image_identity(settings: RunSettings, pixels: dict[str, Any]) -> dict[str, Any]:
    """Which images a cell reads, for the feature store: the data keys declared for the pretext stage, unprefixed
    (the feature store drops the split-only ones), and the digest of the pixels themselves (`images_identity`)."""
    return {**{key.removeprefix("data."): value for key, value in stage_values(settings.config, PRETEXT).items()
               if key.startswith("data.")}, "pixels": pixels}


def _sized_eval_batch(settings: RunSettings, height: int, width: int) -> RunSettings:
    """data.eval_batch_size as used: capped by data.eval_batch_pixels at this image size (said in the log)."""
    data = settings.data
    size = eval_batch(data.eval_batch_size, data.eval_batch_pixels, height, width)
    if size != data.eval_batch_size:
        log.info("evaluation batches of %d images at %dx%d px (data.eval_batch_pixels=%d caps "
                 "data.eval_batch_size=%d)", size, height, width, data.eval_batch_pixels, data.eval_batch_size)
    return replace(settings, data=replace(data, eval_batch_size=size))


def _prepare_target(images: ImageSet, size: int | None, channels: int) -> ImageSet:
    """Resize the downstream images to data.image_size (loaders that do not resize) and match channels."""
    if size is not None:
        images.train_images = resize_square(images.train_images, (size, size))
        images.test_images = resize_square(images.test_images, (size, size))
    images.train_images = to_channels(images.train_images, channels)
    images.test_images = to_channels(images.test_images, channels)
    return images


@dataclass
class PreparedCell:
    """Everything validated before the first output is written."""

    settings: RunSettings
    images: ImageSet
    split: LabelSplit
    encoder: Encoder
    pretext: PretextImages | None
    # data.split_seeds: (settings, split) of every label split this cell runs in turn, the first included;
    # empty: one run of `split`
    split_runs: list[tuple[RunSettings, LabelSplit]] = field(default_factory=list)
    # data.test_folds: the fold's subset.json fields (stages/test_folds.py); None without folds
    fold: dict[str, Any] | None = None


def with_split_seed(settings: RunSettings, seed: int) -> RunSettings:
    """The settings of one of data.split_seeds' runs: data.split_seed is that seed, in the recorded config too."""
    config = copy.deepcopy(settings.config)
    config["data"]["split_seed"] = seed
    return replace(settings, data=replace(settings.data, split_seed=seed), config=config)


def _checked_split(settings: RunSettings, images: ImageSet) -> LabelSplit:
    """The label split of settings.data, refused (UserError) when it cannot select or would leak a group."""
    data = settings.data
    split = make_label_split(images.train_labels.numpy(), data.fraction, data.split_seed, data.val_split,
                             images.classes, data.val_per_label, data.balance, groups=images.train_groups,
                             val_seed=data.validation_seed, labels_per_class=data.labels_per_class)
    check_validation_images(settings.downstream, len(split.selection_val), split.val_shortfall)
    if uses_frozen_stage(settings.downstream):  # select=cv/auto/last resolved for this split, or one-line refusal
        plan_selection(settings, images.train_labels.numpy(), images.train_groups, split)
    check_group_leakage(images, split.labeled, split.val, split.pool)
    return split


def _settings(cfg: DictConfig) -> RunSettings:
    settings = settings_module.from_config(cfg)
    check_accelerator(settings.trainer)
    return settings


def prepare(cfg: DictConfig) -> PreparedCell:
    """Load and check all inputs; any UserError is raised here, before anything is written. One cell: with
    data.test_folds, `prepare_folds` gives the folds' cells."""
    settings = _settings(cfg)
    return _prepare_images(settings, load_dataset(settings.data))


def prepare_folds(settings: RunSettings) -> list[PreparedCell]:
    """data.test_folds: every fold's cell (data.test_fold: that one only), all checked before any is run."""
    test_folds.refuse_fixed_test_split(settings.data)
    dealt = test_folds.deal(load_dataset(settings.data), settings.data)
    chosen = range(dealt.count) if settings.data.test_fold is None else [settings.data.test_fold]
    return [replace(_prepare_images(test_folds.with_test_fold(settings, k), dealt.image_set(k)),
                    fold=dealt.subset_fields(k)) for k in chosen]


def _prepare_images(settings: RunSettings, images: ImageSet) -> PreparedCell:
    """The checks and inputs of one cell on loaded images (a whole data set, or one test fold's re-deal)."""
    seeds = settings.data.split_seeds or ()
    if seeds:  # every split shares the validation pool (data.val_seed), so the pretext pool and encoder
        settings = with_split_seed(settings, seeds[0])
    split = _checked_split(settings, images)
    splits = {seeds[0]: split} if seeds else {}
    splits.update({seed: _checked_split(with_split_seed(settings, seed), images) for seed in seeds[1:]})
    sources = source_configs(settings.pretext_data, settings.data) if settings.method else {}
    check_pretext_leakage(sources, settings.data, images, split.val)
    loaded = load_sources(sources, settings.data.image_size or images.image_size[0])
    images = _prepare_target(images, settings.data.image_size, channel_count(images, list(loaded.values())))
    check_stain_channels(settings.data.hed_jitter, images.channels)
    settings = _sized_eval_batch(settings, *images.image_size)
    pretext = assemble(images, split.pool, split.val, sources, loaded, images.channels) if settings.method else None
    if pretext is not None and registry.get(settings.method).needs_labels:  # the supervised-features ceiling
        pretext = with_pool_labels(pretext, sources, images, split, settings.experiment)
    pl.seed_everything(settings.seed, workers=True, verbose=False)  # `seed` draws the initial encoder weights too
    if settings.experiment == RAW_PIXELS:  # no encoder: the frozen probes read the pixels
        encoder = pixel_encoder(images.channels, images.image_size, max_features(settings.config))
    else:
        encoder = build_initialised(settings.backbone, images.channels, images.image_size[0])
    split_runs = [(with_split_seed(settings, seed), one) for seed, one in splits.items()]
    return PreparedCell(settings, images, split, encoder, pretext, split_runs)


def _random_encoder_probe(settings: RunSettings, pretext: PretextImages | None) -> bool:
    """A frozen probe (linear, k-NN) on an untrained encoder: its BatchNorm statistics must come from data first."""
    return (pretext is None and settings.downstream.protocol != "finetune" and settings.backbone.init == "random"
            and settings.experiment != RAW_PIXELS)


def split_folder(run_dir: Path, seed: int) -> Path:
    """Where one of data.split_seeds' runs writes its results.json, subset.json and probe."""
    return run_dir / f"split_{seed}"


def run(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Run one cell. UserError escapes before anything is written; any later failure is recorded.
    With data.split_seeds the cell runs each split in turn, each its own run in split_<seed>/; with data.test_folds
    each test fold, each its own cell in fold_<k>/ (and its splits in fold_<k>/split_<seed>/). The first failed
    run's results are returned (else the last run's), and every run's results.json is on disk."""
    settings = _settings(cfg)
    if settings.data.test_folds is None:
        return _run_splits(_prepare_images(settings, load_dataset(settings.data)), run_dir)
    return _in_turn([(f"test fold {cell.settings.data.test_fold} of data.test_folds={settings.data.test_folds}",
                      partial(_run_splits, cell, test_folds.fold_folder(run_dir, cell.settings.data.test_fold)))
                     for cell in prepare_folds(settings)])


def record_refused_cell(cfg: DictConfig, run_dir: Path, error: UserError) -> dict[str, Any]:
    """A sweep cell refused by a check only its data can make (data loading, the label split, the test folds):
    recorded as a failed cell in its results.json, so that the sweep goes on and the report marks it. Its
    settings passed the sweep's preflight (cli/preflight.py), so they are read here without a new check."""
    settings = _settings(cfg)
    data = settings.data
    record = RunRecord(
        status="failed", experiment=settings.experiment, data=data.name, fraction=data.fraction,
        seed=settings.seed, split_seed=data.split_seed, protocol=settings.downstream.protocol,
        backbone=settings.backbone.name, labeled_per_class=None, num_labeled=None, num_val=None, num_val_pool=None,
        num_test=None, classes=None, subset_file=None, val_seed=data.validation_seed,
        labels_per_class=data.labels_per_class, labeled_share_per_class=None, group_by=data.group_by,
        num_groups=None, git_commit=git_commit(), config=settings.config, seconds={}, epochs={}, pretext_key=None,
        pretext_reused=False, init=settings.backbone.init, pretext_data=None, encoder=None,
        solver=settings.downstream.solver)
    record.status, record.error = "failed", f"{type(error).__name__}: {' '.join(str(error).split())}"
    record.merge({"refused_before_training": True})
    if is_global_zero():
        write_results(run_dir, record)
    return record.to_json()


def _run_splits(cell: PreparedCell, run_dir: Path) -> dict[str, Any]:
    if not cell.split_runs:
        return _run_validated(cell, run_dir)
    return _in_turn([(f"split seed {settings.data.split_seed} of data.split_seeds",
                      partial(_run_validated, replace(cell, settings=settings, split=split),
                              split_folder(run_dir, settings.data.split_seed)))
                     for settings, split in cell.split_runs])


def _in_turn(runs: list[tuple[str, Callable[[], dict[str, Any]]]]) -> dict[str, Any]:
    """Run each in turn (one failure does not stop the rest); the first failed run's results, else the last's."""
    outcomes = []
    for label, go in runs:
        results = go()
        log.info("%s: %s", label,
                 f"test_acc {results['test_acc']:.4f}" if results["status"] == "ok" else results.get("error"))
        outcomes.append(results)
    failed = [results for results in outcomes if results["status"] != "ok"]
    return failed[0] if failed else outcomes[-1]


def _run_validated(cell: PreparedCell, run_dir: Path) -> dict[str, Any]:
    settings, images, split, encoder = cell.settings, cell.images, cell.split, cell.encoder
    labels = images.train_labels.numpy()
    per_class = write_subset(run_dir, split, labels, images.classes, settings.data.fraction,
                             settings.data.split_seed, settings.data.validation_seed, settings.data.labels_per_class,
                             images.train_groups, images.test_groups, extra=cell.fold) if is_global_zero() else {}
    log.info("%s: %d labelled images (%s), %d validation (of a pool of %d), %d test; %s", settings.experiment,
             len(split.labeled), ", ".join(f"{k}={v}" for k, v in per_class.items()), len(split.selection_val),
             len(split.val), len(images.test_labels), "; ".join(images.notes))
    record = RunRecord(
        status="running", experiment=settings.experiment, data=settings.data.name,
        fraction=settings.data.fraction, seed=settings.seed, split_seed=settings.data.split_seed,
        protocol=settings.downstream.protocol, backbone=settings.backbone.name,
        labeled_per_class=per_class, num_labeled=int(len(split.labeled)),
        num_val=int(len(split.selection_val)), num_val_pool=int(len(split.val)),
        num_test=int(len(images.test_labels)), classes=images.classes, subset_file="subset.json",
        **split_fields(split, images, settings.data),
        git_commit=git_commit(), config=settings.config, seconds={}, epochs={},
        pretext_key=None, pretext_reused=False, init=settings.backbone.init,
        pretext_data=cell.pretext.label if cell.pretext else None,
        encoder="random" if cell.pretext is None and settings.backbone.init == "random" else "trained",
        solver=settings.downstream.solver,  # lbfgs | sgd (linear), sgd (finetune), None (knn)
    )
    if settings.experiment == RAW_PIXELS:
        record.encoder = "raw_pixels"
    record.merge(balance_fields(split, labels, images.classes))  # data.balance: balanced_to, tiles cut
    if cell.fold is not None:  # data.test_folds: which fold this run tests
        record.merge({"test_fold": cell.fold["test_fold"], "test_folds": cell.fold["test_folds"]})
    if settings.experiment == registry.PRETRAINED:
        record.encoder = "pretrained"
    if settings.backbone.init != "random" or not encoder.contract.is_identity():  # what the weights were fed
        record.merge({"input_contract": encoder.contract.record()})
    if settings.backbone.name == "timm":  # the model a weights folder's config.json named, when backbone.model is unset
        record.merge({"backbone_model": encoder.arch.removeprefix("timm:")})
    if cell.pretext is not None and cell.pretext.train_labels is not None:  # trained with every pool label
        record.merge({"encoder": ENCODER_KIND, "pretext_num_labeled": int(len(cell.pretext.train_indices))})
    tb_dir = run_dir / "tb"
    threads_from = thread_policy.mark()
    thread_policy.apply(settings.trainer.threads, thread_policy.CELL_START)
    started = time.perf_counter()
    try:
        pl.seed_everything(settings.seed, workers=True, verbose=False)
        if cell.pretext is not None:
            key = pretext_key(settings, pretext_data_identity(cell.pretext, images.train_labels))
            outcome = run_pretext(settings, encoder, cell.pretext.images, cell.pretext.train_indices,
                                  cell.pretext.val_indices, key, tb_dir,
                                  val_labels=images.train_labels,  # pretext val = part of the labelled pool
                                  train_labels=cell.pretext.train_labels)  # None unless trained on pool labels
            record.pretext_key, record.pretext_reused = key, outcome.reused
            record.seconds["pretext"] = round(outcome.seconds, 2)
            record.epochs["pretext"] = outcome.epochs
        if _random_encoder_probe(settings, cell.pretext):
            used = reestimate_batchnorm(encoder, images.train_images, split.pool, seed=settings.seed)
            log.info("random encoder probed linearly: BatchNorm statistics re-estimated on %d training images", used)
            record.merge({"batchnorm_reestimated_on": used})
        pixels = images_identity(images)  # the images themselves, not only their settings (issue 32)
        cell_key = downstream_key(settings, record.pretext_key, pixels)
        work_dir = settings.cache_dir / "cells" / cell_key
        if uses_frozen_stage(settings.downstream):  # k-NN, L-BFGS logistic regression: probes on cached features
            frozen = run_frozen(settings, encoder, images, split, _image_identity(settings, pixels), record.pretext_key,
                                run_dir)
            record.merge(frozen.results(run_dir, images.classes))
            record.seconds.update(features=round(frozen.seconds_features, 2), probe=round(frozen.seconds_probe, 2),
                                  downstream=round(frozen.seconds_features + frozen.seconds_probe, 2))
        else:
            down = run_downstream(settings, encoder, images, split, work_dir, run_dir)
            record.merge({"status": "ok", **down.as_results(images.classes),
                          "checkpoint": str(down.best_epoch_checkpoint.relative_to(run_dir))})
            record.seconds["downstream"] = round(down.seconds, 2)
            if settings.experiment == FIXMATCH:  # its parameters and the tested checkpoint's mask rate
                record.merge(fixmatch_results(settings.config, down.best_epoch_checkpoint, len(split.pool)))
            record.epochs["downstream"] = down.epochs
    except Exception as error:  # a failed cell is recorded, it does not sink a sweep
        record.fail(f"{type(error).__name__}: {error}", traceback.format_exc(limit=8))
        log.error("cell failed: %s", record.error)
    record.seconds["total"] = round(time.perf_counter() - started, 2)
    record.merge({"threads": thread_policy.cell_record(threads_from)})  # lands in details (record.py)
    if is_global_zero():
        if record.pretext_key is not None:  # every rank has read rank 0's decision: the downstream fit ran
            forget_shared(settings.cache_dir / "pretext", record.pretext_key)
        write_results(run_dir, record)
        if record.ok:
            shutil.rmtree(work_dir, ignore_errors=True)
    return record.to_json()
