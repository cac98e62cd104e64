"""`python -m ssl_lightning.report <folder> [--out DIR] [--metric NAME]`: tables in the terminal, results.md/csv and
PNGs on disk. The folder may also be a results_runs.csv the report wrote (a stored study): then no figures."""

from __future__ import annotations

import sys
from argparse import Namespace
from pathlib import Path

from ssl_lightning.errors import OneLineParser, UserError
from ssl_lightning.report.aggregate import build_cells
from ssl_lightning.report.collect import collect
from ssl_lightning.report.comparisons import (
    ambiguous_baselines,
    build_comparisons,
    render_comparisons,
    write_comparisons_csv,
)
from ssl_lightning.report.csvfile import read_runs_csv, write_csv, write_runs_csv
from ssl_lightning.report.metric_choice import DEFAULT, choices, key, require
from ssl_lightning.report.table import build_tables, render_markdown, render_tables
from ssl_lightning.report.verdict import DEFAULT_MARGIN, check_margin


def _parse(argv: list[str] | None) -> Namespace:
    parser = OneLineParser(prog="python -m ssl_lightning.report",
                                     description="Gather every results.json below a folder into tables and figures.")
    parser.add_argument("folder", type=Path,
                        help="a multirun or outputs folder (or a results_runs.csv written by the report)")
    parser.add_argument("--out", type=Path, default=None,
                        help="where to write the report (default: the folder; <csv name>_report/ for a CSV)")
    parser.add_argument("--embedding-points", type=int, default=2000,
                        help="test images per t-SNE embedding map (0: no maps)")
    parser.add_argument("--metric", choices=choices(), default=DEFAULT,
                        help="the test metric of the tables, comparisons and figures (default: acc)")
    parser.add_argument("--margin", type=float, default=DEFAULT_MARGIN,
                        help="equivalence margin in percentage points: a comparison is 'equivalent' when two "
                             f"one-sided tests place the difference within ±margin (default {DEFAULT_MARGIN:g})")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    if args.embedding_points < 0:
        print(f"error: --embedding-points {args.embedding_points}: use 0 (no maps) or more", file=sys.stderr)
        return 2
    try:
        check_margin(args.margin)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    root = args.folder.expanduser().resolve()
    from_csv = root.is_file() and root.suffix == ".csv"
    default_out = root.with_name(f"{root.stem}_report") if from_csv else root  # never overwrite the CSV's folder
    out_dir = args.out.expanduser().resolve() if args.out else default_out
    try:
        collection = read_runs_csv(root) if from_csv else collect(root)
        require(args.metric, collection.runs)
        cells = build_cells(collection.runs, key(args.metric))
        out_dir.mkdir(parents=True, exist_ok=True)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"error: cannot create the output folder {out_dir}: {error.strerror or error}", file=sys.stderr)
        return 2
    for problem in collection.problems:
        print(f"warning: skipped {problem.path}: {problem.reason}", file=sys.stderr)
    if collection.missing:
        print(f"warning: {len(collection.missing)} expected run(s) have no results.json (killed, still running or "
              f"never started), listed under 'Missing' in the tables; first: {collection.missing[0].what}",
              file=sys.stderr)
    for note in collection.missing_notes:
        print(f"warning: {note}", file=sys.stderr)
    tables = build_tables(cells)
    comparisons = build_comparisons(cells, args.margin)
    comparisons_text = render_comparisons(comparisons, ambiguous_baselines(cells))

    from ssl_lightning.report.figures import accuracy_vs_fraction, curve_figures, figure_name  # matplotlib: lazily

    figures = [] if from_csv else curve_figures(cells, out_dir)
    figures.append(accuracy_vs_fraction(cells, out_dir / figure_name(key(args.metric))))
    if not from_csv:
        from ssl_lightning.report.embedding_figure import embedding_figures  # scikit-learn only when needed

        figures += embedding_figures(collection.runs, out_dir, args.embedding_points)
    write_csv(cells, out_dir / "results.csv")
    if not from_csv or out_dir / "results_runs.csv" != root:
        write_runs_csv(cells, collection.root, out_dir / "results_runs.csv")
    write_comparisons_csv(comparisons, out_dir / "comparisons.csv")
    (out_dir / "results.md").write_text(render_markdown(collection, tables, figures, comparisons_text, comparisons)
                                         + "\n")
    print(render_tables(tables, root, comparisons, collection.missing))
    if comparisons_text:
        print(comparisons_text)
    print(f"wrote results.md, results.csv, results_runs.csv, comparisons.csv and {len(figures)} figure(s) to {out_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
