"""How much a split by tile inflates test accuracy when every patient looks different (why data.group_by exists).

A generated collection in the BreakHis layout (`class/<patient>/x40/*.png`): every patient has a colour cast of
its own (stain, scanner) and the class shows only as a weak texture cue. The same cell, supervised training
through the real CLI, runs twice: with `data.group_by=none` (tiles drawn into train and test one by one, so every
test patient also has training tiles) and with patient groups (the default `auto`: whole patients on one side).
The first can score by recognising the patient's colour; the second has to find the class cue on patients it
never saw. The script prints both test accuracies (and balanced accuracies when results.json has them) and the
difference. It measures accuracy, not time.

    python -m benchmarks.group_leakage            # 2 classes x 10 patients x 40 tiles, 3 seeds
    python -m benchmarks.group_leakage --tiny     # seconds: checks that it runs
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
CLASSES = ("benign", "malignant")


@dataclass(frozen=True)
class Collection:
    patients: int  # per class
    tiles: int  # per patient
    size: int  # pixels
    cue: float  # amplitude of the class's texture cue (grey levels); the patient's cast spans about 120
    epochs: int
    seeds: int


FULL = Collection(patients=10, tiles=40, size=16, cue=10.0, epochs=12, seeds=3)
TINY = Collection(patients=4, tiles=6, size=16, cue=10.0, epochs=1, seeds=1)


def class_stripes(num_classes: int, size: int) -> list[np.ndarray]:
    """One faint stripe pattern per class: vertical, horizontal, then the two diagonals."""
    y, x = np.mgrid[0:size, 0:size]
    phases = [x, y, x + y, x - y][:num_classes]
    if len(phases) < num_classes:
        raise ValueError(f"at most 4 classes have a stripe pattern, asked for {num_classes}")
    return [np.sin(phase * np.pi / 2) for phase in phases]


def write_collection(root: Path, spec: Collection, seed: int = 0, classes: tuple[str, ...] = CLASSES) -> None:
    """class/<patient>/x40/tileNNN.png: patient colour cast + noise + a faint class-specific stripe pattern."""
    rng = np.random.default_rng(seed)
    stripes = class_stripes(len(classes), spec.size)
    for label, name in enumerate(classes):
        for patient in range(spec.patients):
            cast = rng.uniform(60, 180, size=3)  # the patient's stain/scanner: far stronger than the class cue
            folder = root / name / f"{name[0]}{patient:02d}" / "x40"
            folder.mkdir(parents=True, exist_ok=True)
            for tile in range(spec.tiles):
                noise = rng.normal(0, 18, size=(spec.size, spec.size, 3))
                pixels = cast[None, None, :] + noise + spec.cue * stripes[label][:, :, None]
                Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(folder / f"tile{tile:03d}.png")


def run_cell(root: Path, work: Path, group_by: str, seed: int, spec: Collection) -> dict:
    """One supervised cell through `python -m ssl_lightning`; returns its results.json."""
    run_dir = work / f"{group_by}_s{seed}"
    command = [sys.executable, "-m", "ssl_lightning", "+experiment=supervised", "data=imagefolder",
               f"data.root={root}", "data.include=**/x40/*.png", f"data.group_by={group_by}", f"seed={seed}",
               "backbone.width=8", f"downstream.epochs={spec.epochs}", "downstream.batch_size=32",
               "downstream.patience=null", "trainer.enable_progress_bar=false",
               f"hydra.run.dir={run_dir}", f"paths.cache={work / 'cache'}"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    done = subprocess.run(command, cwd=work, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"cell {group_by} seed {seed} failed:\n{done.stderr[-3000:]}")
    results = json.loads((run_dir / "results.json").read_text())
    if results.get("status") != "ok":
        raise SystemExit(f"cell {group_by} seed {seed} failed: {results.get('error')}")
    return results


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="a few tiles and one epoch: checks that it runs")
    parser.add_argument("--seeds", type=int, default=None, help="seeds per arm (default: 3, tiny: 1)")
    parser.add_argument("--keep", type=Path, default=None, help="write the collection and runs here (kept)")
    args = parser.parse_args(argv)
    spec = TINY if args.tiny else FULL
    seeds = args.seeds or spec.seeds
    with tempfile.TemporaryDirectory(prefix="group_leakage_") as temporary:
        work = args.keep or Path(temporary)
        work.mkdir(parents=True, exist_ok=True)
        root = work / "tiles"
        if not root.exists():
            write_collection(root, spec)
        print(f"collection: {len(CLASSES)} classes x {spec.patients} patients x {spec.tiles} tiles, {spec.size} px; "
              f"patient colour cast U(60, 180) per channel, class cue {spec.cue:g} grey levels; supervised, "
              f"{spec.epochs} epoch(s), {seeds} seed(s) per arm", flush=True)
        arms = {"by tile (data.group_by=none)": "none", "by patient (data.group_by=auto)": "auto"}
        found: dict[str, dict[str, list[float]]] = {}
        for label, group_by in arms.items():
            runs = [run_cell(root, work, group_by, seed, spec) for seed in range(seeds)]
            found[label] = {key: [r[key] for r in runs if r.get(key) is not None]
                            for key in ("test_acc", "test_balanced_acc")}
            print(f"  {label}: test_acc {', '.join(f'{v:.3f}' for v in found[label]['test_acc'])}", flush=True)
    print()
    print(f"{'split':<34} {'test_acc':>9} {'test_balanced_acc':>18}")
    for label, values in found.items():
        balanced = _mean(values["test_balanced_acc"])
        print(f"{label:<34} {_mean(values['test_acc']):>9.3f} {balanced:>18.3f}")
    tile, patient = (_mean(values["test_acc"]) for values in found.values())
    print(f"{'inflation (by tile - by patient)':<34} {tile - patient:>+9.3f}")


if __name__ == "__main__":
    main()
