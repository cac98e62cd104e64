"""What one more label split costs once an encoder and its features are cached: for one Fashion-MNIST SimCLR
encoder, the pretext seconds, the feature extraction seconds, and the seconds per extra label split for the
L-BFGS logistic-regression probe and the k-NN probe (fit, choice on validation, test).

    python -m benchmarks.probe_cost [--tiny] [--repeats N] [--fraction F] [overrides ...]

One real cell (`downstream=linear`, split seed 0) trains the encoder and fills the feature store in a temporary
folder; then, in this process, each extra split seed (1..N) draws its label split, reads the stored features and
fits both probes, timed after one untimed warm-up fit (L-BFGS's first call imports torch._dynamo). `--tiny` runs
the synthetic data set with `profile=smoke`. The issue's target: an extra split costs under 5% of the pretext stage.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import Report, apply_threads, base_parser, print_machine, repeats_from
from benchmarks.figures import Target

CELL = ["+experiment=simclr", "downstream=linear", "data.split_seed=0", "trainer.enable_progress_bar=false"]
FULL = ["profile=cpu"]
TINY = ["data=synthetic", "profile=smoke"]
SHARE_TARGET = Target("<=", 5.0)  # percent of the pretext stage


def run_cell(overrides: list[str], folder: Path) -> dict:
    """The first cell through the real CLI: trains the encoder, computes and stores the features."""
    command = [sys.executable, "-m", "ssl_lightning", *overrides, f"paths.cache={folder / 'cache'}",
               f"hydra.run.dir={folder / 'run'}"]
    done = subprocess.run(command, cwd=folder, capture_output=True, text=True, env=dict(os.environ))
    if done.returncode != 0:
        raise SystemExit(f"error: the first cell failed (exit {done.returncode}): {done.stderr[-2000:]}")
    results = json.loads((folder / "run" / "results.json").read_text())
    if results.get("status") != "ok":
        raise SystemExit(f"error: the first cell failed: {results.get('error')}")
    return results


def time_split(settings, cell, features, device) -> tuple[float, float]:
    """(seconds, test accuracy) of one probe on one label split: fit, choose (downstream.select), test once."""
    from ssl_lightning.evaluation.metrics import classification_metrics
    from ssl_lightning.stages.frozen_stage import evaluate_probe, fit_probe, plan_selection

    started = time.perf_counter()
    plan = plan_selection(settings, cell.images.train_labels.numpy(), cell.images.train_groups, cell.split)
    fit = fit_probe(settings.downstream, plan, "last", features, cell.split, cell.images.num_classes, device)
    probabilities, labels = evaluate_probe(settings.downstream, fit, cell.split, cell.images.num_classes, device)
    metrics = classification_metrics(probabilities, labels, cell.images.num_classes, groups=cell.images.test_groups)
    return time.perf_counter() - started, metrics.acc


def main(argv: list[str] | None = None) -> None:
    parser = base_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--fraction", type=float, default=None, help="label fraction (default 0.05; tiny 0.5)")
    args, overrides = parser.parse_known_args(argv)
    apply_threads(args)
    splits = repeats_from(args)
    fraction = args.fraction if args.fraction is not None else (0.5 if args.tiny else 0.05)
    print_machine("probe_cost: pretext, feature extraction and one extra label split of a cached encoder")
    report = Report("probe_cost")
    with tempfile.TemporaryDirectory(prefix="bench_probe_") as name:
        folder = Path(name)
        results = run_cell(CELL + (TINY if args.tiny else FULL) + [f"data.fraction={fraction}"] + overrides, folder)
        print(f"   first cell: pretext {results['seconds']['pretext']} s, features {results['seconds']['features']} s, "
              f"linear probe {results['seconds']['probe']} s, test_acc {results['test_acc']:.4f}", flush=True)
        measured = measure_splits(results, splits)
    pretext = float(results["seconds"]["pretext"])
    report.add("pretext stage (SimCLR, trained once)", "s", [pretext])
    report.add("feature extraction (every train and test image)", "s", [float(results["seconds"]["features"])])
    report.add("feature store read", "s", [measured["load"]])
    for protocol, label in (("linear", "linear (L-BFGS, penalty grid)"), ("knn", "k-NN")):
        seconds = measured[protocol]
        report.add(f"{label}: one extra label split", "s", seconds)
        report.add(f"{label}: extra split / pretext", "%", [100 * s / pretext for s in seconds],
                   None if args.tiny else SHARE_TARGET)
        report.note(f"{protocol} test accuracy over split seeds 1..{splits}: "
                    + ", ".join(f"{a:.4f}" for a in measured[f"{protocol}_acc"]))
    report.finish(args.json, args.tiny)


def measure_splits(results: dict, splits: int) -> dict:
    """Time both probes on split seeds 1..splits of the first cell's encoder, its features read from the store."""
    from omegaconf import OmegaConf

    from ssl_lightning.stages.feature_store import CachedFeatures, FeatureStore
    from ssl_lightning.stages.frozen_stage import probe_device
    from ssl_lightning.stages.pipeline import prepare

    config = OmegaConf.create(results["config"])
    started = time.perf_counter()
    arrays = FeatureStore(Path(config.paths.cache) / "features").load(results["feature_key"])
    load = time.perf_counter() - started
    if arrays is None:
        raise SystemExit(f"error: feature store entry {results['feature_key']} is missing")
    features = CachedFeatures(results["feature_key"], arrays, True, load)
    measured: dict = {"load": load, "linear": [], "knn": [], "linear_acc": [], "knn_acc": []}
    for index, split_seed in enumerate(range(0, splits + 1)):
        config.data.split_seed = split_seed
        cell = prepare(config)
        linear = cell.settings
        knn = dataclasses.replace(linear, downstream=dataclasses.replace(linear.downstream, protocol="knn",
                                                                         solver=None))
        device = probe_device(linear)
        for protocol, settings in (("linear", linear), ("knn", knn)):
            seconds, acc = time_split(settings, cell, features, device)
            if index > 0:  # split seed 0 is the first cell's own split: an untimed warm-up
                measured[protocol].append(seconds)
                measured[f"{protocol}_acc"].append(acc)
    return measured


if __name__ == "__main__":
    main()
