"""Images listed in a CSV manifest: columns `path,label` and optional `group` (patient, slide) and `split`.

`path` is absolute or relative to the CSV's folder; `split` is `train` or `test` (an official split; without the
column the test split is drawn by group as for folders). Rows are numbered as lines of the file (the header is
row 1). Pixels go through the same image store as folders, and the same groups, splits and leakage guard apply;
`data.group_by=auto` reads the `group` column when there is one.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ssl_lightning.data.base import ImageSet
from ssl_lightning.data.config import DataConfig
from ssl_lightning.data.folder_decode import decode_files
from ssl_lightning.data.groups import log_group_counts, manifest_groups, parse_rule
from ssl_lightning.data.imagefolder import grouped_test_split
from ssl_lightning.data.registry import DatasetSpec, register
from ssl_lightning.errors import UserError
from ssl_lightning.file_hash import file_sha256

REQUIRED = ("path", "label")
SPLITS = ("train", "test")


@dataclass
class ManifestRows:
    """The manifest's rows, validated, in file order."""

    files: list[Path]  # resolved
    written: list[str]  # the path as written in the CSV
    labels: list[str]
    groups: list[str] | None
    splits: list[str] | None


def _cell(row: dict[str, Any], column: str) -> str:
    value = row.get(column)
    return "" if value is None else str(value).strip()


def shown(text: str) -> str:
    """`text` with control characters escaped (a NUL byte as \\x00): a message never echoes raw bytes to the
    terminal."""
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)


def _check_printable(path: Path, number: int, row: dict[str, Any]) -> None:
    """A cell holding a NUL or another control character: the file is binary or damaged, not a text CSV."""
    for column in ("path", "label", "group", "split"):
        value = _cell(row, column)
        if shown(value) != value:
            raise UserError(f"{path} row {number}: the {column} {shown(value)!r} holds control characters; the "
                            "manifest must be a plain-text CSV (re-export it as CSV UTF-8)")


def _check_label_case(path: Path, rows: ManifestRows) -> None:
    """`Benign` and `benign` would be two classes (and, split by group, look like a group-count problem)."""
    first: dict[str, tuple[str, int]] = {}
    for number, label in enumerate(rows.labels, start=2):
        seen = first.setdefault(label.casefold(), (label, number))
        if seen[0] != label:
            raise UserError(f"{path}: labels {seen[0]!r} (row {seen[1]}) and {label!r} (row {number}) differ only "
                            "in case and would be two classes; write one spelling")


def read_manifest(path: Path) -> ManifestRows:
    """Parse and check the CSV: one-line UserError naming the row for a missing column, label, group or split,
    a file that does not exist, a path listed twice, and a file that is not UTF-8 text."""
    if path.is_dir():
        raise UserError(f"data.manifest={path} is a folder; give the CSV file itself (columns path,label[,group,"
                        "split]), or read a class-folder tree with data=imagefolder data.root=<folder>")
    if not path.is_file():
        raise UserError(f"data.manifest={path} does not exist; point it at a CSV with columns path,label")
    try:
        return _read_rows(path)
    except UnicodeDecodeError:  # e.g. saved as latin-1 by a spreadsheet
        raise UserError(f"{path} is not UTF-8{_first_bad_byte(path)}; save it as UTF-8") from None


def _first_bad_byte(path: Path) -> str:
    """' (row N, byte 0xE9)' for the first byte that is not UTF-8 (the reader's error counts within a chunk)."""
    data = path.read_bytes()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as error:
        row = data[: error.start].count(b"\n") + 1
        return f" (row {row}, byte {data[error.start]:#04x})"
    return ""


def _read_rows(path: Path) -> ManifestRows:
    with open(path, newline="", encoding="utf-8-sig") as stream:
        reader = csv.DictReader(stream)
        header = [name.strip() for name in reader.fieldnames or []]
        reader.fieldnames = header
        missing = [name for name in REQUIRED if name not in header]
        if missing:
            raise UserError(f"{path} row 1: no {missing[0]!r} column (header: {shown(','.join(header)) or 'empty'}); "
                            "the manifest needs path,label and optionally group,split")
        has_group, has_split = "group" in header, "split" in header
        rows = ManifestRows([], [], [], [] if has_group else None, [] if has_split else None)
        seen: dict[Path, int] = {}
        for number, row in enumerate(reader, start=2):
            _check_printable(path, number, row)
            written, label = _cell(row, "path"), _cell(row, "label")
            if not written:
                raise UserError(f"{path} row {number}: empty path")
            if not label:
                raise UserError(f"{path} row {number}: {written} has no label")
            file = Path(written).expanduser()
            file = (file if file.is_absolute() else path.parent / file).resolve()
            if not file.is_file():
                raise UserError(f"{path} row {number}: {file} does not exist (relative paths start at the CSV's "
                                "folder)")
            if file in seen:
                raise UserError(f"{path} row {number}: {written} is listed again (first on row {seen[file]})")
            seen[file] = number
            if rows.groups is not None:
                group = _cell(row, "group")
                if not group:
                    raise UserError(f"{path} row {number}: {written} has no group; give every row its patient/slide")
                rows.groups.append(group)
            if rows.splits is not None:
                split = _cell(row, "split").lower()
                if split not in SPLITS:
                    raise UserError(f"{path} row {number}: split {_cell(row, 'split')!r} is not train or test")
                rows.splits.append(split)
            rows.files.append(file)
            rows.written.append(written)
            rows.labels.append(label)
    if not rows.files:
        raise UserError(f"{path} lists no images; add rows path,label")
    _check_label_case(path, rows)
    _check_test_labels(path, rows)
    return rows


def _check_test_labels(path: Path, rows: ManifestRows) -> None:
    """A label seen only in test rows is unknown to every classifier trained on the manifest."""
    if rows.splits is None:
        return
    trained = {label for label, split in zip(rows.labels, rows.splits, strict=True) if split == "train"}
    if not trained:
        raise UserError(f"{path}: no row has split=train; mark the training images")
    if "test" not in rows.splits:
        raise UserError(f"{path}: no row has split=test; mark the test images or drop the split column")
    for number, (label, split) in enumerate(zip(rows.labels, rows.splits, strict=True), start=2):
        if split == "test" and label not in trained:
            raise UserError(f"{path} row {number}: label {label!r} has no training row (unknown to the classifier)")


def _check_classes(path: Path, classes: list[str], train: np.ndarray, test: np.ndarray) -> None:
    """As for folders (data/folder_checks.py): every label with training and test images; else the run trains and
    then reports a NaN per-class accuracy and a balanced accuracy over fewer classes."""
    for side, labels in (("training", train), ("test", test)):
        missing = [name for index, name in enumerate(classes) if not np.any(labels == index)]
        if missing:
            raise UserError(f"label(s) {missing} in {path} have no {side} images (after the test split); add rows "
                            "for them, mark some as split=test/train, or remove the label")


def manifest_identity(manifest: str | None) -> dict[str, str] | None:
    """What the manifest contributes to a store key: its resolved path and the sha256 of its bytes."""
    if not manifest:
        return None
    path = Path(manifest).expanduser().resolve()
    return {"path": str(path), "sha256": file_sha256(str(path)) if path.is_file() else ""}


def load(config: DataConfig) -> ImageSet:
    if not config.manifest:
        raise UserError("data=manifest needs data.manifest=/path/to/file.csv (columns path,label[,group,split])")
    path = Path(config.manifest).expanduser().resolve()
    rows = read_manifest(path)
    rule = parse_rule(config.group_by)
    groups = manifest_groups(rule, rows.written, rows.groups, rows.files)
    classes = sorted(set(rows.labels))
    order = np.arange(len(rows.files))
    if rows.splits is not None:  # train rows first: one decode, one store entry for both parts
        order = np.concatenate([order[np.asarray(rows.splits) == s] for s in SPLITS])
    files = [rows.files[i] for i in order]
    labels = [classes.index(rows.labels[i]) for i in order]
    root = Path(os.path.commonpath([str(file.parent) for file in files]))
    decoded = decode_files(root, files, labels, config)
    kept_rows = order[decoded.kept]
    kept_groups = None if groups is None else groups[kept_rows]
    label_array = decoded.labels.numpy()
    if rows.splits is not None:
        is_train = np.asarray(rows.splits)[kept_rows] == "train"
        train_idx, test_idx = np.flatnonzero(is_train), np.flatnonzero(~is_train)
    else:
        train_idx, test_idx = grouped_test_split(label_array, kept_groups, config.test_split,
                                                 config.test_split_seed, classes)
    if kept_groups is not None:
        log_group_counts(rule.describe(column=True), kept_groups, label_array, classes)
    if len(train_idx) == 0:
        raise UserError(f"no readable training images in {path}; check the files")
    _check_classes(path, classes, label_array[train_idx], label_array[test_idx])
    notes = [f"manifest {path}: {len(train_idx)} train / {len(test_idx)} test images, "
             f"{decoded.images.shape[1]} channel(s)"]
    return ImageSet(decoded.images[train_idx], decoded.labels[train_idx], decoded.images[test_idx],
                    decoded.labels[test_idx], classes, notes=notes, train_files=decoded.files[train_idx],
                    test_files=decoded.files[test_idx],
                    train_groups=None if kept_groups is None else kept_groups[train_idx],
                    test_groups=None if kept_groups is None else kept_groups[test_idx])


def files(config: DataConfig) -> tuple[Path, list[Path]] | None:
    """Its images as the leakage guard sees them: every file the manifest lists (train and test rows)."""
    path = Path(config.manifest).expanduser().resolve() if config.manifest else None
    return (path, read_manifest(path).files) if path is not None and path.is_file() else None


# As pretext data a manifest is decoded at its own size and then resized (decode_at_target_size=False), as before
# the registry; True would match the folders.
register(DatasetSpec("manifest", load, test_split="drawn", leakage="files", files=files, groups=True))
