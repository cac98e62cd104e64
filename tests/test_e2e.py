"""The whole app through the real Hydra entry point: the shared sweep (tests/conftest.py) trains each pretext
encoder once for two budgets, and `python -m ssl_lightning.report` tabulates it."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from ssl_lightning.data import synthetic
from ssl_lightning.data.config import DataConfig
from tests.conftest import NEW_METHODS
from tests.helpers import cell_log, scalar_tags, shared_cells

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_metrics_match_the_confusion_matrix(cell: dict) -> None:
    """The cell's test metrics are those of its recorded confusion matrix, and the matrix counts every image of
    the test split once, in its true class's row (the split recomputed from the cell's own data settings). Not
    "above chance": at the shared sweep's smoke budget (6 downstream steps) the supervised cells predict one class
    (test accuracy 0.25, measured), so no accuracy bound there could tell a working pipeline from a broken one."""
    data = cell["config"]["data"]
    images = synthetic.load(DataConfig(name="synthetic", image_size=data["image_size"], channels=data["channels"],
                                       train_size=data["train_size"], test_size=data["test_size"],
                                       num_classes=data["num_classes"], synthetic_seed=data["synthetic_seed"]))
    confusion = np.asarray(cell["test_confusion"])
    per_class = np.diag(confusion) / confusion.sum(axis=1)
    assert confusion.sum(axis=1).tolist() == np.bincount(images.test_labels.numpy(), minlength=len(confusion)).tolist()
    assert cell["num_test"] == confusion.sum() == data["test_size"]
    assert cell["test_acc"] == pytest.approx(np.trace(confusion) / confusion.sum(), abs=1e-6)
    assert list(cell["per_class_acc"].values()) == pytest.approx(per_class.tolist(), abs=1e-6)
    assert cell["test_balanced_acc"] == pytest.approx(per_class.mean(), abs=1e-6)


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
    trained = {cell["pretext_key"] for cell in shared_cells(shared_sweep, ("rotation", "simclr", *NEW_METHODS),
                                                            (0.25, 0.5, 1.0)) if cell["status"] == "ok"}
    stored = {path.parent.name for path in (shared_sweep["root"] / "cache" / "pretext").glob("*/encoder.pt")}
    assert stored == trained and len(trained) == 2 + len(NEW_METHODS)
    for cell in cells:
        run_dir = Path(cell["_dir"])
        assert {"pretext/train_loss", "pretext/train_acc", "pretext/val_loss", "pretext/val_acc"} <= scalar_tags(
            run_dir / "tb" / "pretext")
        assert {"downstream/train_loss", "downstream/train_acc", "downstream/val_loss", "downstream/val_acc",
                "test/loss", "test/acc"} <= scalar_tags(run_dir / "tb" / "downstream")
        assert sum(cell["labeled_per_class"].values()) == cell["num_labeled"]
        assert_metrics_match_the_confusion_matrix(cell)
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
        assert_metrics_match_the_confusion_matrix(cell)
        assert not (Path(cell["_dir"]) / "tb" / "pretext").exists()
        assert "training pretext stage" not in cell_log(cell)
