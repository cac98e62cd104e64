"""The CLI on a patient tree with no option but the include glob, and one encoder for many label splits."""

from __future__ import annotations

import json
from pathlib import Path

from tests.data.patient_tree import write_patient_tree
from tests.helpers import log_text, results_files

TILES = {"benign": [5, 4, 6, 4], "malignant": [4, 6, 5, 5], "normal": [5, 5, 4, 6]}


def test_simclr_on_a_patient_tree_splits_by_patient(cli_in_process, tmp_path):
    root = tmp_path / "tiles"
    write_patient_tree(root, TILES, size=16)
    done = cli_in_process("+experiment=simclr", "data=imagefolder", f"data.root={root}", "data.include=**/x40/*.png",
                          "data.fraction=0.5", "profile=smoke")
    assert done.returncode == 0, done.stderr[-3000:]
    subset = json.loads((tmp_path / "run" / "subset.json").read_text())
    groups = {part: set(ids) for part, ids in subset["groups"].items()}
    assert groups["labeled"] and groups["labeled"] <= groups["pool"]
    for a, b in (("pool", "val"), ("pool", "test"), ("val", "test")):
        assert not groups[a] & groups[b], (a, b)
    assert groups["pool"] | groups["val"] | groups["test"] == {f"{c}-p{k}" for c in TILES for k in range(4)}
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["status"] == "ok" and results["group_by"] == "auto"
    assert results["num_groups"] == {part: len(ids) for part, ids in groups.items()}
    assert all(share >= 0.5 for share in results["labeled_share_per_class"].values())
    assert "grouping by the first folder below the class folder: 4 / 4 / 4 groups" in log_text(tmp_path / "run")


def test_split_seeds_swept_with_one_seed_share_one_pretext_encoder(cli_in_process, tmp_path):
    done = cli_in_process("+experiment=rotation", "data=synthetic", "data.train_size=96", "data.test_size=16",
                          "profile=smoke", "seed=0", "data.split_seed=0,1", "data.fraction=0.5", multirun=True)
    assert done.returncode == 0, done.stderr[-3000:]
    cells = sorted(results_files(tmp_path / "multirun"), key=lambda r: r["split_seed"])
    assert [c["status"] for c in cells] == ["ok", "ok"]
    assert cells[0]["pretext_key"] == cells[1]["pretext_key"] and cells[1]["pretext_reused"]
    assert [c["val_seed"] for c in cells] == [0, 0]
    subsets = [json.loads((Path(c["_dir"]) / "subset.json").read_text()) for c in cells]
    assert subsets[0]["labeled_indices"] != subsets[1]["labeled_indices"]
    assert subsets[0]["groups"] is None and cells[0]["group_by"] == "none"
