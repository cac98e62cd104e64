"""A generated `class/<patient>/x40/*.png` collection (the BreakHis layout) with real PNG files."""

from __future__ import annotations

from pathlib import Path

from tests.data.writers import write_png

# tiles per patient, per class: unequal on purpose (whole patients cannot hit a share exactly)
PATIENT_TILES = {"benign": [5, 3, 8, 4], "malignant": [6, 2, 7, 5, 4], "normal": [4, 4, 3, 6]}


def write_patient_tree(root: Path, tiles: dict[str, list[int]] | None = None, magnifications=("x40", "x10"),
                       size: int = 8) -> dict[str, str]:
    """Write the tree; returns patient id -> class. Patient ids are unique across classes (e.g. `malignant-p3`);
    every tile is uniform with a distinct colour."""
    tiles = tiles or PATIENT_TILES
    owner, image_id = {}, 1
    for class_index, (name, counts) in enumerate(sorted(tiles.items())):
        for k, count in enumerate(counts):
            patient = f"{name}-p{k}"
            owner[patient] = name
            for magnification in magnifications:
                for t in range(count):
                    write_png(root / name / patient / magnification / f"tile{t:03d}.png",
                              (image_id % 256, image_id // 256, 40 * class_index), size=size)
                    image_id += 1
    return owner
