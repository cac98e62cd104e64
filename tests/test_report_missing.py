"""The report names what a folder should hold but does not (issue 32, item 5): unfinished splits of a
data.split_seeds cell, a killed cell, the cells a stopped sweep never started; on hand-made folders, no training."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from ssl_lightning.report.__main__ import main as report_main
from ssl_lightning.report.missing import find_missing
from tests.conftest import REPO, call_main

TASK = ["+experiment=raw_pixels", "downstream=linear", "data=synthetic", "profile=smoke"]


def _results(folder: Path, seed: int, split_seed: int, split_seeds: list[int] | None = None,
             status: str = "ok") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    config = {"experiment": "raw_pixels", "data": {"name": "synthetic", "split_seeds": split_seeds},
              "downstream": {"protocol": "linear"}}
    results = {"status": status, "experiment": "raw_pixels", "data": "synthetic", "protocol": "linear",
               "fraction": 0.5, "seed": seed, "split_seed": split_seed, "config": config}
    results.update({"test_acc": 0.5 + 0.01 * split_seed, "test_loss": 1.0} if status == "ok" else
                   {"error": "UserError: refused"})
    (folder / "results.json").write_text(json.dumps(results))


def _hydra(folder: Path, overrides: list[str], split_seeds: list[int] | None = None) -> None:
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    config = {"experiment": "raw_pixels", "data": {"name": "synthetic", "split_seeds": split_seeds,
                                                   "test_folds": None, "test_fold": None},
              "downstream": {"protocol": "linear"}, "paths": {"cache": "${hydra:runtime.cwd}/cache"}}
    (folder / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))


def _report(folder: Path):
    return call_main(report_main, [str(folder), "--embedding-points", "0"], REPO)


def test_a_split_seeds_cell_killed_after_two_splits_names_the_missing_splits(tmp_path):
    cell = tmp_path / "runs" / "cell"
    _hydra(cell, TASK, split_seeds=[0, 1, 2, 3])
    for split in (0, 1):
        _results(cell / f"split_{split}", seed=0, split_seed=split, split_seeds=[0, 1, 2, 3])
    done = _report(tmp_path / "runs")
    assert done.returncode == 0, done.stderr
    table = done.stdout.split("## ", 2)[1]  # the one table: the missing splits are listed under it
    assert "n=2: 1 seed x 2 splits" in table
    assert "Missing (no results.json" in table
    assert "- raw_pixels `cell`: split_2, split_3 of data.split_seeds=[0, 1, 2, 3] have no results.json" in table
    warning = [line for line in done.stderr.splitlines() if line.startswith("warning: 1 expected run(s)")]
    assert len(warning) == 1 and "split_2, split_3" in warning[0]
    assert "split_2, split_3" in (tmp_path / "runs" / "results.md").read_text()


def test_a_stopped_sweep_names_its_killed_and_never_started_cells(tmp_path):
    sweep = tmp_path / "multirun"
    sweep.mkdir()
    (sweep / "multirun.yaml").write_text(yaml.safe_dump({"hydra": {
        "sweeper": {"_target_": "hydra._internal.core_plugins.basic_sweeper.BasicSweeper", "params": None},
        "overrides": {"task": [*TASK, "seed=0,1,2"]}}}))
    for num in (0, 1):  # job 0 finished, job 1 was killed, job 2 never started
        _hydra(sweep / f"{num}_raw_pixels", [*TASK, f"seed={num}"])
    _results(sweep / "0_raw_pixels", seed=0, split_seed=0)
    done = _report(sweep)
    assert done.returncode == 0, done.stderr
    table = done.stdout.split("## ", 2)[1]
    assert "- raw_pixels `1_raw_pixels`: no results.json (killed, still running" in table
    assert "- sweep cell 3/3 (seed=2) of `multirun`: never started" in table
    assert "seed=0)" not in table and "cell 2/3" not in table  # a started cell is not 'never started'
    assert any(line.startswith("warning: 2 expected run(s)") for line in done.stderr.splitlines())


def test_complete_and_refused_cells_miss_nothing(tmp_path):
    complete, refused = tmp_path / "complete", tmp_path / "refused"
    _hydra(complete, TASK, split_seeds=[3, 4])
    for split in (3, 4):
        _results(complete / f"split_{split}", seed=0, split_seed=split, split_seeds=[3, 4])
    _hydra(refused, TASK, split_seeds=[3, 4])  # refused before its splits: one failed results.json of its own
    _results(refused, seed=1, split_seed=3, split_seeds=[3, 4], status="failed")
    copied = tmp_path / "copied"  # results copied without .hydra/: the expectation comes from results.json
    _results(copied / "split_7", seed=2, split_seed=7, split_seeds=[7, 8])
    missing, notes = find_missing(tmp_path, sorted(tmp_path.rglob("results.json")))
    assert [item.what for item in missing] == [
        "raw_pixels `copied`: split_8 of data.split_seeds=[7, 8] have no results.json (killed or still running)"]
    assert (missing[0].data, missing[0].protocol) == ("synthetic", "linear") and notes == []


def test_a_sweep_by_another_sweeper_is_said_to_be_unchecked(tmp_path):
    (tmp_path / "multirun.yaml").write_text(yaml.safe_dump({"hydra": {
        "sweeper": {"_target_": "hydra_plugins.optuna.OptunaSweeper"}, "overrides": {"task": TASK}}}))
    _results(tmp_path / "0", seed=0, split_seed=0)
    missing, notes = find_missing(tmp_path, [tmp_path / "0" / "results.json"])
    assert missing == [] and len(notes) == 1 and "cannot be named" in notes[0]
