"""How many validation images per class make choosing the L-BFGS penalty on validation as good as choosing it by
cross-validation of the labelled set: the measurement behind `downstream.select=auto`'s threshold
(`downstream_selection.MIN_VAL_PER_CLASS`).

    python -m benchmarks.selection_size [--labels 10] [--draws 6] [--val-draws 2] [--test 2000]

Raw-pixel Fashion-MNIST features (784 values, standardised on the labelled images), the real penalty path
(`probes.logistic.select_penalty`, default grid 1e-6 ... 1e5, patience 3, the neutral tie rule) and the real folds
(`evaluation.cross_validation.stratified_group_folds`, 5 folds). For each of `--draws` labelled sets of `--labels`
images per class: the test accuracy of every C fitted on the labelled set gives the test-optimal C; `val` chooses
on n validation images per class (n = 1, 2, 5, 10, 20; `--val-draws` validation draws each, from the remaining
training images), `cv` on the folds of the labelled set. A choice is a hit when its test accuracy is within 1 point
of the test-optimal C's; regret is the points it loses. Single-threaded, about 2 minutes on one core.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from ssl_lightning.data.fashion_mnist import candidate_folders
from ssl_lightning.data.idx_format import read_idx
from ssl_lightning.evaluation.cross_validation import stratified_group_folds
from ssl_lightning.probes.config import DEFAULT_PENALTY_GRID
from ssl_lightning.probes.logistic import HeldOut, Standardizer, select_penalty

SIZES = (1, 2, 5, 10, 20)
CLASSES = 10


def _load() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    for folder in candidate_folders(None):
        files = {stem: next(iter(sorted(folder.glob(f"{stem}*"))), None) for stem in
                 ("train-images", "train-labels", "t10k-images", "t10k-labels")}
        if all(files.values()):
            return tuple(read_idx(files[s]) for s in ("train-images", "train-labels", "t10k-images", "t10k-labels"))
    raise SystemExit("error: Fashion-MNIST not found (run any Fashion-MNIST cell once to download it)")


def _per_class(labels: np.ndarray, rows: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    return np.concatenate([rng.choice(rows[labels[rows] == c], count, replace=False) for c in range(CLASSES)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--labels", type=int, default=10, help="labelled images per class")
    parser.add_argument("--draws", type=int, default=6)
    parser.add_argument("--val-draws", type=int, default=2)
    parser.add_argument("--test", type=int, default=2000, help="test images (a fixed random subset)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = time.perf_counter()
    train_images, train_labels, test_images, test_labels = _load()
    features = torch.as_tensor(train_images.reshape(len(train_images), -1), dtype=torch.float64) / 255.0
    rng = np.random.default_rng(0)
    test_rows = rng.choice(len(test_labels), args.test, replace=False)
    test = torch.as_tensor(test_images.reshape(len(test_images), -1)[test_rows], dtype=torch.float64) / 255.0
    test_y = torch.as_tensor(test_labels[test_rows].astype(np.int64))
    everything = np.arange(len(train_labels))
    regret: dict[str, list[float]] = {f"val n={n}": [] for n in SIZES} | {"cv": []}
    for draw in range(args.draws):
        draw_rng = np.random.default_rng(1000 + draw)
        labelled = _per_class(train_labels, everything, args.labels, draw_rng)
        rest = np.setdiff1d(everything, labelled)
        x, y = features[labelled], torch.as_tensor(train_labels[labelled].astype(np.int64))
        scaler = Standardizer.fit(x)
        full = select_penalty([HeldOut(scaler(x), y, scaler(test), test_y)], CLASSES, DEFAULT_PENALTY_GRID)
        cache = {float(s.value): float(s.score) for s in full.scores}  # test accuracy of every C on the full path
        best = max(cache.values())

        def lost(penalty: float, cache: dict[float, float] = cache, best: float = best) -> float:
            """Points below the test-optimal C; the stage refits the chosen C along the same warm-started path,
            which is the full path's fit of that C."""
            return 100 * (best - cache[penalty])

        folds = stratified_group_folds(y.numpy(), None, 5, seed=draw)
        splits = []
        for inside, held in folds:
            fold_scaler = Standardizer.fit(x[inside])
            splits.append(HeldOut(fold_scaler(x[inside]), y[inside], fold_scaler(x[held]), y[held]))
        regret["cv"].append(lost(select_penalty(splits, CLASSES, DEFAULT_PENALTY_GRID, patience=3).penalty))
        for n in SIZES:
            for _ in range(args.val_draws):
                val = _per_class(train_labels, rest, n, draw_rng)
                v, vy = features[val], torch.as_tensor(train_labels[val].astype(np.int64))
                choice = select_penalty([HeldOut(scaler(x), y, scaler(v), vy)], CLASSES, DEFAULT_PENALTY_GRID,
                                        patience=3)
                regret[f"val n={n}"].append(lost(choice.penalty))
    print(f"{args.labels} labelled images per class, {args.draws} draws x {args.val_draws} validation draws, "
          f"{args.test} test images, raw-pixel Fashion-MNIST, L-BFGS path (patience 3)")
    print(f"{'selection':<10} {'choices':>7} {'within 1 pt':>11} {'mean regret (pts)':>18} {'max regret':>10}")
    for name, values in regret.items():
        array = np.asarray(values)
        print(f"{name:<10} {len(array):>7} {np.mean(array <= 1.0):>11.2f} {array.mean():>18.2f} {array.max():>10.2f}")
    print(f"({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
