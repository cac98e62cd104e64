"""A small folder of tiles in the layout `data=imagefolder` reads: `<folder>/<class>/<patient>/tileNNN.png`.

The README's five-minute example starts here, so a new user can run one cell on "their own folder" before they
have one, and see the patient groups, the split and the report on data laid out like theirs:

    python -m ssl_lightning.data.example_tiles /tmp/tiles      # 2 classes x 6 patients x 8 tiles, 32 px RGB

Every patient has a colour cast of its own (its stain and scanner) and each class a stripe pattern, so tiles of
one patient look alike and the class is learnable across patients. The folder is written beside its final name
and renamed into place, so an interrupted run leaves nothing half-written; an existing non-empty folder is
refused (one line, exit 2).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ssl_lightning.errors import OneLineParser, UserError


@dataclass(frozen=True)
class TileSpec:
    classes: tuple[str, ...] = ("benign", "malignant")
    patients: int = 6  # per class: enough whole patients for the test, validation and labelled sides
    tiles: int = 8  # per patient
    size: int = 32  # pixels per side
    cue: float = 60.0  # amplitude of the class's stripes (grey levels); a patient's cast spans about 50


def class_stripes(num_classes: int, size: int) -> list[np.ndarray]:
    """One stripe pattern per class (vertical, horizontal, the two diagonals), values in [-1, 1]."""
    y, x = np.mgrid[0:size, 0:size]
    phases = [x, y, x + y, x - y]
    if num_classes > len(phases):
        raise UserError(f"at most {len(phases)} classes have a stripe pattern, asked for {num_classes}")
    return [np.sin(phase * np.pi / 2) for phase in phases[:num_classes]]


def write_tiles(root: Path, spec: TileSpec, seed: int = 0) -> int:
    """Write the tiles below `root` (which must not exist yet); returns how many were written."""
    rng = np.random.default_rng(seed)
    stripes = class_stripes(len(spec.classes), spec.size)
    count = 0
    for label, name in enumerate(spec.classes):
        for patient in range(spec.patients):
            cast = rng.uniform(100, 150, size=3)  # the patient's stain and scanner
            folder = root / name / f"{name[0]}{patient:02d}"
            folder.mkdir(parents=True)
            for tile in range(spec.tiles):
                noise = rng.normal(0, 12, size=(spec.size, spec.size, 3))
                pixels = cast[None, None, :] + noise + spec.cue * stripes[label][:, :, None]
                Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(folder / f"tile{tile:03d}.png")
                count += 1
    return count


def make_example(target: Path, spec: TileSpec = TileSpec(), seed: int = 0) -> int:
    """Write the example folder at `target` atomically (temporary sibling, then rename); returns the tile count."""
    target = target.expanduser().resolve()
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise UserError(f"{target} already exists and is not an empty folder; give a new folder for the tiles")
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        count = write_tiles(temporary / "tiles", spec, seed)
        if target.exists():
            target.rmdir()  # empty, checked above
        (temporary / "tiles").rename(target)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    return count


def main(argv: list[str] | None = None) -> None:
    parser = OneLineParser(prog="python -m ssl_lightning.data.example_tiles",
                           description="Write a small folder of class/patient tiles for data=imagefolder.")
    parser.add_argument("folder", type=Path, help="where to write the tiles (new or empty)")
    parser.add_argument("--patients", type=int, default=TileSpec.patients, help="patients per class")
    parser.add_argument("--tiles", type=int, default=TileSpec.tiles, help="tiles per patient")
    parser.add_argument("--size", type=int, default=TileSpec.size, help="tile side in pixels")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.patients < 1 or args.tiles < 1 or args.size < 4:
        parser.error("--patients and --tiles must be >= 1 and --size >= 4")
    spec = TileSpec(patients=args.patients, tiles=args.tiles, size=args.size)
    try:
        count = make_example(args.folder, spec, args.seed)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    print(f"wrote {count} tiles ({len(spec.classes)} classes x {spec.patients} patients x {spec.tiles} tiles, "
          f"{spec.size} px) to {args.folder}")


if __name__ == "__main__":
    main()
