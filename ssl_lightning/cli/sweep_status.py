"""A Hydra callback that notices failed cells at the end of a multirun, so the sweep's exit code says so.

It reads every cell's results.json (cells may have run in other processes under the joblib launcher) and keeps,
per failed cell, its folder, its cause and its log, for the sweep's last line on stderr.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from ssl_lightning.cli import run_folder
from ssl_lightning.cli.cli_errors import describe_cause

failed_cells: list[str] = []


def failed_cell_lines(sweep_dir: Path) -> list[str]:
    """'<cell folder>: <cause> (log: <path>)' for every cell whose results.json is not `ok`."""
    found = []
    for path in sorted(sweep_dir.rglob("results.json")):
        try:
            results = json.loads(path.read_text())
            status, cause = results.get("status"), str(results.get("error"))
        except (OSError, json.JSONDecodeError) as error:
            status, cause = "unreadable", f"results.json unreadable ({error})"
        if status != "ok":
            found.append(f"{path.parent}: {describe_cause(cause, path.parent)} "
                         f"(log: {path.parent / 'ssl_lightning.log'})")
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
