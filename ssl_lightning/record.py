"""results.json as one typed record, shared by the pipeline (which writes it) and the report (which reads it).

`RunRecord` holds the keys every cell writes as typed fields, the tested classifier's numbers as `Evaluation`, and
keeps every other key verbatim in `details` (stage-specific fields such as `chosen_k`, and keys of other
versions), so a file round-trips without loss. The test metrics are declared once, in `TEST_METRICS`: the record
sorts them into `Evaluation.metrics`, and the report's `--metric` choices, csv columns, table headings and
TensorBoard test scalars iterate over that tuple. A new test metric is computed in metrics.py
(`ClassificationMetrics.as_results`) and declared here; nothing else changes.

Schema versions: files written before `schema_version` existed count as version 0 and load the same way (their
missing keys read as None); version 1 adds only the `schema_version` key.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

SCHEMA_VERSION = 1
LEGACY_VERSION = 0  # a results.json without `schema_version` (written before the record existed)


@dataclass(frozen=True)
class MetricSpec:
    """One test metric: its results.json key (stored in 0-1), its `--metric` name (also its TensorBoard
    `test/<name>` scalar) and the words of table headings; shown in percent with `digits` decimals."""

    key: str
    option: str
    words: str
    digits: int = 2
    # For a metric that is not a mean over test images: the name of its function of a confusion matrix in
    # ssl_lightning/evaluation/metrics.py, from which data.test_folds pools it over the summed fold matrices
    # (report/folds.py) instead of averaging the folds' values.
    from_confusion: str | None = None

    def number(self, percent: float) -> str:
        """How the report's tables write a value of this metric (in percent, no sign)."""
        return f"{percent:.{self.digits}f}"

    def text(self, percent: float) -> str:
        return f"{self.number(percent)}%"


TEST_METRICS: tuple[MetricSpec, ...] = (
    MetricSpec("test_acc", "acc", "test accuracy"),
    MetricSpec("test_balanced_acc", "balanced_acc", "test balanced accuracy", from_confusion="balanced_accuracy"),
    MetricSpec("test_macro_f1", "macro_f1", "test macro-F1", from_confusion="macro_f1"),
    MetricSpec("test_group_acc", "group_acc", "patient-level test accuracy"),
    MetricSpec("test_group_balanced_acc", "group_balanced_acc", "patient-level test balanced accuracy"),
)


def declared_metric(key: str) -> MetricSpec | None:
    """The declared metric stored under results.json `key` (None for an undeclared key)."""
    return next((metric for metric in TEST_METRICS if metric.key == key), None)


@dataclass
class Evaluation:
    """The tested classifier: written once a downstream stage finished (a failed or running cell has none).

    `metrics` holds the declared TEST_METRICS the stage measured, by results.json key (group metrics only for
    grouped data); in results.json they are top-level keys like every other field."""

    test_loss: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    per_class_acc: dict[str, float] | None = None
    best_val_acc: float | None = None
    best_epoch: int | None = None
    chosen_lr: float | None = None
    probe_layer: int | str | None = None
    checkpoint: str | None = None

    @property
    def test_acc(self) -> float | None:
        return self.metrics.get("test_acc")


@dataclass
class RunRecord:
    """One cell's results.json. The pipeline sets every field before the cell runs; `from_json` keeps what a file
    holds as written (older files may lack any key: it reads as None) and the report checks what it uses."""

    status: str | None  # running | ok | failed
    experiment: str | None
    data: str | None
    fraction: float | None
    seed: int | None
    split_seed: int | None
    protocol: str | None
    backbone: str | None
    labeled_per_class: dict[str, int] | None
    num_labeled: int | None
    num_val: int | None
    num_val_pool: int | None
    num_test: int | None
    classes: list[str] | None
    subset_file: str | None
    val_seed: int | None
    labels_per_class: int | None  # the budget when set (fraction then stays 1.0)
    labeled_share_per_class: dict[str, float] | None
    group_by: str | None
    num_groups: dict[str, int] | None
    git_commit: str | None
    config: dict[str, Any] | None  # the resolved Hydra config
    seconds: dict[str, float]
    epochs: dict[str, int]
    pretext_key: str | None
    pretext_reused: bool | None
    init: str | None
    pretext_data: Any  # a label, a list of source names, or None
    encoder: str | None  # random | trained | raw_pixels | the ceiling's kind
    solver: str | None  # lbfgs | sgd (linear), sgd (finetune), None (k-NN)
    evaluation: Evaluation | None = None
    error: str | None = None  # a failed cell: '<Type>: <message>'
    traceback: str | None = None
    details: dict[str, Any] = field(default_factory=dict)  # every other key, verbatim
    schema_version: int = SCHEMA_VERSION

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def merge(self, values: dict[str, Any]) -> None:
        """Fold a stage's results.json fields in: known names into their typed fields, declared test metrics and
        the tested classifier's fields into `evaluation`, anything else into `details`."""
        for name, value in values.items():
            if name in _EVALUATION_FIELDS or declared_metric(name) is not None:
                if self.evaluation is None:
                    self.evaluation = Evaluation()
                if name in _EVALUATION_FIELDS:
                    setattr(self.evaluation, name, value)
                else:
                    self.evaluation.metrics[name] = value
            elif name in _RECORD_FIELDS:
                setattr(self, name, value)
            else:
                self.details[name] = value

    def fail(self, error: str, traceback: str) -> None:
        self.status, self.error, self.traceback = "failed", error, traceback

    def to_json(self) -> dict[str, Any]:
        """The results.json object: schema_version, the typed fields, the tested classifier's fields (when tested),
        the kept details, and error/traceback for a failed cell."""
        values: dict[str, Any] = {"schema_version": self.schema_version}
        values.update({name: getattr(self, name) for name in _RECORD_FIELDS})
        if self.evaluation is not None:
            tested = self.evaluation
            values["test_loss"] = tested.test_loss
            values.update(tested.metrics)
            values.update({name: getattr(tested, name) for name in _EVALUATION_FIELDS if name != "test_loss"})
        values.update(self.details)
        values.update({name: getattr(self, name) for name in ("error", "traceback") if getattr(self, name) is not None})
        return values

    @classmethod
    def from_json(cls, values: dict[str, Any]) -> RunRecord:
        """Any results.json object, current or older: missing keys read as None, unknown ones land in `details`."""
        record = cls(**{name: values.get(name) for name in _RECORD_FIELDS if name not in ("seconds", "epochs")},
                     seconds=_mapping(values.get("seconds")), epochs=_mapping(values.get("epochs")),
                     error=values.get("error"), traceback=values.get("traceback"),
                     schema_version=values.get("schema_version", LEGACY_VERSION))
        record.merge({name: value for name, value in values.items()
                      if name not in _RECORD_FIELDS and name not in ("error", "traceback", "schema_version")})
        return record


def _mapping(value: Any) -> dict:
    return dict(value) if isinstance(value, dict) else {}


_EVALUATION_FIELDS = tuple(f.name for f in fields(Evaluation) if f.name != "metrics")
_RECORD_FIELDS = tuple(f.name for f in fields(RunRecord)
                       if f.name not in ("evaluation", "error", "traceback", "details", "schema_version"))
