"""The study's table per (data set, protocol): rows = label budget, columns = method, plus results.md."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ssl_lightning.methods.registry import SUPERVISED
from ssl_lightning.report.aggregate import Cell, by_group
from ssl_lightning.report.collect import Collection
from ssl_lightning.report.columns import CEILING, FLOOR, RANDOM_ENCODER, display
from ssl_lightning.report.metric_choice import spec_for_key
from ssl_lightning.report.metric_choice import words_for_key as metric_words
from ssl_lightning.report.missing import Missing
from ssl_lightning.report.paragraph import verdict_paragraph

if TYPE_CHECKING:
    from ssl_lightning.report.comparisons import Comparison

EMPTY = "—"
REFERENCE_ROW = "{} 100%"  # the supervised experiment with every label, named as its column is
PROBE_WORDS = {"linear": "probed linearly", "knn": "probed by k-NN"}


def random_encoder_note(protocol: str) -> str:
    how = PROBE_WORDS.get(protocol, f"probed ({protocol})")
    return (f"Note: under the {protocol} protocol the supervised experiment trains nothing before the probe, so its "
            f'column, "{RANDOM_ENCODER}", is a randomly initialised, untrained encoder {how}. It shows what the '
            "probe gets from random features; it is not a supervised baseline.")


def bounds_note(table: Table) -> str | None:
    """What the frozen-feature bounds are, for a table that shows either (they close it: floor, then ceiling)."""
    shown = {cell.experiment for cell in table.cells} & {FLOOR, CEILING}
    if not shown:
        return None
    floor, ceiling = display(FLOOR), display(CEILING)
    return (f'Bounds (the last columns): "{floor}" is the floor, the same probe on the pixels with no encoder; '
            f'"{ceiling}" is the ceiling, the same backbone trained with cross-entropy on every label of the '
            "training pool (never the validation pool or the test split), frozen and probed with each budget's "
            "labels. It has seen more labels than the budget: it bounds what features can give, it is no "
            "competitor." + (" Each method is compared with the floor below." if FLOOR in shown else ""))


def format_cell(cell: Cell | None) -> str:
    """'loss / metric% [95% CI] (n=k)' over the ok runs (no CI from one seed); failures are counted, never
    averaged. The loss is '—' when the protocol has none (k-NN); n says seeds x splits when seeds hold several."""
    if cell is None or not cell.runs:
        return EMPTY
    if cell.n == 0:
        return f"FAILED ({cell.n_failed} of {len(cell.runs)})"
    loss, shown, metric = cell.loss_estimate, cell.estimate, spec_for_key(cell.metric_key)
    interval = "" if shown.low is None or shown.high is None else \
        f" [{metric.number(shown.low)}, {metric.number(shown.high)}]"
    failed = f" [{cell.n_failed} failed]" if cell.n_failed else ""
    loss_text = EMPTY if loss.mean is None else f"{loss.mean:.4f}"
    return f"{loss_text} / {metric.text(shown.mean)}{interval} ({cell.design_text}){failed}"


@dataclass(frozen=True)
class Table:
    data: str
    protocol: str
    columns: list[str]
    rows: list[tuple[str, list[str]]]
    cells: list[Cell]

    @property
    def metric_key(self) -> str:
        return self.cells[0].metric_key if self.cells else "test_acc"

    @property
    def heading(self) -> str:
        return f"{self.data} — {self.protocol} ({metric_words(self.metric_key)})"


def build_table(data: str, protocol: str, cells: list[Cell]) -> Table:
    """Budget rows (labels per class, then fractions; supervised at 100% excluded) and the supervised 100%
    reference row when present."""
    orders = {c.label: c.column_order for c in cells}
    columns = sorted(orders, key=orders.__getitem__)
    lookup = {(c.label, c.budget): c for c in cells if not c.is_reference}
    budgets = sorted({c.budget for c in cells if not c.is_reference}, key=lambda b: b.order)
    rows = [(b.text, [format_cell(lookup.get((col, b))) for col in columns]) for b in budgets]
    reference = {c.label: c for c in cells if c.is_reference}
    if reference:
        name = REFERENCE_ROW.format(display(SUPERVISED, protocol))
        rows.append((name, [format_cell(reference.get(col)) for col in columns]))
    return Table(data, protocol, columns, rows, cells)


def build_tables(cells: list[Cell]) -> list[Table]:
    return [build_table(data, protocol, group) for (data, protocol), group in by_group(cells).items()]


def markdown_table(table: Table) -> str:
    """A pipe table padded to equal widths so it also reads well in a terminal."""
    header = ["labels", *table.columns]
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
            lines.append(f"- {cell.label}, {cell.budget.text}, seed {run.seed}: {run.error} "
                         f"(`{_relative(run.results_path, root)}`)")
    return lines


def repeat_lines(table: Table) -> list[str]:
    return [f"- {cell.label}, {cell.budget.text}: seed(s) {', '.join(map(str, cell.repeated_seeds))} "
            "averaged more than once" for cell in table.cells if cell.repeated_seeds]


MISSING = "Missing (no results.json: killed, still running or never started; not in n):"


def render_tables(tables: list[Table], root: Path, comparisons: Sequence[Comparison] = (),
                  missing: Sequence[Missing] = ()) -> str:
    """Each table under its heading, its failed and missing runs listed below it; it ends with the verdict paragraph
    of its comparisons (both baselines), when it has any. Missing runs of no table close the text."""
    parts = []
    for table in tables:
        parts += [f"## {table.heading}", "", f"Shown: {metric_words(table.metric_key)} (`{table.metric_key}`), "
                  "percent.", "", markdown_table(table), ""]
        failed = failed_lines(table, root)
        if failed:
            parts += ["Failed runs:", "", *failed, ""]
        lacking = [f"- {item.what}" for item in missing if (item.data, item.protocol) == (table.data, table.protocol)]
        if lacking:
            parts += [MISSING, "", *lacking, ""]
        if RANDOM_ENCODER in table.columns:
            parts += [random_encoder_note(table.protocol), ""]
        bounds = bounds_note(table)
        if bounds:
            parts += [bounds, ""]
        repeated = repeat_lines(table)
        if repeated:
            parts += ["Repeated (seed, split seed) runs (counted in n, averaged within their seed, so they add no seed "
                      "to the interval):", "", *repeated, ""]
        verdicts = verdict_paragraph([c for c in comparisons
                                      if (c.method.data, c.method.protocol) == (table.data, table.protocol)])
        if verdicts:
            parts += [verdicts, ""]
    shown = {(table.data, table.protocol) for table in tables}
    elsewhere = [item for item in missing if (item.data, item.protocol) not in shown]
    if elsewhere:
        parts += ["## Missing runs of no table above", "", MISSING, "",
                  *(f"- {item.what}" + ("" if item.data is None else f" ({item.data}, {item.protocol})")
                    for item in elsewhere), ""]
    return "\n".join(parts)


def render_markdown(collection: Collection, tables: list[Table], figures: list[Path], comparisons: str = "",
                    compared: Sequence[Comparison] = ()) -> str:
    metric = metric_words(tables[0].metric_key) if tables else "test accuracy"
    intro = [
        "# Results", "",
        f"{len(collection.runs)} run(s) from `{collection.root}`. Cells: mean test loss / mean {metric} "
        "[its 95% confidence interval] (n = runs averaged; \"n=30: 3 seeds x 10 splits\" when a seed, i.e. one "
        "encoder, holds several label splits). Two levels: the splits of one seed are averaged first, then the "
        "mean and the t interval (seeds - 1 degrees of freedom) are taken over the seeds, because splits of one "
        "encoder are not independent replicates of the method; with one split per seed this is the plain t "
        "interval over runs. No interval from a single seed; failed runs are not averaged. Every run's values: "
        "`results_runs.csv`; per cell with standard deviations and intervals: `results.csv`.",
        "",
    ]
    parts = [*intro, render_tables(tables, collection.root, compared, collection.missing)]
    if comparisons:
        parts.append(comparisons)
    if collection.problems:
        parts += ["## Unusable results.json files", "",
                  *(f"- `{_relative(p.path, collection.root)}`: {p.reason}" for p in collection.problems), ""]
    if figures:
        parts += ["## Figures", "", *(f"![{f.stem}]({f.name})" for f in figures), ""]
    return "\n".join(parts)
