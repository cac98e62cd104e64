"""A command line's Hydra overrides, parsed with Hydra's own parser and expanded into sweep cells the way Hydra's
basic sweeper does (the cartesian product of the swept values, keys in command-line order, a repeated key at its
first place with its last values), through the parsed overrides' public methods only: shared by the sweep check
before any cell trains (cli/preflight.py) and the report, which names the cells a stopped sweep never ran
(report/missing.py)."""

from __future__ import annotations

import itertools
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
    """The cells as lists of override strings, in the basic sweeper's order and spelling (the report matches them
    against the `.hydra/overrides.yaml` Hydra writes); one cell without -m. Only discrete sweeps (`a,b`,
    `choice()`, `range()`) expand into cells, as in the basic sweeper; `interval()` is one line."""
    if not multirun:
        return [[override.input_line for override in overrides]]
    values: dict[str, list[str]] = {}  # a repeated key keeps its first place and takes its last values
    for override in overrides:
        key = override.get_key_element()
        if not override.is_sweep_override():
            values[key] = [f"{key}={override.get_value_element_as_str()}"]
        elif override.is_discrete_sweep():
            values[key] = [f"{key}={value}" for value in override.sweep_string_iterator()]
        else:
            raise UserError(f"{override.input_line}: the basic sweeper cannot sweep "
                            f"{type(override.value()).__name__}; list the values (a,b,c), or use choice() or range()")
    return [list(cell) for cell in itertools.product(*values.values())]


def varying(cells: list[list[str]], cell: list[str]) -> list[str]:
    """The overrides of `cell` that differ between cells: what names it in a sweep."""
    common = set.intersection(*(set(c) for c in cells)) if cells else set()
    return [line for line in cell if line not in common] or cell
