"""Figures, targets and the plain-text table; no torch import, so `run_all` starts fast.

A figure keeps every repeat's value; min and median are derived, and a target is judged on the median.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Target:
    """A bound the median must meet, e.g. Target(">=", 1.5)."""

    op: str
    value: float

    def met_by(self, value: float) -> bool:
        return value >= self.value if self.op == ">=" else value <= self.value

    def __str__(self) -> str:
        return f"{self.op} {self.value:g}"


@dataclass
class Figure:
    """One measured quantity: every repeat's value, so min and median can be reported."""

    benchmark: str
    name: str
    unit: str
    values: list[float]
    target: Target | None = None
    note: str = ""

    @property
    def min(self) -> float:
        return min(self.values)

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def passed(self) -> bool | None:
        """Judged on the median; None when there is no target."""
        return None if self.target is None else self.target.met_by(self.median)

    def to_json(self) -> dict:
        data = asdict(self)
        data["target"] = asdict(self.target) if self.target else None
        return data

    @classmethod
    def from_json(cls, data: dict) -> Figure:
        target = Target(**data["target"]) if data.get("target") else None
        return cls(data["benchmark"], data["name"], data["unit"], list(data["values"]), target, data.get("note", ""))


def verdict(figure: Figure) -> str:
    return {None: "-", True: "pass", False: "FAIL"}[figure.passed]


def format_value(value: float) -> str:
    if value != value:  # NaN
        return "nan"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:#.3g}" if abs(value) < 10 else f"{value:.1f}"


def figure_table(figures: list[Figure], with_benchmark: bool = False) -> str:
    """A plain-text table: figure, unit, min, median, target, pass/fail."""
    header = ["benchmark"] if with_benchmark else []
    header += ["figure", "unit", "min", "median", "target", "result"]
    rows = [header]
    for fig in figures:
        row = [fig.benchmark] if with_benchmark else []
        row += [fig.name, fig.unit, format_value(fig.min), format_value(fig.median),
                str(fig.target) if fig.target else "-", verdict(fig)]
        rows.append(row)
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)
