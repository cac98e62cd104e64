"""A Hydra callback that notices failed cells at the end of a multirun, so the sweep's exit code says so."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

failed_cells: list[str] = []


class SweepStatus(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        for path in sorted(sweep_dir.rglob("results.json")):
            try:
                status = json.loads(path.read_text()).get("status")
            except (OSError, json.JSONDecodeError):
                status = "unreadable"
            if status != "ok":
                failed_cells.append(str(path.parent))
