"""What a run folder held before Hydra wrote into it, so that a user error removes only what this run created.

Hydra creates the run folder (and any missing parent), writes `.hydra/` and opens the log before our code runs; a
UserError found then (e.g. by data loading) must leave the disk as it was. The folder may be an earlier run's
(the same `hydra.run.dir` twice) and its parents may be the user's own: so the state is taken before Hydra's
`mkdir` (the SweepStatus callback's `on_run_start` / `on_multirun_start`), and undone exactly: the parents this
run created are removed when empty, an earlier run's `.hydra/` files get their content back, its log its length.
A folder whose state was not taken is left alone.

In a sweep the job folders are made one by one inside the launcher, after the last callback before them: the
sweep folder's state (which parents were missing, which job folders existed) is taken once and kept in the
environment, where the launcher's worker processes (joblib) read it too. A job folder that existed is left alone.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

HYDRA_DIR = ".hydra"
LOGS = ("ssl_lightning.log", "__main__.log")
SWEEP_ENV = "SSL_LIGHTNING_SWEEP_BEFORE"


@dataclass
class FolderState:
    missing: list[str]  # the folder and the parents above it that did not exist, deepest first
    hydra_files: dict[str, bytes] | None  # `.hydra/<name>` -> its bytes; None: there was no `.hydra/`
    logs: dict[str, int]  # log name -> its size; a log not listed did not exist


_before: dict[str, FolderState] = {}


def _missing(folder: Path) -> list[str]:
    missing = []
    for path in (folder, *folder.parents):
        if path.exists():
            break
        missing.append(str(path))
    return missing


def take_state(folder: str | Path) -> FolderState:
    """The folder's state now (cheap: a few stats and the small `.hydra/*.yaml` files)."""
    folder = Path(os.path.abspath(folder))
    hydra = folder / HYDRA_DIR
    files = None
    if hydra.is_dir():
        files = {path.name: path.read_bytes() for path in hydra.iterdir() if path.is_file()}
    logs = {name: (folder / name).stat().st_size for name in LOGS if (folder / name).is_file()}
    return FolderState(_missing(folder), files, logs)


def remember_run_folder(folder: str | Path) -> None:
    """Before Hydra creates a single run's folder."""
    _before.clear()
    _before[os.path.abspath(folder)] = take_state(folder)


def remember_sweep_folder(folder: str | Path) -> None:
    """Before Hydra creates a sweep's folder: which parents are missing and which job folders exist already."""
    path = Path(os.path.abspath(folder))
    existing = sorted(child.name for child in path.iterdir() if child.is_dir()) if path.is_dir() else []
    os.environ[SWEEP_ENV] = json.dumps({"folder": str(path), "missing": _missing(path), "existing": existing})


def forget() -> None:
    """A new command line starts (tests run several in one process)."""
    _before.clear()
    os.environ.pop(SWEEP_ENV, None)


def _state_for(run_dir: Path) -> FolderState | None:
    """The state taken before this run, or None when none was (then nothing is removed)."""
    key = os.path.abspath(run_dir)
    if key in _before:
        return _before[key]
    try:
        sweep = json.loads(os.environ.get(SWEEP_ENV, ""))
    except json.JSONDecodeError:
        return None
    parent = Path(key).parent
    if str(parent) != sweep.get("folder") or Path(key).name in sweep.get("existing", []):
        return None
    return FolderState([key, *sweep.get("missing", [])], None, {})  # a job folder this sweep made


def undo_run_folder(run_dir: Path) -> None:
    """Put the run folder back as it was before this run: remove what it created, restore what it overwrote."""
    state = _state_for(run_dir)
    if state is None:
        return
    hydra = run_dir / HYDRA_DIR
    if state.hydra_files is None:
        shutil.rmtree(hydra, ignore_errors=True)
    else:
        hydra.mkdir(exist_ok=True)
        for path in hydra.iterdir():
            if path.is_file() and path.name not in state.hydra_files:
                path.unlink(missing_ok=True)
        for name, content in state.hydra_files.items():
            (hydra / name).write_bytes(content)
    for name in LOGS:
        log = run_dir / name
        if name not in state.logs:
            log.unlink(missing_ok=True)
        elif log.is_file() and log.stat().st_size > state.logs[name]:
            os.truncate(log, state.logs[name])
    for folder in state.missing:  # deepest first; stops at the first one not empty
        try:
            Path(folder).rmdir()
        except OSError:
            break
