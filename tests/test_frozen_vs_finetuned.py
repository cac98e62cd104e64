"""Frozen probes against supervised fine-tuning across protocols (benchmarks/frozen_vs_finetuned.py): pairs only
runs that trained on the same labelled images (same seed and split seed), and gives the report's verdict words."""

from __future__ import annotations

import csv
from pathlib import Path

from benchmarks.frozen_vs_finetuned import main

FIELDS = ["experiment", "label", "protocol", "fraction", "labels_per_class", "seed", "split_seed", "status", "error",
          "test_acc"]
NOISE = [0.01, -0.02, 0.015, -0.005, 0.0, 0.01, -0.01, 0.02, -0.015, 0.005]


def _write(path: Path) -> Path:
    rows = []
    for seed, noise in enumerate(NOISE):
        rows.append(("supervised", "Supervised", "finetune", seed, seed, 0.60 + noise))
        for split in range(3):  # a frozen cell holds several splits per seed; only split == seed pairs
            far_off = 0.0 if split == seed else 0.30  # a pairing on the wrong split would show +30 points
            rows.append(("simclr", "SimCLR", "linear", seed, split, 0.70 + 2 * noise + far_off))
            rows.append(("raw_pixels", "Raw pixels", "knn", seed, split, 0.60 + noise / 3 + far_off))
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS)
        writer.writeheader()
        for experiment, label, protocol, seed, split, acc in rows:
            writer.writerow({"experiment": experiment, "label": label, "protocol": protocol, "fraction": "",
                             "labels_per_class": "10", "seed": seed, "split_seed": split, "status": "ok",
                             "error": "", "test_acc": acc})
    return path


def test_frozen_runs_pair_with_the_fine_tuned_run_on_the_same_labels(tmp_path: Path) -> None:
    main([str(_write(tmp_path / "runs.csv")), "--out", str(tmp_path / "out")])
    with (tmp_path / "out" / "frozen_vs_supervised.csv").open(newline="") as handle:
        rows = {(row["method"], row["probe"]): row for row in csv.DictReader(handle)}
    simclr = rows[("SimCLR", "linear")]
    assert abs(float(simclr["diff"]) - (10.0 + 100 * sum(NOISE[:3]) / 3)) < 0.01  # seeds 0-2 only
    assert simclr["verdict"] == "ahead"
    assert (simclr["n"], simclr["pairs_won"], simclr["budget"]) == ("3", "3", "10/class")
    assert simclr["unpaired_baseline_runs"] == "7"
    pixels = rows[("Raw pixels", "knn")]
    assert abs(float(pixels["diff"])) < 1.0 and pixels["verdict"] != "ahead"
