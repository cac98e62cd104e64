"""The whole app through the real Hydra entry point: a 2-method x 2-fraction grid with pretext reuse."""

from __future__ import annotations

import csv
import subprocess
import sys

from tests.helpers import log_text, results_files, scalar_tags

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_grid_trains_each_pretext_once_and_reports(cli, tmp_path):
    done = cli("+experiment=rotation,simclr", "data=synthetic", "profile=smoke", "data.fraction=0.25,0.5",
               multirun=True)
    assert done.returncode == 0, done.stderr[-3000:]
    sweep = tmp_path / "multirun"
    cells = results_files(sweep)
    assert len(cells) == 4
    assert all(cell["status"] == "ok" for cell in cells)
    for experiment in ("rotation", "simclr"):
        runs = [cell for cell in cells if cell["experiment"] == experiment]
        assert len({cell["pretext_key"] for cell in runs}) == 1
        assert sorted(cell["pretext_reused"] for cell in runs) == [False, True]
    logs = log_text(sweep)
    assert logs.count("training pretext stage") == 2
    assert logs.count("reusing pretext checkpoint") == 2
    assert len(list((tmp_path / "cache" / "pretext").glob("*/encoder.pt"))) == 2
    for cell in cells:
        run_dir = tmp_path / "multirun" / cell["_dir"]
        assert {"pretext/train_loss", "pretext/train_acc", "pretext/val_loss", "pretext/val_acc"} <= scalar_tags(
            run_dir / "tb" / "pretext")
        assert {"downstream/train_loss", "downstream/train_acc", "downstream/val_loss", "downstream/val_acc",
                "test/loss", "test/acc"} <= scalar_tags(run_dir / "tb" / "downstream")
        assert sum(cell["labeled_per_class"].values()) == cell["num_labeled"]
        assert (run_dir / "subset.json").is_file()

    report = subprocess.run([sys.executable, "-m", "ssl_lightning.report", str(sweep)], capture_output=True,
                            text=True, timeout=300)
    assert report.returncode == 0, report.stderr[-3000:]
    rows = list(csv.DictReader((sweep / "results.csv").open()))
    for cell in cells:
        match = [row for row in rows if row["method"] == cell["experiment"]
                 and float(row["fraction"]) == cell["fraction"]]
        assert len(match) == 1
        assert abs(float(match[0]["test_acc_mean"]) - 100 * cell["test_acc"]) < 0.01
        assert abs(float(match[0]["test_loss_mean"]) - cell["test_loss"]) < 1e-4
        assert f"{100 * cell['test_acc']:.2f}" in (sweep / "results.md").read_text()
    pngs = list(sweep.glob("**/*.png"))
    assert pngs and all(path.read_bytes()[:8] == PNG_SIGNATURE for path in pngs)


def test_supervised_skips_the_pretext_stage(cli, tmp_path):
    done = cli("+experiment=supervised", "data=synthetic", "profile=smoke", "data.fraction=0.5")
    assert done.returncode == 0, done.stderr[-3000:]
    (cell,) = results_files(tmp_path / "run")
    assert cell["status"] == "ok" and cell["pretext_key"] is None and "pretext" not in cell["seconds"]
    assert 0.0 <= cell["test_acc"] <= 1.0
    assert not (tmp_path / "run" / "tb" / "pretext").exists()
