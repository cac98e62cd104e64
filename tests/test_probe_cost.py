"""benchmarks.probe_cost runs end to end on tiny sizes and prints every figure (no timing checks). `make test` checks
the same figures in run_all's combined tiny run (tests/test_benchmarks.py); this lone run is `make test-bench`'s."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from benchmarks.run_all import REGISTRY
from tests.test_benchmarks import NUMBER, REPO

pytestmark = pytest.mark.bench

FIGURES = ("pretext stage (SimCLR, trained once)", "feature extraction (every train and test image)",
           "feature store read", "linear (L-BFGS, penalty grid): one extra label split",
           "linear (L-BFGS, penalty grid): extra split / pretext", "k-NN: one extra label split",
           "k-NN: extra split / pretext")


def test_probe_cost_tiny_prints_pretext_features_and_per_split_seconds():
    done = subprocess.run([sys.executable, "-m", "benchmarks.probe_cost", "--tiny", "--repeats", "1"], cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for figure in FIGURES:
        assert re.search(rf"^{re.escape(figure)}\s+\S+\s+{NUMBER}\s+{NUMBER}\s", done.stdout, re.MULTILINE), figure
    assert re.search(r"^note: knn test accuracy over split seeds 1\.\.1: [\d.]+$", done.stdout, re.MULTILINE)
    assert "probe_cost" in {benchmark.name for benchmark in REGISTRY if benchmark.opt_in is None}  # in `make bench`
