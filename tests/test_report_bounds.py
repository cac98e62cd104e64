"""The bounds of every frozen-feature table in the report: "Raw pixels" (floor) and "Supervised features, all
labels" (ceiling) close each linear and k-NN table, and every method is compared with the floor as well as with
the baseline, in one Holm family per table; fine-tuning tables are unchanged."""

from __future__ import annotations

import csv
import json
import math
import statistics
from pathlib import Path

import pytest

from ssl_lightning.report.__main__ import main as report_main
from tests.conftest import call_main

REPO = Path(__file__).resolve().parent.parent
LINEAR, KNN, FINETUNE = ("synthetic — linear (test accuracy)", "synthetic — knn (test accuracy)",
                         "synthetic — finetune (test accuracy)")
FLOOR, CEILING = "Raw pixels", "Supervised features, all labels"
T95_DF2 = math.sqrt(2 * 0.95**2 / (1 - 0.95**2))  # two-sided 95% quantile of Student's t, df = 2
# experiment -> test accuracy per seed (seeds 0, 1, 2; split seed = seed) at 5% labels; at 50% each adds 0.05
ACCURACY = {"simclr": [0.78, 0.80, 0.79], "supervised": [0.40, 0.44, 0.41], "raw_pixels": [0.74, 0.73, 0.77],
            "supervised_features": [0.90, 0.91, 0.93]}
FRACTIONS = (0.05, 0.5)


def _write(root: Path, experiment: str, protocol: str, fraction: float, seed: int, acc: float) -> None:
    config = {"experiment": experiment, "seed": seed, "data": {"name": "synthetic", "fraction": fraction,
                                                               "split_seed": seed},
              "downstream": {"protocol": protocol}}
    results = {"status": "ok", "experiment": experiment, "data": "synthetic", "fraction": fraction, "seed": seed,
               "split_seed": seed, "protocol": protocol, "backbone": "compact", "test_loss": 1.0 - acc,
               "test_acc": acc, "config": config, "pretext_data": None if experiment in ("supervised", "raw_pixels")
               else "target"}
    folder = root / f"{protocol}_{experiment}_f{fraction}_s{seed}"
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps(results))


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bounds")
    for protocol in ("linear", "knn"):
        for experiment, accs in ACCURACY.items():
            for fraction in FRACTIONS:
                for seed, acc in enumerate(accs):
                    _write(root, experiment, protocol, fraction, seed, acc + (0.05 if fraction == 0.5 else 0.0))
    for experiment in ("simclr", "supervised"):  # fine-tuning: no bound columns, today's comparisons only
        for seed, acc in enumerate(ACCURACY[experiment]):
            _write(root, experiment, "finetune", 0.05, seed, acc)
    done = call_main(report_main, [str(root)], REPO)  # `python -m ssl_lightning.report <root>`, in-process
    assert done.returncode == 0, done.stderr[-3000:]
    return root


def _columns(markdown: str, heading: str) -> list[str]:
    section = markdown.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    header = next(line for line in section.splitlines() if line.startswith("| labels"))
    return [cell.strip() for cell in header.strip("|").split("|")][1:]


def _comparisons(root: Path) -> dict[tuple[str, str, str, str], dict[str, str]]:
    with (root / "comparisons.csv").open(newline="") as stream:
        return {(r["protocol"], r["fraction"], r["label"], r["baseline"]): r for r in csv.DictReader(stream)}


def test_every_frozen_table_ends_with_the_floor_then_the_ceiling(report):
    markdown = (report / "results.md").read_text()
    for heading in (LINEAR, KNN):
        assert _columns(markdown, heading) == ["SimCLR", "Random encoder", FLOOR, CEILING]
    assert _columns(markdown, FINETUNE) == ["SimCLR", "Supervised"]
    assert markdown.count('"Raw pixels" is the floor') == 2  # the bounds note under each frozen table
    assert f'"{CEILING}" is the ceiling' in markdown


def test_each_method_is_compared_with_the_floor_as_well_as_the_baseline(report):
    rows = _comparisons(report)
    for protocol in ("linear", "knn"):
        for fraction in ("0.05", "0.5"):
            pairs = {(label, baseline) for (p, f, label, baseline) in rows if (p, f) == (protocol, fraction)}
            assert pairs == {("SimCLR", "Random encoder"), (FLOOR, "Random encoder"), (CEILING, "Random encoder"),
                             ("SimCLR", FLOOR), (CEILING, FLOOR)}
    finetune = {(label, baseline) for (p, _, label, baseline) in rows if p == "finetune"}
    assert finetune == {("SimCLR", "Supervised")}  # today's comparison, nothing added

    row = rows[("linear", "0.05", "SimCLR", FLOOR)]  # paired t over seeds, by hand
    diffs = [100 * (a - b) for a, b in zip(ACCURACY["simclr"], ACCURACY["raw_pixels"], strict=True)]
    mean, se = statistics.mean(diffs), statistics.stdev(diffs) / math.sqrt(3)
    assert (row["test"], row["method"], row["n_method"], row["n_baseline"]) == ("paired t", "simclr", "3", "3")
    assert float(row["diff_points"]) == pytest.approx(mean, rel=1e-9)
    assert float(row["diff_ci_low"]) == pytest.approx(mean - T95_DF2 * se, rel=1e-9)
    assert float(row["diff_ci_high"]) == pytest.approx(mean + T95_DF2 * se, rel=1e-9)
    t = mean / se
    assert float(row["p_value"]) == pytest.approx(1 - t / math.sqrt(2 + t * t), rel=1e-9)
    ceiling = rows[("linear", "0.5", CEILING, FLOOR)]
    assert float(ceiling["diff_points"]) == pytest.approx(
        statistics.mean(100 * (a - b) for a, b in zip(ACCURACY["supervised_features"], ACCURACY["raw_pixels"],
                                                      strict=True)), rel=1e-9)


def test_one_holm_family_per_table_spans_both_baselines(report):
    rows = [r for r in _comparisons(report).values() if r["protocol"] == "linear"]
    assert len(rows) == 10 and {r["holm_family"] for r in rows} == {"10"}  # 2 budgets x 5 comparisons
    running = 0.0
    for rank, row in enumerate(sorted(rows, key=lambda r: float(r["p_value"]))):
        running = max(running, min(1.0, (10 - rank) * float(row["p_value"])))
        assert float(row["holm_p_value"]) == pytest.approx(running, rel=1e-12)
    markdown = (report / "results.md").read_text()
    for heading in ("synthetic — linear: each method against Random encoder",
                    "synthetic — linear: each method against Raw pixels"):
        section = markdown.split(f"## {heading}", 1)[1].split("\n## ", 1)[0]
        assert "Holm p corrects over the 10 planned comparison(s) of this table, 10 of them tested" in section
    floor_section = markdown.split("## synthetic — linear: each method against Raw pixels", 1)[1].split("\n## ")[0]
    table = [[c.strip() for c in line.strip("|").split("|")] for line in floor_section.splitlines()
             if line.startswith("| ")]
    assert [(cells[0], cells[1], cells[2]) for cells in table[1:]] == [
        ("5%", "SimCLR", FLOOR), ("50%", "SimCLR", FLOOR), ("5%", CEILING, FLOOR), ("50%", CEILING, FLOOR)]
