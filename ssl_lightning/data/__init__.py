"""Data sets, label fractions and DataModules."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from ssl_lightning.data import cifar10, fashion_mnist, imagefolder, manifest, stl10, synthetic, unlabeled_folder
from ssl_lightning.data.base import ImageSet
from ssl_lightning.data.config import DataConfig
from ssl_lightning.errors import UserError

LOADERS: dict[str, Callable[[DataConfig], ImageSet]] = {
    "fashion_mnist": fashion_mnist.load,
    "cifar10": cifar10.load,
    "stl10": stl10.load,
    "imagefolder": imagefolder.load,
    "manifest": manifest.load,
    "synthetic": synthetic.load,
}
# Data sets without labels: valid as pretext data only.
PRETEXT_ONLY_LOADERS: dict[str, Callable[[DataConfig], ImageSet]] = {"unlabeled_folder": unlabeled_folder.load}


def load_dataset(config: DataConfig, pretext_only: bool = False) -> ImageSet:
    """Load the data set named by `config.name`; unknown names list the valid ones."""
    loaders = {**LOADERS, **PRETEXT_ONLY_LOADERS} if pretext_only else LOADERS
    loader = loaders.get(config.name)
    if loader is None:
        if config.name in PRETEXT_ONLY_LOADERS:
            raise UserError(f"{config.name!r} has no labels and can only be pretext data "
                            f"(pretext_data=[target,{config.name}]); for data= use: {', '.join(sorted(LOADERS))}")
        raise UserError(f"unknown data set {config.name!r}; valid: {', '.join(sorted(loaders))} (data=<name>)")
    if pretext_only and config.group_by != "none":
        # Pretext data only gives its training images, unlabelled: its own test split is dropped, so drawing it
        # by group would only add ways to fail. The target's groups are guarded in pipeline.prepare.
        config = replace(config, group_by="none")
    images = loader(config)
    if not pretext_only and images.num_classes < 2:  # a classifier of one class: refused before anything trains
        raise UserError(f"data={config.name} has one class ({images.classes[0]!r} in "
                        f"{config.manifest or config.root}); a classifier needs at least two classes")
    return images


__all__ = ["DataConfig", "ImageSet", "LOADERS", "load_dataset"]
