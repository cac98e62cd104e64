"""Stratified, nested label subsets and the validation pool carved from the training data, by whole groups.

For one split seed each class's groups (one per image for the built-in data sets) are permuted once and every
label budget takes a prefix of that permutation, so the 5% subset lies inside the 25%, which lies inside the
50% and 100%, and 5 labels per class lie inside 10. The validation pool is carved with its own seed
(`data.val_seed`, default `seed`): sweeping the split seed then leaves the pretext pool, and so the pretext
encoder, unchanged. With groups (patients), a budget takes whole groups until it covers at least its share of
every class's images; `labeled_share_per_class` records the share reached. `data.balance` on grouped data balances
whole patients first, then cuts tiles inside the labelled patients until every class has as many labelled images as
the smallest (`cut_to_smallest`): whole patients alone left 90/60/40-tile classes at 23/15/10 labels. The labelled
patients stay nested across budgets; their kept tiles need not be (a larger budget spreads its count over more
patients). Without groups the balanced counts are equal already and nothing is cut.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ssl_lightning.data.group_split import GroupIndex, draw_whole_groups
from ssl_lightning.errors import UserError

GroupsLike = np.ndarray | GroupIndex | None


@dataclass(frozen=True)
class LabelSplit:
    """Indices into the data set's training images."""

    labeled: np.ndarray  # the label budget's subset used to train the downstream classifier
    pool: np.ndarray  # every training index outside the validation pool (pretext images)
    val: np.ndarray  # the validation pool, carved once per validation seed, disjoint from pool and test
    selection: np.ndarray | None = None  # the part of `val` this budget selects checkpoints on (None: all)
    candidates: np.ndarray | None = None  # what the budget was drawn from when not the pool (data.balance)
    val_shortfall: str | None = None  # why a positive data.val_split carved no validation image (None: it did)
    balanced_to: int | None = None  # data.balance: labelled images of every class (None: not balanced)
    balance_dropped: np.ndarray | None = None  # data.balance: labelled patients' tiles cut to reach it (unlabelled)

    @property
    def selection_val(self) -> np.ndarray:
        """Validation images the downstream stage selects on: sized to the labelled subset when asked."""
        return self.val if self.selection is None else self.selection

    def labeled_per_class(self, labels: np.ndarray, classes: list[str]) -> dict[str, int]:
        counts = np.bincount(labels[self.labeled], minlength=len(classes))
        return {name: int(count) for name, count in zip(classes, counts, strict=True)}

    def labeled_share_per_class(self, labels: np.ndarray, classes: list[str]) -> dict[str, float]:
        """Labelled images / labelled candidates per class: the budget's share actually reached (groups stay
        whole, so it may exceed data.fraction)."""
        candidates = self.pool if self.candidates is None else self.candidates
        have = np.bincount(labels[candidates], minlength=len(classes))
        took = np.bincount(labels[self.labeled], minlength=len(classes))
        return {name: round(float(t) / float(h), 4) if h else 0.0
                for name, t, h in zip(classes, took, have, strict=True)}


def validation_shortfall(labels: np.ndarray, val_split: float, val: np.ndarray) -> str | None:
    """Why data.val_split>0 carved no validation image: every class keeps one training image, and none has a
    second to spare (a message saying "give data.val_split>0" when it is 0.1 said nothing)."""
    if not val_split > 0 or len(val) or not len(labels):
        return None
    largest = int(np.bincount(np.asarray(labels, dtype=np.int64)).max())
    return (f"data.val_split={val_split:g} carved no validation image: every class keeps one training image and "
            f"the largest has {largest}, none to spare; add training images (at least 2 per class)")


def no_validation_fix(split: LabelSplit, otherwise: str = "give data.val_split>0 or more labels") -> str:
    """The end of a "no validation images" refusal: what actually removed them when the split knows, else
    `otherwise`."""
    return split.val_shortfall or otherwise


def _index(labels: np.ndarray, groups: GroupsLike) -> GroupIndex:
    return groups if isinstance(groups, GroupIndex) else GroupIndex(labels, groups)


def _rounded(fraction: float, size: int) -> int:
    return int(np.floor(fraction * size + 0.5))


def _name(classes: list[str] | None, cls: int) -> str:
    return classes[cls] if classes else str(cls)


def _groups_of_class(index: GroupIndex, rows: np.ndarray, cls: int) -> int:
    return index.count_groups(rows[index.labels[rows] == cls])


def carve_validation(labels: np.ndarray, val_split: float, seed: int, groups: GroupsLike = None,
                     classes: list[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Split training indices into (pool, val), per class; a class keeps at least one group in the pool."""
    index = _index(labels, groups)
    everything = np.arange(len(index.labels), dtype=np.int64)

    def wanted(cls: int, available: int) -> int:
        return max(1, _rounded(val_split, available)) if val_split > 0 else 0

    val = draw_whole_groups(index, everything, lambda cls: [seed, cls, 0], wanted, leave_one=True)
    pool = np.setdiff1d(everything, val)
    if index.grouped and val_split > 0:
        missing = sorted(set(np.unique(index.labels).tolist()) - set(np.unique(index.labels[val]).tolist()))
        if missing:
            cls = int(missing[0])
            raise UserError(
                f"no validation pool for class {_name(classes, cls)!r}: its training images sit in "
                f"{_groups_of_class(index, everything, cls)} group(s) and whole groups need at least 2 of its own "
                "(one for validation, one for training); add groups of that class or choose another data.group_by")
    return pool, val


def _fraction_count(fraction: float, classes: list[str] | None, index: GroupIndex, rows: np.ndarray):
    def wanted(cls: int, available: int) -> int:
        count = _rounded(fraction, available)
        if count == 0:
            smallest = 0.5 / max(available, 1)
            where = f" in {_groups_of_class(index, rows, cls)} group(s)" if index.grouped else ""
            raise UserError(f"data.fraction={fraction} gives class {_name(classes, cls)!r} ({available} labelled "
                            f"images{where}) no image; use data.fraction>={smallest:.4g}")
        return count
    return wanted


def _check_every_class_labelled(index: GroupIndex, rows: np.ndarray, labeled: np.ndarray, budget: str,
                                classes: list[str] | None) -> None:
    """Grouped data only: a class whose images all sit in other classes' groups can be left without labels."""
    missing = sorted(set(np.unique(index.labels[rows]).tolist()) - set(np.unique(index.labels[labeled]).tolist()))
    if index.grouped and missing:
        cls = int(missing[0])
        raise UserError(f"{budget} labels no image of class {_name(classes, cls)!r}: its images sit only in groups "
                        "where another class is the majority; choose another data.group_by or a larger budget")


def nested_fraction(labels: np.ndarray, pool: np.ndarray, fraction: float, seed: int,
                    classes: list[str] | None = None, groups: GroupsLike = None) -> np.ndarray:
    """Per-class prefix of a seeded permutation of the pool's groups covering round(fraction x class size)
    images (exactly that many with one group per image)."""
    if not 0.0 < fraction <= 1.0:
        raise UserError(f"data.fraction={fraction} is outside (0, 1]; use e.g. data.fraction=0.25")
    index = _index(labels, groups)
    pool = np.asarray(pool, dtype=np.int64)
    labeled = draw_whole_groups(index, pool, lambda cls: [seed, cls, 1], _fraction_count(fraction, classes, index,
                                pool), classes=np.unique(index.labels))
    _check_every_class_labelled(index, pool, labeled, f"data.fraction={fraction}", classes)
    return labeled


def labels_per_class_subset(labels: np.ndarray, pool: np.ndarray, count: int, seed: int,
                            classes: list[str] | None = None, groups: GroupsLike = None) -> np.ndarray:
    """`count` labelled images per class (whole groups until at least `count`), a prefix of the same permutation
    as the fractions: nested across counts and with the fractions of one split seed."""
    index = _index(labels, groups)
    pool = np.asarray(pool, dtype=np.int64)

    def wanted(cls: int, available: int) -> int:
        if available < count:
            raise UserError(f"data.labels_per_class={count} but class {_name(classes, cls)!r} has only {available} "
                            f"labelled candidates (training images outside the validation pool); use "
                            f"data.labels_per_class<={available}")
        return count

    labeled = draw_whole_groups(index, pool, lambda cls: [seed, cls, 1], wanted, classes=np.unique(index.labels))
    _check_every_class_labelled(index, pool, labeled, f"data.labels_per_class={count}", classes)
    return labeled


def balanced_pool(labels: np.ndarray, pool: np.ndarray, seed: int, groups: GroupsLike = None) -> np.ndarray:
    """Cut every class of `pool` down to the smallest class (the original study's balancing), seeded; whole groups
    until they cover the smallest class's size."""
    index = _index(labels, groups)
    pool = np.asarray(pool, dtype=np.int64)
    smallest = min(int((index.labels[pool] == cls).sum()) for cls in np.unique(index.labels[pool]))
    return draw_whole_groups(index, pool, lambda cls: [seed, cls, 3], lambda cls, available: smallest)


def validation_subset(labels: np.ndarray, val: np.ndarray, labeled: np.ndarray, per_label: float,
                      seed: int, groups: GroupsLike = None) -> np.ndarray:
    """round(per_label x labelled images) validation images per class, a prefix of a seeded permutation of the
    class's validation groups: nested like the fractions, at least one image per class, at most the whole pool."""
    index = _index(labels, groups)
    labeled_counts = np.bincount(index.labels[labeled], minlength=int(index.labels.max()) + 1 if len(labels) else 0)

    def wanted(cls: int, available: int) -> int:
        return min(max(_rounded(per_label, int(labeled_counts[cls])), 1), available)

    return draw_whole_groups(index, np.asarray(val, dtype=np.int64), lambda cls: [seed, cls, 2], wanted)


CUT_PURPOSE = 5  # seeds (seed, 5): the tiles cut by data.balance (0-3: fractions.py's draws, 4: test folds)


def _allocate(sizes: np.ndarray, target: int) -> np.ndarray:
    """`target` images spread over groups of `sizes` in proportion (largest remainder, ties to the earlier group),
    at least one per group when the target allows it, never more than a group holds."""
    base = np.ones(len(sizes), dtype=np.int64) if target >= len(sizes) else np.zeros(len(sizes), dtype=np.int64)
    rest, room = target - int(base.sum()), sizes - base
    share = rest * room / max(int(room.sum()), 1)
    extra = np.floor(share).astype(np.int64)
    order = np.argsort(-(share - extra), kind="stable")
    extra[order[: rest - int(extra.sum())]] += 1
    return np.minimum(base + extra, sizes)


def cut_to_smallest(labels: np.ndarray, labeled: np.ndarray, seed: int,
                    groups: GroupsLike = None) -> tuple[np.ndarray, int, np.ndarray]:
    """(kept labelled rows, images per class, cut rows): every class's labelled images cut to the smallest class's
    count, spread over its labelled groups in proportion to their size (each keeps at least one when the count
    allows), the kept tiles of a group the front of one seeded order of all rows (nested across budgets). A cut
    tile belongs to a patient that stays labelled, so leaving it unlabelled (in the pretext pool, never in
    validation or test) leaks nothing."""
    index = _index(labels, groups)
    labeled = np.asarray(labeled, dtype=np.int64)
    of_row = index.labels[labeled]
    present = np.unique(of_row)
    if not len(present):
        return labeled, 0, np.zeros(0, dtype=np.int64)
    target = min(int((of_row == cls).sum()) for cls in present)
    priority = np.random.default_rng([seed, CUT_PURPOSE]).permutation(len(index.labels))
    kept = []
    for cls in present:
        rows = labeled[of_row == cls]
        codes, first = np.unique(index.codes[rows], return_index=True)
        codes = codes[np.argsort(first, kind="stable")]  # groups in the order of their first labelled row
        sizes = np.asarray([int((index.codes[rows] == code).sum()) for code in codes], dtype=np.int64)
        for code, keep in zip(codes, _allocate(sizes, target), strict=True):
            members = rows[index.codes[rows] == code]
            kept.append(members[np.argsort(priority[members], kind="stable")[:keep]])
    chosen = np.sort(np.concatenate(kept))
    return chosen, target, np.setdiff1d(labeled, chosen)


def make_label_split(labels: np.ndarray, fraction: float, split_seed: int, val_split: float,
                     classes: list[str] | None = None, val_per_label: float | None = None,
                     balance: bool = False, *, groups: np.ndarray | None = None, val_seed: int | None = None,
                     labels_per_class: int | None = None) -> LabelSplit:
    """The validation pool and the labelled subset for one label budget and split seed.

    The validation pool is carved with `val_seed` (None: the split seed); the labelled subset and the validation
    selection are drawn with `split_seed`. `balance` cuts the labelled candidates of every class to the smallest
    class before the budget is drawn (the pretext pool keeps every image: it needs no labels). `val_per_label`
    sizes the validation images the downstream stage selects on to the labelled subset, out of the one pool.
    `labels_per_class` replaces the fraction by a count per class. With `balance`, the labelled images are then cut
    to the smallest class's count inside the labelled groups (`cut_to_smallest`; exact with one group per image
    already), recorded as `balanced_to` and `balance_dropped`.
    """
    index = GroupIndex(labels, groups)
    pool, val = carve_validation(labels, val_split, split_seed if val_seed is None else val_seed, index, classes)
    candidates = balanced_pool(labels, pool, split_seed, index) if balance else pool
    if labels_per_class is not None:
        labeled = labels_per_class_subset(labels, candidates, labels_per_class, split_seed, classes, index)
    else:
        labeled = nested_fraction(labels, candidates, fraction, split_seed, classes, index)
    balanced_to, dropped = None, None
    if balance:
        labeled, balanced_to, dropped = cut_to_smallest(labels, labeled, split_seed, index)
    selection = None
    if val_per_label is not None and len(val):
        selection = validation_subset(labels, val, labeled, val_per_label, split_seed, index)
    return LabelSplit(labeled=labeled, pool=pool, val=val, selection=selection,
                      candidates=candidates if balance else None,
                      val_shortfall=validation_shortfall(labels, val_split, val), balanced_to=balanced_to,
                      balance_dropped=dropped)
