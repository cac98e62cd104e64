"""Bad data input through the real CLI: one `error:` line, exit code 2, and no run folder or pretext entry left.

Each case runs in-process through the CLI's entry function (tests/test_fuzz.py holds the wider table); the one
case that trains runs there too, to the end.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import run_entry
from tests.data.writers import write_png

COMMON = ("profile=smoke",)
VALID_NAMES = "cifar10, fashion_mnist, imagefolder, manifest, stl10, synthetic"
PER_IMAGE = "data.group_by=none"  # the trees name two patients per class: too few for a split by patient


def image_tree(root: Path, classes: tuple[str, ...] = ("benign", "malignant"), per_class: int = 10) -> Path:
    """class/patientN/x40/*.png, 16 px RGB, enough images per class for a test share and a validation share."""
    for c, name in enumerate(classes):
        for k in range(per_class):
            write_png(root / name / f"patient{k % 2}" / "x40" / f"{k}.png", (20 * k, 100 * c, 60), size=16)
    return root


def with_broken_image(folder: Path) -> Path:
    root = image_tree(folder / "images")
    (root / "benign" / "patient1" / "x40" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n junk, not a PNG body")
    return root


def with_empty_class(folder: Path) -> Path:
    root = image_tree(folder / "images")
    (root / "stroma" / "patient0").mkdir(parents=True)
    (root / "stroma" / "patient0" / "notes.txt").write_text("no images here")
    return root


def empty_root(folder: Path) -> Path:
    (folder / "images").mkdir()
    return folder / "images"


@dataclass(frozen=True)
class Case:
    """One bad input: CLI arguments (given the case's folder) and what the one-line message must contain."""

    args: Callable[[Path], list[str]]
    says: tuple[str, ...]
    # A pretext method makes the "no pretext entry" check bite: the split must be checked before pretext training.
    experiment: str = "supervised"


CASES: dict[str, Case] = {
    "fraction_zero": Case(lambda d: ["data=synthetic", "data.fraction=0"], ("data.fraction=0", "(0, 1]")),
    "fraction_above_one": Case(lambda d: ["data=synthetic", "data.fraction=1.5"], ("data.fraction=1.5", "(0, 1]")),
    "fraction_leaves_a_class_empty": Case(lambda d: ["data=synthetic", "data.fraction=0.001"],
                                          ("data.fraction=0.001", "'class_0'", "no image"), "rotation"),
    "unknown_data_name": Case(lambda d: ["data=synthetic", "data.name=imagenet"], ("'imagenet'", VALID_NAMES)),
    "unknown_data_group": Case(lambda d: ["data=imagenet"], ("imagenet", "cifar10", "synthetic")),
    "imagefolder_missing_root": Case(lambda d: ["data=imagefolder", f"data.root={d / 'nowhere'}"],
                                     ("nowhere", "does not exist")),
    "imagefolder_empty_root": Case(lambda d: ["data=imagefolder", f"data.root={empty_root(d)}"],
                                   ("no class folders",)),
    "imagefolder_class_without_images": Case(lambda d: ["data=imagefolder", f"data.root={with_empty_class(d)}"],
                                             ("stroma", "no images")),
    "imagefolder_unreadable_image": Case(lambda d: ["data=imagefolder", f"data.root={with_broken_image(d)}"],
                                         ("broken.png", "data.on_bad_image=skip")),
    "pretext_folder_is_the_target_folder": Case(
        lambda d: ["data=imagefolder", f"data.root={image_tree(d / 'images')}", PER_IMAGE,
                   "pretext_data=[target,unlabeled_folder]", f"pretext_data.unlabeled_folder.root={d / 'images'}"],
        ("pretext_data.unlabeled_folder holds", "of the target's test images", "point it at a folder without them"),
        "rotation"),
}
def _skip_args(folder: Path) -> list[str]:
    return ["data=imagefolder", f"data.root={with_broken_image(folder)}", "data.on_bad_image=skip", PER_IMAGE]


def _in_process(args: list[str], folder: Path, capsys) -> tuple[int, str]:
    """`entry(argv)` as `python -m ssl_lightning` runs it, outputs inside `folder` (tests/conftest.py puts back
    what the run changed in this process)."""
    done = run_entry(args, folder)
    return done.returncode, done.stderr


@pytest.mark.parametrize("name", list(CASES))
def test_bad_data_input_is_one_line_exit_2_and_writes_nothing(name, tmp_path, monkeypatch, capsys):
    """In-process through the CLI's entry function (Hydra's job included for the data-loading cases)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["ssl_lightning"])
    (tmp_path / "keep.txt").write_text("the user's own file")
    case = CASES[name]
    code, stderr = _in_process([*COMMON, f"+experiment={case.experiment}", *case.args(tmp_path)], tmp_path, capsys)
    assert code == 2, stderr[-2000:]
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr[-2000:]
    for fragment in case.says:
        assert fragment in lines[0]
    assert not (tmp_path / "run").exists() and (tmp_path / "keep.txt").is_file()
    pretext = tmp_path / "cache" / "pretext"
    assert not pretext.exists() or not any(pretext.iterdir())


def test_skipping_unreadable_images_lets_the_run_finish(tmp_path):
    folder = tmp_path
    result = run_entry([*COMMON, "+experiment=supervised", *_skip_args(folder)], folder)
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((folder / "run" / "results.json").read_text())
    assert results["status"] == "ok" and results["data"] == "imagefolder"
    assert sum(results["labeled_per_class"].values()) + results["num_val"] + results["num_test"] == 20
