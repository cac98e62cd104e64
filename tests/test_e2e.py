"""The whole app through the real Hydra entry point: the shared sweep (tests/conftest.py) trains each pretext
encoder once for two budgets, and `python -m ssl_lightning.report` tabulates it."""

from __future__ import annotations

import csv
from pathlib import Path

from tests.helpers import cell_log, scalar_tags, shared_cells

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_grid_trains_each_pretext_once_and_reports(shared_sweep):
    assert shared_sweep["grid"]["returncode"] == 0, shared_sweep["grid"]["stderr"][-3000:]
    sweep = shared_sweep["root"] / "multirun"
    cells = shared_cells(shared_sweep, ("rotation", "simclr"))
    assert len(cells) == 4
    assert all(cell["status"] == "ok" for cell in cells)
    for experiment in ("rotation", "simclr"):
        runs = [cell for cell in cells if cell["experiment"] == experiment]
        assert len({cell["pretext_key"] for cell in runs}) == 1
        assert sorted(cell["pretext_reused"] for cell in runs) == [False, True]
    logs = "\n".join(cell_log(cell) for cell in cells)
    assert logs.count("training pretext stage") == 2
    assert logs.count("reusing pretext checkpoint") == 2
    # the store holds one encoder per trained pretext configuration of the whole shared sweep, no more
    trained = {cell["pretext_key"] for cell in shared_cells(shared_sweep, ("rotation", "simclr", "byol", "moco",
                                                                           "barlow_twins", "dino"), (0.25, 0.5, 1.0))
               if cell["status"] == "ok"}
    stored = {path.parent.name for path in (shared_sweep["root"] / "cache" / "pretext").glob("*/encoder.pt")}
    assert stored == trained and len(trained) == 6
    for cell in cells:
        run_dir = Path(cell["_dir"])
        assert {"pretext/train_loss", "pretext/train_acc", "pretext/val_loss", "pretext/val_acc"} <= scalar_tags(
            run_dir / "tb" / "pretext")
        assert {"downstream/train_loss", "downstream/train_acc", "downstream/val_loss", "downstream/val_acc",
                "test/loss", "test/acc"} <= scalar_tags(run_dir / "tb" / "downstream")
        assert sum(cell["labeled_per_class"].values()) == cell["num_labeled"]
        assert (run_dir / "subset.json").is_file()

    report = shared_sweep["report"]
    assert report["returncode"] == 0, report["stderr"][-3000:]
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


def test_supervised_skips_the_pretext_stage(shared_sweep):
    cells = shared_cells(shared_sweep, ("supervised",))
    assert [cell["fraction"] for cell in cells] == [0.25, 0.5]
    for cell in cells:
        assert cell["status"] == "ok" and cell["pretext_key"] is None and "pretext" not in cell["seconds"]
        assert 0.0 <= cell["test_acc"] <= 1.0
        assert not (Path(cell["_dir"]) / "tb" / "pretext").exists()
        assert "training pretext stage" not in cell_log(cell)
