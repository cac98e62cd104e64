"""Failures a real user meets: kills mid-run, diverging losses, failed sweep cells, corrupt store entries."""

from __future__ import annotations

import glob
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import NEW_METHODS
from tests.helpers import results_files, shared_cells

SMALL = ["data=synthetic", "profile=smoke", "data.train_size=512", "pretext.limit_train_batches=4",
         "downstream.limit_train_batches=4", "pretext.epochs=8", "downstream.epochs=8"]


def _start(tmp_path: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "ssl_lightning", "+experiment=rotation", *SMALL,
               f"hydra.run.dir={tmp_path / 'run'}", f"paths.cache={tmp_path / 'cache'}"]
    return subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _kill_when(pattern: str, process: subprocess.Popen, timeout: float = 240) -> None:
    """SIGKILL the run as soon as a checkpoint matching `pattern` exists (the stage is under way)."""
    deadline = time.monotonic() + timeout
    while not glob.glob(pattern):
        assert process.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.01)
    process.kill()
    process.wait()


def _start_epoch(output: str, stage: str) -> int:
    found = re.findall(rf"{stage} stage starts at epoch (\d+)", output)
    assert found, output[-3000:]
    return int(found[-1])


def test_sigkill_in_each_stage_then_rerun_resumes(tmp_path):
    first = _start(tmp_path)
    _kill_when(str(tmp_path / "cache" / "pretext" / "*.partial" / "last.ckpt"), first)

    second = _start(tmp_path)
    _kill_when(str(tmp_path / "cache" / "cells" / "*" / "last.ckpt"), second)
    second_output = second.stdout.read()
    assert _start_epoch(second_output, "pretext") >= 1  # finished pretext epochs were not repeated

    third = _start(tmp_path)
    third_output, _ = third.communicate(timeout=300)
    assert third.returncode == 0, third_output[-3000:]
    assert "reusing pretext checkpoint" in third_output
    assert _start_epoch(third_output, "downstream") >= 1
    (cell,) = results_files(tmp_path / "run")
    assert cell["status"] == "ok" and cell["epochs"] == {"pretext": 8, "downstream": 8}
    assert not list((tmp_path / "cache" / "cells").iterdir())  # the finished cell's work folder is gone


def test_nan_loss_stops_the_stage_with_a_message(cli_in_process, tmp_path):
    done = cli_in_process("+experiment=rotation", "data=synthetic", "profile=smoke", "pretext.lr=1e30",
                          "pretext.epochs=3")
    assert done.returncode == 1
    (cell,) = results_files(tmp_path / "run")
    assert cell["status"] == "failed"
    assert re.search(r"pretext loss became (nan|inf) at epoch \d+, step \d+; lower pretext.lr", cell["error"])
    last = done.stderr.strip().splitlines()[-1]  # the cause is the last line on stderr, with the log's path
    assert last.startswith("error: cell failed: ") and "pretext loss became" in last
    assert str(tmp_path / "run" / "ssl_lightning.log") in last
    assert not list((tmp_path / "cache" / "pretext").glob("*/encoder.pt"))


def test_a_failed_cell_does_not_sink_the_sweep(shared_sweep):
    """The shared sweep's second grid (tests/conftest.py): one SimCLR cell's loss is NaN; the other cells finish,
    the sweep exits 1 naming it, and the report over the sweep folder still runs."""
    done = shared_sweep["new"]
    assert done["returncode"] == 1
    last = done["stderr"].strip().splitlines()[-1]
    assert last.startswith("error: 1 cell(s) of the sweep failed; first: ") and "(log: " in last
    cells = shared_cells(shared_sweep, (*NEW_METHODS, "simclr"), (1.0,))
    assert sorted(cell["status"] for cell in cells) == ["failed", *["ok"] * len(NEW_METHODS)]
    (failed,) = [cell for cell in cells if cell["status"] == "failed"]
    assert failed["experiment"] == "simclr" and "pretext loss became" in failed["error"]
    report = shared_sweep["report"]
    assert report["returncode"] == 0, report["stderr"]
    assert "FAILED" in report["stdout"] or "failed" in report["stdout"]


def test_corrupt_store_entry_is_retrained_not_loaded(cli_in_process, tmp_path):
    args = ("+experiment=rotation", "data=synthetic", "profile=smoke")
    assert cli_in_process(*args).returncode == 0
    (encoder,) = (tmp_path / "cache" / "pretext").glob("*/encoder.pt")
    data = bytearray(encoder.read_bytes())
    data[len(data) // 2] ^= 0xFF
    encoder.write_bytes(bytes(data))
    done = cli_in_process(*args)  # the same run folder: its log now holds both runs
    assert done.returncode == 0, done.stderr[-3000:]
    second_run_log = (tmp_path / "run" / "ssl_lightning.log").read_text().split("is corrupt", 1)
    assert len(second_run_log) == 2 and "training pretext stage" in second_run_log[1]
    (cell,) = results_files(tmp_path / "run")
    assert cell["status"] == "ok" and cell["pretext_reused"] is False


def test_a_truncated_pretext_resume_checkpoint_is_set_aside_and_the_run_finishes(cli_in_process, tmp_path):
    """Before: every rerun failed with `OSError: [Errno 22] Invalid argument` until the file was deleted by hand."""
    args = ("+experiment=rotation", "data=synthetic", "profile=smoke")
    assert cli_in_process(*args).returncode == 0
    (cell,) = results_files(tmp_path / "run")
    store = tmp_path / "cache" / "pretext"
    shutil.rmtree(store / cell["pretext_key"])  # as if the first run had been killed mid-stage ...
    partial = store / f"{cell['pretext_key']}.partial"
    partial.mkdir()
    (partial / "last.ckpt").write_bytes(b"PK\x03\x04 cut short")  # ... while its checkpoint was being copied
    done = cli_in_process(*args)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "is unreadable" in done.stdout + done.stderr and "restarts from scratch" in done.stdout + done.stderr
    assert (store / cell["pretext_key"] / "encoder.pt").is_file()
