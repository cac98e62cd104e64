"""Data sets, label fractions and DataModules."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from ssl_lightning.data import registry
from ssl_lightning.data.base import ImageSet
from ssl_lightning.data.config import DataConfig
from ssl_lightning.errors import UserError


def load_dataset(config: DataConfig, pretext_only: bool = False) -> ImageSet:
    """Load the data set named by `config.name` (data/registry.py); unknown names list the valid ones."""
    spec = registry.get(config.name, pretext_only)
    if pretext_only and config.group_by != "none":
        # Pretext data only gives its training images, unlabelled: its own test split is dropped, so drawing it
        # by group would only add ways to fail. The target's groups are guarded in pipeline.prepare.
        config = replace(config, group_by="none")
    images = spec.load(config)
    if not pretext_only and images.num_classes < 2:  # a classifier of one class: refused before anything trains
        raise UserError(f"data={config.name} has one class ({images.classes[0]!r} in "
                        f"{config.manifest or config.root}); a classifier needs at least two classes")
    return images


def __getattr__(name: str) -> Any:
    """`LOADERS`: name -> loader of the data sets valid as data=<name>, read from the registry when asked (the
    registry's modules import this package, so it cannot be built at import)."""
    if name == "LOADERS":
        loaders: dict[str, Callable[[DataConfig], ImageSet]] = {
            spec.name: spec.load for spec in registry.specs().values() if spec.downstream}
        return loaders
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["DataConfig", "ImageSet", "LOADERS", "load_dataset"]
