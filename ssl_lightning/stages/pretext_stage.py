"""The pretext stage: train an encoder with a pretext task, or reuse one from the store.

The encoder does not depend on the label fraction, so each (method, data, backbone, pretext
hyper-parameters, seed) is trained once and every fraction of a sweep reuses it.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint

from ssl_lightning.config.identity import PRETEXT, stage_values
from ssl_lightning.config.settings import RunSettings
from ssl_lightning.data.augment_streams import AugmentStreams
from ssl_lightning.data.datamodules import PretextDataModule
from ssl_lightning.data.pool_labels import LabelledPretextDataModule
from ssl_lightning.methods import registry
from ssl_lightning.methods.base import PretextMethod
from ssl_lightning.models.backbones import Encoder
from ssl_lightning.models.encoder_state import load_encoder_weights
from ssl_lightning.stages.pretext_store import PretextStore, acquire_or_wait, config_key
from ssl_lightning.stages.store_origin import card_fields
from ssl_lightning.training.distributed import is_global_zero, share_from_rank_zero
from ssl_lightning.training.resume_checkpoint import usable_resume
from ssl_lightning.training.trainer_factory import build_trainer, prepare_module

log = logging.getLogger(__name__)


@dataclass
class PretextOutcome:
    key: str
    reused: bool
    epochs: int
    seconds: float


def pretext_key(settings: RunSettings, sources: Any) -> str:
    """Hash of everything that shapes the pretext encoder, and nothing that does not (the fraction): the config
    keys declared for the pretext stage (ssl_lightning/config/identity.py), the method's hyper-parameters and the
    identity of the pretext data sources."""
    assert settings.method is not None and settings.pretext.params is not None
    values = stage_values(settings.config, PRETEXT)
    if values.get("data.val_seed") is None:  # data.val_seed=null: the split seed carves the validation pool
        values["data.val_seed"] = settings.data.validation_seed
    return config_key({"method": settings.method, "hparams": settings.pretext.params.identity(),
                       "config": values, "sources": sources})


def build_method(settings: RunSettings, encoder: Encoder) -> PretextMethod:
    """The registered method's module, built from its typed hyper-parameters."""
    assert settings.method is not None, "the supervised experiment has no pretext stage"
    pretext = settings.pretext
    return registry.get(settings.method).build(encoder, pretext.optim, pretext.epochs, pretext.params)


def _several_processes(settings: RunSettings) -> bool:
    devices = settings.trainer.devices
    return settings.trainer.num_nodes > 1 or not (devices == 1 or devices == "1" or devices == "auto")


def _load_as_rank_zero_decides(settings: RunSettings, store: PretextStore, key: str):
    """Stored weights or None; under DDP every rank follows rank 0, which alone holds the lock (and may have
    waited on it while another job stored this encoder): train-or-reuse must be the same on all ranks."""
    if not _several_processes(settings):
        return store.load(key) if settings.pretext.reuse else None
    zero = is_global_zero()
    loaded = store.load(key) if settings.pretext.reuse and zero else None
    decision = share_from_rank_zero(store.root, key, {"reuse": loaded is not None} if zero else None)
    if not zero and decision["reuse"]:
        loaded = store.load(key)
        if loaded is None:
            raise RuntimeError(f"rank 0 reuses pretext store entry {key} but this rank cannot read it")
    return loaded


def _copy_events(source: Path, target: Path) -> None:
    if source.is_dir():
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(source, target)


def run_pretext(settings: RunSettings, encoder: Encoder, images: torch.Tensor, pool: np.ndarray,
                val: np.ndarray, key: str, tb_dir: Path, val_labels: torch.Tensor | None = None,
                train_labels: torch.Tensor | None = None) -> PretextOutcome:
    """Load the encoder weights from the store, or train them (resuming a killed run) and store them.
    `train_labels` (the pool's labels per row) only for a method that trains on them (data/pool_labels.py)."""
    store = PretextStore(settings.cache_dir / "pretext")
    started = time.perf_counter()
    entry = store.entry(key)
    lock = store.lock(key) if is_global_zero() else None
    if lock is not None:
        acquire_or_wait(lock, "training pretext", key)
    try:
        loaded = _load_as_rank_zero_decides(settings, store, key)
        if loaded is not None:
            state, meta = loaded
            load_encoder_weights(encoder, state, f"pretext store entry {key}")
            _copy_events(entry.events_dir, tb_dir / "pretext")
            log.info("reusing pretext checkpoint %s (%s, trained %s epochs)", key, meta.get("method"),
                     meta.get("epochs"))
            return PretextOutcome(key, True, int(meta.get("epochs", 0)), time.perf_counter() - started)
        log.info("training pretext stage %s (%s) for %d epoch(s)", key, settings.experiment, settings.pretext.epochs)
        _train(settings, encoder, images, pool, val, entry.partial_dir, val_labels, train_labels)
        if is_global_zero():
            meta = {"method": settings.method, "experiment": settings.experiment, "epochs": settings.pretext.epochs,
                    "backbone": encoder.name, "in_channels": encoder.in_channels,
                    **card_fields(settings)}  # what `python -m ssl_lightning.export <key>` puts on the card
            store.save(key, {k: v.detach().cpu() for k, v in encoder.state_dict().items()}, meta,
                       events_from=entry.partial_dir / "tb" / "pretext")
            _copy_events(entry.events_dir, tb_dir / "pretext")
        return PretextOutcome(key, False, settings.pretext.epochs, time.perf_counter() - started)
    finally:
        if lock is not None:
            lock.release()


def pretext_data_module(settings: RunSettings, images: torch.Tensor, pool: np.ndarray, val: np.ndarray,
                        val_labels: torch.Tensor | None = None,
                        train_labels: torch.Tensor | None = None) -> PretextDataModule:
    """The pretext batches: images only, or (images, pool labels) when `train_labels` is given."""
    # Validation at the training batch size: a contrastive accuracy depends on the number of candidates per batch.
    size, data = settings.pretext.batch_size, settings.data
    if train_labels is not None:
        return LabelledPretextDataModule(images, pool, val, size, size, train_labels, data.num_workers,
                                         data.pin_memory, seed=settings.seed, val_labels=val_labels)
    return PretextDataModule(images, pool, val, size, size, data.num_workers, data.pin_memory, seed=settings.seed,
                             val_labels=val_labels)


def _train(settings: RunSettings, encoder: Encoder, images: torch.Tensor, pool: np.ndarray, val: np.ndarray,
           partial_dir: Path, val_labels: torch.Tensor | None = None,
           train_labels: torch.Tensor | None = None) -> None:
    """Train in the store's working folder (checkpoints and events survive a kill; a rerun resumes)."""
    pl.seed_everything(settings.seed, workers=True, verbose=False)
    module = prepare_module(build_method(settings, encoder), settings.trainer, int(images.shape[1]),
                            int(images.shape[-1]))
    data = pretext_data_module(settings, images, pool, val, val_labels, train_labels)
    last = ModelCheckpoint(dirpath=str(partial_dir), filename="last", save_top_k=1, every_n_epochs=1,
                           enable_version_counter=False)
    streams = AugmentStreams(settings.seed, settings.data.hed_jitter)  # per-rank, per-epoch augmentation
    trainer = build_trainer(settings.trainer, settings.pretext.epochs, partial_dir / "tb", "pretext",
                            [last, streams], settings.pretext.limit_train_batches,
                            settings.pretext.limit_val_batches, partial_dir)
    resume = usable_resume(partial_dir / "last.ckpt")  # an unreadable one is set aside: restart
    if resume.is_file():
        log.info("resuming the pretext stage from %s", resume)
    trainer.fit(module, datamodule=data, ckpt_path=str(resume) if resume.is_file() else None, weights_only=True)
    hand_over(module, encoder)


def hand_over(module: PretextMethod, encoder: Encoder) -> None:
    """Put the method's evaluated encoder (DINO: the teacher) into `encoder`, the one the store saves."""
    evaluated = module.evaluated_encoder()
    if evaluated is not encoder:
        encoder.load_state_dict(evaluated.state_dict())
