"""Turning a UserError into one line on stderr and exit code 2, with nothing half-written left behind."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from ssl_lightning.errors import UserError

_HYDRA_FILES = (".hydra", "__main__.log", "ssl_lightning.log")


def remove_fresh_output_dir(run_dir: Path) -> None:
    """Delete what Hydra created for this run (its .hydra folder and log), then the folder if it is empty."""
    for name in _HYDRA_FILES:
        target = run_dir / name
        if target.is_dir():
            shutil.rmtree(target, ignore_errors=True)
        else:
            target.unlink(missing_ok=True)
    keep = Path.cwd().resolve()  # never the folder the user ran from, nor anything above it
    for folder in (run_dir, *run_dir.parents):
        if folder.resolve() == keep or folder.resolve() in keep.parents:
            break
        try:
            folder.rmdir()
        except OSError:
            break


def exit_with_user_error(error: UserError, run_dir: Path | None) -> None:
    if run_dir is not None:
        remove_fresh_output_dir(run_dir)
    print(f"error: {error}", file=sys.stderr, flush=True)
    raise SystemExit(2)
