"""Stratified, seeded draws of whole groups: the one routine every split (test, validation, labels) goes through.

Per class, the groups whose majority class it is (ties: the smaller class index) are put in the order of their
first image, permuted with a seed for (seed, class, purpose), and taken from the front until they cover the
number of images of that class the split wants (at least that many: groups stay whole). Prefixes of one
permutation make the draws nested. With one group per image this is exactly the per-image draw the suite made
before groups existed (same permutation, same counts), so the built-in data sets keep their splits.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ssl_lightning.errors import UserError


class GroupIndex:
    """Group number of every row and the class each group counts for (its majority class)."""

    def __init__(self, labels: np.ndarray, groups: np.ndarray | None):
        self.labels = np.asarray(labels, dtype=np.int64)
        self.grouped = groups is not None
        count = len(self.labels)
        if groups is None:  # one group per image: the row is the group
            self.names = None
            self.codes = np.arange(count, dtype=np.int64)
            self.majority = self.labels
            self.first_row = np.arange(count, dtype=np.int64)
            return
        if len(groups) != count:
            raise ValueError(f"{len(groups)} group ids for {count} images")
        names, codes = np.unique(np.asarray(groups).astype(str), return_inverse=True)
        self.names = names
        self.codes = codes.astype(np.int64).reshape(-1)
        classes = int(self.labels.max()) + 1 if count else 0
        counts = np.bincount(self.codes * classes + self.labels, minlength=len(names) * classes)
        self.majority = counts.reshape(len(names), classes).argmax(axis=1) if count else np.zeros(0, np.int64)
        self.first_row = np.full(len(names), count, dtype=np.int64)
        np.minimum.at(self.first_row, self.codes, np.arange(count, dtype=np.int64))

    @property
    def num_groups(self) -> int:
        return len(self.codes) if self.names is None else len(self.names)

    def own_groups(self, rows: np.ndarray, cls: int) -> np.ndarray:
        """Groups among `rows` whose majority class is `cls`, in the order of their first image."""
        present = np.zeros(self.num_groups, dtype=bool)
        present[self.codes[rows]] = True
        own = np.flatnonzero(present & (self.majority == cls))
        return own[np.argsort(self.first_row[own], kind="stable")]

    def count_groups(self, rows: np.ndarray) -> int:
        return len(np.unique(self.codes[rows]))


def groups_needed(weights: np.ndarray, wanted: int, cap: int) -> int:
    """How many leading groups cover `wanted` images (their `weights`), at most `cap`."""
    if wanted <= 0 or cap <= 0:
        return 0
    covered = np.cumsum(weights)
    return min(int(np.searchsorted(covered, wanted, side="left")) + 1, cap)


def draw_whole_groups(index: GroupIndex, rows: np.ndarray, seed_for: Callable[[int], list[int]],
                      wanted: Callable[[int, int], int], leave_one: bool = False,
                      classes: np.ndarray | None = None) -> np.ndarray:
    """Rows (sorted) of the groups drawn from `rows`, class by class.

    `wanted(cls, available)` is the number of class-`cls` images to cover, out of the `available` ones among
    `rows`; `seed_for(cls)` seeds the class's permutation; `leave_one` keeps at least one group of every class
    out of the draw. `classes` defaults to the classes present among `rows`.
    """
    rows = np.asarray(rows, dtype=np.int64)
    row_codes, row_labels = index.codes[rows], index.labels[rows]
    taken = np.zeros(index.num_groups, dtype=bool)
    for cls in np.unique(row_labels) if classes is None else classes:
        cls = int(cls)
        of_class = row_labels == cls
        target = wanted(cls, int(of_class.sum()))
        order = np.random.default_rng(seed_for(cls)).permutation(index.own_groups(rows, cls))
        weights = np.bincount(row_codes[of_class], minlength=index.num_groups)[order]
        count = groups_needed(weights, target, len(order) - 1 if leave_one else len(order))
        taken[order[:count]] = True
    return np.sort(rows[taken[row_codes]])


FOLD_PURPOSE = 4  # the seed tuples of the other draws end in 0-3 (data/fractions.py)


def deal_test_folds(labels: np.ndarray, groups: np.ndarray | None, folds: int, seed: int,
                    classes: list[str]) -> np.ndarray:
    """Test fold (0 .. folds-1) of every row: whole groups, stratified by class, every group in exactly one fold.

    Per class, the groups it is the majority of are taken in the order of their ids (without ids: of their rows),
    permuted with (seed, class, folds) and dealt round-robin; the next class starts where the last one stopped,
    so every fold holds about as many groups of each class and in all. The order of ids, not of rows, makes the
    folds independent of how the loader happened to order the images. A class with fewer groups than folds would
    leave a fold without it (untested, or untrainable): UserError, before anything trains.
    """
    index = GroupIndex(labels, groups)
    ranks = np.arange(index.num_groups, dtype=np.int64)  # GroupIndex numbers named groups in sorted-id order
    counts = np.bincount(index.majority, minlength=len(classes))
    short = [(classes[cls], int(counts[cls])) for cls in range(len(classes)) if counts[cls] < folds]
    if short:
        name, count = min(short, key=lambda pair: pair[1])
        unit = "group(s) (patients)" if index.grouped else "image(s)"
        fits = f"use data.test_folds={int(counts.min())} or fewer" if counts.min() >= 2 else \
            "add groups of that class (a fold needs one in its test split and one to train on)"
        raise UserError(f"data.test_folds={folds}: class {name!r} has {count} {unit}, fewer than the {folds} folds "
                        f"that each test one of them; {fits}, or leave data.test_folds=null")
    fold_of_group = np.zeros(index.num_groups, dtype=np.int64)
    start = 0
    for cls in range(len(classes)):
        own = ranks[index.majority == cls]
        order = np.random.default_rng([seed, cls, FOLD_PURPOSE, folds]).permutation(own)
        fold_of_group[order] = (start + np.arange(len(order))) % folds
        start = (start + len(order)) % folds
    return fold_of_group[index.codes]
