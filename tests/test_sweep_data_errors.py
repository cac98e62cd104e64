"""A value only data loading can refuse fails its own sweep cell, named, and the sweep goes on (issue 32, item 3);
a single run keeps its one line, exit 2 and nothing left behind."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ssl_lightning.cli import sweep_status
from tests.helpers import results_files

CELL = ("+experiment=raw_pixels", "downstream=linear", "data=synthetic", "profile=smoke")
BUDGETS = "data.labels_per_class=2,1000,3"  # synthetic has 512 training images: 1000 per class is refused in loading


def test_a_cell_refused_by_its_data_fails_alone_named_and_the_sweep_goes_on(cli_in_process, tmp_path):
    done = cli_in_process(*CELL, BUDGETS, multirun=True)
    assert done.returncode == 1, done.stderr[-3000:]  # failed cells: exit 1, as for a cell failing in training
    cells = {Path(cell["_dir"]).name.split("_")[0]: cell for cell in results_files(tmp_path / "multirun")}
    assert sorted(cells) == ["0", "1", "2"]  # the cell after the refused one ran
    assert [cells[n]["status"] for n in ("0", "1", "2")] == ["ok", "failed", "ok"]
    refused = cells["1"]
    assert refused["labels_per_class"] == 1000 and refused["experiment"] == "raw_pixels"
    assert refused["error"].startswith("UserError: ") and "\n" not in refused["error"]
    assert "traceback" not in refused and refused["refused_before_training"] is True
    lines = done.stderr.strip().splitlines()
    named = [line for line in lines if line.startswith("error: sweep cell 2/3 (data.labels_per_class=1000) failed: ")]
    assert len(named) == 1 and "the sweep goes on" in named[0], done.stderr[-3000:]
    assert lines[-1].startswith("error: 1 cell(s) of the sweep failed; first: sweep cell 2/3 "
                                "(data.labels_per_class=1000) in ")
    assert f"(log: {Path(refused['_dir']) / 'ssl_lightning.log'})" in lines[-1]
    assert "Traceback" not in done.stderr


def test_a_single_run_refused_by_its_data_is_one_line_exit_2_and_leaves_nothing(cli_in_process, tmp_path):
    done = cli_in_process(*CELL, "data.labels_per_class=1000")
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and done.stderr.startswith("error: ")
    assert not (tmp_path / "run").exists()


def _hydra_files(folder: Path, task: list[str], num: int) -> None:
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text("".join(f"- {line}\n" for line in task))
    (folder / ".hydra" / "hydra.yaml").write_text(f"hydra:\n  job:\n    num: {num}\n")


def test_failed_cells_are_named_by_their_swept_values_split_runs_too(tmp_path, monkeypatch):
    """The sweep's last line names the cell (not only its folder), for a failed split run below it as well, and
    points at the cell's log, which lives in the cell's folder."""
    monkeypatch.setenv(sweep_status.CELLS_ENV, json.dumps({"count": 2, "swept": ["seed"]}))
    for num in (0, 1):
        _hydra_files(tmp_path / str(num), ["data=synthetic", f"seed={num}"], num)
    (tmp_path / "0" / "results.json").write_text(json.dumps({"status": "ok"}))
    (tmp_path / "1" / "split_5").mkdir()
    (tmp_path / "1" / "split_5" / "results.json").write_text(json.dumps({"status": "failed", "error": "E: x"}))
    (line,) = sweep_status.failed_cell_lines(tmp_path)
    assert line == (f"sweep cell 2/2 (seed=1) in {tmp_path / '1' / 'split_5'}: E: x "
                    f"(log: {tmp_path / '1' / 'ssl_lightning.log'})")


def test_remember_cells_counts_the_cells_and_keeps_the_swept_keys(monkeypatch):
    monkeypatch.delenv(sweep_status.CELLS_ENV, raising=False)
    sweep_status.remember_cells(["-m", "+experiment=raw_pixels", "seed=1,2", "data.labels_per_class=2,3", "a.b=1"])
    assert json.loads(os.environ[sweep_status.CELLS_ENV]) == {
        "count": 4, "swept": ["data.labels_per_class", "seed"]}
    assert sweep_status.cell_name(["+experiment=raw_pixels", "seed=2", "data.labels_per_class=2", "a.b=1"], 2) == \
        "sweep cell 3/4 (seed=2 data.labels_per_class=2)"
    sweep_status.remember_cells(["+experiment=raw_pixels", "seed=1"])  # a single run: nothing kept
    assert sweep_status.CELLS_ENV not in os.environ
