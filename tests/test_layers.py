"""The package's layers, and no import that runs back up one (read from the source with ast, nothing imported).

A layer may import from the layers below it and from itself, never from a layer above, and two packages of one
layer stay independent of each other. From the bottom up:

- root helpers: `errors`, `atomic`, `file_hash`, `record` (small things every layer shares; `record` is the typed
  results.json record the stages write and the report reads)
- `data`: data sets, label fractions, pretext sources, DataModules
- `models`: encoders, heads, initial weights, the probe's cut points
- `methods` (pretext methods and their registry) | `probes` (probes fitted on frozen features)
- `evaluation`: the downstream Classifier, the validation metric it is selected on, the test metrics
- `config`: typed settings from the Hydra config, value rules, which keys make up each cache key
- `training`: Lightning Trainers and callbacks, resume checkpoints, processes and threads
- `stages`: one cell end to end (pipeline, pretext / downstream / frozen stages, their stores, results)
- `export` | `report`: readers of finished runs and stores
- `cli`: checks of the command line and the whole sweep before any work, one-line errors, the sweep's exit code
- `__main__`: the entry point

Every root module and sub-package must be placed in LAYERS: a new one fails here until it is.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "ssl_lightning"

LAYERS: list[tuple[str, ...]] = [
    ("__init__", "errors", "atomic", "file_hash", "record", "schema_fields"),
    ("data",),
    ("models",),
    ("methods", "probes"),
    ("evaluation",),
    ("config",),
    ("training",),
    ("stages",),
    ("export", "report"),
    ("cli",),
    ("__main__",),
]
RANK = {unit: rank for rank, units in enumerate(LAYERS) for unit in units}


def units_on_disk() -> set[str]:
    """Root modules (by name) and sub-packages: the units the layers are made of."""
    modules = {path.stem for path in PACKAGE.glob("*.py")}
    packages = {path.parent.name for path in PACKAGE.glob("*/__init__.py")}
    return modules | packages


def unit_of(dotted: str, units: set[str]) -> str | None:
    """`ssl_lightning.stages.pipeline` -> `stages`; `ssl_lightning.errors` -> `errors`; `ssl_lightning` (or a name
    its __init__ defines) -> `__init__`; outside the package: None."""
    parts = dotted.split(".")
    if parts[0] != "ssl_lightning":
        return None
    if len(parts) == 1 or (len(parts) == 2 and parts[1] not in units):
        return "__init__"
    return parts[1]


def imported_units(source: Path, units: set[str]) -> list[tuple[int, str, str]]:
    """(line, imported module, its unit) for every import of our package in a file, function-level ones included."""
    found = []
    for node in ast.walk(ast.parse(source.read_text(), filename=str(source))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{source}:{node.lineno}: a relative import (the package imports absolutely)"
            # `from ssl_lightning import x`: x is a unit of its own when it is a root module or a sub-package
            names = ([f"ssl_lightning.{alias.name}" for alias in node.names] if node.module == "ssl_lightning"
                     else [node.module or ""])
        else:
            continue
        for name in names:
            unit = unit_of(name, units)
            if unit is not None:
                found.append((node.lineno, name, unit))
    return found


def module_unit(path: Path) -> str:
    relative = path.relative_to(PACKAGE)
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem


def test_every_unit_has_a_layer_and_every_layer_entry_exists():
    on_disk = units_on_disk()
    assert not on_disk - set(RANK), f"place these in LAYERS (tests/test_layers.py): {sorted(on_disk - set(RANK))}"
    assert not set(RANK) - on_disk, f"LAYERS names what is no longer there: {sorted(set(RANK) - on_disk)}"


def test_no_import_runs_up_a_layer_or_across_to_a_sibling():
    units, wrong = units_on_disk(), []
    for path in sorted(PACKAGE.rglob("*.py")):
        unit = module_unit(path)
        for line, name, imported in imported_units(path, units):
            where = f"{path.relative_to(PACKAGE.parent)}:{line} ({unit}) imports {name}"
            if imported not in RANK:
                wrong.append(f"{where}: no such module or package")
            elif imported != unit and RANK[imported] >= RANK[unit]:
                wrong.append(f"{where} ({imported}): {'across' if RANK[imported] == RANK[unit] else 'up'}")
    assert not wrong, "imports against the layers:\n" + "\n".join(wrong)


def test_the_check_sees_an_upward_import(tmp_path):
    """The walker itself: an import of a higher layer, also inside a function, is found."""
    source = tmp_path / "probe.py"
    source.write_text("import os\nfrom ssl_lightning import errors, stages\n\n"
                      "def f():\n    from ssl_lightning.stages.pipeline import run\n")
    found = imported_units(source, {"errors", "stages", "data"})
    assert sorted(found) == [(2, "ssl_lightning.errors", "errors"), (2, "ssl_lightning.stages", "stages"),
                             (5, "ssl_lightning.stages.pipeline", "stages")]
    assert RANK["stages"] > RANK["data"] > RANK["errors"]
