"""Checks of an image folder's train/test split that a run would otherwise pass in silence.

A class with no training images cannot be learnt and one with no test images reports a per-class test accuracy of
0.0 that means nothing; a `test/` folder byte-identical to `train/` measures memorisation, not generalisation.
All three are refused (UserError, exit code 2) before anything trains: docs/guide.md, "Robustness".
"""

from __future__ import annotations

import filecmp
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ssl_lightning.errors import UserError


def _missing(classes: Sequence[str], labels: np.ndarray) -> list[str]:
    present = set(np.asarray(labels, dtype=np.int64).tolist())
    return [name for index, name in enumerate(classes) if index not in present]


def _relative(files: Sequence[str], folder: Path) -> list[str] | None:
    try:
        return sorted(str(Path(f).resolve().relative_to(folder.resolve())) for f in files)
    except ValueError:
        return None


def identical_folders(train_dir: Path, test_dir: Path, train_files: Sequence[str], test_files: Sequence[str]) -> bool:
    """True when test/ is train/ (same folder, or the same relative files with the same bytes)."""
    if train_dir.resolve() == test_dir.resolve():
        return True
    train, test = _relative(train_files, train_dir), _relative(test_files, test_dir)
    if not train or train != test:
        return False
    return all(filecmp.cmp(train_dir / name, test_dir / name, shallow=False) for name in train)


def check_folder_split(root: Path, classes: Sequence[str], train_labels, test_labels, train_files: Sequence[str],
                       test_files: Sequence[str]) -> None:
    """UserError for a class without training or test images, or a test/ folder identical to train/."""
    root = Path(root)
    no_train = _missing(classes, np.asarray(train_labels))
    if no_train:
        raise UserError(f"class(es) {no_train} in {root} have no training images; add images to them or remove "
                        "their folders")
    no_test = _missing(classes, np.asarray(test_labels))
    if no_test:
        raise UserError(f"class(es) {no_test} in {root} have no test images (their test accuracy would be a "
                        "meaningless 0.0); add test images, or more images for the split, or remove the class")
    train_dir, test_dir = root / "train", root / "test"
    if train_dir.is_dir() and test_dir.is_dir() and identical_folders(train_dir, test_dir, train_files, test_files):
        raise UserError(f"{test_dir} holds the same files as {train_dir} (byte for byte): the test accuracy would "
                        "measure memorisation; put held-out images in test/")
