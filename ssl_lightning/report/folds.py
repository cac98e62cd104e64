"""Pool the outer test folds of one (seed, split seed) into one observation (`data.test_folds=K`).

With `data.test_folds=K` a cell tests each group (patient) exactly once across K runs, `<cell>/fold_<k>/results.json`
(keys `test_fold` = k, `test_folds` = K). The K runs share the seed's encoder and label split: together they are one
measurement of the method on every patient, not K replicates. Treating them as replicates would count the same
encoder K times and shrink the interval by about sqrt(K); so the report pools them here, before any cell or test
sees them, into one run per (cell folder, seed, split seed), and the seed stays the unit of every interval.

How a pooled metric is computed (every fold run must be ok, and folds 0..K-1 present exactly once; otherwise the
pooled run is a failed run that names what is missing or failed, so an incomplete seed is never averaged):
- test accuracy and test loss: the fold values weighted by each fold's `num_test` (test images), i.e. the accuracy
  and mean loss over all of the cell's test images;
- balanced accuracy and macro-F1: recomputed from the summed test confusion matrices (`test_confusion`) when every
  fold recorded one. Its row sums are the per-class test counts, so this is each class's recall (`per_class_acc`)
  weighted by that class's test images in each fold; where a fold lacks the matrix, the `num_test`-weighted mean of
  the folds' values instead (not exactly the pooled value when folds hold the classes in different proportions);
- patient-level metrics (`test_group_acc`, `test_group_balanced_acc`): weighted by each fold's test groups
  (`test_num_groups`), falling back to `num_test`; the group-level balanced accuracy is a weighted mean of the
  folds' values (per-class group counts are not recorded);
- weights: where a fold lacks `num_test` (and a confusion matrix to count from), every fold weighs the same;
- best_val_acc: the plain mean over the folds (each fold selected on its own validation set); best_epoch,
  chosen_lr and the selection columns (chosen C, k, step, ...): the folds' common value, empty when they differ.
"""

from __future__ import annotations

import re
import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ssl_lightning.evaluation import metrics
from ssl_lightning.record import TEST_METRICS

if TYPE_CHECKING:
    from ssl_lightning.report.collect import Run

FOLD_FOLDER = re.compile(r"fold_\d+")
# The metrics pooled from the summed confusion matrices, as record.TEST_METRICS declares them.
FROM_CONFUSION = {spec.key: getattr(metrics, spec.from_confusion) for spec in TEST_METRICS if spec.from_confusion}
GROUP_METRICS = ("test_group_acc", "test_group_balanced_acc")


def cell_folder(results_path: Path) -> Path:
    """The run folder without its `fold_<k>` part: `<cell>/fold_2/results.json` -> `<cell>` (also when the fold
    folder sits above a `split_<seed>` folder)."""
    parts = [part for part in results_path.parent.parts if not FOLD_FOLDER.fullmatch(part)]
    return Path(*parts)


def weighted_mean(values: Sequence[float], weights: Sequence[float | int | None]) -> float:
    """sum(w v) / sum(w); equal weights when any weight is missing or they sum to 0."""
    if any(w is None for w in weights) or sum(weights) <= 0:  # type: ignore[arg-type]
        return statistics.fmean(values)
    return sum(v * w for v, w in zip(values, weights, strict=True)) / sum(weights)  # type: ignore[misc]


def _images(run: Run) -> int | None:
    """Test images of a fold: num_test, else the confusion matrix's total."""
    if run.num_test is not None:
        return run.num_test
    return int(np.asarray(run.confusion).sum()) if run.confusion is not None else None


def _summed_confusion(folds: list[Run]) -> np.ndarray | None:
    matrices = [run.confusion for run in folds]
    if any(m is None for m in matrices) or len({len(m) for m in matrices}) != 1:  # type: ignore[arg-type]
        return None
    return np.sum([np.asarray(m, dtype=np.int64) for m in matrices], axis=0)


def _pooled_metrics(folds: list[Run]) -> dict[str, float]:
    """Every metric all folds recorded, pooled as the module docstring says."""
    images = [_images(run) for run in folds]
    groups = [run.num_groups for run in folds]
    confusion = _summed_confusion(folds)
    pooled: dict[str, float] = {}
    for key in set.intersection(*(set(run.metrics) for run in folds)):
        values = [run.metrics[key] for run in folds]
        if key in FROM_CONFUSION and confusion is not None:
            pooled[key] = float(FROM_CONFUSION[key](confusion))
        elif key in GROUP_METRICS and all(g is not None for g in groups):
            pooled[key] = weighted_mean(values, groups)
        else:
            pooled[key] = weighted_mean(values, images)
    return pooled


def _common(values: list) -> object:
    return values[0] if len(set(values)) == 1 else None


def _problem(folds: list[Run], expected: int | None) -> str | None:
    """Why these fold runs cannot be pooled (None: they can)."""
    indices = sorted(run.test_fold for run in folds if run.test_fold is not None)
    if expected is None:
        return "a test-fold run without test_folds (K): cannot tell whether every patient was tested"
    if len({run.test_folds for run in folds}) != 1:
        return f"fold runs disagree on test_folds ({', '.join(sorted({str(run.test_folds) for run in folds}))})"
    repeated = sorted({i for i in indices if indices.count(i) > 1})
    if repeated:
        return f"test fold(s) {', '.join(map(str, repeated))} recorded more than once"
    missing = sorted(set(range(expected)) - set(indices))
    failed = [run for run in folds if not run.ok]
    if failed:
        return f"test fold {failed[0].test_fold} of {expected} failed: {failed[0].error}"
    if missing:
        return f"test fold(s) {', '.join(map(str, missing))} of {expected} missing: not every patient tested"
    return None


def pool(folds: list[Run]) -> Run:
    """One run from the fold runs of one (cell folder, seed, split seed); a failed run when they are incomplete."""
    folds = sorted(folds, key=lambda run: (run.test_fold is None, run.test_fold or 0))
    first, expected = folds[0], folds[0].test_folds
    base = replace(first, results_path=cell_folder(first.results_path) / "results.json", test_fold=None,
                   test_folds=len(folds), confusion=None)
    problem = _problem(folds, expected)
    if problem is not None:
        return replace(base, ok=False, error=problem, test_acc=None, test_loss=None, metrics={}, num_test=None,
                       num_groups=None)
    images = [_images(run) for run in folds]
    losses = [run.test_loss for run in folds]
    confusion = _summed_confusion(folds)
    vals = [run.best_val_acc for run in folds]
    return replace(
        base, test_acc=weighted_mean([run.test_acc for run in folds], images),  # type: ignore[misc]
        test_loss=None if None in losses else weighted_mean(losses, images),  # type: ignore[arg-type]
        metrics=_pooled_metrics(folds), num_test=None if None in images else sum(images),  # type: ignore[arg-type]
        confusion=None if confusion is None else tuple(tuple(int(v) for v in row) for row in confusion),
        num_groups=None if None in (g := [run.num_groups for run in folds]) else sum(g),  # type: ignore[arg-type]
        best_val_acc=None if None in vals else statistics.fmean(vals),  # type: ignore[arg-type]
        best_epoch=_common([run.best_epoch for run in folds]),  # type: ignore[arg-type]
        chosen_lr=_common([run.chosen_lr for run in folds]),  # type: ignore[arg-type]
        selection=_common_selection(folds))


def _common_selection(folds: list[Run]) -> dict[str, str | int | float]:
    """Each selection key the fold runs agree on (what differs between folds is left empty, like chosen_lr)."""
    keys = set().union(*(run.selection for run in folds))
    agreed = {key: _common([run.selection.get(key) for run in folds]) for key in keys}
    return {key: value for key, value in agreed.items() if value is not None}  # type: ignore[misc]


def pool_folds(runs: list[Run]) -> list[Run]:
    """Runs with each (cell folder, seed, split seed)'s fold runs replaced by their pooled run, in place of its
    first fold; runs without `test_fold` pass through unchanged."""
    groups: dict[tuple, list[Run]] = defaultdict(list)
    for run in runs:
        if run.test_fold is not None:
            groups[(cell_folder(run.results_path), run.seed, run.split_seed)].append(run)
    pooled, out = {key: pool(folds) for key, folds in groups.items()}, []
    for run in runs:
        if run.test_fold is None:
            out.append(run)
            continue
        key = (cell_folder(run.results_path), run.seed, run.split_seed)
        if key in pooled:
            out.append(pooled.pop(key))
    return out
