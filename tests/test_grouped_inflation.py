"""The grouped study's inflation and order tables: intervals and verdicts from the report's per-run CSVs."""

from __future__ import annotations

import csv
from pathlib import Path

from benchmarks.grouped_inflation import main

FIELDS = ["experiment", "label", "fraction", "labels_per_class", "seed", "status", "error", "test_balanced_acc"]


def _write(path: Path, rows: list[tuple[str, int, float]]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS)
        writer.writeheader()
        for label, seed, value in rows:
            writer.writerow({"experiment": label.lower(), "label": label, "fraction": "0.05", "labels_per_class": "",
                             "seed": seed, "status": "ok", "error": "", "test_balanced_acc": value})
    return path


def _read(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_a_clear_inflation_is_ahead_and_a_small_one_is_inconclusive(tmp_path: Path) -> None:
    noise = [0.01, -0.02, 0.015, -0.005, 0.0, 0.01, -0.01, 0.02, -0.015, 0.005]
    tile = _write(tmp_path / "tile.csv", [("Rotation", s, 0.95 + e) for s, e in enumerate(noise)]
                  + [("SimCLR", s, 0.80 - e) for s, e in enumerate(noise)])
    patient = _write(tmp_path / "patient.csv", [("Rotation", s, 0.50 + e / 2) for s, e in enumerate(noise)]
                     + [("SimCLR", s, 0.80 - e) for s, e in enumerate(noise)])
    main(["--tile", str(tile), "--patient", str(patient), "--out", str(tmp_path / "out")])
    rows = {row["method"]: row for row in _read(tmp_path / "out" / "inflation.csv")}
    assert rows["Rotation"]["verdict"] == "ahead" and abs(float(rows["Rotation"]["diff"]) - 45.0) < 0.5
    assert rows["SimCLR"]["verdict"] == "inconclusive" and rows["SimCLR"]["n"] == "10+10"
    order = {(row["split"], row["method"]): row for row in _read(tmp_path / "out" / "order.csv")}
    assert order[("patient", "Rotation")]["against"] == "SimCLR"
    assert order[("patient", "Rotation")]["verdict"] == "behind"
    assert order[("tile", "Rotation")]["verdict"] == "ahead"
