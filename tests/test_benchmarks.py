"""The benchmark scripts run end to end on tiny sizes and print every figure they promise (no timing checks)."""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest

from benchmarks import run_all
from benchmarks.figures import Figure, Target, figure_table
from tests.conftest import call_main

REPO = Path(__file__).resolve().parent.parent
PRETEXT_METHODS = ("rotation", "rotation_jitter", "simclr")
EXPECTED = {
    "pretext_throughput": [f"{method}/{backbone} {kind}" for method in PRETEXT_METHODS
                           for backbone in ("compact", "resnet18")
                           for kind in ("ours", "conventional", "ours/conventional", "ours channels_last",
                                        "channels_last/nchw")],
    "data_overhead": [f"{method}{path} {kind}" for method in (*PRETEXT_METHODS, "classifier")
                      for path in ("", " (channels_last)")
                      for kind in ("real data path", "batch in memory", "real/in-memory")],
    "memory": ["cell max RSS", "cell wall time"],
    "busy_machine": [f"{method} {state}: {policy}" for method in ("rotation", "simclr")
                     for state in ("idle", "busy", "busy nice 0") for policy in ("default", "1 thread", "auto")]
                    + [f"{method} {ratio}" for method in ("rotation", "simclr")
                       for ratio in ("busy: auto/1 thread", "busy nice 0: auto/1 thread", "idle: auto/default")],
}
NUMBER = r"(?:[\d,]+(?:\.\d+)?(?:e[-+]?\d+)?|nan)"


def sections(output: str) -> dict[str, str]:
    """run_all's output split at its `#### <benchmark>:` headers (the summary stays in the last one)."""
    parts = re.split(r"^#### (\w+): ", output, flags=re.MULTILINE)
    found: dict[str, str] = {}
    for name, text in zip(parts[1::2], parts[2::2], strict=True):
        found[name] = found.get(name, "") + text
    return found


@pytest.fixture(scope="module")
def tiny_run() -> subprocess.CompletedProcess:
    """`python -m benchmarks.run_all --tiny --repeats 1`: every registered benchmark, each in its own process."""
    return subprocess.run([sys.executable, "-m", "benchmarks.run_all", "--tiny", "--repeats", "1"], cwd=REPO,
                          capture_output=True, text=True, timeout=600)


def test_run_all_tiny_runs_every_default_benchmark(tiny_run):
    assert tiny_run.returncode == 0, tiny_run.stdout[-3000:] + tiny_run.stderr[-3000:]
    summary = tiny_run.stdout.split("SUMMARY", 1)[1]
    for name in EXPECTED:
        assert re.search(rf"^  {name}: ok \(\d+ s\)$", summary, re.MULTILINE), name
    assert "grid_time: not run (add --grid)" in summary
    assert re.search(r"targets: \d+/\d+ met", summary)


@pytest.mark.parametrize("benchmark", sorted(EXPECTED))
def test_each_benchmark_prints_its_machine_and_figures(tiny_run, benchmark):
    section = sections(tiny_run.stdout)[benchmark]
    for fact in ("cores:", "torch:", "device:"):
        assert f"   {fact} " in section, fact
    for name in EXPECTED[benchmark]:
        # in the benchmark's own table (figure, unit, min, median) and in run_all's table
        assert re.search(rf"^{re.escape(name)}\s+\S+\s+{NUMBER}\s+{NUMBER}\s", section, re.MULTILINE), name
        assert re.search(rf"^{benchmark}\s+{re.escape(name)}\s+\S+\s+{NUMBER}\s+{NUMBER}\s", tiny_run.stdout,
                         re.MULTILINE), name


def test_probe_cost_prints_pretext_features_and_per_split_seconds(tiny_run):
    """probe_cost's own figures, from its `--tiny --repeats 1` run inside run_all (tests/test_probe_cost.py, under
    the bench marker, runs it alone)."""
    from tests.test_probe_cost import FIGURES

    assert re.search(r"^  probe_cost: ok \(\d+ s\)$", tiny_run.stdout.split("SUMMARY", 1)[1], re.MULTILINE)
    section = sections(tiny_run.stdout)["probe_cost"]
    for figure in FIGURES:
        assert re.search(rf"^{re.escape(figure)}\s+\S+\s+{NUMBER}\s+{NUMBER}\s", section, re.MULTILINE), figure
    assert re.search(r"^note: knn test accuracy over split seeds 1\.\.1: [\d.]+$", section, re.MULTILINE)


@dataclass(frozen=True)
class Row:
    """One figure as a table prints it: unit, min, median, target ("-" or e.g. ">= 1.5") and result."""

    unit: str
    min: float
    median: float
    target: str
    result: str


def table_rows(text: str, with_benchmark: bool) -> dict[str, Row]:
    """The figure rows of `figure_table`'s tables in `text`, by figure name (with the benchmark's name in front
    when `with_benchmark`: run_all's summary table). Columns are at least two spaces apart; names have single
    spaces."""
    rows: dict[str, Row] = {}
    for line in text.splitlines():
        cells = re.split(r"\s{2,}", line.strip())
        if len(cells) != 6 + with_benchmark or not all(re.fullmatch(NUMBER, c) for c in cells[-4:-2]):
            continue
        name = " ".join(cells[:1 + with_benchmark]) if with_benchmark else cells[0]
        unit, low, median, target, result = cells[-5:]
        rows[name] = Row(unit, number(low), number(median), target, result)
    return rows


def number(text: str) -> float:
    return float(text.replace(",", ""))


# Ratio figures and their parts (numerator, denominator, scale), from the figure's name.
RATIOS = [
    (r"(.*) ours/conventional", r"\1 ours", r"\1 conventional", 1.0),
    (r"(.*) channels_last/nchw", r"\1 ours channels_last", r"\1 ours", 1.0),
    (r"(.*) real/in-memory", r"\1 real data path", r"\1 batch in memory", 1.0),
    (r"(busy_machine .*): ([\w ]+)/([\w ]+)", r"\1: \2", r"\1: \3", 1.0),
    (r"(probe_cost .*): extra split / pretext", r"\1: one extra label split",
     "probe_cost pretext stage (SimCLR, trained once)", 100.0),
]


def test_printed_verdicts_follow_the_printed_medians_and_targets(tiny_run):
    """Each verdict is its target applied to the printed median (the summary's count of met targets too), and
    --repeats 1 reaches every benchmark (one value: min = median)."""
    rows = table_rows(tiny_run.stdout.split("SUMMARY", 1)[1], with_benchmark=True)
    assert set(rows) >= {f"{benchmark} {name}" for benchmark, names in EXPECTED.items() for name in names}
    judged = []
    for name, row in rows.items():
        assert row.min == row.median, name
        if row.target == "-":
            assert row.result == "-", name
            continue
        op, bound = row.target.split()
        met = row.median >= float(bound) if op == ">=" else row.median <= float(bound)
        if abs(row.median - float(bound)) > 0.005 * abs(float(bound)):  # beyond the printed rounding
            assert row.result == ("pass" if met else "FAIL"), (name, row)
        judged.append(row.result == "pass")
    assert re.search(rf"^  targets: {sum(judged)}/{len(judged)} met", tiny_run.stdout, re.MULTILINE)
    # the targets the benchmarks promise are there
    assert rows["pretext_throughput simclr/compact ours/conventional"].target == ">= 1.5"
    for method in (*PRETEXT_METHODS, "classifier"):
        assert rows[f"data_overhead {method} real/in-memory"].target == "<= 1.1"
    assert rows["memory cell max RSS"].target == "<= 3"
    assert rows["pretext_throughput simclr/compact ours"].target == "-"


def test_ratio_figures_are_the_quotients_of_the_printed_figures(tiny_run):
    """Every ratio figure (unit x or %) equals its parts' quotient (one repeat: no median of ratios), to the
    printed 3 significant digits; and each benchmark's own table prints the numbers of run_all's table."""
    rows = table_rows(tiny_run.stdout.split("SUMMARY", 1)[1], with_benchmark=True)
    checked = set()
    for pattern, numerator, denominator, scale in RATIOS:
        for name, row in rows.items():
            if match := re.fullmatch(pattern, name):
                top, bottom = rows[match.expand(numerator)], rows[match.expand(denominator)]
                assert row.median == pytest.approx(scale * top.median / bottom.median, rel=0.02), name
                checked.add(name)
    assert {name for name, row in rows.items() if row.unit in ("x", "%")} == checked
    assert len(checked) >= 20  # 28 today: the check ran
    for benchmark, section in sections(tiny_run.stdout.split("SUMMARY", 1)[0]).items():
        own = table_rows(section, with_benchmark=False)
        assert own and own == {name.split(" ", 1)[1]: row for name, row in rows.items()
                               if name.split(" ", 1)[0] == benchmark}, benchmark


def test_figure_statistics_and_verdicts():
    figure = Figure("bench", "ratio", "x", [2.0, 1.0, 1.4], Target(">=", 1.5))
    assert (figure.min, figure.median, figure.passed) == (1.0, 1.4, False)
    assert Figure("bench", "ratio", "x", [1.0, 1.6, 1.7], Target(">=", 1.5)).passed is True
    assert Figure("bench", "overhead", "x", [1.2, 1.05, 1.0], Target("<=", 1.1)).passed is True
    assert Figure("bench", "speed", "img/s", [3.0]).passed is None
    assert Figure.from_json(figure.to_json()) == figure
    table = figure_table([figure], with_benchmark=True)
    assert re.search(r"^bench\s+ratio\s+x\s+1\.00\s+1\.40\s+>= 1\.5\s+FAIL$", table, re.MULTILINE), table


def test_run_all_selection_registry_and_opt_in():
    default = [b.name for b in run_all.selected(run_all.parse_args([]))]
    assert default == ["pretext_throughput", "data_overhead", "memory", "probe_cost", "busy_machine"]
    assert "data_scale" in [b.name for b in run_all.selected(run_all.parse_args(["--scale"]))]
    assert {"cpu_paths", "threads"} <= {b.name for b in run_all.selected(run_all.parse_args(["--cpu"]))}
    assert "grid_time" in [b.name for b in run_all.selected(run_all.parse_args(["--grid"]))]
    assert [b.name for b in run_all.selected(run_all.parse_args(["--only", "memory"]))] == ["memory"]


def test_run_all_rejects_unknown_benchmarks():
    result = call_main(run_all.main, ["--only", "memory,nope"], REPO)  # in-process: argparse's exit 2
    assert result.returncode == 2
    assert "unknown benchmark(s) ['nope']" in result.stderr


def test_missing_and_failing_benchmarks_are_reported(tmp_path):
    args = SimpleNamespace(tiny=True, repeats=None, threads=None)
    missing = run_all.run_one(run_all.Benchmark("not_written_yet"), args, tmp_path)
    assert missing.status == "skipped"
    # run_all itself does not accept --json, so as a "benchmark" it exits 2: reported as failed, no figures
    failing = run_all.run_one(run_all.Benchmark("run_all"), args, tmp_path)
    assert failing.status == "failed" and failing.figures is None
    assert "run_all: failed" in run_all.summary([missing, failing], tiny=True)


def test_memory_cell_overrides_let_the_user_replace_defaults():
    from benchmarks.memory import cell_overrides

    assert cell_overrides(False, False, []) == ["+experiment=simclr", "data.fraction=0.25", "profile=cpu"]
    assert cell_overrides(True, True, []) == ["+experiment=simclr", "data=synthetic", "profile=smoke",
                                              "trainer=gpu"]
    assert cell_overrides(False, True, ["profile=smoke", "trainer=cpu"]) == [
        "+experiment=simclr", "data.fraction=0.25", "profile=smoke", "trainer=cpu"]
