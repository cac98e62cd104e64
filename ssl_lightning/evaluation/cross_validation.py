"""Stratified, group-aware k-fold splits of a labelled set (hyper-parameter choice by cross-validation).

Why: with 1-5 labelled images per class the validation split holds a handful of images, and a choice made on them
is mostly noise; folds of the labelled set let every labelled image score the candidates once.

Rules: whole groups (patients) go to one fold, so no group is on both sides of a fold; a group counts for its
majority class; each class's groups are dealt, largest first (seeded order among equal sizes), to the fold holding
the fewest of that class's images so far (ties: the fold with fewest images overall, then the seeded fold order).
Every item is held out exactly once. k is reduced to the number of groups of the smallest class (`fold_count`): a
class with fewer groups than folds would leave some folds without it, and a class with one group (one labelled
image, one patient) cannot be on both sides of any fold, so cross-validation is then impossible (k < 2) and the
caller falls back to its validation split.
"""

from __future__ import annotations

import numpy as np


def _group_codes(labels: np.ndarray, groups: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(group code of every item, majority class of every group); without groups every item is its own group."""
    if groups is None:
        return np.arange(len(labels), dtype=np.int64), labels.copy()
    if len(groups) != len(labels):
        raise ValueError(f"{len(groups)} group ids for {len(labels)} labels")
    _, codes = np.unique(np.asarray(groups).astype(str), return_inverse=True)
    codes = codes.astype(np.int64).reshape(-1)
    classes = int(labels.max()) + 1 if len(labels) else 0
    counts = np.bincount(codes * classes + labels, minlength=(int(codes.max()) + 1 if len(codes) else 0) * classes)
    return codes, counts.reshape(-1, classes).argmax(axis=1) if len(codes) else np.zeros(0, np.int64)


def fold_count(labels: np.ndarray, groups: np.ndarray | None, k: int) -> int:
    """The folds the data allow: min(k, groups of the smallest class); < 2 means cross-validation is impossible."""
    labels = np.asarray(labels, dtype=np.int64)
    if len(labels) == 0:
        return 0
    _, majority = _group_codes(labels, groups)
    per_class = np.bincount(majority)
    present = per_class[per_class > 0]
    return int(min(k, int(present.min()))) if len(present) else 0


def stratified_group_folds(labels: np.ndarray, groups: np.ndarray | None, k: int,
                           seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train positions, held-out positions) of each of `fold_count(labels, groups, k)` folds, positions into
    `labels`, sorted. ValueError when fewer than 2 folds are possible (see `fold_count`)."""
    labels = np.asarray(labels, dtype=np.int64)
    folds = fold_count(labels, groups, k)
    if folds < 2:
        raise ValueError(f"cross-validation needs >= 2 groups (images) in every class; the smallest class allows "
                         f"{folds} fold(s)")
    codes, majority = _group_codes(labels, groups)
    sizes = np.bincount(codes, minlength=len(majority))
    rng = np.random.default_rng(seed)
    fold_order = rng.permutation(folds)  # seeded tie-break among equally filled folds
    totals = [0] * folds
    fold_of_group = np.zeros(len(majority), dtype=np.int64)
    for cls in np.unique(majority):
        members = np.flatnonzero(majority == cls)
        members = members[rng.permutation(len(members))]
        members = members[np.argsort(-sizes[members], kind="stable")]  # largest first, seeded among equal sizes
        filled = [0] * folds
        for group in members.tolist():
            target = min(range(folds), key=lambda f: (filled[f], totals[f], fold_order[f]))
            fold_of_group[group] = target
            filled[target] += int(sizes[group])
            totals[target] += int(sizes[group])
    fold_of_item = fold_of_group[codes]
    everything = np.arange(len(labels), dtype=np.int64)
    return [(everything[fold_of_item != f], everything[fold_of_item == f]) for f in range(folds)]
