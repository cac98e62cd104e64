"""The grouped study of docs/RESULTS.md: the 4 x 3 grid on a generated patient collection, split by patient and,
for contrast, by tile.

The collection has the original study's shape: 3 classes, `class/<patient>/x40/*.png`, each patient with a
colour cast of its own (stain, scanner) far stronger than the class's faint stripe texture. Each arm is one real
Hydra multirun of the suite (`python -m ssl_lightning -m ...`, rotation, rotation_jitter, simclr, supervised x 5 /
25 / 50% x seeds), followed by the report for accuracy, balanced accuracy and (patient split only) patient-level
balanced accuracy. It prints every command it runs, so the study can be repeated by hand.

    python -m benchmarks.grouped_study --out docs/study/grouped          # 3 seeds, both arms
    python -m benchmarks.grouped_study --out /tmp/g --seeds 1 --arms auto  # one seed, patient split only
    python -m benchmarks.grouped_study --out /tmp/g10 --seeds 10 --test-folds 5 --fractions 0.05  # the few-label
        # protocol's re-run: every patient (tile) tested once per seed, pooled by the report (issue 30, items 4, 7)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from benchmarks.common import run_logged
from benchmarks.group_leakage import Collection, write_collection

CLASSES = ("adh", "dcis", "normal")  # the original study's three classes, as names only
COLLECTION = Collection(patients=20, tiles=15, size=32, cue=40.0, epochs=0, seeds=3)
METHODS = "+experiment=rotation,rotation_jitter,simclr,supervised"
FRACTIONS = "0.05,0.25,0.5"
# ~630 pretext tiles and 15-105 labelled tiles per class: smaller batches than profile=cpu's (256 / 128) give the
# pretext stage 10 steps per epoch and the classifier's BatchNorm statistics enough steps before early stopping.
SIZED = ["pretext.batch_size=64", "pretext.epochs=10", "downstream.batch_size=32"]
ARMS = {"auto": "patient", "none": "tile"}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="collection, sweeps and reports go here")
    parser.add_argument("--seeds", type=int, default=COLLECTION.seeds)
    parser.add_argument("--arms", default="auto,none", help="data.group_by values to run: auto (patient), none")
    parser.add_argument("--test-folds", type=int, default=0,
                        help="data.test_folds=K for both arms (0: the one fixed test split, as the wave-3 study)")
    parser.add_argument("--fractions", default=FRACTIONS,
                        help="data.fraction values to sweep (e.g. 0.05: the few-label end alone, a fifth of the cost)")
    parser.add_argument("overrides", nargs="*", help="extra overrides for both sweeps, e.g. pretext.epochs=2")
    args = parser.parse_args(argv)
    out = args.out.resolve()
    root = out / "tiles"
    if not root.exists():
        write_collection(root, COLLECTION, seed=0, classes=CLASSES)
    print(f"collection {root}: {len(CLASSES)} classes x {COLLECTION.patients} patients x {COLLECTION.tiles} tiles, "
          f"{COLLECTION.size} px, class cue {COLLECTION.cue:g} grey levels", flush=True)
    seeds = ",".join(str(s) for s in range(args.seeds))
    for group_by in args.arms.split(","):
        name = ARMS[group_by]
        sweep = out / f"by_{name}"
        command = [sys.executable, "-m", "ssl_lightning", "-m", METHODS, f"data.fraction={args.fractions}",
                   f"seed={seeds}",
                   "data=imagefolder",
                   f"data.root={root}", "data.include=**/x40/*.png", f"data.group_by={group_by}",
                   f"hydra.sweep.dir={sweep}", f"paths.cache={out / 'cache'}", *SIZED,
                   *([f"data.test_folds={args.test_folds}"] if args.test_folds else []), *args.overrides]
        run_logged(command, out / f"by_{name}.log")
        metrics = ["acc", "balanced_acc"] + (["group_acc", "group_balanced_acc"] if group_by != "none" else [])
        for metric in metrics:
            report = [sys.executable, "-m", "ssl_lightning.report", str(sweep), "--metric", metric,
                      "--out", str(out / f"report_{name}_{metric}")]
            run_logged(report, out / f"report_{name}_{metric}.log")


if __name__ == "__main__":
    main()
