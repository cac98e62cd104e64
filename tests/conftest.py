"""Shared test fixtures: run the real CLI in a subprocess with outputs kept under tmp_path."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


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
