"""Find and read every results.json below a folder (through the typed record, ssl_lightning/record.py); a file
that cannot be used is reported, not fatal."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ssl_lightning.errors import UserError
from ssl_lightning.record import Evaluation, RunRecord
from ssl_lightning.report import columns, configs
from ssl_lightning.report.budget import Budget, budget_of
from ssl_lightning.report.folds import pool_folds
from ssl_lightning.report.metric_choice import declared
from ssl_lightning.report.missing import Missing, find_missing

SELECTION_KEYS = ("select", "selected_on", "chosen_C", "chosen_k", "probe_layer", "best_step", "downstream_steps",
                  "labeled_images_seen")
"""What the downstream stage chose and how (results.json keys, ssl_lightning/stages): carried into results_runs.csv
so a reader can see, e.g., which penalty C a seed's probe chose on how many images."""


@dataclass(frozen=True)
class Run:
    """One cell run as the report needs it; test_acc and the other test metrics in 0-1 as stored.

    The budget is `fraction` or, for runs with `data.labels_per_class`, `labels_per_class` (fraction then None).
    `metrics` holds every declared test metric the run recorded (ssl_lightning/record.py TEST_METRICS, by
    results.json key); older files have test_acc only."""

    results_path: Path
    ok: bool
    experiment: str
    data: str
    protocol: str
    fraction: float | None
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
    labels_per_class: int | None = None
    metrics: dict[str, float] = field(default_factory=dict, compare=False, repr=False)
    stored_label: str | None = None  # the column label as written in a results_runs.csv this run was read from
    num_test: int | None = None  # test images this run was tested on
    test_fold: int | None = None  # data.test_folds=K: which outer fold (0-based) this run tested; None otherwise
    test_folds: int | None = None  # K of a fold run; for a pooled run, how many fold runs it pools
    confusion: tuple[tuple[int, ...], ...] | None = field(default=None, compare=False, repr=False)  # test counts
    num_groups: int | None = None  # test groups (patients) of grouped data
    selection: dict[str, str | int | float] = field(default_factory=dict, compare=False, repr=False)  # SELECTION_KEYS

    @property
    def budget(self) -> Budget:
        return budget_of(self.fraction, self.labels_per_class)

    def value(self, metric_key: str) -> float | None:
        """A test metric in 0-1 (test_acc lives in its own field as well)."""
        return self.test_acc if metric_key == "test_acc" else self.metrics.get(metric_key)

    @property
    def run_dir(self) -> Path:
        return self.results_path.parent

    @property
    def replicate(self) -> tuple[int | None, int | None]:
        """(seed, split seed): what pairs a method's run with the baseline run it is compared with."""
        return self.seed, self.split_seed

    @property
    def label(self) -> str:
        if self.stored_label is not None:
            return self.stored_label
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
    missing: list[Missing] = field(default_factory=list)  # expected runs without results.json (missing.py)
    missing_notes: list[str] = field(default_factory=list)  # what could not be checked for missing runs


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _protocol(record: RunRecord) -> str:
    if record.protocol:
        return str(record.protocol)
    downstream = (record.config if isinstance(record.config, dict) else {}).get("downstream") or {}
    return str(downstream.get("protocol", "finetune")) if isinstance(downstream, dict) else "finetune"


def _one_line(text: Any, limit: int = 300) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _budget_keys(record: RunRecord) -> tuple[float | None, int | None]:
    """(fraction, labels_per_class): at least one must be recorded; labels_per_class may replace the fraction."""
    per_class = record.labels_per_class
    if per_class is not None:
        if _integer(per_class) is None or per_class < 1:
            raise ValueError(f"labels_per_class {per_class!r} is not a positive integer")
        return _number(record.fraction), per_class
    if record.fraction is None:
        raise ValueError("missing key(s) ['fraction'] (and no labels_per_class)")
    fraction = _number(record.fraction)
    if fraction is None:
        raise ValueError(f"fraction {record.fraction!r} is not a number")
    return fraction, None


def _metrics(evaluation: Evaluation) -> dict[str, float]:
    """The declared test metrics the run recorded, finite numbers only."""
    found = {metric.key: _number(evaluation.metrics.get(metric.key)) for metric in declared()}
    return {key: value for key, value in found.items() if value is not None}


def _to_run(path: Path, record: RunRecord, show_backbone: bool) -> Run:
    missing = [name for name in ("experiment", "data") if getattr(record, name) is None]
    if missing:
        raise ValueError(f"missing key(s) {missing}")
    fraction, per_class = _budget_keys(record)
    evaluation = record.evaluation or Evaluation()
    loss, acc = _number(evaluation.test_loss), _number(evaluation.test_acc)
    error = record.error
    ok = record.ok and acc is not None  # a k-NN probe has no test loss
    if record.ok and not ok:
        error = "status ok but test_acc missing or not finite"
    elif not ok and not error:
        error = f"status {record.status!r}"
    experiment = str(record.experiment)
    config = record.config
    fold, folds = _fold_keys(record)
    return Run(results_path=path, ok=ok, experiment=experiment, data=str(record.data),
               protocol=_protocol(record), fraction=fraction, seed=_integer(record.seed),
               variant=columns.variant(record, show_backbone), test_loss=loss if ok else None,
               test_acc=acc if ok else None, error=None if ok else _one_line(error),
               split_seed=_integer(record.split_seed), best_val_acc=_number(evaluation.best_val_acc),
               best_epoch=_integer(evaluation.best_epoch), chosen_lr=_number(evaluation.chosen_lr),
               config=configs.relevant(config if isinstance(config, dict) else None, experiment),
               labels_per_class=per_class, metrics=_metrics(evaluation) if ok else {},
               num_test=_integer(record.num_test), test_fold=fold, test_folds=folds,
               confusion=_confusion(_key(record, "test_confusion")) if ok else None,
               num_groups=_integer(_key(record, "test_num_groups")) if ok else None,
               selection=_selection(record))


def _selection(record: RunRecord) -> dict[str, str | int | float]:
    """The SELECTION_KEYS the run recorded: strings, whole numbers and finite numbers as written."""
    found = {}
    for name in SELECTION_KEYS:
        value = _key(record, name) if name != "probe_layer" else (record.evaluation or Evaluation()).probe_layer
        if isinstance(value, bool) or value is None:
            continue
        if isinstance(value, str) or (isinstance(value, (int, float)) and math.isfinite(value)):
            found[name] = value
    return found


def _integer(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _key(record: RunRecord, name: str) -> Any:
    """A results.json key that may be a typed field of the record or (written by a newer or older version) a
    detail."""
    return getattr(record, name, None) if hasattr(record, name) else record.details.get(name)


def _confusion(value: Any) -> tuple[tuple[int, ...], ...] | None:
    """test_confusion as a square matrix of non-negative counts; None when absent or malformed."""
    if not isinstance(value, list) or not value or not all(isinstance(row, list) for row in value):
        return None
    rows = tuple(tuple(_integer(v) for v in row) for row in value)
    if any(len(row) != len(rows) or any(v is None or v < 0 for v in row) for row in rows):
        return None
    return rows  # type: ignore[return-value]


def _fold_keys(record: RunRecord) -> tuple[int | None, int | None]:
    """(test_fold, test_folds) of a fold run (data.test_folds=K); K falls back to config.data.test_folds."""
    fold, folds = _integer(_key(record, "test_fold")), _integer(_key(record, "test_folds"))
    if folds is None and fold is not None and isinstance(record.config, dict):
        data = record.config.get("data")
        folds = _integer(data.get("test_folds")) if isinstance(data, dict) else None
    return fold, folds


def split_configurations(runs: list[Run]) -> list[Run]:
    """Give each run the config keys that set it apart within its column, so different configs get own columns."""
    groups: dict[tuple, list[tuple[int, dict[str, str]]]] = defaultdict(list)
    for index, run in enumerate(runs):
        groups[(run.data, run.protocol, run.experiment, run.variant)].append((index, run.config))
    variants = configs.config_variants(groups)
    return [replace(run, config_variant=variants[index]) for index, run in enumerate(runs)]


def collect(root: Path) -> Collection:
    """All runs below root, sorted by path, the test-fold runs of one seed and split pooled into one run
    (folds.py), and the expected runs that have no results.json (missing.py). UserError when there is nothing
    usable to report."""
    if not root.is_dir():
        raise UserError(f"{root} is not a folder; give a multirun or outputs folder that holds results.json files")
    paths = sorted(root.rglob("results.json"))
    if not paths:
        raise UserError(f"no results.json below {root}; point the report at a multirun or outputs folder")
    loaded: list[tuple[Path, RunRecord]] = []
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
        loaded.append((path, RunRecord.from_json(results)))
    show_backbone = len({str(record.backbone) for _, record in loaded}) > 1
    runs: list[Run] = []
    for path, record in loaded:
        try:
            runs.append(_to_run(path, record, show_backbone))
        except ValueError as error:
            problems.append(Problem(path, _one_line(error)))
    if not runs:
        raise UserError(f"none of the {len(paths)} results.json files below {root} could be used "
                        f"(first: {problems[0].path}: {problems[0].reason})")
    missing, notes = find_missing(root, paths)
    return Collection(root=root, runs=split_configurations(pool_folds(runs)), problems=problems, missing=missing,
                      missing_notes=notes)
