"""A command line's Hydra overrides, parsed with Hydra's own parser and expanded into sweep cells the way the basic
sweeper does (`BasicSweeper.split_arguments`): shared by the sweep check before any cell trains (cli/preflight.py)
and the report, which names the cells a stopped sweep never ran (report/missing.py)."""

from __future__ import annotations

from typing import Any

from ssl_lightning.errors import UserError

HYDRA_DOCS = "https://hydra.cc/docs/advanced/override_grammar/basic/"


def one_line(text: str) -> str:
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


def parse(args: list[str]) -> list[Any]:
    """Hydra's parsed overrides; a syntax slip (e.g. an unclosed `[`) is one line naming the argument."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    parser = OverridesParser.create()
    parsed = []
    for arg in args:
        try:
            parsed.extend(parser.parse_overrides([arg]))
        except OverrideParseException as error:
            first = one_line(error).split(" See https")[0]
            raise UserError(f"cannot parse the override {arg!r}: {first}; quote lists and strings, e.g. "
                            f"'downstream.lr_grid=[0.1,0.01]' ({HYDRA_DOCS})") from None
    return parsed


def expand(overrides: list[Any], multirun: bool) -> list[list[str]]:
    """The cells as lists of override strings (the basic sweeper's order); one cell without -m."""
    if not multirun:
        return [[override.input_line for override in overrides]]
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

    batches = BasicSweeper.split_arguments(overrides, None)
    return [list(cell) for batch in batches for cell in batch]


def varying(cells: list[list[str]], cell: list[str]) -> list[str]:
    """The overrides of `cell` that differ between cells: what names it in a sweep."""
    common = set.intersection(*(set(c) for c in cells)) if cells else set()
    return [line for line in cell if line not in common] or cell
