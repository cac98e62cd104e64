"""The methods after the original study's, as the registry lists them, through the real CLI (the shared sweep's
second grid, tests/conftest.py): each trains its pretext encoder; the monitors reach TensorBoard and the report's
curve figure; method overrides work in mixed sweeps. Pretext reuse across budgets is the first grid's
(tests/test_e2e.py)."""

from __future__ import annotations

import csv
import struct
from pathlib import Path

from ssl_lightning.methods import registry
from tests.conftest import NEW_METHODS as METHODS
from tests.helpers import cell_log, scalar_tags, shared_cells

MONITORS = {"pretext/val_knn_acc", "pretext/val_rankme"}


def png_width(path) -> int:
    return struct.unpack(">I", path.read_bytes()[16:20])[0]


def test_new_methods_train_their_encoders_and_report(shared_sweep):
    sweep = shared_sweep["root"] / "multirun"
    cells = shared_cells(shared_sweep, METHODS, (1.0,))
    assert sorted(cell["experiment"] for cell in cells) == sorted(METHODS)
    assert all(cell["status"] == "ok" for cell in cells), [cell.get("error") for cell in cells]
    for cell in cells:
        assert cell["pretext_reused"] is False and cell["pretext_key"]
        assert cell_log(cell).count("training pretext stage") == 1
        tags = scalar_tags(Path(cell["_dir"]) / "tb" / "pretext")
        assert {"pretext/train_loss", "pretext/val_loss", *MONITORS} <= tags

    report = shared_sweep["report"]
    assert report["returncode"] == 0, report["stderr"][-3000:]
    rows = list(csv.DictReader((sweep / "results.csv").open()))
    assert {row["method"] for row in rows if float(row["fraction"]) == 1.0} == {*METHODS, "simclr"}
    table = (sweep / "results.md").read_text()
    assert all(registry.get(name).display in table for name in METHODS)
    curves = sweep / "curves_synthetic_finetune_100pct.png"
    assert png_width(curves) == 1800  # 3 panel columns: the monitors' panels


def test_method_overrides_in_a_sweep_over_several_experiments(shared_sweep):
    cells = shared_cells(shared_sweep, ("rotation", "simclr"))
    assert {cell["status"] for cell in cells} == {"ok"} and len(cells) == 4
    for cell in cells:
        if cell["experiment"] == "simclr":
            assert cell["config"]["simclr"]["temperature"] == 0.2
            assert cell["config"]["simclr"]["proj_dim"] == 64  # the rest of the section from simclr.yaml
