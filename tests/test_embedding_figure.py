"""Each cell saves the test-set embeddings it was tested with; the report draws a t-SNE map from them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ssl_lightning.report.__main__ import main as report_main
from ssl_lightning.stages.embeddings import MAX_IMAGES, subsample
from tests.conftest import call_main
from tests.helpers import shared_cells

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_cells_save_embeddings_and_the_report_draws_the_map(shared_sweep, tmp_path):
    sweep = shared_sweep["root"] / "multirun"
    runs = [Path(cell["_dir"]) for cell in shared_cells(shared_sweep, ("rotation", "simclr", "supervised"), (0.5,))]
    assert len(runs) == 3
    saved = []
    for run in runs:
        with np.load(run / "embeddings.npz") as data:
            assert data["features"].dtype == np.float16 and data["features"].shape == (300, 32)  # width 8 x 4
            assert np.isfinite(data["features"].astype(np.float32)).all()
            assert data["labels"].shape == (300,) and set(data["labels"].tolist()) <= {0, 1, 2, 3}
            assert list(data["classes"]) == json.loads((run / "results.json").read_text())["classes"]
            saved.append((data["indices"].copy(), data["labels"].copy(), data["features"].copy()))
    # the same test images for every method, different encoders
    for other in saved[1:]:
        assert np.array_equal(saved[0][0], other[0]) and np.array_equal(saved[0][1], other[1])
        assert not np.array_equal(saved[0][2], other[2])

    report = shared_sweep["report"]  # `python -m ssl_lightning.report <sweep>`, writing into the sweep folder
    assert report["returncode"] == 0, report["stderr"][-3000:]
    figure = sweep / "embedding_synthetic_finetune_50pct.png"
    assert figure.read_bytes()[:8] == PNG_SIGNATURE
    assert "embedding_synthetic_finetune_50pct.png" in (sweep / "results.md").read_text()

    off = call_main(report_main, [str(sweep), "--out", str(tmp_path / "n"), "--embedding-points", "0"], tmp_path)
    assert off.returncode == 0, off.stderr[-3000:]
    assert (tmp_path / "n" / "results.md").is_file() and not list((tmp_path / "n").glob("embedding_*.png"))


def test_subsample_is_seeded_sorted_and_capped():
    chosen = subsample(10_000, MAX_IMAGES, seed=3)
    assert len(chosen) == MAX_IMAGES and len(set(chosen.tolist())) == MAX_IMAGES
    assert np.array_equal(chosen, np.sort(chosen)) and np.array_equal(chosen, subsample(10_000, MAX_IMAGES, seed=3))
    assert not np.array_equal(chosen, subsample(10_000, MAX_IMAGES, seed=4))
    assert np.array_equal(subsample(7, MAX_IMAGES, seed=0), np.arange(7))
