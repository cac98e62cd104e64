"""The opt-in benchmark scripts (grid_time, cpu_paths, threads, data_scale, eval_memory; busy_machine's PASSIVE
worker) run end to end on tiny sizes and print their figures (no timing checks). They take about 5 minutes of the 2
cores, so they carry the `bench` marker: `make test` leaves them out (run_all's combined tiny run in
test_benchmarks.py stays), `make test-bench` runs them."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from benchmarks import pretext_curves
from tests.test_benchmarks import NUMBER, REPO

pytestmark = pytest.mark.bench


def test_grid_time_tiny_measures_both_variants():
    result = subprocess.run([sys.executable, "-m", "benchmarks.grid_time", "--tiny"], cwd=REPO, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    for name in ("grid wall time (reuse)", "grid wall time (no reuse)", "pretext stage total (no reuse)"):
        assert name in result.stdout
    assert "4 cells ok" in result.stdout


@pytest.mark.parametrize(("command", "figures"), [
    (["benchmarks.cpu_paths", "--backbones", "compact", "--paths", "nchw,channels_last"],
     [f"{m}/compact {k}" for m in ("rotation", "rotation_jitter", "simclr", "classifier")
      for k in ("nchw", "channels_last", "channels_last/nchw")]),
    (["benchmarks.threads"], ["alone, 2 threads: per process", "2 processes x 1 thread: total",
                              "2 processes x 2 threads, PASSIVE: total"]),
])
def test_cpu_fast_path_benchmarks_print_their_figures(command, figures):
    done = subprocess.run([sys.executable, "-m", *command, "--tiny", "--repeats", "1"], cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    for figure in figures:
        assert re.search(rf"^{re.escape(figure)}\s+\S+\s+{NUMBER}", done.stdout, re.MULTILINE), figure


def test_data_scale_tiny_measures_the_store_and_both_cells_of_a_sweep():
    done = subprocess.run([sys.executable, "-m", "benchmarks.data_scale", "--tiny", "--repeats", "1"], cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for figure in ("store build, 1 decode worker (60 tiles)", "second cell of the sweep: time to first step",
                   "first cell: peak RssAnon", "second cell: peak RssAnon", "sweep process: peak RSS",
                   "loader: store/in-memory", "pretext (rotation) store/in-memory"):
        assert re.search(rf"^{re.escape(figure)}\s+\S+\s+{NUMBER}\s+{NUMBER}\s", done.stdout, re.MULTILINE), figure
    assert re.search(r"second cell of the sweep \(simclr\): first training step after [\d.]+ s", done.stdout)


def test_eval_memory_tiny_prints_both_peaks():
    done = subprocess.run([sys.executable, "-m", "benchmarks.eval_memory", "--tiny"], cwd=REPO, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for label in ("capped by area", "512 per batch"):
        assert re.search(rf"{re.escape(label)}\):?\s+{NUMBER} GB", done.stdout), label


def test_busy_machine_measures_the_passive_variant_in_its_own_process():
    """run_all's tiny run (tests/test_benchmarks.py) leaves the PASSIVE worker out; here it runs, and the markdown
    table for README has every policy's row."""
    done = subprocess.run([sys.executable, "-m", "benchmarks.busy_machine", "--tiny", "--passive"], cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    for method in ("rotation", "simclr"):
        for state in ("idle", "busy", "busy nice 0"):
            figure = f"{method} {state}: default, OMP_WAIT_POLICY=PASSIVE"
            assert re.search(rf"^{re.escape(figure)}\s+img/s\s+{NUMBER}", done.stdout, re.MULTILINE), figure
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ")]
    assert rows[0] == ("| policy | rotation idle | rotation busy | rotation busy nice 0 | simclr idle | simclr busy | "
                       "simclr busy nice 0 |")
    names = [re.sub(r"default \(\d+ threads?\)", "default", row.split(" | ")[0].removeprefix("| "))
             for row in rows[1:]]
    assert names == ["default", "1 thread", "auto", "default, OMP_WAIT_POLICY=PASSIVE"]


def test_few_label_study_tiny_runs_every_arm_and_reuses_the_encoders(tmp_path):
    out = tmp_path / "few"
    done = subprocess.run([sys.executable, "-m", "benchmarks.few_label_study", "--out", str(out), "--tiny",
                           "--seeds", "2", "--splits", "2"], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    report = (out / "report" / "results.md").read_text()
    for comparison in ("SimCLR vs Raw pixels (linear, 1/class)", "Rotation vs Raw pixels (knn, 5/class)",
                       "SimCLR vs Supervised (finetune, 5/class)"):
        assert comparison in report
    for arm in ("simclr", "rotation"):  # 2 seeds x 2 budgets, each encoder from the frozen sweep's store
        assert (out / f"finetune_{arm}.log").read_text().count("reusing pretext") == 4, arm
    rows = pretext_curves.curves(out / "simclr.log") + pretext_curves.curves(out / "rotation.log")
    assert {(row["method"], row["seed"], row["epoch"]) for row in rows} == {  # --tiny: 1 pretext epoch, seeds 0-1
        (method, seed, "1") for method in ("simclr", "rotation") for seed in ("0", "1")}
    assert all(0 <= float(row["val_knn_acc"]) <= 100 and float(row["val_loss"]) > 0 for row in rows)

    again = subprocess.run([sys.executable, "-m", "benchmarks.few_label_study", "--out", str(out), "--tiny",
                            "--seeds", "3", "--splits", "2", "--steps", "raw_pixels"], cwd=REPO, capture_output=True,
                           text=True, timeout=120)  # other seeds into the same folder: refused, nothing reused
    assert again.returncode == 2 and "holds a finished sweep run with other settings" in again.stderr
