"""Small readers shared by the end-to-end tests: results files, logs and TensorBoard tags."""

from __future__ import annotations

import json
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def results_files(folder: Path) -> list[dict]:
    return [json.loads(path.read_text()) | {"_dir": str(path.parent)} for path in sorted(folder.rglob("results.json"))]


def scalar_tags(events_dir: Path) -> set[str]:
    tags: set[str] = set()
    for path in events_dir.glob("events.out.tfevents.*"):
        accumulator = EventAccumulator(str(path))
        accumulator.Reload()
        tags |= set(accumulator.Tags()["scalars"])
    return tags


def log_text(folder: Path) -> str:
    return "\n".join(path.read_text() for path in sorted(folder.rglob("ssl_lightning.log")))


def cell_log(cell: dict) -> str:
    """The log of one cell (its results.json as read by `results_files`)."""
    return (Path(cell["_dir"]) / "ssl_lightning.log").read_text()


def shared_cells(shared_sweep: dict, experiments: tuple[str, ...], fractions: tuple[float, ...] = (0.25, 0.5)
                 ) -> list[dict]:
    """The cells of the shared sweep (tests/conftest.py) for these experiments and budgets, in job order."""
    cells = [cell for cell in results_files(shared_sweep["root"] / "multirun")
             if cell["experiment"] in experiments and cell["fraction"] in fractions]
    return sorted(cells, key=lambda cell: int(Path(cell["_dir"]).name.split("_")[0]))
