"""The four wave-2 methods through the real CLI: one sweep trains each pretext encoder once and every fraction
reuses it; the monitors reach TensorBoard and the report's curve figure; method overrides work in mixed sweeps."""

from __future__ import annotations

import csv
import struct
import subprocess
import sys

from tests.helpers import log_text, results_files, scalar_tags

METHODS = ("byol", "moco", "barlow_twins", "dino")
MONITORS = {"pretext/val_knn_acc", "pretext/val_rankme"}


def png_width(path) -> int:
    return struct.unpack(">I", path.read_bytes()[16:20])[0]


def test_new_methods_train_once_per_sweep_and_report(cli, tmp_path):
    done = cli(f"+experiment={','.join(METHODS)}", "data=synthetic", "profile=smoke", "data.fraction=0.25,0.5",
               multirun=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    sweep = tmp_path / "multirun"
    cells = results_files(sweep)
    assert sorted(cell["experiment"] for cell in cells) == sorted(METHODS * 2)
    assert all(cell["status"] == "ok" for cell in cells), [cell.get("error") for cell in cells]
    for method in METHODS:
        runs = [cell for cell in cells if cell["experiment"] == method]
        assert len({cell["pretext_key"] for cell in runs}) == 1
        assert sorted(cell["pretext_reused"] for cell in runs) == [False, True]
    logs = log_text(sweep)
    assert logs.count("training pretext stage") == len(METHODS)
    assert logs.count("reusing pretext checkpoint") == len(METHODS)
    for cell in cells:
        tags = scalar_tags(tmp_path / "multirun" / cell["_dir"] / "tb" / "pretext")
        assert {"pretext/train_loss", "pretext/val_loss", *MONITORS} <= tags

    report = subprocess.run([sys.executable, "-m", "ssl_lightning.report", str(sweep)], capture_output=True,
                            text=True, timeout=300)
    assert report.returncode == 0, report.stderr[-3000:]
    rows = list(csv.DictReader((sweep / "results.csv").open()))
    assert {row["method"] for row in rows} == set(METHODS)
    table = (sweep / "results.md").read_text()
    assert all(name in table for name in ("BYOL", "MoCo v2", "Barlow Twins", "DINO"))
    curves = sorted(sweep.glob("curves_*.png"))
    assert curves and all(png_width(path) == 1800 for path in curves)  # 3 panel columns: the monitors' panels


def test_method_overrides_in_a_sweep_over_several_experiments(cli, tmp_path):
    done = cli("+experiment=rotation,simclr", "simclr.temperature=0.2", "data=synthetic", "profile=smoke",
               "data.fraction=0.5", multirun=True)
    assert done.returncode == 0, done.stderr[-3000:]
    cells = {cell["experiment"]: cell for cell in results_files(tmp_path / "multirun")}
    assert cells["simclr"]["status"] == cells["rotation"]["status"] == "ok"
    assert cells["simclr"]["config"]["simclr"]["temperature"] == 0.2
    assert cells["simclr"]["config"]["simclr"]["proj_dim"] == 64  # the rest of the section from simclr.yaml
