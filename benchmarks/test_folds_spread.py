"""How much a fixed test split of few patients moves the patient-level accuracy, and what data.test_folds=5 leaves.

On the grouped study's generated collection (3 classes x 20 patients x 15 tiles; benchmarks/grouped_study.py), the
raw-pixel arm runs once per data.test_split_seed with the single 20% test split (12 patients) and once with
data.test_folds=5 (all 60 patients, pooled over the folds). It prints the mean and standard deviation over the
test seeds of both: the spread a fixed data.test_split_seed hides. No pretext stage, so it takes about a minute.

    python -m benchmarks.test_folds_spread --out /tmp/spread --probe knn --fraction 0.05
    python -m benchmarks.test_folds_spread --out /tmp/spread --probe linear --fraction 0.25
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
from pathlib import Path

from hydra import compose, initialize_config_dir

from benchmarks.group_leakage import Collection, write_collection
from benchmarks.grouped_study import CLASSES, COLLECTION
from ssl_lightning.stages import pipeline

CONF = Path(__file__).resolve().parent.parent / "conf"
FOLDS = 5


def _pooled_group_acc(cell: Path) -> tuple[float, int]:
    """Patients right over all folds' test patients, and how many were tested."""
    folds = [json.loads((cell / f"fold_{k}" / "results.json").read_text()) for k in range(FOLDS)]
    tested = sum(fold["num_groups"]["test"] for fold in folds)
    return sum(fold["test_group_acc"] * fold["num_groups"]["test"] for fold in folds) / tested, tested


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--probe", default="knn", choices=("knn", "linear"))
    parser.add_argument("--fraction", type=float, default=0.05)
    parser.add_argument("--test-seeds", type=int, default=8)
    args = parser.parse_args(argv)
    logging.disable(logging.INFO)
    root = args.out / "tiles"
    if not root.exists():
        write_collection(root, Collection(patients=COLLECTION.patients, tiles=COLLECTION.tiles, size=COLLECTION.size,
                                          cue=COLLECTION.cue, epochs=0, seeds=1), seed=0, classes=CLASSES)
    single, pooled = [], []
    for seed in range(args.test_seeds):
        cell = ["+experiment=raw_pixels", "data=imagefolder", f"data.root={root}", "profile=smoke",
                f"downstream={args.probe}", f"data.fraction={args.fraction}", f"paths.cache={args.out / 'cache'}",
                f"data.test_split_seed={seed}"]
        name = f"{args.probe}_{args.fraction}_{seed}"
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            one = pipeline.run(compose("config", overrides=cell), args.out / f"single_{name}")
            pipeline.run(compose("config", overrides=[*cell, f"data.test_folds={FOLDS}"]), args.out / f"folds_{name}")
        accuracy, tested = _pooled_group_acc(args.out / f"folds_{name}")
        single.append(one["test_group_acc"])
        pooled.append(accuracy)
        print(f"test seed {seed}: single split {one['test_group_acc']:.4f} ({one['num_groups']['test']} patients), "
              f"{FOLDS} folds pooled {accuracy:.4f} ({tested} patients)", flush=True)
    print(f"{args.probe} at {args.fraction}: patient-level accuracy over {args.test_seeds} test seeds: single split "
          f"mean {statistics.mean(single):.4f} sd {statistics.stdev(single):.4f}; {FOLDS} folds pooled mean "
          f"{statistics.mean(pooled):.4f} sd {statistics.stdev(pooled):.4f}")


if __name__ == "__main__":
    main()
