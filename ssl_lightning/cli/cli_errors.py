"""Turning a UserError into one line on stderr and exit code 2, with nothing half-written left behind."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from ssl_lightning.cli.run_folder import undo_run_folder
from ssl_lightning.errors import UserError


def exit_with_user_error(error: UserError, run_dir: Path | None) -> None:
    if run_dir is not None:
        undo_run_folder(run_dir)  # only what this run created (cli/run_folder.py)
    print(f"error: {error}", file=sys.stderr, flush=True)
    raise SystemExit(2)


def disk_is_full(cause: str, folder: Path | None = None) -> bool:
    """ENOSPC by its errno or text, or a failed write where the folder's disk has (almost) no room left."""
    if "No space left on device" in cause or "[Errno 28]" in cause:
        return True
    if folder is None or "writ" not in cause.lower():
        return False
    try:
        existing = next(p for p in (folder, *folder.parents) if p.exists())
        return shutil.disk_usage(existing).free < (16 << 20)
    except (OSError, StopIteration):
        return False


def describe_cause(cause: str, folder: Path | None = None) -> str:
    """The cause in one line, a full disk named as such."""
    line = " ".join(cause.split())
    if disk_is_full(line, folder):
        return f"the disk is full (no space left on device) - free space or move paths.cache/hydra.run.dir: {line}"
    return line


def failure_line(cause: str, run_dir: Path) -> str:
    """The last line a failed cell prints on stderr: its cause and where its log is."""
    return f"error: cell failed: {describe_cause(cause, run_dir)} (log: {run_dir / 'ssl_lightning.log'})"
