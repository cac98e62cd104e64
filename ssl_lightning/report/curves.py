"""Per-epoch curves from a run's TensorBoard event files (tb/pretext, tb/downstream)."""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

Series = dict[float, float]  # epoch (1-based, or the step when no `epoch` scalar was logged) -> value

_EVENT_NAME = re.compile(r"events\.out\.tfevents\.(\d+)\..*?(\d+)?$")


def _file_order(path: Path) -> tuple[int, int, str]:
    """Write order of Lightning's event files: creation time, then the per-process counter."""
    match = _EVENT_NAME.match(path.name)
    if not match:
        return 0, 0, path.name
    return int(match.group(1)), int(match.group(2) or 0), path.name


def _read_file(path: Path) -> dict[str, Series]:
    from tensorboard.backend.event_processing.event_accumulator import SCALARS, EventAccumulator

    accumulator = EventAccumulator(str(path), size_guidance={SCALARS: 0})
    accumulator.Reload()
    tags = accumulator.Tags().get(SCALARS, [])
    epoch_at = {e.step: e.value for e in accumulator.Scalars("epoch")} if "epoch" in tags else {}
    series: dict[str, Series] = {}
    for tag in tags:
        if tag == "epoch":
            continue
        points = series.setdefault(tag, {})
        for event in accumulator.Scalars(tag):
            x = epoch_at[event.step] + 1 if event.step in epoch_at else float(event.step)
            points[float(x)] = float(event.value)
    return series


def read_scalars(folder: Path) -> dict[str, Series]:
    """tag -> {x: value} over every event file in folder; a later file wins where an epoch was logged twice."""
    merged: dict[str, Series] = defaultdict(dict)
    if not folder.is_dir():
        return {}
    for path in sorted(folder.glob("events.out.tfevents.*"), key=_file_order):
        for tag, points in _read_file(path).items():
            merged[tag].update(points)
    return dict(merged)


def mean_curve(curves: list[Series]) -> tuple[list[float], list[float]]:
    """Mean over seeds at each x that at least one seed logged."""
    values: dict[float, list[float]] = defaultdict(list)
    for curve in curves:
        for x, y in curve.items():
            values[x].append(y)
    xs = sorted(values)
    return xs, [sum(values[x]) / len(values[x]) for x in xs]
