"""Frozen probes on a pretext encoder (or on the raw pixels) against a fine-tuned network (from scratch, or the same
encoder fine-tuned) on the same labelled images: a comparison across protocols that the report does not make (it
compares within a protocol).

Reads the report's results_runs.csv of a study holding both (e.g. `benchmarks.few_label_study`: frozen cells over
`data.split_seeds=[0,...,9]`, fine-tuned cells with one split per seed, `data.split_seed=seed`). A frozen run is
paired with the baseline run of the same seed and split seed, so both trained on the same labelled images (and
validation pool); seeds whose pair is missing are left out and counted. Paired t over the seeds, Holm over each
probe's comparisons, the report's verdict words (report/verdict.py) at the given margin:

    python -m benchmarks.frozen_vs_finetuned <report>/results_runs.csv --out docs/study/few_label
    python -m benchmarks.frozen_vs_finetuned <report>/results_runs.csv --baseline SimCLR --methods SimCLR --out ...
"""

from __future__ import annotations

import argparse
import re
from collections import defaultdict
from pathlib import Path

from benchmarks.grouped_inflation import comparison_row, ok_runs, write_table
from ssl_lightning.report.statistics import holm, paired_difference
from ssl_lightning.report.verdict import DEFAULT_MARGIN

FROZEN = ("linear", "knn")
Runs = dict[tuple[str, str, str], dict[tuple[int, int], float]]  # (label, protocol, budget) -> (seed, split) -> points


def read_runs(path: Path, metric: str) -> Runs:
    """Points per (seed, split seed) of every run (a failed run is refused, as in grouped_inflation)."""
    runs: Runs = defaultdict(dict)
    for row, budget, points in ok_runs(path, metric):
        runs[(row["label"], row["protocol"], budget)][(int(row["seed"]), int(row["split_seed"]))] = points
    return dict(runs)


def _budget_order(budget: str) -> tuple[int, float]:
    """Labels per class first, then fractions, each in increasing order."""
    return (0, float(budget.removesuffix("/class"))) if budget.endswith("/class") else (1, float(budget))


def compare(runs: Runs, baseline: str, baseline_protocol: str, margin: float,
            methods: set[str] | None = None) -> list[dict[str, str]]:
    """Every frozen (label, probe, budget) against the baseline at that budget, paired by (seed, split seed);
    `methods` (column labels) limits the comparisons, and so Holm's family, to those."""
    rows = []
    for probe in FROZEN:
        keys = sorted((k for k in runs if k[1] == probe and (baseline, baseline_protocol, k[2]) in runs
                       and (methods is None or k[0] in methods)),
                      key=lambda k: (k[0], _budget_order(k[2])))
        results, details, counts = [], [], []
        for key in keys:
            base = runs[(baseline, baseline_protocol, key[2])]
            pairs = sorted(set(runs[key]) & set(base))
            frozen_values, base_values = [runs[key][p] for p in pairs], [base[p] for p in pairs]
            results.append(paired_difference(frozen_values, base_values))
            wins = sum(a > b for a, b in zip(frozen_values, base_values, strict=True))
            details.append({"method": key[0], "probe": probe, "budget": key[2], "against": baseline,
                            "method_mean": f"{sum(frozen_values) / len(pairs):.2f}",
                            "baseline_mean": f"{sum(base_values) / len(pairs):.2f}",
                            "pairs_won": str(wins), "unpaired_baseline_runs": str(len(base) - len(pairs))})
            counts.append(str(len(pairs)))
        corrected = holm([r.p for r in results])
        rows += [comparison_row(detail, result, holm_p, margin, n)
                 for detail, result, holm_p, n in zip(details, results, corrected, counts, strict=True)]
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", type=Path, help="the report's results_runs.csv holding both protocols")
    parser.add_argument("--baseline", default="Supervised", help="the fine-tuned column label to compare against")
    parser.add_argument("--baseline-protocol", default="finetune")
    parser.add_argument("--metric", default="test_acc")
    parser.add_argument("--margin", type=float, default=DEFAULT_MARGIN, help="equivalence margin, points")
    parser.add_argument("--methods", default=None, help="comma-separated frozen column labels (default: all)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    methods = None if args.methods is None else set(args.methods.split(","))
    rows = compare(read_runs(args.runs, args.metric), args.baseline, args.baseline_protocol, args.margin, methods)
    if not rows:
        raise SystemExit(f"{args.runs}: no frozen run shares a budget with {args.baseline} ({args.baseline_protocol})")
    args.out.mkdir(parents=True, exist_ok=True)
    slug = re.sub(r"[^a-z0-9]+", "_", args.baseline.lower()).strip("_")
    write_table(rows, args.out / f"frozen_vs_{slug}.csv")


if __name__ == "__main__":
    main()
