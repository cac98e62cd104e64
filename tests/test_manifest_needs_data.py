"""`data.manifest=<csv>` without `data=manifest` is refused, not ignored (issue 32, item 6)."""

from __future__ import annotations

import pytest

from ssl_lightning.data.config import DataConfig
from ssl_lightning.errors import UserError
from tests.conftest import run_entry


def test_a_manifest_given_to_another_data_set_is_refused():
    with pytest.raises(UserError, match="data.manifest is read only with data=manifest; add data=manifest"):
        DataConfig.from_mapping({"name": "imagefolder", "root": "/tmp", "manifest": "/tmp/list.csv"})
    assert DataConfig.from_mapping({"name": "manifest", "manifest": "/tmp/list.csv"}).manifest == "/tmp/list.csv"


def test_the_command_line_says_so_in_one_line_before_any_folder(tmp_path):
    (tmp_path / "list.csv").write_text("path,label\n")
    done = run_entry(["+experiment=supervised", "data=synthetic", "profile=smoke",
                      f"data.manifest={tmp_path / 'list.csv'}"], tmp_path)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2 and len(lines) == 1, done.stderr[-2000:]
    assert "add data=manifest" in lines[0] and not (tmp_path / "run").exists()


def _manifest(tmp_path, rows: list[tuple[str, str, str]]) -> DataConfig:
    """A manifest of uniform 8 px PNGs: rows of (file name, label, split)."""
    from PIL import Image

    lines = ["path,label,split"]
    for index, (name, label, split) in enumerate(rows):
        Image.new("RGB", (8, 8), (index * 9 % 256, 0, 0)).save(tmp_path / name)
        lines.append(f"{name},{label},{split}")
    (tmp_path / "list.csv").write_text("\n".join(lines) + "\n")
    return DataConfig(name="manifest", manifest=str(tmp_path / "list.csv"))


def test_a_manifest_label_without_test_images_is_refused_like_a_folders(tmp_path):
    from ssl_lightning.data import load_dataset

    rows = [(f"{label}{k}.png", label, "train") for label in "abc" for k in range(3)]
    rows += [("a9.png", "a", "test"), ("b9.png", "b", "test")]  # c: no test image
    with pytest.raises(UserError, match=r"label\(s\) \['c'\] in .*list.csv have no test images"):
        load_dataset(_manifest(tmp_path, rows))


def test_one_class_data_is_refused_when_loaded(tmp_path):
    from ssl_lightning.data import load_dataset

    rows = [(f"a{k}.png", "a", "train") for k in range(4)] + [("a9.png", "a", "test")]
    with pytest.raises(UserError, match="has one class .'a'.*needs at least two classes"):
        load_dataset(_manifest(tmp_path, rows))
    load_dataset(_manifest(tmp_path, rows), pretext_only=True)  # unlabelled pretext data may be one folder
