"""data.test_folds=K: patient-level cross-validation of the test split. Every patient is tested exactly once across
the K fold runs (`<cell>/fold_<k>/`), no patient is on both sides of any fold (pretext pool included), unset folds
keep today's split, and K values that cannot work are one line, exit 2, before anything is written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from ssl_lightning.config import settings as settings_module
from ssl_lightning.config.identity import sources_identity
from ssl_lightning.data.config import DataConfig
from ssl_lightning.data.group_split import deal_test_folds
from ssl_lightning.errors import UserError
from ssl_lightning.stages import pipeline
from ssl_lightning.stages.pretext_stage import pretext_key
from tests.data.patient_tree import write_patient_tree

CONF = Path(__file__).resolve().parent.parent / "conf"
# 4 / 5 / 4 patients (benign / malignant / normal) of unequal size, one magnification: 60 tiles
TILES = {"benign": [5, 3, 8, 4], "malignant": [6, 2, 7, 5, 4], "normal": [4, 4, 3, 6]}
PATIENTS = {f"{name}-p{k}" for name, counts in TILES.items() for k in range(len(counts))}


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("folds") / "tiles"
    write_patient_tree(root, TILES, magnifications=("x40",))
    return root


def _config(tmp_path: Path, root: Path | None, *overrides: str, experiment: str = "raw_pixels"):
    data = ["data=imagefolder", f"data.root={root}"] if root else []
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=[f"+experiment={experiment}", *data, "profile=smoke", "downstream=knn",
                                            f"paths.cache={tmp_path / 'cache'}", *overrides])


def _read(folder: Path, name: str) -> dict:
    return json.loads((folder / name).read_text())


def test_every_patient_is_tested_once_and_never_on_both_sides(tmp_path, tree):
    returned = pipeline.run(_config(tmp_path, tree, "data.test_folds=3"), tmp_path / "cell")
    assert not (tmp_path / "cell" / "results.json").exists()
    assert sorted(p.name for p in (tmp_path / "cell").iterdir() if p.name.startswith("fold_")) == \
        ["fold_0", "fold_1", "fold_2"]
    tested, rows = [], []
    for k in range(3):
        results, subset = _read(tmp_path / "cell" / f"fold_{k}", "results.json"), \
            _read(tmp_path / "cell" / f"fold_{k}", "subset.json")
        assert results["status"] == "ok", results.get("error")
        assert (results["test_fold"], results["test_folds"]) == (k, 3) == (subset["test_fold"], subset["test_folds"])
        assert results["config"]["data"]["test_folds"] == 3 and results["config"]["data"]["test_fold"] == k
        assert results["num_test"] == len(subset["test_indices"])
        groups = subset["groups"]
        assert subset["test_groups"] == groups["test"]
        for side in ("labeled", "val", "pool"):  # the pretext pool is `pool`: no test patient in it
            assert not set(groups[side]) & set(groups["test"]), (k, side)
        assert set(groups["pool"]) | set(groups["val"]) | set(groups["test"]) == PATIENTS
        assert {name.split("-")[0] for name in groups["test"]} == set(TILES)  # every class tested in every fold
        tested += groups["test"]
        rows += subset["test_indices"]
    assert sorted(tested) == sorted(PATIENTS)  # each patient in exactly one fold's test split
    assert sorted(rows) == list(range(sum(map(sum, TILES.values()))))  # each tile tested exactly once
    assert returned["test_fold"] == 2  # the last fold's results when none failed


def test_each_fold_trains_its_own_pretext_encoder_without_its_test_images(tmp_path, tree):
    settings = settings_module.from_config(_config(tmp_path, tree, "data.test_folds=2", "data.split_seeds=[0,1]",
                                                   experiment="simclr"))
    cells = pipeline.prepare_folds(settings)  # every fold checked before any runs; nothing trains here
    keys = set()
    for k, cell in enumerate(cells):
        test_files = set(cell.images.test_files.tolist())
        pretext_rows = np.concatenate([cell.pretext.train_indices, cell.pretext.val_indices])
        assert not set(cell.images.train_files[pretext_rows].tolist()) & test_files
        assert len(cell.pretext.images) == len(cell.images.train_labels)  # the fold's training images only
        assert [s.data.test_fold for s, _ in cell.split_runs] == [k, k]  # split seeds nest: fold_<k>/split_<s>/
        keys.add(pretext_key(cell.settings, sources_identity(cell.pretext.identity)))
    assert len(keys) == 2  # one stored encoder per fold


def test_unset_test_folds_keeps_todays_split(tmp_path, tree):
    """Pinned from the code before data.test_folds existed (same tree, default seeds)."""
    cell = pipeline.prepare(_config(tmp_path, tree))
    assert sorted(set(cell.images.test_groups.tolist())) == ["benign-p3", "malignant-p0", "malignant-p4", "normal-p0"]
    assert cell.split.labeled.tolist() == [*range(0, 8), *range(16, 25), *range(30, 37)]
    assert cell.split.val.tolist() == [*range(8, 16), *range(25, 30), *range(37, 43)]
    assert cell.fold is None and cell.settings.data.test_fold is None


def test_folds_are_stratified_seeded_and_independent_of_row_order():
    rng = np.random.default_rng(0)
    groups = np.asarray([f"p{g}" for g in rng.integers(0, 30, size=400)], dtype=object)
    labels = np.asarray([int(name[1:]) % 3 for name in groups])  # 10 patients per class
    folds = deal_test_folds(labels, groups, 5, 42, ["a", "b", "c"])
    fold_of = {name: int(fold) for name, fold in zip(groups, folds, strict=True)}
    assert all(len({fold_of[n] for n in groups[groups == name]}) == 1 for name in fold_of)  # patients stay whole
    for cls in range(3):  # each fold tests 2 of every class's 10 patients
        assert sorted(list(fold_of[n] for n in set(groups[labels == cls])).count(k) for k in range(5)) == [2] * 5
    order = rng.permutation(len(labels))
    assert np.array_equal(deal_test_folds(labels[order], groups[order], 5, 42, ["a", "b", "c"]), folds[order])
    assert not np.array_equal(deal_test_folds(labels, groups, 5, 43, ["a", "b", "c"]), folds)


@pytest.mark.parametrize(("values", "message"), [
    ({"test_folds": 1}, "whole number >= 2"),
    ({"test_folds": True}, "whole number >= 2"),
    ({"test_folds": 2.5}, "whole number >= 2"),
    ({"name": "fashion_mnist", "test_folds": 5}, "fixed test split"),
    ({"name": "synthetic", "test_folds": 5}, "fixed test split"),
    ({"test_fold": 1}, "data.test_folds, which is null"),
    ({"test_folds": 3, "test_fold": 3}, "use 0 to 2"),
])
def test_test_folds_that_cannot_apply_are_one_line(values, message):
    with pytest.raises(UserError) as raised:
        DataConfig.from_mapping({"name": "imagefolder", "root": "/x", **values})
    assert message in str(raised.value) and "\n" not in str(raised.value)


def test_more_folds_than_patients_of_a_class_exits_2_before_anything_is_written(cli_in_process, tmp_path, tree):
    done = cli_in_process("+experiment=raw_pixels", "data=imagefolder", f"data.root={tree}", "profile=smoke",
                          "downstream=knn", "data.test_folds=5")
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "class 'benign' has 4 group(s)" in lines[0] and "data.test_folds=4" in lines[0]
    assert not list(tmp_path.rglob("results.json")) and not list(tmp_path.rglob("subset.json"))


def test_an_official_test_split_is_not_redrawn(tmp_path, tree):
    for part in ("train", "test"):
        write_patient_tree(tmp_path / "official" / part, {"a": [2, 2], "b": [2, 2]}, magnifications=("x40",))
    settings = settings_module.from_config(_config(tmp_path, tmp_path / "official", "data.test_folds=2"))
    with pytest.raises(UserError, match="fixes the test split with train/ and test/"):
        pipeline.prepare_folds(settings)
    manifest = tmp_path / "tiles.csv"
    manifest.write_text("path,label,group,split\n" + "".join(
        f"{p},{p.parent.parent.name},{p.parent.name},train\n" for p in sorted(tree.rglob("*.png"))))
    settings = settings_module.from_config(_config(tmp_path, None, "data=manifest", f"data.manifest={manifest}",
                                                   "data.test_folds=2"))
    with pytest.raises(UserError, match="split column"):
        pipeline.prepare_folds(settings)
