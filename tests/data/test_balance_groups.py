"""Issue 32 item 11: `data.balance=true` on grouped data labels as many tiles of every class (whole patients
balanced first, then tiles cut inside the labelled patients), and records what it cut."""

from __future__ import annotations

import json

import numpy as np

from ssl_lightning.data import load_dataset
from ssl_lightning.data.config import DataConfig
from ssl_lightning.data.fractions import cut_to_smallest, make_label_split
from ssl_lightning.data.leakage import check_group_leakage
from ssl_lightning.stages.results import balance_fields
from tests.data.patient_tree import write_patient_tree

# 90 / 60 / 40 tiles in 4 patients per class: whole patients alone labelled 23 / 15 / 10 tiles at fraction 0.5
TILES = {"benign": [30, 25, 20, 15], "malignant": [20, 15, 15, 10], "normal": [13, 10, 9, 8]}


def test_balance_on_patients_labels_equal_counts_and_cuts_only_inside_labelled_patients(tmp_path):
    write_patient_tree(tmp_path / "tree", TILES, magnifications=("x40",), size=4)
    images = load_dataset(DataConfig(name="imagefolder", root=str(tmp_path / "tree"), test_split=0.25))
    labels, groups = images.train_labels.numpy(), np.asarray(images.train_groups)
    for fraction, seed in ((0.5, 0), (0.5, 1), (0.25, 0), (1.0, 2)):
        split = make_label_split(labels, fraction, seed, 0.1, images.classes, balance=True, groups=groups)
        counts = np.bincount(labels[split.labeled], minlength=3)
        assert counts.tolist() == [split.balanced_to] * 3, (fraction, seed, counts)

        dropped = split.balance_dropped
        labelled_patients = set(groups[split.labeled])
        assert set(groups[dropped]) <= labelled_patients  # only tiles of patients that stay labelled are cut
        assert not set(dropped) & set(split.labeled) and set(dropped) <= set(split.pool)
        assert not set(dropped) & set(split.val)  # never in validation ...
        assert not set(groups[dropped]) & set(images.test_groups)  # ... nor test
        assert not labelled_patients & set(groups[split.val])  # no patient on both sides
        check_group_leakage(images, split.labeled, split.val, split.pool)

        # whole patients were balanced first; they alone left the classes unequal (the 23 / 15 / 10)
        before = np.bincount(labels[np.concatenate([split.labeled, dropped])], minlength=3)
        assert before.min() == split.balanced_to and (before.max() > before.min() or fraction == 1.0), before
        for patient in labelled_patients:  # every labelled patient keeps at least one labelled tile
            assert np.any(groups[split.labeled] == patient)

        fields = balance_fields(split, labels, images.classes)
        assert fields["balanced_to"] == split.balanced_to and fields["balance_dropped"] == len(dropped)
        assert sum(fields["balance_dropped_per_class"].values()) == len(dropped) > 0 or fraction == 1.0


def test_the_cut_spreads_over_patients_and_is_seeded():
    labels = np.array([0] * 10 + [1] * 4)
    groups = np.array(["a"] * 6 + ["b"] * 4 + ["c"] * 2 + ["d"] * 2)
    kept, target, dropped = cut_to_smallest(labels, np.arange(14), seed=0, groups=groups)
    assert target == 4 and len(kept) == 8 and len(dropped) == 6
    assert sorted(groups[kept][:4].tolist()) == ["a", "a", "b", "b"]  # 6 : 4 tiles -> 2 : 2 (at least one each)
    assert cut_to_smallest(labels, np.arange(14), seed=0, groups=groups)[0].tolist() == kept.tolist()
    without_groups = cut_to_smallest(labels, np.arange(14), seed=0)
    assert np.bincount(labels[without_groups[0]]).tolist() == [4, 4]


def test_a_balanced_cell_records_what_it_cut(cli_in_process, tmp_path):
    write_patient_tree(tmp_path / "tree", TILES, magnifications=("x40",), size=4)
    done = cli_in_process("+experiment=raw_pixels", "downstream=knn", "profile=smoke", "data=imagefolder",
                          f"data.root={tmp_path / 'tree'}", "data.balance=true", "data.fraction=0.5",
                          "data.image_size=8")
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    subset = json.loads((tmp_path / "run" / "subset.json").read_text())
    assert set(results["labeled_per_class"].values()) == {results["balanced_to"]}
    assert results["balance_dropped"] == sum(results["balance_dropped_per_class"].values()) > 0
    assert len(subset["balance_dropped_indices"]) == results["balance_dropped"]
    assert not set(subset["balance_dropped_indices"]) & set(subset["labeled_indices"] + subset["val_indices"])
