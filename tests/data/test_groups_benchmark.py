"""benchmarks.group_leakage runs end to end in its tiny mode and prints both arms and the inflation (an opt-in
benchmark script: the `bench` marker keeps it out of `make test`; `make test-bench` runs it)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.bench


def test_group_leakage_tiny_prints_both_accuracies_and_the_inflation():
    done = subprocess.run([sys.executable, "-m", "benchmarks.group_leakage", "--tiny"], cwd=REPO,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    number = r"\d\.\d{3}"
    assert re.search(rf"by tile \(data\.group_by=none\)\s+{number}", done.stdout), done.stdout
    assert re.search(rf"by patient \(data\.group_by=auto\)\s+{number}", done.stdout), done.stdout
    assert re.search(r"inflation \(by tile - by patient\)\s+[+-]\d\.\d{3}", done.stdout), done.stdout
