"""A Hydra callback that notices failed cells at the end of a multirun, so the sweep's exit code says so.

It reads every cell's results.json (cells may have run in other processes under the joblib launcher) and keeps,
per failed cell, its name (its number and the swept values), its cause and its log, for the sweep's last line on
stderr. The cell count and the swept keys are kept in the environment, where the launcher's workers read them too.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from ssl_lightning.cli import run_folder
from ssl_lightning.cli.cli_errors import describe_cause

failed_cells: list[str] = []
CELLS_ENV = "SSL_LIGHTNING_SWEEP_CELLS"


def remember_cells(argv: list[str]) -> None:
    """Before a `-m` sweep starts: how many cells it has and which keys it sweeps (what names a cell)."""
    from ssl_lightning.cli.preflight import cells_of, parse

    os.environ.pop(CELLS_ENV, None)
    found = cells_of(argv)
    if found is None or not found[1]:
        return
    swept = sorted({override.key_or_group for override in parse([a for a in argv if not a.startswith("-")])
                    if override.is_sweep_override()})
    os.environ[CELLS_ENV] = json.dumps({"count": len(found[0]), "swept": swept})


def _key(line: str) -> str:
    """The key or group a task override sets, as Hydra's parser reads it."""
    from ssl_lightning.cli.preflight import parse

    return str(parse([line])[0].key_or_group)


def cell_name(task: list[str], num: int | None) -> str:
    """'sweep cell 2/3 (data.labels_per_class=1000)': the cell's number (1-based, as the sweep check counts) and
    its swept values; all its overrides when the sweep's keys are not known."""
    try:
        known = json.loads(os.environ.get(CELLS_ENV, ""))
    except json.JSONDecodeError:
        known = {}
    swept = set(known.get("swept", []))
    values = [line for line in task if _key(line) in swept] or list(task)
    number = "?" if num is None else str(num + 1)
    of = f"/{known['count']}" if "count" in known else ""
    return f"sweep cell {number}{of} ({' '.join(values)})"


def _job_folder(results: Path, sweep_dir: Path) -> Path:
    """The cell's own folder: the one with `.hydra/` at or above results.json (split_<seed>/, fold_<k>/ below)."""
    for folder in (results.parent, *results.parent.parents):
        if (folder / ".hydra").is_dir() or folder == sweep_dir:
            return folder
    return results.parent


def _name_of(folder: Path) -> str | None:
    """The cell's name from the files Hydra wrote in its folder; None when they cannot be read."""
    import yaml

    try:
        task = yaml.safe_load((folder / ".hydra" / "overrides.yaml").read_text())
        hydra = yaml.safe_load((folder / ".hydra" / "hydra.yaml").read_text())
        num = hydra["hydra"]["job"].get("num")
    except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError):
        return None
    if not isinstance(task, list):
        return None
    return cell_name([str(line) for line in task], num if isinstance(num, int) else None)


def failed_cell_lines(sweep_dir: Path) -> list[str]:
    """'<cell name> in <folder>: <cause> (log: <path>)' for every cell whose results.json is not `ok`."""
    found = []
    for path in sorted(sweep_dir.rglob("results.json")):
        try:
            results = json.loads(path.read_text())
            status, cause = results.get("status"), str(results.get("error"))
        except (OSError, json.JSONDecodeError, AttributeError) as error:
            status, cause = "unreadable", f"results.json unreadable ({error})"
        if status != "ok":
            job = _job_folder(path, sweep_dir)
            name = _name_of(job)
            where = f"{name} in {path.parent}" if name else str(path.parent)
            found.append(f"{where}: {describe_cause(cause, path.parent)} (log: {job / 'ssl_lightning.log'})")
    return found


class SweepStatus(Callback):
    """Also takes the run or sweep folder's state before Hydra creates it (cli/run_folder.py): a user error then
    removes only what its run created."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            folder = OmegaConf.select(config, "hydra.run.dir", throw_on_missing=True)
        except Exception:  # noqa: BLE001 - an interpolation only Hydra's job can resolve: then nothing is removed
            return
        run_folder.remember_run_folder(str(folder))

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            folder = OmegaConf.select(config, "hydra.sweep.dir", throw_on_missing=True)
        except Exception:  # noqa: BLE001 - as above
            return
        run_folder.remember_sweep_folder(str(folder))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        failed_cells.extend(failed_cell_lines(Path(config.hydra.sweep.dir)))
