"""The leakage guard by content: pretext data holding the target's validation or test images is refused."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ssl_lightning.data.config import DataConfig
from ssl_lightning.data.fractions import make_label_split
from ssl_lightning.data.imagefolder import load as load_imagefolder
from ssl_lightning.data.leakage import check_pretext_leakage
from ssl_lightning.data.pretext_sources import source_configs
from ssl_lightning.errors import UserError


def _tree(root: Path, per_class: int = 10, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for name in ("benign", "malignant"):
        (root / name).mkdir(parents=True)
        for k in range(per_class):
            Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(root / name / f"{k}.png")
    return root


def _target(root: Path, cache: Path):
    config = DataConfig(name="imagefolder", root=str(root), image_cache=str(cache))
    images = load_imagefolder(config)
    split = make_label_split(images.train_labels.numpy(), 0.5, 0, 0.2, images.classes)
    return config, images, split


def _check(tmp_path: Path, entry: dict) -> None:
    config, images, split = _target(tmp_path / "slides", tmp_path / "cache")
    sources = source_configs({"target": {}, "unlabeled_folder": entry}, config)
    check_pretext_leakage(sources, config, images, split.val)


def test_a_copy_of_the_test_images_elsewhere_is_refused_by_content(tmp_path):
    _tree(tmp_path / "slides")
    config, images, _ = _target(tmp_path / "slides", tmp_path / "cache")
    copies = tmp_path / "other"
    copies.mkdir()
    for k, path in enumerate(images.test_files):
        shutil.copy(path, copies / f"renamed{k}.png")
    with pytest.raises(UserError, match=rf"pretext_data.unlabeled_folder holds {len(images.test_files)} of the "
                                        r"target's test images \(.*other\); point it at a folder without them"):
        _check(tmp_path, {"name": "unlabeled_folder", "root": str(copies)})


def test_the_target_folder_itself_is_refused_and_counts_validation_images(tmp_path):
    _tree(tmp_path / "slides")
    with pytest.raises(UserError, match=r"holds 4 of the target's test images and \d+ of the target's validation"):
        _check(tmp_path, {"name": "unlabeled_folder", "root": str(tmp_path / "slides")})


def test_other_images_and_the_training_pool_are_accepted(tmp_path):
    _tree(tmp_path / "slides")
    _tree(tmp_path / "kidney", seed=5)
    _check(tmp_path, {"name": "unlabeled_folder", "root": str(tmp_path / "kidney")})


def test_a_built_in_data_set_named_twice_with_different_roots_is_refused(tmp_path):
    target = DataConfig(name="cifar10", root=str(tmp_path / "a"))
    sources = source_configs({"target": {}, "cifar10": {"root": str(tmp_path / "b")}}, target)
    with pytest.raises(UserError, match=r"pretext_data.cifar10 is the target data set cifar10 again"):
        check_pretext_leakage(sources, target, None, np.arange(0))  # type: ignore[arg-type]
