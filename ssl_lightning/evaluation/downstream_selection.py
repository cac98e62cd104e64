"""How the downstream stage chooses what it tests: the validation metric it monitors and which checkpoint it keeps.

The monitored metric's logged name is built here and only here (`validation_key`): the Classifier logs under it,
ModelCheckpoint and EarlyStopping watch it, and candidate selection (lr grid, probe layer) compares it. A renamed
metric can then never leave a checkpoint callback watching a name that is no longer logged.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ssl_lightning.errors import UserError
from ssl_lightning.evaluation.cross_validation import fold_count

MONITORS = ("auto", "acc", "balanced_acc")  # downstream.monitor
METRICS = ("acc", "balanced_acc")  # what `auto` resolves to; both are logged every validation epoch
# downstream.select: auto (cv when validation is small, else val),
# val (choose on the validation split), cv (on folds of the labelled set, then refit), last (nothing chosen: the
# last epoch / the only candidate). `best` is the older name of `val` and is recorded as `val`.
SELECTS = ("auto", "val", "cv", "last")
SELECT_ALIASES = {"best": "val"}
DEFAULT_CV_FOLDS = 5
# `auto` picks cv when the validation split holds fewer than this many images per class (grouped data: groups per
# class). Measured (`python -m benchmarks.selection_size`, 156 s on one core): raw-pixel Fashion-MNIST, the L-BFGS
# penalty path (default grid, patience 3), 10 labelled images per class, 6 labelled draws x 2 validation draws;
# points lost against the test-optimal C (mean / worst), val with n validation images per class vs 5-fold cv:
#   val n=1: 1.60 / 11.75, n=2: 0.91 / 5.90, n=5: 1.15 / 5.70, n=10: 0.61 / 2.05, n=20: 0.43 / 1.60; cv: 0.31 / 1.25.
# Below 10 per class validation loses about 1 point on average and up to 6-12 in a draw; from 10 on it is within
# 0.3 points of cv on average at a fifth of the fits. (Share of choices within 1 point: 0.83 / 0.75 / 0.58 / 0.67 /
# 0.83 vs cv 0.83, too few draws to order them.)
MIN_VAL_PER_CLASS = 10
# `auto` monitors balanced accuracy when the largest labelled class has more than this many times the images of
# the smallest: plain accuracy would then reward predicting the majority class.
IMBALANCE_RATIO = 1.5


def validation_key(metric: str) -> str:
    """The name the Classifier logs a validation metric under, e.g. `downstream/val_balanced_acc`."""
    if metric not in METRICS:
        raise ValueError(f"no validation metric {metric!r}; known: {', '.join(METRICS)}")
    return f"downstream/val_{metric}"


def resolve_monitor(choice: str, labelled_per_class: Sequence[int]) -> str:
    """`acc` or `balanced_acc`: the choice itself, or for `auto` the one the labelled class sizes call for."""
    if choice in METRICS:
        return choice
    if choice != "auto":
        raise ValueError(f"downstream.monitor={choice!r}; valid: {', '.join(MONITORS)}")
    counts = [int(c) for c in labelled_per_class]
    if not counts:
        return "acc"
    smallest, largest = min(counts), max(counts)
    return "balanced_acc" if largest > IMBALANCE_RATIO * smallest else "acc"


def canonical_select(value: str) -> str:
    """`downstream.select` by its recorded name (`best` -> `val`); ValueError for an unknown one."""
    value = SELECT_ALIASES.get(value, value)
    if value not in SELECTS:
        raise ValueError(f"downstream.select={value!r}; valid: {', '.join(SELECTS)} (best = val)")
    return value


def auto_select(val_per_class: Sequence[int], val_groups_per_class: Sequence[int] | None) -> tuple[str, str]:
    """(`cv` or `val`, why) for `downstream.select=auto`: cv when the validation split holds
    fewer than MIN_VAL_PER_CLASS images (grouped data: groups) in its smallest class."""
    counts, unit = (val_groups_per_class, "groups") if val_groups_per_class is not None else (val_per_class, "images")
    smallest = min((int(c) for c in counts), default=0)
    chosen = "cv" if smallest < MIN_VAL_PER_CLASS else "val"
    sign = "<" if chosen == "cv" else ">="
    return chosen, f"select=auto: {smallest} validation {unit} in the smallest class {sign} {MIN_VAL_PER_CLASS}"


def auto_select_for_split(labels: np.ndarray, groups: np.ndarray | None, labeled: np.ndarray,
                          selection_val: np.ndarray) -> tuple[str, str]:
    """`auto_select` on one label split: validation images (or groups) per labelled class, counted from the rows."""
    classes = np.unique(labels[labeled])
    val_labels = labels[selection_val]
    per_class = [int((val_labels == c).sum()) for c in classes]
    per_group = None
    if groups is not None:
        val_groups = groups[selection_val]
        per_group = [len(np.unique(val_groups[val_labels == c])) for c in classes]
    return auto_select(per_class, per_group)


def resolve_select(select: str, labels: np.ndarray, groups: np.ndarray | None, labeled: np.ndarray,
                   selection_val: np.ndarray, cv_folds: int, has_validation: bool, choosing: bool,
                   fix: str) -> tuple[str, str, int]:
    """(val | cv | last, why, folds) for one label split, for every protocol: `auto` by `auto_select_for_split`;
    `cv` keeps min(cv_folds, images (groups) of the smallest labelled class) folds, and below 2 (one labelled image
    or patient in a class) validation chooses instead, or, without validation, nothing is chosen (`last`) unless
    there are candidates to choose among (`choosing`): then a UserError ending with `fix`."""
    note = ""
    if select == "auto":
        select, note = auto_select_for_split(labels, groups, labeled, selection_val)
    if select != "cv":
        return select, note, 0
    count = fold_count(labels[labeled], None if groups is None else groups[labeled], cv_folds)
    if count >= 2:
        return "cv", note or f"select=cv: {count} folds of the labelled set", count
    unit = "groups" if groups is not None else "images"
    why = f"{note + '; ' if note else ''}select=cv: the smallest labelled class has {count} {unit}, too few to fold"
    if has_validation:
        return "val", f"{why}: chosen on validation instead", 0
    if choosing:
        raise UserError(f"downstream.select=cv: the smallest labelled class has {count} {unit} (cross-validation "
                        f"needs 2) and there are no validation images; {fix}")
    return "last", f"{why}; no validation images: nothing chosen", 0


def selected_on(select: str, monitor: str) -> str:
    """What results.json records as `selected_on`: `best_val_<metric>`, `cv_<metric>` or `last`."""
    select = canonical_select(select)
    if select == "last":
        return "last"
    if select == "auto":
        raise ValueError("selected_on needs the resolved select (val or cv), not auto")
    return f"cv_{monitor}" if select == "cv" else f"best_val_{monitor}"


def no_validation_message(why: str, select: str, chooses_candidates: bool) -> str | None:
    """The one-line refusal for a downstream stage without validation images (`why` says what removed them),
    or None when `downstream.select=last` makes testing the last epoch an explicit choice, or when cross-validation
    on the labelled set chooses (`cv`, and `auto`, which only frozen probes keep unresolved until the split)."""
    if select in ("cv", "auto"):
        return None
    if select != "last":
        return (f"{why} leaves no validation images to choose the downstream checkpoint on; give "
                "data.val_split>0 (e.g. 0.1), or test the last epoch with downstream.select=last")
    if chooses_candidates:
        return (f"{why}: downstream.lr_grid and downstream.probe_layer=best choose on validation images; "
                "give data.val_split>0 (e.g. 0.1) or a single learning rate and probe layer")
    return None
