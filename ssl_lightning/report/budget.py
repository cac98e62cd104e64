"""The label budget of a run: a fraction of the pool (`data.fraction`) or a count per class
(`data.labels_per_class`). One type so that tables, comparisons and figures group and sort by either."""

from __future__ import annotations

from dataclasses import dataclass

FRACTION, PER_CLASS = "fraction", "labels_per_class"


def fraction_text(fraction: float) -> str:
    """0.05 -> '5%', 0.125 -> '12.5%'."""
    return f"{round(100 * fraction, 6):g}%"


@dataclass(frozen=True)
class Budget:
    """kind FRACTION (value in 0-1) or PER_CLASS (value = labelled images per class)."""

    kind: str
    value: float

    @property
    def text(self) -> str:
        """'5%' or '10/class'."""
        return fraction_text(self.value) if self.kind == FRACTION else f"{self.value:g}/class"

    @property
    def file_part(self) -> str:
        """For file names: '5pct' or '10perclass'."""
        return self.text.replace("%", "pct").replace("/class", "perclass")

    @property
    def fraction(self) -> float | None:
        return self.value if self.kind == FRACTION else None

    @property
    def labels_per_class(self) -> int | None:
        return int(self.value) if self.kind == PER_CLASS else None

    @property
    def order(self) -> tuple[int, float]:
        """Counts per class (few-shot) before fractions, each ascending."""
        return (0 if self.kind == PER_CLASS else 1), self.value


def budget_of(fraction: float | None, labels_per_class: int | None) -> Budget:
    """labels_per_class wins when a run records both (it replaces the fraction as the budget)."""
    if labels_per_class is not None:
        return Budget(PER_CLASS, float(labels_per_class))
    if fraction is None:
        raise ValueError("neither fraction nor labels_per_class is recorded")
    return Budget(FRACTION, float(fraction))
