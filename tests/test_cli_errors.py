"""Bad input is caught before training: one line on stderr, exit code 2, nothing written.

The table of bad command lines lives in tests/test_fuzz.py (in-process through the CLI's entry function). Here one
real process holds the part of the contract only a process shows: a mistake found after Hydra created the run
folder (the data folder is missing) still exits 2 with one line and leaves no run folder behind.
"""

from __future__ import annotations


def test_a_data_error_after_hydra_started_leaves_no_run_folder(cli, tmp_path):
    (tmp_path / "keep.txt").write_text("the user's own file")
    done = cli("+experiment=supervised", "data=imagefolder", f"data.root={tmp_path / 'nowhere'}", "profile=smoke")
    assert done.returncode == 2, done.stderr[-2000:]
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "nowhere" in lines[0], done.stderr[-2000:]
    assert "Traceback" not in done.stderr + done.stdout
    assert not (tmp_path / "run").exists() and (tmp_path / "keep.txt").is_file()
