"""How the downstream stage chooses what it tests: the validation metric it monitors and which checkpoint it keeps.

The monitored metric's logged name is built here and only here (`validation_key`): the Classifier logs under it,
ModelCheckpoint and EarlyStopping watch it, and candidate selection (lr grid, probe layer) compares it. A renamed
metric can then never leave a checkpoint callback watching a name that is no longer logged.
"""

from __future__ import annotations

from collections.abc import Sequence

MONITORS = ("auto", "acc", "balanced_acc")  # downstream.monitor
METRICS = ("acc", "balanced_acc")  # what `auto` resolves to; both are logged every validation epoch
# downstream.select: auto (cv for the frozen probes when validation is small, else val; val for fine-tuning),
# val (choose on the validation split), cv (on folds of the labelled set, then refit), last (nothing chosen: the
# last epoch / the only candidate). `best` is the older name of `val` and is recorded as `val`.
SELECTS = ("auto", "val", "cv", "last")
SELECT_ALIASES = {"best": "val"}
DEFAULT_CV_FOLDS = 5
# `auto` picks cv when the validation split holds fewer than this many images per class (grouped data: groups per
# class). XXX_MEASUREMENT_PENDING
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
    """(`cv` or `val`, why) for `downstream.select=auto` on a frozen probe: cv when the validation split holds
    fewer than MIN_VAL_PER_CLASS images (grouped data: groups) in its smallest class."""
    counts, unit = (val_groups_per_class, "groups") if val_groups_per_class is not None else (val_per_class, "images")
    smallest = min((int(c) for c in counts), default=0)
    chosen = "cv" if smallest < MIN_VAL_PER_CLASS else "val"
    sign = "<" if chosen == "cv" else ">="
    return chosen, f"select=auto: {smallest} validation {unit} in the smallest class {sign} {MIN_VAL_PER_CLASS}"


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
