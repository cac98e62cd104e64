"""data.test_folds=K: patient-level cross-validation of the test split.

One test split of a few patients measures those patients: every seed tests the same ones, and a patient-level
score moves in steps of one patient. With K folds every group (patient) is tested exactly once, in one of K runs
of the cell (`<cell>/fold_<k>/`), and the report pools them. Each fold is a whole cell of its own: its training
pool (labels, validation pool, and the pretext stage's unlabelled images) is the other folds' groups, so each fold
trains its own pretext encoder, which never saw the fold's test images (the pretext key holds data.test_folds and
data.test_fold; the leakage guard checks every fold before the first one trains).

The loader's images (its training and test rows, pooled) are put in one canonical order, by class and then file
path (for a folder: the order it was read in), and dealt into folds by group id (data/group_split.py), so the
folds do not depend on data.test_split or on the loader's row order. `subset.json` lists a fold's test rows in that
order (`test_indices`) and its test groups (`test_groups`).
"""

from __future__ import annotations

import copy
import csv
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ssl_lightning.config.settings import RunSettings
from ssl_lightning.data.base import Images, ImageSet
from ssl_lightning.data.config import DataConfig
from ssl_lightning.data.group_split import deal_test_folds
from ssl_lightning.data.mapped_images import concatenate
from ssl_lightning.errors import UserError

INDEX_ORDER = "rows of the whole data set (training and test images) ordered by class, then file path"


def fold_folder(run_dir: Path, fold: int) -> Path:
    """Where one of data.test_folds' runs writes its results.json, subset.json (and split_<seed>/ folders)."""
    return run_dir / f"fold_{fold}"


def with_test_fold(settings: RunSettings, fold: int) -> RunSettings:
    """The settings of one fold's run: data.test_fold is that fold, in the recorded config (and so the keys) too."""
    config = copy.deepcopy(settings.config)
    config["data"]["test_fold"] = fold
    return replace(settings, data=replace(settings.data, test_fold=fold), config=config)


def refuse_fixed_test_split(data: DataConfig) -> None:
    """UserError when the data give their own test split (train/ and test/ folders, a manifest's split column):
    dealing folds would ignore it. Checked before anything is decoded."""
    if data.name == "imagefolder" and data.root:
        root = Path(data.root).expanduser()
        if (root / "train").is_dir() and (root / "test").is_dir():
            raise UserError(f"data.test_folds={data.test_folds}: {root} fixes the test split with train/ and test/ "
                            "folders; put the class folders directly under data.root to cross-validate, or leave "
                            "data.test_folds=null")
    if data.name == "manifest" and data.manifest:
        path = Path(data.manifest).expanduser()
        if path.is_file():
            with open(path, newline="", encoding="utf-8-sig") as stream:
                header = [name.strip() for name in next(csv.reader(stream), [])]
            if "split" in header:
                raise UserError(f"data.test_folds={data.test_folds}: {path} fixes the test split with its split "
                                "column; drop the column to cross-validate, or leave data.test_folds=null")


def _rows(images: Images, rows: np.ndarray) -> Images:
    return images[torch.from_numpy(rows)] if isinstance(images, torch.Tensor) else images[rows]


@dataclass
class TestFolds:
    """The pooled images in canonical order and the test fold of every row."""

    images: Images
    labels: torch.Tensor
    files: np.ndarray
    groups: np.ndarray | None
    classes: list[str]
    fold: np.ndarray
    count: int
    notes: list[str]

    def image_set(self, fold: int) -> ImageSet:
        """Fold `fold`'s cell: its groups are the test split, every other group the training images."""
        test, train = np.flatnonzero(self.fold == fold), np.flatnonzero(self.fold != fold)
        note = (f"data.test_folds={self.count}, test fold {fold}: {len(train)} training / {len(test)} test images "
                f"(of {len(self.fold)}, dealt by group)")
        return ImageSet(_rows(self.images, train), self.labels[train], _rows(self.images, test), self.labels[test],
                        self.classes, notes=[note, *self.notes], train_files=self.files[train],
                        test_files=self.files[test],
                        train_groups=None if self.groups is None else self.groups[train],
                        test_groups=None if self.groups is None else self.groups[test])

    def subset_fields(self, fold: int) -> dict[str, Any]:
        """subset.json's record of the fold: which rows (INDEX_ORDER) and groups it tests."""
        test = np.flatnonzero(self.fold == fold)
        groups = None if self.groups is None else sorted(set(self.groups[test].astype(str).tolist()))
        return {"test_fold": fold, "test_folds": self.count, "test_indices": test.tolist(),
                "test_index_order": INDEX_ORDER, "test_groups": groups}


def deal(images: ImageSet, data: DataConfig) -> TestFolds:
    """The loader's training and test images pooled and dealt into data.test_folds folds (seed test_split_seed);
    UserError when a class has fewer groups than folds."""
    assert data.test_folds is not None
    if images.train_files is None or images.test_files is None:
        raise UserError(f"data.test_folds needs images read from files; data={data.name} has none")
    files = np.concatenate([images.train_files, images.test_files]).astype(str)
    labels = torch.cat([images.train_labels, images.test_labels])
    order = np.lexsort((files, labels.numpy()))  # by class, then path
    groups = None
    if images.train_groups is not None and images.test_groups is not None:
        groups = np.concatenate([images.train_groups, images.test_groups])[order]
    labels = labels[torch.from_numpy(order)]
    fold = deal_test_folds(labels.numpy(), groups, data.test_folds, data.test_split_seed, images.classes)
    pooled = _rows(concatenate([images.train_images, images.test_images]), order)
    # the loader's first note counts the single test split that the folds replace
    return TestFolds(pooled, labels, files[order], groups, images.classes, fold, data.test_folds, images.notes[1:])
