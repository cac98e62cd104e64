"""The study's table per (data set, protocol): rows = label fraction, columns = method, plus results.md."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ssl_lightning.report.aggregate import SUPERVISED, Cell, by_group, fraction_text
from ssl_lightning.report.collect import Collection
from ssl_lightning.report.columns import RANDOM_ENCODER, display

EMPTY = "—"
REFERENCE_ROW = "{} 100%"  # the supervised experiment with every label, named as its column is
RANDOM_ENCODER_NOTE = (
    f"Note: under the linear protocol the supervised experiment trains nothing before the probe, so its column, "
    f'"{RANDOM_ENCODER}", is a randomly initialised, untrained encoder probed linearly. It shows what a linear '
    "probe gets from random features; it is not a supervised baseline.")


def format_cell(cell: Cell | None) -> str:
    """'loss / acc% [95% CI] (n=k)' over the ok runs (no CI from one run); failures are counted, never averaged."""
    if cell is None or not cell.runs:
        return EMPTY
    if cell.n == 0:
        return f"FAILED ({cell.n_failed} of {len(cell.runs)})"
    loss, acc = cell.loss_estimate, cell.acc_estimate
    interval = "" if acc.low is None or acc.high is None else f" [{acc.low:.2f}, {acc.high:.2f}]"
    failed = f" [{cell.n_failed} failed]" if cell.n_failed else ""
    return f"{loss.mean:.4f} / {acc.mean:.2f}%{interval} (n={cell.n}){failed}"


@dataclass(frozen=True)
class Table:
    data: str
    protocol: str
    columns: list[str]
    rows: list[tuple[str, list[str]]]
    cells: list[Cell]

    @property
    def heading(self) -> str:
        return f"{self.data} — {self.protocol}"


def build_table(data: str, protocol: str, cells: list[Cell]) -> Table:
    """Fraction rows (supervised at 100% excluded) and the supervised 100% reference row when present."""
    orders = {c.label: c.column_order for c in cells}
    columns = sorted(orders, key=orders.__getitem__)
    lookup = {(c.label, c.fraction): c for c in cells if not c.is_reference}
    fractions = sorted({c.fraction for c in cells if not c.is_reference})
    rows = [(fraction_text(f), [format_cell(lookup.get((col, f))) for col in columns]) for f in fractions]
    reference = {c.label: c for c in cells if c.is_reference}
    if reference:
        name = REFERENCE_ROW.format(display(SUPERVISED, protocol))
        rows.append((name, [format_cell(reference.get(col)) for col in columns]))
    return Table(data, protocol, columns, rows, cells)


def build_tables(cells: list[Cell]) -> list[Table]:
    return [build_table(data, protocol, group) for (data, protocol), group in by_group(cells).items()]


def markdown_table(table: Table) -> str:
    """A pipe table padded to equal widths so it also reads well in a terminal."""
    header = ["fraction", *table.columns]
    body = [[name, *texts] for name, texts in table.rows]
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]

    def line(row: list[str]) -> str:
        return "| " + " | ".join(text.ljust(width) for text, width in zip(row, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (width + 2) for width in widths) + "|"
    return "\n".join([line(header), rule, *(line(row) for row in body)])


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def failed_lines(table: Table, root: Path) -> list[str]:
    lines = []
    for cell in table.cells:
        for run in cell.failed_runs:
            lines.append(f"- {cell.label}, {fraction_text(cell.fraction)}, seed {run.seed}: {run.error} "
                         f"(`{_relative(run.results_path, root)}`)")
    return lines


def repeat_lines(table: Table) -> list[str]:
    return [f"- {cell.label}, {fraction_text(cell.fraction)}: seed(s) {', '.join(map(str, cell.repeated_seeds))} "
            "averaged more than once" for cell in table.cells if cell.repeated_seeds]


def render_tables(tables: list[Table], root: Path) -> str:
    """Each table under its heading, its failed runs listed below it."""
    parts = []
    for table in tables:
        parts += [f"## {table.heading}", "", markdown_table(table), ""]
        failed = failed_lines(table, root)
        if failed:
            parts += ["Failed runs:", "", *failed, ""]
        if RANDOM_ENCODER in table.columns:
            parts += [RANDOM_ENCODER_NOTE, ""]
        repeated = repeat_lines(table)
        if repeated:
            parts += ["Repeated seeds (every run is counted in n):", "", *repeated, ""]
    return "\n".join(parts)


def render_markdown(collection: Collection, tables: list[Table], figures: list[Path], comparisons: str = "") -> str:
    intro = [
        "# Results", "",
        f"{len(collection.runs)} run(s) from `{collection.root}`. Cells: mean test loss / mean test accuracy "
        "[its 95% confidence interval, t distribution with n-1 degrees of freedom] (n = runs averaged, one per "
        "seed and split seed); no interval from a single run; failed runs are not averaged. Every run's values: "
        "`results_runs.csv`; per cell with standard deviations and intervals: `results.csv`.",
        "",
    ]
    parts = [*intro, render_tables(tables, collection.root)]
    if comparisons:
        parts.append(comparisons)
    if collection.problems:
        parts += ["## Unusable results.json files", "",
                  *(f"- `{_relative(p.path, collection.root)}`: {p.reason}" for p in collection.problems), ""]
    if figures:
        parts += ["## Figures", "", *(f"![{f.stem}]({f.name})" for f in figures), ""]
    return "\n".join(parts)
