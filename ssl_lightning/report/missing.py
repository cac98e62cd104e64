"""What a results folder should hold but does not, so that a table never shows 'n=2' while two splits are missing
(issue 32, item 5): label splits of `data.split_seeds` cells and test folds of `data.test_folds` cells without a
results.json, cells that started but wrote none (killed, or still running), and cells of a sweep that never started.

Where the expectations come from:
- A cell is a folder holding Hydra's `.hydra/` (or, for results copied without it, the folder above a results.json's
  `split_<seed>/` and `fold_<k>/` parts). It expects `[fold_<k>/][split_<seed>/]results.json` for every fold and
  split seed of its config: `.hydra/config.yaml` (what the user asked for), else a results.json's own `config`
  (there a fold run's `data.test_fold` is its own fold, so every fold of `data.test_folds` is expected, as
  folds.py does). A cell with a results.json of its own (e.g. refused before its splits ran) expects nothing more.
- A sweep is a folder holding `multirun.yaml`: its task overrides (and `hydra.sweeper.params`) expanded as Hydra's
  basic sweeper does (the sweep check's own expansion, cli/preflight.py); a cell started when some `.hydra/` below
  the sweep holds the same overrides (so two sweeps into one folder do not confuse it). Under another sweeper the
  cells cannot be known: a note says so, and only started cells are checked.
A not-ok results.json is not missing: the tables list it as failed.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

NESTED = re.compile(r"(fold|split)_-?\d+")
BASIC_SWEEPER = "BasicSweeper"  # the class `hydra.sweeper._target_` names; its module is Hydra's private business


@dataclass(frozen=True)
class Missing:
    """One expected run without results; (data, protocol) is the table it belongs to, None when unknown."""

    data: str | None
    protocol: str | None
    what: str


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root)) or "."
    except ValueError:
        return str(path)


def _select(config: Any, key: str) -> Any:
    """config.<key>, resolved where it can be (an OmegaConf node or a plain dict); None when absent or unresolvable."""
    from omegaconf import OmegaConf

    try:
        return OmegaConf.select(config, key, default=None)
    except Exception:  # noqa: BLE001 - an interpolation only Hydra's job could resolve (e.g. ${hydra:...})
        return None


def _hydra_config(folder: Path) -> Any:
    from omegaconf import OmegaConf

    try:
        return OmegaConf.load(folder / ".hydra" / "config.yaml")
    except Exception:  # noqa: BLE001 - absent or damaged: the cell's results.json says what it can
        return None


def _results_config(folder: Path) -> Any:
    """The `config` of the first readable results.json in the cell, as an OmegaConf node."""
    from omegaconf import OmegaConf

    for path in sorted(folder.rglob("results.json")):
        try:
            config = json.loads(path.read_text()).get("config")
            if isinstance(config, dict):
                return OmegaConf.create(config)
        except (OSError, UnicodeDecodeError, ValueError, AttributeError):
            continue
    return None


def _seeds(value: Any) -> list[Any]:
    from omegaconf import ListConfig

    return list(value) if isinstance(value, list | tuple | ListConfig) else []


def _cell_missing(cell: Path, root: Path) -> Missing | None:
    """What one cell folder lacks, as one item (None: nothing)."""
    if (cell / "results.json").exists():
        return None
    config, own = _hydra_config(cell), True
    if config is None:
        config, own = _results_config(cell), False
    data, protocol = (_select(config, "data.name"), _select(config, "downstream.protocol")) if config else (None, None)
    table = (None if data is None else str(data), None if protocol is None else str(protocol))
    experiment = _select(config, "experiment") if config else None
    name = f"{experiment} `{_relative(cell, root)}`" if experiment else f"`{_relative(cell, root)}`"
    splits = _seeds(_select(config, "data.split_seeds")) if config else []
    folds_k = _select(config, "data.test_folds") if config else None
    fixed = _select(config, "data.test_fold") if config and own else None
    if not splits and not isinstance(folds_k, int):
        return Missing(*table, f"{name}: no results.json (killed, still running, or stopped before writing it)")
    folds = [None] if not isinstance(folds_k, int) else ([fixed] if isinstance(fixed, int) else list(range(folds_k)))
    expected = [Path(*[part for part in (None if f is None else f"fold_{f}", None if s is None else f"split_{s}")
                       if part]) for f in folds for s in (splits or [None])]
    lacking = [str(path) for path in expected if not (cell / path / "results.json").exists()]
    if not lacking:
        return None
    of = "; ".join(text for text in (f"data.split_seeds={list(splits)}" if splits else "",
                                     f"data.test_folds={folds_k}" if isinstance(folds_k, int) else "") if text)
    everything = " (none finished)" if len(lacking) == len(expected) else ""
    return Missing(*table, f"{name}: {', '.join(lacking)} of {of}{everything} have no results.json "
                           "(killed or still running)")


def _cell_folders(root: Path, results: list[Path], hydra_dirs: list[Path]) -> list[Path]:
    folders = {path.parent for path in hydra_dirs}
    for path in results:
        folder = path.parent
        while NESTED.fullmatch(folder.name) and folder != root:
            folder = folder.parent
        folders.add(folder)
    return sorted(folders)


def _overrides(hydra_dir: Path) -> frozenset[str] | None:
    import yaml

    try:
        task = yaml.safe_load((hydra_dir / "overrides.yaml").read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    return frozenset(map(str, task)) if isinstance(task, list) else None


def _tables_of(cells: list[list[str]]) -> list[tuple[str | None, str | None]]:
    """(data.name, downstream.protocol) of each cell that never ran, composed from its overrides with the
    package's configs; (None, None) where that fails (e.g. the configs changed since the sweep)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    import ssl_lightning

    config_dir = Path(ssl_lightning.__file__).resolve().parent.parent / "conf"
    found: list[tuple[str | None, str | None]] = []
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir), version_base="1.3", job_name="ssl_lightning"):
        for cell in cells:
            try:
                config = compose(config_name="config", overrides=cell)
            except Exception:  # noqa: BLE001 - any composition failure: the item goes to the unknown-table list
                found.append((None, None))
                continue
            data, protocol = _select(config, "data.name"), _select(config, "downstream.protocol")
            found.append((None if data is None else str(data), None if protocol is None else str(protocol)))
    return found


def _sweep_missing(sweep: Path, root: Path, started: set[frozenset[str]]) -> tuple[list[Missing], list[str]]:
    """The cells of the sweep in `sweep` that never started, and a note when they cannot be known."""
    import yaml

    from ssl_lightning.config.sweep_cells import expand, parse, varying
    from ssl_lightning.errors import UserError

    where = sweep.name if sweep == root else _relative(sweep, root)
    try:
        hydra = yaml.safe_load((sweep / "multirun.yaml").read_text())["hydra"]
        sweeper = hydra["sweeper"]
        task = [str(line) for line in hydra["overrides"]["task"]]
        if str(sweeper.get("_target_")).rpartition(".")[2] != BASIC_SWEEPER:
            return [], [f"{where} was swept by {sweeper.get('_target_')}: cells that never started cannot be "
                        "named, only started ones are checked"]
        params = [f"{key}={value}" for key, value in (sweeper.get("params") or {}).items()]
        cells = expand(parse([*params, *task]), multirun=True)
    except (OSError, UnicodeDecodeError, yaml.YAMLError, KeyError, TypeError, AttributeError, UserError) as error:
        return [], [f"{where}/multirun.yaml cannot be read ({' '.join(str(error).split())}): cells that never "
                    "started cannot be named, only started ones are checked"]
    never = [(number, cell) for number, cell in enumerate(cells, start=1) if frozenset(cell) not in started]
    tables = _tables_of([cell for _, cell in never]) if never else []
    return [Missing(*table, f"sweep cell {number}/{len(cells)} ({' '.join(varying(cells, cell))}) of `{where}`: "
                            "never started") for (number, cell), table in zip(never, tables, strict=True)], []


def find_missing(root: Path, results: list[Path]) -> tuple[list[Missing], list[str]]:
    """Every expected run below root without a results.json, and notes on what could not be checked."""
    hydra_dirs = [path for path in root.rglob(".hydra") if path.is_dir()]
    items = [item for cell in _cell_folders(root, results, hydra_dirs) if (item := _cell_missing(cell, root))]
    notes: list[str] = []
    for path in sorted(root.rglob("multirun.yaml")):
        started = {overrides for hydra in hydra_dirs if path.parent in hydra.parents
                   and (overrides := _overrides(hydra)) is not None}
        more, said = _sweep_missing(path.parent, root, started)
        items += more
        notes += said
    return items, notes
