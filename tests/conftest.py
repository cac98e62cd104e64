"""Shared test fixtures: run the real CLI in a subprocess with outputs kept under tmp_path; one torch thread."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent

if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs one pytest worker per core: the CLI processes each test starts get one thread too, or two
    # workers' OpenMP threads spin on each other's cores (README, Performance: 5-15x slower).
    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(variable, "1")


def run_cli(args: list[str], tmp_path: Path, multirun: bool = False, timeout: int = 300,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`python -m ssl_lightning <args>` with run/sweep/cache folders inside tmp_path."""
    folders = [f"paths.cache={tmp_path / 'cache'}",
               f"hydra.sweep.dir={tmp_path / 'multirun'}" if multirun else f"hydra.run.dir={tmp_path / 'run'}"]
    command = [sys.executable, "-m", "ssl_lightning", *(["-m"] if multirun else []), *args, *folders]
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=timeout, env=full_env)


@pytest.fixture
def cli(tmp_path):
    def _run(*args: str, multirun: bool = False, timeout: int = 300, env: dict[str, str] | None = None):
        return run_cli(list(args), tmp_path, multirun=multirun, timeout=timeout, env=env)

    return _run


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    """In-process tests use one torch thread: on 2 shared cores, 2 OpenMP threads per process oversubscribe the
    CPU (measured under load: 30 tiny training steps took 0.8 s with one thread and 6-20 s with two)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
