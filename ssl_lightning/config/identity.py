"""Which config keys make up each cache key: one declaration per key, one include rule per stage.

Two keys address stored work: the pretext store key (a trained encoder, shared by every fraction of a sweep)
and the downstream work-folder key (a cell's fitted candidates, so a killed cell resumes). A key is built from
the config keys declared for its stage, and from nothing else, so a setting that does not change a stage's
result never retrains it and one that does always does. The downstream key also contains the pretext key, so
what shapes the encoder reaches it that way. `tests/test_identity_keys.py` walks every key of the composed
config (every experiment, data set and downstream protocol) and fails on a key declared nowhere: adding a
config key means declaring it as a settings field (`schema_fields.setting(..., stage)`): the table below is
generated from the fields' stages.

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
from ssl_lightning.config.schema import PRETEXT_DATA_ENTRY, every_key, metadata
from ssl_lightning.data.base import ImageSet
from ssl_lightning.data.config import DataConfig
from ssl_lightning.data.manifest import manifest_identity
from ssl_lightning.data.pixel_digest import pixel_digest
from ssl_lightning.data.pretext_sources import PretextImages
from ssl_lightning.methods import registry
from ssl_lightning.models.init import init_identity
from ssl_lightning.schema_fields import BOTH, NEITHER, SECTION, Setting

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


# What metadata cannot say: how a value is normalised before hashing, and the values that leave a key out.
NORMALISE: dict[str, Callable[[Any], Any]] = {
    "data.root": _absolute,
    "data.manifest": manifest_identity,  # its path and the sha256 of its bytes
    "backbone.init": init_identity,  # a weights file by its content
}
# The input contract and backbone=timm (issue 31): left out of the keys at their defaults.
UNKEYED: dict[str, tuple[Any, ...]] = {
    "backbone.discard_loaded_stem": (False,),
    "backbone.input_size": ("auto",),
    "backbone.normalize": ("auto",),
    "backbone.model": (None,),
    "backbone.patch_size": ("auto",),
    "backbone.kwargs": ({},),
}
# Keys no settings field declares (patterns: a section's keys all alike).
EXPLICIT: dict[str, Declared] = {
    "backbone.kwargs.*": both(),  # through backbone.kwargs (a section of timm.create_model arguments)
    "pretext_data.*": pretext(),  # through the pretext sources' identity (source_identity)
}
_BY_STAGE = {BOTH: frozenset({PRETEXT, DOWNSTREAM}), PRETEXT: frozenset({PRETEXT}),
             DOWNSTREAM: frozenset({DOWNSTREAM}), NEITHER: frozenset()}


def _declared(key: str, info: Setting) -> Declared:
    stage = key.split(".", 1)[0] if info.stage == SECTION else info.stage  # the optimiser: pretext or downstream
    return Declared(_BY_STAGE[stage], info.why_not, NORMALISE.get(key), UNKEYED.get(key, ()))


def _generated() -> dict[str, Declared]:
    """One declaration per key of the settings dataclasses, from its field's stage; method sections are left to
    the method's identity() and pretext_data entries to source_identity."""
    methods = {spec.section for spec in registry.methods().values()}
    declared = {key: _declared(key, metadata(f)) for key, f in every_key().items()
                if key.split(".", 1)[0] not in methods and not key.startswith(PRETEXT_DATA_ENTRY)}
    return {**declared, **EXPLICIT}


DECLARED: dict[str, Declared] = _generated()


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
