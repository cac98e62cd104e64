"""The pretext stage's per-epoch validation monitors of a study, from its sweep logs, as one CSV.

Each pretext epoch logs `pretext epoch E/N: ... val_loss=.. val_acc=..% val_knn_acc=..% val_rankme=.. | ...`
(ssl_lightning/training/epoch_log.py) after Hydra's `#i : <overrides>` line of its cell, which names the experiment
and seed. A cell that reuses a stored encoder logs no epochs, so each (method, seed) appears once. Used to show how
a method's label-free k-NN monitor moves with the pretext budget (docs/RESULTS.md, the few-label re-run):

    python -m benchmarks.pretext_curves --out docs/study/few_label/pretext_curves.csv /tmp/few/simclr.log ...
"""

from __future__ import annotations

import argparse
import csv
import re
from pathlib import Path

LAUNCH = re.compile(r"#\d+ : \+experiment=(?P<method>\w+)\b.*?\bseed=(?P<seed>\d+)\b")
EPOCH = re.compile(r"pretext epoch (?P<epoch>\d+)/(?P<epochs>\d+): (?P<values>[^|]*)\|")
COLUMNS = ("val_loss", "val_acc", "val_knn_acc", "val_rankme")


def curves(log: Path) -> list[dict[str, str]]:
    """One row per logged pretext epoch, named by the cell that logged it."""
    rows, method, seed = [], None, None
    for line in log.read_text().splitlines():
        if launch := LAUNCH.search(line):
            method, seed = launch["method"], launch["seed"]
        elif (epoch := EPOCH.search(line)) and method is not None:
            values = dict(pair.split("=", 1) for pair in epoch["values"].split() if "=" in pair)
            rows.append({"method": method, "seed": seed, "epoch": epoch["epoch"], "epochs": epoch["epochs"],
                         **{key: values.get(key, "").rstrip("%") for key in COLUMNS}, "log": log.name})
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("logs", type=Path, nargs="+", help="sweep logs (a study step's <name>.log)")
    parser.add_argument("--out", type=Path, required=True, help="the CSV to write")
    args = parser.parse_args(argv)
    rows = [row for log in args.logs for row in curves(log)]
    if not rows:
        raise SystemExit(f"no pretext epoch lines in {', '.join(map(str, args.logs))}")
    with args.out.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {args.out}: {len(rows)} epochs of {len({(r['method'], r['seed']) for r in rows})} encoders")


if __name__ == "__main__":
    main()
