"""data.split_seeds: one cell evaluates several label splits of one encoder's cached features, each its own run in
split_<seed>/, with exactly the results of one cell per split seed; refused in one line where it cannot apply."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from ssl_lightning.config import settings as settings_module
from ssl_lightning.data.config import DataConfig
from ssl_lightning.errors import UserError
from ssl_lightning.stages import pipeline

CONF = Path(__file__).resolve().parent.parent / "conf"
CELL = ["data=synthetic", "profile=smoke", "downstream=linear", "data.fraction=0.25"]


def _config(tmp_path: Path, *overrides: str, experiment: str = "raw_pixels"):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=[f"+experiment={experiment}", *CELL, f"paths.cache={tmp_path / 'cache'}",
                                            *overrides])


def _record(folder: Path) -> tuple[dict, dict]:
    return (json.loads((folder / "results.json").read_text()), json.loads((folder / "subset.json").read_text()))


def test_several_splits_in_one_cell_equal_one_cell_per_split(tmp_path):
    returned = pipeline.run(_config(tmp_path, "data.split_seeds=[3,1,2]"), tmp_path / "batched")
    assert not (tmp_path / "batched" / "results.json").exists()
    for seed in (3, 1, 2):
        batched, batched_subset = _record(tmp_path / "batched" / f"split_{seed}")
        alone = pipeline.run(_config(tmp_path, f"data.split_seed={seed}"), tmp_path / f"alone_{seed}")
        alone_subset = json.loads((tmp_path / f"alone_{seed}" / "subset.json").read_text())
        assert batched["status"] == alone["status"] == "ok"
        assert batched["split_seed"] == batched["config"]["data"]["split_seed"] == seed
        assert batched_subset["labeled_indices"] == alone_subset["labeled_indices"]
        assert batched_subset["val_indices"] == alone_subset["val_indices"]
        for key in ("test_acc", "test_loss", "chosen_penalty", "val_scores", "feature_key"):
            assert batched[key] == alone[key], key
    assert returned["split_seed"] == 2  # the last split's results when none failed
    splits = {json.loads(p.read_text())["split_seed"] for p in (tmp_path / "batched").rglob("results.json")}
    assert splits == {1, 2, 3}
    labelled = [json.loads((tmp_path / "batched" / f"split_{s}" / "subset.json").read_text())["labeled_indices"]
                for s in (1, 2)]
    assert labelled[0] != labelled[1]  # different seeds, different label splits


@pytest.mark.parametrize(("overrides", "message"), [
    (["downstream=finetune", "data.split_seeds=[0,1]"], "not downstream=finetune"),
    (["downstream.solver=sgd", "data.split_seeds=[0,1]"], "solver=sgd"),
    (["data.split_seeds=[0,0]"], "repeats a seed"),
    (["data.split_seeds=[0,-1]"], "whole numbers in [0, 4294967295]"),
    (["data.split_seeds=[]"], "non-empty"),
])
def test_split_seeds_where_they_cannot_apply_are_one_line(tmp_path, overrides, message):
    config = _config(tmp_path, *overrides, experiment="supervised")
    with pytest.raises(UserError) as raised:
        settings_module.from_config(config)
    assert message in str(raised.value) and "\n" not in str(raised.value)


def test_split_seeds_need_a_validation_pool_of_their_own_seed():
    """In Python (the CLI refuses val_seed=null anyway): without data.val_seed each split would carve its own pool."""
    with pytest.raises(UserError, match="fixed data.val_seed"):
        DataConfig.from_mapping({"split_seeds": [0, 1], "val_seed": None})
    assert DataConfig.from_mapping({"split_seeds": [0, 1], "val_seed": 0}).split_seeds == (0, 1)
