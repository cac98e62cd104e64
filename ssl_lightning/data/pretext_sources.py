"""What the pretext stage trains on: the downstream data set's training pool, other data sets, or a union.

`pretext_data` maps entry names to data settings; the entry whose `name` is `target` stands for the
downstream data set's own training images (validation split and test split left out). Images of every
source are resized to the downstream image size and brought to one channel count (grey -> RGB when mixed).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ssl_lightning.data import load_dataset
from ssl_lightning.data.base import ImageSet
from ssl_lightning.data.config import DataConfig
from ssl_lightning.data.mapped_images import ExpandChannels, LazyImages, ResizedImages, concatenate
from ssl_lightning.data.registry import find
from ssl_lightning.errors import UserError

TARGET = "target"


@dataclass
class PretextImages:
    images: torch.Tensor | LazyImages  # uint8 N x C x H x W; the target's train images first (split indices hold)
    train_indices: np.ndarray
    val_indices: np.ndarray
    label: str  # readable description, e.g. "target+kidney"
    # What determines the images, for the store key: (entry, its data settings; None for the target's own pool).
    # The pipeline turns it into the key's part (identity.sources_identity): data stays below the key rules.
    identity: list[tuple[str, DataConfig | None]]
    # Label per row, only for a method that trains on the pool's labels (data/pool_labels.py); None for the rest.
    train_labels: torch.Tensor | None = None


def to_channels(images: torch.Tensor | LazyImages, channels: int) -> torch.Tensor | LazyImages:
    if images.shape[1] == channels:
        return images
    if images.shape[1] == 1 and channels == 3:
        if isinstance(images, LazyImages):  # store-backed: expanded per batch, never in memory
            return ExpandChannels(images, channels)
        return images.expand(-1, 3, -1, -1).contiguous()
    raise UserError(f"cannot turn {images.shape[1]}-channel images into {channels} channels")


def resize_square(images: torch.Tensor | LazyImages, size: tuple[int, int]) -> torch.Tensor | LazyImages:
    if tuple(images.shape[-2:]) == tuple(size) or len(images) == 0:
        return images
    if isinstance(images, LazyImages):  # store-backed: resized per batch, never in memory
        return ResizedImages(images, size)
    out = []
    for start in range(0, len(images), 4096):  # chunks keep the float copy small
        chunk = images[start : start + 4096].float()
        chunk = F.interpolate(chunk, size=size, mode="bilinear", antialias=True, align_corners=False)
        out.append(chunk.round().clamp(0, 255).to(torch.uint8))
    return torch.cat(out)


def _same_data(a: DataConfig, b: DataConfig) -> bool:
    """Same files (or the same generator): then only the target's training pool may be used."""

    def where(config: DataConfig) -> tuple:
        root = str(Path(config.root).expanduser().resolve()) if config.root else None
        spec = find(config.name)
        return config.name, root, tuple(getattr(config, field) for field in spec.same_data) if spec else ()

    return where(a) == where(b)


def source_configs(pretext_data: dict[str, dict[str, Any]] | None, target: DataConfig) -> dict[str, DataConfig | None]:
    """Entry name -> DataConfig (None for the target itself); an empty selection means the target alone."""
    if not pretext_data:
        return {TARGET: None}
    sources: dict[str, DataConfig | None] = {}
    for entry, values in sorted(pretext_data.items()):
        values = dict(values or {})
        if values.get("name", entry) == TARGET:
            sources[entry] = None
            continue
        values.setdefault("name", entry)
        values.setdefault("image_cache", target.image_cache)  # folder sources share the image store
        values.setdefault("decode_workers", target.decode_workers)
        config = DataConfig.from_mapping({**values, "fraction": 1.0})
        sources[entry] = None if _same_data(config, target) else config  # same data set: train pool only
    return sources


def channel_count(target: ImageSet, extra: list[ImageSet]) -> int:
    return max([target.channels, *[source.channels for source in extra]])


def load_sources(sources: dict[str, DataConfig | None], image_size: int | None = None) -> dict[str, ImageSet]:
    """Load every other source; folders are decoded at the target's `image_size` (no resize afterwards)."""

    def at_size(config: DataConfig) -> DataConfig:
        spec = find(config.name)  # an unknown name: load_dataset reports it
        at_target = spec is not None and spec.decode_at_target_size and config.image_cache
        return replace(config, image_size=image_size) if at_target and image_size else config

    return {entry: load_dataset(at_size(config), pretext_only=True)
            for entry, config in sources.items() if config is not None}


def assemble(target: ImageSet, pool: np.ndarray, val: np.ndarray, sources: dict[str, DataConfig | None],
             loaded: dict[str, ImageSet], channels: int) -> PretextImages:
    """One image tensor for the pretext DataModule; the downstream test split is never part of it."""
    size = target.image_size
    parts = [to_channels(target.train_images, channels)]
    train = [pool] if any(config is None for config in sources.values()) else []
    if train and target.extra_unlabeled is not None:  # e.g. STL-10's unlabeled split
        extra = resize_square(to_channels(target.extra_unlabeled, channels), size)
        train.append(np.arange(len(extra)) + sum(len(p) for p in parts))
        parts.append(extra)
    identity: list[tuple[str, DataConfig | None]] = []
    for entry, config in sources.items():
        identity.append((entry, config))
        if config is None:
            continue
        images = resize_square(to_channels(loaded[entry].train_images, channels), size)
        offset = sum(len(p) for p in parts)
        train.append(np.arange(len(images)) + offset)
        parts.append(images)
    if not train:
        raise UserError("pretext_data selects no images; use pretext_data=target or add a data set")
    return PretextImages(concatenate(parts), np.concatenate(train), val,
                         "+".join(sources), identity)
