"""Stratified, nested label fractions and the validation split carved from the training data.

For one split seed each class's pool is permuted once and every fraction takes a prefix of that
permutation, so the 5% subset lies inside the 25%, which lies inside the 50% and 100%.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ssl_lightning.errors import UserError


@dataclass(frozen=True)
class LabelSplit:
    """Indices into the data set's training images."""

    labeled: np.ndarray  # the fraction subset used to train the downstream classifier
    pool: np.ndarray  # every training index outside the validation split (pretext images)
    val: np.ndarray  # validation split for model selection, disjoint from pool and test

    def labeled_per_class(self, labels: np.ndarray, classes: list[str]) -> dict[str, int]:
        counts = np.bincount(labels[self.labeled], minlength=len(classes))
        return {name: int(count) for name, count in zip(classes, counts, strict=True)}


def _class_permutation(members: np.ndarray, seed: int, cls: int, purpose: int) -> np.ndarray:
    return np.random.default_rng([seed, cls, purpose]).permutation(members)


def _rounded(fraction: float, size: int) -> int:
    return int(np.floor(fraction * size + 0.5))


def carve_validation(labels: np.ndarray, val_split: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split training indices into (pool, val), per class; a class with one image keeps it in the pool."""
    pool, val = [], []
    for cls in np.unique(labels):
        members = _class_permutation(np.flatnonzero(labels == cls), seed, int(cls), purpose=0)
        n_val = min(max(1, _rounded(val_split, len(members))), len(members) - 1) if val_split > 0 else 0
        val.extend(members[:n_val])
        pool.extend(members[n_val:])
    return np.sort(np.asarray(pool, dtype=np.int64)), np.sort(np.asarray(val, dtype=np.int64))


def nested_fraction(labels: np.ndarray, pool: np.ndarray, fraction: float, seed: int,
                    classes: list[str] | None = None) -> np.ndarray:
    """Per-class prefix of a seeded permutation of `pool`: round(fraction x class size) images per class."""
    if not 0.0 < fraction <= 1.0:
        raise UserError(f"data.fraction={fraction} is outside (0, 1]; use e.g. data.fraction=0.25")
    chosen = []
    pool_labels = labels[pool]
    for cls in np.unique(labels):
        members = _class_permutation(pool[pool_labels == cls], seed, int(cls), purpose=1)
        count = _rounded(fraction, len(members))
        if count == 0:
            name = classes[int(cls)] if classes else str(int(cls))
            smallest = 0.5 / max(len(members), 1)
            raise UserError(
                f"data.fraction={fraction} gives class {name!r} ({len(members)} labelled images) no image; "
                f"use data.fraction>={smallest:.4g}"
            )
        chosen.extend(members[:count])
    return np.sort(np.asarray(chosen, dtype=np.int64))


def make_label_split(labels: np.ndarray, fraction: float, split_seed: int, val_split: float,
                     classes: list[str] | None = None) -> LabelSplit:
    """The validation split and the labelled subset for one (fraction, split seed)."""
    pool, val = carve_validation(labels, val_split, split_seed)
    labeled = nested_fraction(labels, pool, fraction, split_seed, classes)
    return LabelSplit(labeled=labeled, pool=pool, val=val)
