"""CSV manifests: columns path,label[,group,split]; row-numbered errors; the same groups, splits and guard."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from ssl_lightning.data import load_dataset
from ssl_lightning.data.config import DataConfig
from ssl_lightning.data.fractions import make_label_split
from ssl_lightning.data.leakage import check_group_leakage
from ssl_lightning.errors import UserError
from tests.data.patient_tree import write_patient_tree

TILES = {"benign": [3, 4, 5, 4], "malignant": [4, 3, 5, 4]}


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with open(path, "w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def tree_rows(root: Path, owner: dict[str, str], split_of=None) -> list[list[str]]:
    """path (relative to root), label, group and split (patients p0 of each class in test by default)."""
    rows = []
    for file in sorted(root.rglob("*.png")):
        relative = file.relative_to(root)
        patient = relative.parts[1]
        split = split_of(patient) if split_of else ("test" if patient.endswith("-p0") else "train")
        rows.append([relative.as_posix(), owner[patient], patient, split])
    return rows


def manifest(path: Path, **options):
    return load_dataset(DataConfig(name="manifest", manifest=str(path), **options))


@pytest.fixture
def collection(tmp_path) -> tuple[Path, dict[str, str]]:
    root = tmp_path / "tiles"
    return root, write_patient_tree(root, TILES, magnifications=("x40",))


def test_manifest_reads_labels_groups_and_the_official_split(collection):
    root, owner = collection
    csv_path = write_csv(root / "manifest.csv", ["path", "label", "group", "split"], tree_rows(root, owner))
    images = manifest(csv_path)
    assert images.classes == ["benign", "malignant"]
    assert set(images.test_groups) == {"benign-p0", "malignant-p0"}
    assert not set(images.train_groups) & set(images.test_groups)
    for files, groups, labels in ((images.train_files, images.train_groups, images.train_labels),
                                  (images.test_files, images.test_groups, images.test_labels)):
        for file, group, label in zip(files, groups, labels.tolist(), strict=True):
            assert Path(file).parent.parent.name == group and images.classes[label] == owner[group]
    assert len(images.train_labels) + len(images.test_labels) == sum(map(sum, TILES.values()))


def test_manifest_through_the_image_store_matches_memory(collection, tmp_path):
    root, owner = collection
    rows = [[str((root / r[0]).resolve()), *r[1:]] for r in tree_rows(root, owner)]  # absolute paths
    csv_path = write_csv(tmp_path / "elsewhere.csv", ["path", "label", "group", "split"], rows)
    in_memory = manifest(csv_path)
    stored = manifest(csv_path, image_cache=str(tmp_path / "store"), decode_workers=1)
    assert np.array_equal(stored.train_images.numpy(), in_memory.train_images.numpy())
    assert list(stored.train_files) == list(in_memory.train_files)
    assert list(stored.test_groups) == list(in_memory.test_groups)


def test_without_a_split_column_the_test_split_is_drawn_by_group(collection):
    root, owner = collection
    rows = [r[:3] for r in tree_rows(root, owner)]
    images = manifest(write_csv(root / "m.csv", ["path", "label", "group"], rows))
    assert not set(images.train_groups) & set(images.test_groups)
    assert set(images.test_labels.tolist()) == {0, 1}


def test_group_by_none_and_a_regex_on_manifest_paths(collection):
    root, owner = collection
    rows = [r[:2] for r in tree_rows(root, owner)]
    csv_path = write_csv(root / "m.csv", ["path", "label"], rows)
    assert manifest(csv_path).train_groups is None  # auto without a group column: one group per image
    by_regex = manifest(csv_path, group_by=r"^[a-z]+/([^/]+)/")
    assert set(by_regex.train_groups) | set(by_regex.test_groups) == set(owner)


@pytest.mark.parametrize("case, message", [
    ("no_label_column", r"row 1: no 'label' column"),
    ("empty_label", r"row 3: .* has no label"),
    ("missing_file", r"row 2: .*nowhere.png does not exist"),
    ("duplicate", r"row 4: .* is listed again \(first on row 2\)"),
    ("bad_split", r"row 3: split 'validation' is not train or test"),
    ("test_only_label", r"row 4: label 'other' has no training row"),
    ("empty_group", r"row 2: .* has no group"),
])
def test_bad_manifests_name_the_row(collection, case, message):
    root, owner = collection
    good = tree_rows(root, owner)[:2] + [tree_rows(root, owner)[-1]]
    header = ["path", "label", "group", "split"]
    rows = [list(r) for r in good]
    if case == "no_label_column":
        header, rows = ["path", "group"], [[r[0], r[2]] for r in rows]
    elif case == "empty_label":
        rows[1][1] = ""
    elif case == "missing_file":
        rows[0][0] = "nowhere.png"
    elif case == "duplicate":
        rows[2] = list(rows[0])
    elif case == "bad_split":
        rows[1][3] = "validation"
    elif case == "test_only_label":
        rows[0][3], rows[1][3] = "train", "train"
        rows[2][1], rows[2][3] = "other", "test"
    elif case == "empty_group":
        rows[0][2] = ""
    with pytest.raises(UserError, match=message):
        manifest(write_csv(root / "bad.csv", header, rows))


def test_a_patient_in_train_and_test_is_refused_by_the_guard(collection):
    root, owner = collection
    rows = tree_rows(root, owner)
    shared = [r for r in rows if r[2] == "malignant-p2"]
    shared[0][3] = "test"  # one tile of this patient moved to the test split
    images = manifest(write_csv(root / "m.csv", ["path", "label", "group", "split"], rows))
    split = make_label_split(images.train_labels.numpy(), 1.0, 0, 0.1, images.classes, groups=images.train_groups)
    with pytest.raises(UserError, match=r"group 'malignant-p2' is in both"):
        check_group_leakage(images, split.labeled, split.val, split.pool)


def test_cli_refuses_a_manifest_with_one_patient_on_both_sides(collection, cli_in_process):
    root, owner = collection
    rows = tree_rows(root, owner)
    next(r for r in rows if r[2] == "benign-p3")[3] = "test"
    csv_path = write_csv(root / "m.csv", ["path", "label", "group", "split"], rows)
    done = cli_in_process("+experiment=supervised", "data=manifest", f"data.manifest={csv_path}", "profile=smoke")
    assert done.returncode == 2, done.stderr[-2000:]
    assert "group 'benign-p3' is in both" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (root.parent / "run" / "results.json").exists()
