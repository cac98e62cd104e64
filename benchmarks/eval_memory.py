"""Peak anonymous memory of a 224 px cell with the evaluation batch capped by image area (the default,
`data.eval_batch_pixels`) and without the cap (`data.eval_batch_pixels=null`: 512 images per evaluation batch).

Each variant is one real `python -m ssl_lightning` cell (SimCLR, `profile=smoke`) on JPEG tiles of 224 px in the
original study's layout, read through the image store; RssAnon of the cell's process is sampled every 50 ms.
The image store maps its shards from the page cache, which is why RssAnon, not RSS, is the figure.

    python -m benchmarks.eval_memory                  # 3,000 tiles of 224 px
    python -m benchmarks.eval_memory --tiny           # 64 tiles of 64 px: checks that it runs
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from benchmarks.data_scale import make_tiles, run_sweep

TARGET_GB = 2.5


def measure(tiles: Path, work: Path, cap: str | None) -> float:
    """Peak RssAnon (GB) of one SimCLR smoke cell; `cap` is data.eval_batch_pixels (None: the default)."""
    overrides = ["profile=smoke", "data=imagefolder", f"data.root={tiles}", "data.include=**/x40/*.jpg",
                 "data.group_by=none", "data.decode_workers=1"]
    if cap is not None:
        overrides.append(f"data.eval_batch_pixels={cap}")
    work.mkdir(parents=True, exist_ok=True)
    cells, _ = run_sweep(["simclr"], overrides, work)
    return cells[0]["rss_anon_gb"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--count", type=int, default=None, help="tiles (default 3,000; tiny 64)")
    args = parser.parse_args(argv)
    count, size = (args.count or 64, 64) if args.tiny else (args.count or 3000, 224)
    with tempfile.TemporaryDirectory(prefix="eval_memory_") as temporary:
        work = Path(temporary)
        tiles = work / "tiles"
        make_tiles(tiles, count, size)
        capped = measure(tiles, work / "capped", None)
        uncapped = measure(tiles, work / "uncapped", "null")
    print(f"{count} JPEG tiles of {size} px, SimCLR profile=smoke; peak RssAnon per cell (target < {TARGET_GB} GB):")
    print(f"  data.eval_batch_pixels default (capped by area): {capped:.2f} GB")
    print(f"  data.eval_batch_pixels=null (512 per batch):    {uncapped:.2f} GB")


if __name__ == "__main__":
    main()
