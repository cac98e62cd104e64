"""results.json through the typed record (ssl_lightning/record.py): it round-trips, older files without
schema_version still load and report, the pipeline writes it, and the one declaration of the test metrics drives
the report (a metric declared there becomes a --metric choice, a results_runs.csv column and a table heading)."""

from __future__ import annotations

import csv
import json
import math
import re
import statistics
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from ssl_lightning import record
from ssl_lightning.methods import registry
from ssl_lightning.record import LEGACY_VERSION, SCHEMA_VERSION, MetricSpec, RunRecord
from ssl_lightning.report import csvfile
from ssl_lightning.report.__main__ import main as report_main
from ssl_lightning.report.collect import collect
from ssl_lightning.report.configs import relevant
from ssl_lightning.stages import pipeline

REPO = Path(__file__).resolve().parent.parent
IDENTITY = {"status": "running", "experiment": "simclr", "data": "synthetic", "fraction": 0.25, "seed": 1,
            "split_seed": 1, "protocol": "linear", "backbone": "compact", "labeled_per_class": {"a": 2, "b": 2},
            "num_labeled": 4, "num_val": 2, "num_val_pool": 6, "num_test": 8, "classes": ["a", "b"],
            "subset_file": "subset.json", "val_seed": 1, "labels_per_class": None,
            "labeled_share_per_class": {"a": 0.25, "b": 0.25}, "group_by": "none",
            "num_groups": {"labeled": 4, "val": 6, "pool": 10, "test": 8}, "git_commit": None,
            "config": {"downstream": {"lr": 0.1}}, "seconds": {}, "epochs": {}, "pretext_key": "abc",
            "pretext_reused": False, "init": "random", "pretext_data": None, "encoder": "trained", "solver": "lbfgs"}


def test_a_record_round_trips_and_sorts_a_stage_s_fields():
    run = RunRecord(**IDENTITY)
    run.merge({"status": "ok", "test_loss": 0.5, "test_acc": 0.75, "test_macro_f1": 0.7, "test_confusion": [[3, 1],
               [1, 3]], "per_class_acc": {"a": 0.75, "b": 0.75}, "best_val_acc": 0.5, "best_epoch": None,
               "chosen_lr": None, "probe_layer": "last", "checkpoint": "checkpoints/probe.pt", "chosen_k": 5})
    run.seconds["total"] = 1.5
    written = run.to_json()
    assert next(iter(written)) == "schema_version" and written["schema_version"] == SCHEMA_VERSION
    assert run.ok and run.evaluation is not None and run.evaluation.test_acc == 0.75
    assert run.evaluation.metrics == {"test_acc": 0.75, "test_macro_f1": 0.7}  # declared metrics only
    assert run.details == {"test_confusion": [[3, 1], [1, 3]], "chosen_k": 5}  # stage specifics, verbatim
    assert {**IDENTITY, "status": "ok", "seconds": {"total": 1.5}}.items() <= written.items()
    assert "error" not in written and "traceback" not in written  # a successful cell has neither key
    assert RunRecord.from_json(json.loads(json.dumps(written))).to_json() == written


def test_a_failed_cell_has_no_test_fields():
    run = RunRecord(**IDENTITY)
    run.fail("RuntimeError: boom", "Traceback ...")
    written = run.to_json()
    assert (written["status"], written["error"], written["traceback"]) == ("failed", "RuntimeError: boom",
                                                                           "Traceback ...")
    assert not {"test_acc", "test_loss", "best_val_acc", "checkpoint"} & set(written)
    assert RunRecord.from_json(written).evaluation is None


def test_an_older_results_json_without_schema_version_loads_and_reports(tmp_path):
    """A file of an older version: no schema_version, most keys missing, one key this version does not know."""
    old = {"status": "ok", "experiment": "rotation", "data": "synthetic", "fraction": 0.5, "seed": 0,
           "test_loss": 0.9, "test_acc": 0.6, "best_val_acc": 0.55, "epochs": {"pretext": 2}, "legacy_note": "x"}
    loaded = RunRecord.from_json(old)
    assert loaded.schema_version == LEGACY_VERSION and loaded.protocol is None and loaded.config is None
    assert loaded.evaluation is not None and loaded.evaluation.test_acc == 0.6
    assert loaded.details == {"legacy_note": "x"}  # an unknown key is kept
    assert loaded.to_json()["legacy_note"] == "x"

    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "results.json").write_text(json.dumps(old))
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "results.json").write_text(json.dumps({"status": "ok", "fraction": 0.5}))
    collection = collect(tmp_path)
    (run,) = collection.runs
    assert (run.ok, run.experiment, run.protocol, run.test_acc, run.best_val_acc) == (True, "rotation", "finetune",
                                                                                        0.6, 0.55)
    assert [problem.reason for problem in collection.problems] == ["missing key(s) ['experiment', 'data']"]


@pytest.mark.parametrize("odd", [{"config": "not a mapping", "seconds": [1], "epochs": None},
                                 {"test_acc": "high", "protocol": None, "unexpected": {"nested": [1, 2]}},
                                 {"status": "ok", "test_acc": float("nan")}])
def test_odd_values_make_a_failed_run_not_a_crash(tmp_path, odd):
    values = {"status": "ok", "experiment": "simclr", "data": "synthetic", "fraction": 0.5, "seed": 0,
              "test_acc": 0.5, **odd}
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "results.json").write_text(json.dumps(values))
    (run,) = collect(tmp_path).runs
    acc = values["test_acc"]
    assert run.ok == (isinstance(acc, float) and math.isfinite(acc))
    assert run.error is None if run.ok else run.error == "status ok but test_acc missing or not finite"
    assert RunRecord.from_json(values).details == {k: v for k, v in odd.items() if k == "unexpected"}


def test_the_pipeline_writes_results_json_through_the_record(tmp_path):
    """A real cell (raw pixels, k-NN, synthetic data): results.json carries schema_version and round-trips."""
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["+experiment=raw_pixels", "data=synthetic", "profile=smoke",
                                           "downstream=knn", f"paths.cache={tmp_path / 'cache'}"])
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    returned = pipeline.run(cfg, run_dir)
    written = json.loads((run_dir / "results.json").read_text())
    assert written == returned and written["status"] == "ok", written.get("error")
    assert written["schema_version"] == SCHEMA_VERSION
    loaded = RunRecord.from_json(written)
    assert loaded.to_json() == written
    assert set(loaded.evaluation.metrics) == {"test_acc", "test_balanced_acc", "test_macro_f1"}
    assert {"chosen_k", "val_scores", "feature_key", "features_reused", "test_confusion"} <= set(loaded.details)
    assert (loaded.encoder, loaded.protocol, loaded.solver, loaded.seconds["total"] > 0) == ("raw_pixels", "knn",
                                                                                           None, True)


TOP2 = MetricSpec("test_top2_acc", "top2_acc", "test top-2 accuracy", digits=1)


def _write_run(root: Path, experiment: str, seed: int, acc: float, top2: float) -> None:
    folder = root / f"{experiment}_{seed}"
    folder.mkdir(parents=True)
    values = {**IDENTITY, "status": "ok", "experiment": experiment, "seed": seed, "split_seed": seed,
              "test_loss": 1.0, "test_acc": acc, "test_balanced_acc": acc, "test_macro_f1": acc, "test_top2_acc": top2}
    (folder / "results.json").write_text(json.dumps(values))


def test_a_declared_metric_drives_the_report(tmp_path, monkeypatch):
    """`test_top2_acc` declared once (in record.TEST_METRICS) is read from results.json, becomes a --metric
    choice, a results_runs.csv column, the metric of results.csv and a table formatted as declared (1 decimal)."""
    tops = {("simclr", 0): 0.91, ("simclr", 1): 0.95, (registry.SUPERVISED, 0): 0.81, (registry.SUPERVISED, 1): 0.84}
    for (experiment, seed), top2 in tops.items():
        _write_run(tmp_path / "sweep", experiment, seed, top2 - 0.2, top2)
    assert "test_top2_acc" not in csvfile.run_fields()  # undeclared: no column, nothing read
    assert all("test_top2_acc" not in run.metrics for run in collect(tmp_path / "sweep").runs)
    with pytest.raises(SystemExit):
        report_main([str(tmp_path / "sweep"), "--metric", "top2_acc"])

    monkeypatch.setattr(record, "TEST_METRICS", (*record.TEST_METRICS, TOP2))
    out = tmp_path / "report"
    assert report_main([str(tmp_path / "sweep"), "--out", str(out), "--metric", "top2_acc",
                        "--embedding-points", "0"]) == 0
    with (out / "results_runs.csv").open() as stream:
        runs = list(csv.DictReader(stream))
    assert {(row["experiment"], int(row["seed"])): float(row["test_top2_acc"]) for row in runs} == tops
    with (out / "results.csv").open() as stream:
        cells = {row["method"]: row for row in csv.DictReader(stream)}
    assert {row["metric"] for row in cells.values()} == {"test_top2_acc"}
    expected = {name: 100 * statistics.mean(v for (e, _), v in tops.items() if e == name) for name in cells}
    assert {name: float(row["metric_mean"]) for name, row in cells.items()} == pytest.approx(expected)
    markdown = (out / "results.md").read_text()
    assert "## synthetic — linear (test top-2 accuracy)" in markdown
    assert f"/ {expected['simclr']:.1f}% [" in markdown  # the declared format: one decimal, interval too
    assert len(re.findall(r"/ \d+\.\d% \[-?\d+\.\d, \d+\.\d\] \(n=2\)", markdown)) == 2


def test_report_configs_ask_the_method_registry():
    """Another registered method's section never splits a column; a key the method does not hash into its store
    key (plain rotation's jitter_strength) neither; supervised has no pretext sections."""
    config = {"downstream": {"lr": 0.1}, "simclr": {"temperature": 0.5}, "byol": {"proj_dim": 64},
              "rotation": {"jitter_strength": 0.5}, "pretext": {"epochs": 2}}
    assert set(relevant(config, "simclr")) == {"downstream.lr", "simclr.temperature", "pretext.epochs"}
    assert set(relevant(config, "byol")) == {"downstream.lr", "byol.proj_dim", "pretext.epochs"}
    assert set(relevant(config, "rotation")) == {"downstream.lr", "pretext.epochs"}
    assert set(relevant(config, "rotation_jitter")) == {"downstream.lr", "rotation.jitter_strength", "pretext.epochs"}
    assert set(relevant(config, registry.SUPERVISED)) == {"downstream.lr"}


def test_the_supervised_experiment_is_named_once():
    """The string "supervised" is the registry's SUPERVISED constant; every other module uses the constant."""
    quoted = [str(path.relative_to(REPO)) for path in sorted((REPO / "ssl_lightning").rglob("*.py"))
              if '"supervised"' in path.read_text() or "'supervised'" in path.read_text()]
    assert quoted == ["ssl_lightning/methods/registry.py"]
