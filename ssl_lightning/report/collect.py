"""Find and read every results.json below a folder; a file that cannot be used is reported, not fatal."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ssl_lightning.errors import UserError
from ssl_lightning.report import columns, configs


@dataclass(frozen=True)
class Run:
    """One cell run as the report needs it; test_acc in 0-1 as stored."""

    results_path: Path
    ok: bool
    experiment: str
    data: str
    protocol: str
    fraction: float
    seed: int | None
    variant: tuple[str, ...]
    test_loss: float | None
    test_acc: float | None
    error: str | None
    split_seed: int | None = None
    best_val_acc: float | None = None
    best_epoch: int | None = None
    chosen_lr: float | None = None
    config: dict[str, str] = field(default_factory=dict, compare=False, repr=False)  # keys that matter, flattened
    config_variant: tuple[str, ...] = ()  # 'key=value' for config keys that differ from other runs of its column

    @property
    def run_dir(self) -> Path:
        return self.results_path.parent

    @property
    def replicate(self) -> tuple[int | None, int | None]:
        """(seed, split seed): what pairs a method's run with the baseline run it is compared with."""
        return self.seed, self.split_seed

    @property
    def label(self) -> str:
        return columns.label(self.experiment, self.variant, self.config_variant, self.protocol)

    @property
    def column_order(self) -> tuple:
        return columns.order(self.experiment, self.variant, self.config_variant)


@dataclass(frozen=True)
class Problem:
    path: Path
    reason: str


@dataclass(frozen=True)
class Collection:
    root: Path
    runs: list[Run]
    problems: list[Problem]


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _protocol(results: dict[str, Any]) -> str:
    if results.get("protocol"):
        return str(results["protocol"])
    downstream = (results.get("config") or {}).get("downstream") or {}
    return str(downstream.get("protocol", "finetune")) if isinstance(downstream, dict) else "finetune"


def _one_line(text: Any, limit: int = 300) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _to_run(path: Path, results: dict[str, Any], show_backbone: bool) -> Run:
    missing = [key for key in ("experiment", "data", "fraction") if results.get(key) is None]
    if missing:
        raise ValueError(f"missing key(s) {missing}")
    fraction = _number(results["fraction"])
    if fraction is None:
        raise ValueError(f"fraction {results['fraction']!r} is not a number")
    loss, acc = _number(results.get("test_loss")), _number(results.get("test_acc"))
    status = results.get("status")
    error = results.get("error")
    ok = status == "ok" and loss is not None and acc is not None
    if status == "ok" and not ok:
        error = "status ok but test_loss/test_acc missing or not finite"
    elif not ok and not error:
        error = f"status {status!r}"
    experiment = str(results["experiment"])
    config = results.get("config")
    return Run(results_path=path, ok=ok, experiment=experiment, data=str(results["data"]),
               protocol=_protocol(results), fraction=fraction, seed=_integer(results.get("seed")),
               variant=columns.variant(results, show_backbone), test_loss=loss if ok else None,
               test_acc=acc if ok else None, error=None if ok else _one_line(error),
               split_seed=_integer(results.get("split_seed")), best_val_acc=_number(results.get("best_val_acc")),
               best_epoch=_integer(results.get("best_epoch")), chosen_lr=_number(results.get("chosen_lr")),
               config=configs.relevant(config if isinstance(config, dict) else None, experiment))


def _integer(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def split_configurations(runs: list[Run]) -> list[Run]:
    """Give each run the config keys that set it apart within its column, so different configs get own columns."""
    groups: dict[tuple, list[tuple[int, dict[str, str]]]] = defaultdict(list)
    for index, run in enumerate(runs):
        groups[(run.data, run.protocol, run.experiment, run.variant)].append((index, run.config))
    variants = configs.config_variants(groups)
    return [replace(run, config_variant=variants[index]) for index, run in enumerate(runs)]


def collect(root: Path) -> Collection:
    """All runs below root, sorted by path. UserError when there is nothing usable to report."""
    if not root.is_dir():
        raise UserError(f"{root} is not a folder; give a multirun or outputs folder that holds results.json files")
    paths = sorted(root.rglob("results.json"))
    if not paths:
        raise UserError(f"no results.json below {root}; point the report at a multirun or outputs folder")
    loaded: list[tuple[Path, dict[str, Any]]] = []
    problems: list[Problem] = []
    for path in paths:
        try:
            results = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            problems.append(Problem(path, _one_line(f"unreadable: {error}")))
            continue
        if not isinstance(results, dict):
            problems.append(Problem(path, "not a JSON object"))
            continue
        loaded.append((path, results))
    show_backbone = len({str(r.get("backbone")) for _, r in loaded}) > 1
    runs: list[Run] = []
    for path, results in loaded:
        try:
            runs.append(_to_run(path, results, show_backbone))
        except ValueError as error:
            problems.append(Problem(path, _one_line(error)))
    if not runs:
        raise UserError(f"none of the {len(paths)} results.json files below {root} could be used "
                        f"(first: {problems[0].path}: {problems[0].reason})")
    return Collection(root=root, runs=split_configurations(runs), problems=problems)
