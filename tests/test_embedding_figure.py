"""Each cell saves the test-set embeddings it was tested with; the report draws a t-SNE map from them."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from ssl_lightning.embeddings import MAX_IMAGES, subsample

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_cells_save_embeddings_and_the_report_draws_the_map(cli, tmp_path):
    done = cli("+experiment=rotation,supervised", "data=synthetic", "profile=smoke", "data.fraction=0.5",
               "data.test_size=300", multirun=True)
    assert done.returncode == 0, done.stderr[-3000:]
    sweep = tmp_path / "multirun"
    runs = sorted(p.parent for p in sweep.rglob("results.json"))
    assert len(runs) == 2
    saved = []
    for run in runs:
        with np.load(run / "embeddings.npz") as data:
            assert data["features"].dtype == np.float16 and data["features"].shape == (300, 32)  # width 8 x 4
            assert np.isfinite(data["features"].astype(np.float32)).all()
            assert data["labels"].shape == (300,) and set(data["labels"].tolist()) <= {0, 1, 2, 3}
            assert list(data["classes"]) == json.loads((run / "results.json").read_text())["classes"]
            saved.append((data["indices"].copy(), data["labels"].copy(), data["features"].copy()))
    # the same test images for both methods, different encoders
    assert np.array_equal(saved[0][0], saved[1][0]) and np.array_equal(saved[0][1], saved[1][1])
    assert not np.array_equal(saved[0][2], saved[1][2])

    report = subprocess.run([sys.executable, "-m", "ssl_lightning.report", str(sweep), "--out", str(tmp_path / "r")],
                            capture_output=True, text=True, timeout=600)
    assert report.returncode == 0, report.stderr[-3000:]
    figure = tmp_path / "r" / "embedding_synthetic_finetune_50pct.png"
    assert figure.read_bytes()[:8] == PNG_SIGNATURE
    assert "embedding_synthetic_finetune_50pct.png" in (tmp_path / "r" / "results.md").read_text()

    off = subprocess.run([sys.executable, "-m", "ssl_lightning.report", str(sweep), "--out", str(tmp_path / "n"),
                          "--embedding-points", "0"], capture_output=True, text=True, timeout=600)
    assert off.returncode == 0 and not list((tmp_path / "n").glob("embedding_*.png"))


def test_subsample_is_seeded_sorted_and_capped():
    chosen = subsample(10_000, MAX_IMAGES, seed=3)
    assert len(chosen) == MAX_IMAGES and len(set(chosen.tolist())) == MAX_IMAGES
    assert np.array_equal(chosen, np.sort(chosen)) and np.array_equal(chosen, subsample(10_000, MAX_IMAGES, seed=3))
    assert not np.array_equal(chosen, subsample(10_000, MAX_IMAGES, seed=4))
    assert np.array_equal(subsample(7, MAX_IMAGES, seed=0), np.arange(7))
