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
    val: np.ndarray  # the validation pool, carved once per split seed, disjoint from pool and test
    selection: np.ndarray | None = None  # the part of `val` this fraction selects checkpoints on (None: all)

    @property
    def selection_val(self) -> np.ndarray:
        """Validation images the downstream stage selects on: sized to the labelled subset when asked."""
        return self.val if self.selection is None else self.selection

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


def balanced_pool(labels: np.ndarray, pool: np.ndarray, seed: int) -> np.ndarray:
    """Cut every class of `pool` down to the smallest class (the original study's balancing), seeded."""
    pool_labels = labels[pool]
    present = np.unique(pool_labels)
    smallest = min(int((pool_labels == cls).sum()) for cls in present)
    keep = [_class_permutation(pool[pool_labels == cls], seed, int(cls), purpose=3)[:smallest] for cls in present]
    return np.sort(np.concatenate(keep).astype(np.int64))


def validation_subset(labels: np.ndarray, val: np.ndarray, labeled: np.ndarray, per_label: float,
                      seed: int) -> np.ndarray:
    """round(per_label x labelled images) validation images per class, a prefix of a seeded permutation of the
    class's validation pool: nested like the fractions, at least one image per class, at most the whole pool."""
    chosen = []
    val_labels, labeled_labels = labels[val], labels[labeled]
    for cls in np.unique(val_labels):
        members = _class_permutation(val[val_labels == cls], seed, int(cls), purpose=2)
        wanted = _rounded(per_label, int((labeled_labels == cls).sum()))
        chosen.extend(members[: min(max(wanted, 1), len(members))])
    return np.sort(np.asarray(chosen, dtype=np.int64))


def make_label_split(labels: np.ndarray, fraction: float, split_seed: int, val_split: float,
                     classes: list[str] | None = None, val_per_label: float | None = None,
                     balance: bool = False) -> LabelSplit:
    """The validation split and the labelled subset for one (fraction, split seed).

    `balance` cuts the labelled candidates of every class to the smallest class before the fraction is drawn
    (the pretext pool keeps every image: it needs no labels). `val_per_label` sizes the validation images the
    downstream stage selects on to the labelled subset, out of the one validation pool.
    """
    pool, val = carve_validation(labels, val_split, split_seed)
    candidates = balanced_pool(labels, pool, split_seed) if balance else pool
    labeled = nested_fraction(labels, candidates, fraction, split_seed, classes)
    selection = None
    if val_per_label is not None and len(val):
        selection = validation_subset(labels, val, labeled, val_per_label, split_seed)
    return LabelSplit(labeled=labeled, pool=pool, val=val, selection=selection)
