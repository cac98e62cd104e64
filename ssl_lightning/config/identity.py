"""Which config keys make up each cache key: one declaration per key, one include rule per stage.

Two keys address stored work: the pretext store key (a trained encoder, shared by every fraction of a sweep)
and the downstream work-folder key (a cell's fitted candidates, so a killed cell resumes). A key is built from
the config keys declared for its stage below, and from nothing else, so a setting that does not change a stage's
result never retrains it and one that does always does. The downstream key also contains the pretext key, so
what shapes the encoder reaches it that way. `tests/test_identity_keys.py` walks every key of the composed
config (every experiment, data set and downstream protocol) and fails on a key declared nowhere: adding a
config key means adding one line here.

Method sections (`simclr.*`, ...) enter the pretext key through the method's typed `identity()` (plain rotation
ignores its section), and `pretext_data.<entry>.*` through the pretext sources' identity (`source_identity`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection
from dataclasses import asdict, dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import torch

from ssl_lightning.config.dotted import lookup
from ssl_lightning.data.base import ImageSet
from ssl_lightning.data.config import DataConfig
from ssl_lightning.data.manifest import manifest_identity
from ssl_lightning.data.pixel_digest import pixel_digest
from ssl_lightning.data.pretext_sources import PretextImages
from ssl_lightning.models.init import init_identity

PRETEXT, DOWNSTREAM = "pretext", "downstream"


def _absolute(value: Any) -> Any:
    return str(Path(value).expanduser().resolve()) if value else value


@dataclass(frozen=True)
class Declared:
    """The stages whose stored result a key changes; for a key that changes none, why not."""

    stages: frozenset[str]
    why_not: str = ""
    normalise: Callable[[Any], Any] | None = None  # e.g. a path made absolute, a weights file by its content
    # Values that leave the key out, as if the config lacked it: a key added later keeps, at its default,
    # every stored encoder and work folder of before it was added.
    unkeyed: tuple[Any, ...] = ()


def both(normalise: Callable[[Any], Any] | None = None, unkeyed: tuple[Any, ...] = ()) -> Declared:
    return Declared(frozenset({PRETEXT, DOWNSTREAM}), normalise=normalise, unkeyed=unkeyed)


def pretext() -> Declared:
    return Declared(frozenset({PRETEXT}))


def downstream() -> Declared:
    return Declared(frozenset({DOWNSTREAM}))


def neither(why: str) -> Declared:
    return Declared(frozenset(), why)


LOADING = "how images are read or batched, not which"
RUNTIME = "how fast or how verbose, not what is computed"

# Exact dotted keys; a pattern (fnmatch) only where a section's keys are all alike.
DECLARED: dict[str, Declared] = {
    "experiment": both(),
    "seed": both(),
    # data: which images, which splits, which augmentation
    "data.name": both(),
    "data.root": both(_absolute),
    "data.include": both(),
    "data.image_size": both(),
    "data.test_split": both(),
    "data.test_split_seed": both(),
    "data.test_folds": both(),  # each fold's pretext pool leaves out that fold's test groups: one encoder per fold
    "data.test_fold": both(),  # set per fold run (not in conf/): which fold's groups are the test split
    "data.val_split": both(),
    "data.val_seed": both(),  # draws the validation pool, which the pretext pool leaves out
    "data.split_seed": downstream(),  # the nested label subsets (the validation pool: data.val_seed)
    "data.split_seeds": downstream(),  # several split seeds in one cell (frozen probes); each run records its own
    "data.group_by": both(),
    "data.manifest": both(manifest_identity),  # its path and the sha256 of its bytes
    "data.hed_jitter": both(),
    "data.fraction": downstream(),
    "data.balance": downstream(),  # cuts the labelled candidates, not the pretext pool
    "data.val_per_label": downstream(),
    "data.labels_per_class": downstream(),
    "data.num_classes": both(),  # synthetic data only, like the next four
    "data.train_size": both(),
    "data.test_size": both(),
    "data.channels": both(),
    "data.synthetic_seed": both(),
    "data.max_image_pixels": neither("a run reads the same images or stops (error) / leaves out oversized ones (skip)"),
    "data.download": neither("fetches missing files; the files are the data set's either way"),
    "data.on_bad_image": neither("a run reads the same images or stops (error) / leaves out unreadable ones (skip)"),
    "data.eval_batch_size": neither(LOADING),
    "data.eval_batch_pixels": neither(LOADING),
    "data.num_workers": neither(LOADING),
    "data.pin_memory": neither(LOADING),
    "data.decode_workers": neither(LOADING),
    "data.image_cache": neither("where decoded pixels are kept"),
    # the encoder
    "backbone.name": both(),
    "backbone.stem": both(),
    "backbone.width": both(),
    "backbone.blocks": both(),
    "backbone.stem_stride": both(),
    "backbone.init": both(init_identity),  # a weights file by its content
    # the input contract and backbone=timm (issue 31): left out of the keys at their defaults
    "backbone.discard_loaded_stem": both(unkeyed=(False,)),
    "backbone.input_size": both(unkeyed=("auto",)),
    "backbone.normalize": both(unkeyed=("auto",)),
    "backbone.model": both(unkeyed=(None,)),
    "backbone.patch_size": both(unkeyed=("auto",)),
    "backbone.kwargs": both(unkeyed=({},)),
    "backbone.kwargs.*": both(),  # through backbone.kwargs (a section of timm.create_model arguments)
    # the pretext stage (its method's section: through the method's identity())
    "pretext.epochs": pretext(),
    "pretext.batch_size": pretext(),
    "pretext.optimizer": pretext(),
    "pretext.lr": pretext(),
    "pretext.weight_decay": pretext(),
    "pretext.momentum": pretext(),
    "pretext.nesterov": pretext(),
    "pretext.scheduler": pretext(),
    "pretext.warmup_epochs": pretext(),
    "pretext.step_milestones": pretext(),
    "pretext.step_gamma": pretext(),
    "pretext.exclude_norm_bias": pretext(),
    "pretext.trust_coefficient": pretext(),
    "pretext.limit_train_batches": pretext(),
    "pretext.limit_val_batches": pretext(),
    "pretext.reuse": neither("whether a stored encoder may be used, not which one"),
    # the downstream stage
    "downstream.protocol": downstream(),
    "downstream.head": downstream(),
    "downstream.epochs": downstream(),
    "downstream.patience": downstream(),
    "downstream.min_steps": downstream(),
    "downstream.lr_grid": downstream(),
    "downstream.probe_layer": downstream(),
    "downstream.monitor": downstream(),
    "downstream.select": downstream(),
    "downstream.cv_folds": downstream(),
    "downstream.solver": downstream(),
    "downstream.penalty_grid": downstream(),
    "downstream.penalty_patience": downstream(),
    "downstream.max_iter": downstream(),
    "downstream.k": downstream(),
    "downstream.k_grid": downstream(),
    "downstream.temperature": downstream(),
    "downstream.metric": downstream(),
    "raw_pixels.max_features": downstream(),  # the raw-pixel arm's features (no pretext stage)
    "fixmatch.threshold": downstream(),  # the FixMatch arm's training (no pretext stage)
    "fixmatch.mu": downstream(),
    "fixmatch.lambda_u": downstream(),
    "downstream.batch_size": downstream(),
    "downstream.optimizer": downstream(),
    "downstream.lr": downstream(),
    "downstream.weight_decay": downstream(),
    "downstream.momentum": downstream(),
    "downstream.nesterov": downstream(),
    "downstream.scheduler": downstream(),
    "downstream.warmup_epochs": downstream(),
    "downstream.step_milestones": downstream(),
    "downstream.step_gamma": downstream(),
    "downstream.exclude_norm_bias": downstream(),
    "downstream.trust_coefficient": downstream(),
    "downstream.augment": downstream(),
    "downstream.limit_train_batches": downstream(),
    "downstream.limit_val_batches": downstream(),
    # processes and number formats change the numbers a fit produces
    "trainer.devices": both(),
    "trainer.num_nodes": both(),
    "trainer.precision": both(),
    "trainer.sync_batchnorm": both(),
    "trainer.accelerator": neither("the same computation on another device (precision and processes are keyed)"),
    "trainer.strategy": neither("how the processes talk (their number is keyed)"),
    "trainer.channels_last": neither("a memory layout of the same numbers"),
    "trainer.compile": neither(RUNTIME),
    "trainer.benchmark": neither(RUNTIME),
    "trainer.deterministic": neither(RUNTIME),
    "trainer.enable_progress_bar": neither(RUNTIME),
    "trainer.log_every_n_steps": neither(RUNTIME),
    "trainer.threads": neither(RUNTIME),
    "paths.cache": neither("where stored work lives"),
    "pretext_data.*": pretext(),  # through the pretext sources' identity (source_identity)
}


def declaration(key: str, method_sections: Collection[str] = ()) -> Declared | None:
    """The declaration of a dotted config key; method sections count as pretext (via the method's identity())."""
    if key in DECLARED:
        return DECLARED[key]
    if key.split(".", 1)[0] in method_sections:
        return pretext()
    return next((declared for pattern, declared in DECLARED.items()
                 if any(c in pattern for c in "*?[") and fnmatchcase(key, pattern)), None)


def stage_values(config: dict[str, Any], stage: str) -> dict[str, Any]:
    """{dotted key: value} of every exact key declared for `stage` that the config has (normalised)."""
    values = {}
    for key, declared in DECLARED.items():
        if stage not in declared.stages or any(c in key for c in "*?["):
            continue
        present, value = lookup(config, key)
        if present and not any(value == default for default in declared.unkeyed):
            values[key] = declared.normalise(value) if declared.normalise and value is not None else value
    return values


def source_identity(config: DataConfig) -> dict[str, Any]:
    """What of a pretext source (another data set) shapes the encoder: its data keys declared for the pretext
    stage, the same rule as the target's."""
    values = {"data": asdict(config)}
    return {key.removeprefix("data."): value for key, value in stage_values(values, PRETEXT).items()}


def sources_identity(sources: list[tuple[str, DataConfig | None]]) -> list[dict[str, Any]]:
    """The pretext sources' part of the store key: per entry its name and either `target` (the downstream data
    set's own pool) or the source's identity."""
    return [{"entry": entry, "target": True} if config is None else {"entry": entry, **source_identity(config)}
            for entry, config in sources]


def labels_digest(labels: torch.Tensor | None) -> str | None:
    if labels is None:
        return None
    return hashlib.sha256(labels.detach().cpu().to(torch.int64).contiguous().numpy().tobytes()).hexdigest()


def images_identity(images: ImageSet) -> dict[str, Any]:
    """The pixels and labels a cell reads (data/pixel_digest.py), for the feature store and the cell's work folder:
    the settings alone do not change when the files under them do (issue 32)."""
    return {"train_pixels": pixel_digest(images.train_images), "test_pixels": pixel_digest(images.test_images),
            "train_labels": labels_digest(images.train_labels), "test_labels": labels_digest(images.test_labels)}


def pretext_data_identity(pretext: PretextImages, val_labels: torch.Tensor | None) -> dict[str, Any]:
    """The pretext store key's data part: the sources' settings and a digest of the very pixels (and labels) the
    encoder is trained and validated on, so an encoder trained on older images is never reused."""
    return {"sources": sources_identity(pretext.identity), "pixels": pixel_digest(pretext.images),
            "train_labels": labels_digest(pretext.train_labels), "val_labels": labels_digest(val_labels)}
