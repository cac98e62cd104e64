"""A user error removes only what its own run created (issue 32, item 2): an earlier run's files in the same folder
and the parents the user made stay; the folders this run made go."""

from __future__ import annotations

from pathlib import Path

from ssl_lightning.cli import run_folder
from tests.conftest import call_main, run_entry

GOOD = ("+experiment=raw_pixels", "downstream=linear", "data=synthetic", "profile=smoke")
BAD = "data.labels_per_class=1000"  # refused by data loading (synthetic: 512 training images), inside the run


def _files(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def test_undo_restores_an_earlier_runs_hydra_files_and_log_and_removes_only_new_folders(tmp_path):
    earlier = tmp_path / "earlier"
    (earlier / ".hydra").mkdir(parents=True)
    (earlier / ".hydra" / "config.yaml").write_text("seed: 0\n")
    (earlier / "ssl_lightning.log").write_text("first run\n")
    (earlier / "results.json").write_text("{}")
    before = _files(earlier)
    fresh = tmp_path / "user" / "a" / "b"
    (tmp_path / "user").mkdir()
    run_folder.forget()
    try:
        for folder in (earlier, fresh):
            run_folder.remember_run_folder(folder)
            folder.mkdir(parents=True, exist_ok=True)  # what Hydra does next
            (folder / ".hydra").mkdir(exist_ok=True)
            (folder / ".hydra" / "config.yaml").write_text("seed: 1\n")
            (folder / ".hydra" / "overrides.yaml").write_text("- bad\n")
            with open(folder / "ssl_lightning.log", "a") as log:
                log.write("second run\n")
            run_folder.undo_run_folder(folder)
    finally:
        run_folder.forget()
    assert _files(earlier) == before
    assert (tmp_path / "user").is_dir() and not (tmp_path / "user" / "a").exists()


def test_a_folder_whose_state_was_not_taken_is_left_alone(tmp_path):
    (tmp_path / ".hydra").mkdir()
    (tmp_path / "ssl_lightning.log").write_text("x")
    run_folder.forget()
    run_folder.undo_run_folder(tmp_path)
    assert (tmp_path / ".hydra").is_dir() and (tmp_path / "ssl_lightning.log").read_text() == "x"


def test_a_bad_override_in_an_earlier_runs_folder_keeps_that_runs_files(tmp_path):
    done = run_entry(list(GOOD), tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    before = _files(tmp_path / "run")
    assert {".hydra/config.yaml", "ssl_lightning.log", "results.json"} <= set(before)
    done = run_entry([*GOOD, BAD], tmp_path)
    assert done.returncode == 2 and "labels_per_class" in done.stderr, done.stderr[-3000:]
    assert _files(tmp_path / "run") == before  # the first run's .hydra/ content and log, byte for byte


def test_a_bad_value_removes_the_folders_it_made_and_keeps_the_users(tmp_path):
    (tmp_path / "u").mkdir()
    from ssl_lightning.__main__ import entry

    done = call_main(entry, [*GOOD, BAD, f"hydra.run.dir={tmp_path / 'u' / 'exp1' / 'keep' / 'run'}",
                             f"paths.cache={tmp_path / 'cache'}"], tmp_path)
    assert done.returncode == 2, done.stderr[-3000:]
    assert (tmp_path / "u").is_dir() and list((tmp_path / "u").iterdir()) == []
