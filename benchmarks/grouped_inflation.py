"""What a tile-level split does to a grouped study, with intervals: the inflation (split by tile minus split by
patient, per method and budget) and the methods' order within each split.

Reads the per-run CSVs the report writes for the two arms of `benchmarks.grouped_study` (one row per seed after the
report pooled a seed's test folds) and writes two tables, each comparison with its 95% interval, Holm's correction
over the table and the report's verdict word (report/verdict.py, margin in points):
- inflation.csv: tile minus patient for every (method, budget). The two arms draw different splits, so the seeds
  are independent samples: Welch's t. `ahead` means the tile split scores higher (inflated).
- order.csv: every pair of methods within one arm and budget, paired by seed (a seed's methods share its splits
  and test folds): the ranking each split supports, not only the order of its means.

    python -m benchmarks.grouped_inflation --tile <report_tile>/results_runs.csv \
        --patient <report_patient>/results_runs.csv --metric test_balanced_acc --out docs/study/grouped
"""

from __future__ import annotations

import argparse
import csv
import itertools
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

from ssl_lightning.report.statistics import Difference, holm, paired_difference, welch_difference
from ssl_lightning.report.verdict import DEFAULT_MARGIN, verdict

ALPHA = 0.05
Scores = dict[tuple[str, str], dict[int, float]]  # (method label, budget) -> seed -> metric in points


def ok_runs(path: Path, metric: str) -> Iterator[tuple[dict[str, str], str, float]]:
    """(row, budget, metric in points) for each run of a report's results_runs.csv; a failed run is refused, not
    skipped, so no comparison silently loses a seed."""
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            if row["status"] != "ok":
                raise SystemExit(f"{path}: {row['label']} seed {row['seed']} is {row['status']}: {row['error']}")
            budget = row["labels_per_class"] and f"{row['labels_per_class']}/class" or f"{float(row['fraction']):g}"
            yield row, budget, 100 * float(row[metric])


def read_scores(path: Path, metric: str) -> Scores:
    """Points per seed for each (method, budget) of one arm."""
    scores: Scores = defaultdict(dict)
    for row, budget, points in ok_runs(path, metric):
        scores[(row["label"], budget)][int(row["seed"])] = points
    return dict(scores)


def comparison_row(name: dict[str, str], result: Difference, holm_p: float | None, margin: float,
                   n: str) -> dict[str, str]:
    """One comparison as a CSV row: its name columns, the interval, Holm's p and the report's verdict word."""
    def number(value: float | None) -> str:
        return "" if value is None else f"{value:.2f}"

    return {**name, "n": n, "test": result.test, "diff": number(result.diff), "ci_low": number(result.low),
            "ci_high": number(result.high), "p": "" if result.p is None else f"{result.p:.4f}",
            "holm_p": "" if holm_p is None else f"{holm_p:.4f}", "verdict": verdict(result, holm_p, margin, ALPHA),
            "margin": f"{margin:g}"}


def inflation(tile: Scores, patient: Scores, margin: float) -> list[dict[str, str]]:
    keys = sorted(set(tile) & set(patient))
    results = [welch_difference(list(tile[k].values()), list(patient[k].values())) for k in keys]
    corrected = holm([r.p for r in results])
    return [comparison_row({"method": k[0], "budget": k[1], "tile_mean": f"{_mean(tile[k]):.2f}",
                  "patient_mean": f"{_mean(patient[k]):.2f}"}, r, p, margin, f"{len(tile[k])}+{len(patient[k])}")
            for k, r, p in zip(keys, results, corrected, strict=True)]


def order(arm: str, scores: Scores, margin: float) -> list[dict[str, str]]:
    pairs = [(a, b) for a, b in itertools.combinations(sorted(scores), 2) if a[1] == b[1]]
    results, counts = [], []
    for a, b in pairs:
        seeds = sorted(set(scores[a]) & set(scores[b]))
        results.append(paired_difference([scores[a][s] for s in seeds], [scores[b][s] for s in seeds]))
        counts.append(str(len(seeds)))
    corrected = holm([r.p for r in results])
    return [comparison_row({"split": arm, "budget": a[1], "method": a[0], "against": b[0]}, r, p, margin, n)
            for (a, b), r, p, n in zip(pairs, results, corrected, counts, strict=True)]


def _mean(values: dict[int, float]) -> float:
    return sum(values.values()) / len(values)


def write_table(rows: list[dict[str, str]], path: Path) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {path}")
    for row in rows:
        print("  " + ", ".join(f"{k}={v}" for k, v in row.items()))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tile", type=Path, required=True, help="the tile arm's results_runs.csv (report output)")
    parser.add_argument("--patient", type=Path, required=True, help="the patient arm's results_runs.csv")
    parser.add_argument("--metric", default="test_balanced_acc")
    parser.add_argument("--margin", type=float, default=DEFAULT_MARGIN, help="equivalence margin, points")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    tile, patient = read_scores(args.tile, args.metric), read_scores(args.patient, args.metric)
    args.out.mkdir(parents=True, exist_ok=True)
    write_table(inflation(tile, patient, args.margin), args.out / "inflation.csv")
    write_table(order("patient", patient, args.margin) + order("tile", tile, args.margin), args.out / "order.csv")


if __name__ == "__main__":
    main()
