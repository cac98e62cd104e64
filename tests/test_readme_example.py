"""README's five-minute folder example, run as written: the block between its marker comments goes to bash
unchanged, with `python` meaning this interpreter. If the README's commands drift from the code, this fails."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ssl_lightning.data.example_tiles import TileSpec, main, make_example
from ssl_lightning.errors import UserError

REPO = Path(__file__).resolve().parent.parent
START, END = "<!-- five-minute-example:start -->", "<!-- five-minute-example:end -->"


def readme_block() -> str:
    """The bash code between the README's markers (the fences dropped, the text otherwise as written)."""
    text = (REPO / "README.md").read_text()
    assert text.count(START) == 1 and text.count(END) == 1, "README.md must hold the example's markers once"
    block = text[text.index(START) + len(START):text.index(END)].strip()
    assert block.startswith("```bash\n") and block.endswith("\n```"), "the example must be one ```bash block"
    return block[len("```bash\n"):-len("\n```")]


def test_readme_folder_example_runs_as_written(tmp_path: Path) -> None:
    script = readme_block()
    assert "python -m ssl_lightning.data.example_tiles" in script and "ssl_lightning.report" in script
    bin_dir = tmp_path / "bin"  # `python` in the block is this interpreter (a venv's, so not a bare symlink)
    bin_dir.mkdir()
    (bin_dir / "python").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    (bin_dir / "python").chmod(0o755)
    work = tmp_path / "work"
    work.mkdir()
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": str(REPO),
           "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=work, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]

    tiles = sorted((work / "my_tiles").rglob("*.png"))
    spec = TileSpec()
    assert len(tiles) == len(spec.classes) * spec.patients * spec.tiles
    sweep = work / "outputs" / "my_tiles"
    cells = [json.loads(path.read_text()) for path in sorted(sweep.glob("*/results.json"))]
    assert sorted(cell["experiment"] for cell in cells) == ["simclr", "supervised"]
    assert all(cell["status"] == "ok" and cell["fraction"] == 0.5 for cell in cells)
    assert all(cell["group_by"] != "none" and cell["num_groups"]["test"] >= 2 for cell in cells)  # by patient
    markdown = (sweep / "results.md").read_text()
    assert "imagefolder — finetune" in markdown and "SimCLR vs Supervised" in markdown
    assert "wrote results.md" in done.stdout + done.stderr


def test_example_tiles_layout_and_refusal(tmp_path: Path) -> None:
    spec = TileSpec(patients=2, tiles=3, size=8)
    assert make_example(tmp_path / "tiles", spec) == 12
    patients = sorted(path.relative_to(tmp_path / "tiles").as_posix() for path in (tmp_path / "tiles").glob("*/*"))
    assert patients == ["benign/b00", "benign/b01", "malignant/m00", "malignant/m01"]
    with pytest.raises(UserError, match="already exists"):
        make_example(tmp_path / "tiles", spec)
    assert [path.name for path in tmp_path.iterdir()] == ["tiles"]  # no temporary folder left behind


def test_example_tiles_cli_refuses_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "file.txt").write_text("mine")
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path / "taken")])
    assert exit_info.value.code == 2
    stderr = capsys.readouterr().err
    assert stderr.count("\n") == 1 and stderr.startswith("error: ") and "already exists" in stderr
    assert sorted(path.name for path in tmp_path.iterdir()) == ["taken"]
