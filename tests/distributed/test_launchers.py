"""Hydra launchers with the real CLI: parallel cells share one pretext encoder; submitit runs a cell; the
SLURM config becomes the expected sbatch array script (stopped at the cluster boundary)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path


def _results(sweep_dir: Path) -> list[dict]:
    return [json.loads(path.read_text()) for path in sorted(sweep_dir.glob("*/results.json"))]


def _event_file_pids(cell: Path) -> set[str]:
    """TensorBoard names its event files ...tfevents.<time>.<host>.<pid>.<n>: the process that trained."""
    return {path.name.split(".")[-2] for path in (cell / "tb" / "downstream").glob("events.out.tfevents.*")}


def test_parallel_cells_train_the_shared_pretext_encoder_once(cli, tmp_path):
    done = cli("+experiment=rotation", "data=synthetic", "profile=smoke", "data.fraction=0.25,0.5",
               "hydra/launcher=parallel", multirun=True)
    assert done.returncode == 0, done.stderr[-3000:]

    results = _results(tmp_path / "multirun")
    assert sorted(r["fraction"] for r in results) == [0.25, 0.5]
    assert all(r["status"] == "ok" for r in results), [r.get("error") for r in results]
    assert sorted(r["pretext_reused"] for r in results) == [False, True]
    assert len({r["pretext_key"] for r in results}) == 1

    cells = sorted(path for path in (tmp_path / "multirun").iterdir() if path.is_dir() and path.name[0].isdigit())
    logs = [(cell / "ssl_lightning.log").read_text() for cell in cells]
    assert sum(log.count("training pretext stage") for log in logs) == 1
    assert sum(log.count("reusing pretext checkpoint") for log in logs) == 1
    cores = len(os.sched_getaffinity(0))
    assert all(f"2 cells at once on {cores} cores: {max(1, cores // 2)} torch thread(s) per cell" in log
               for log in logs)
    # trainer.threads=auto within the share: min(share, idle cores), the share named as the bound (share 1: < 4 cores)
    assert all(r["threads"]["policy"] == "auto" and 1 <= r["threads"]["threads"] <= max(1, cores // 2)
               for r in results), [r["threads"] for r in results]
    assert all("2 cells at once share" in r["threads"]["reason"] for r in results if cores < 4), results
    store = tmp_path / "cache" / "pretext"
    assert [p.name for p in store.iterdir() if p.is_dir()] == [results[0]["pretext_key"]]  # no .partial left

    # The two cells ran in two worker processes of the pool. (Whether their logs overlap in time depends on how fast
    # the second worker starts beside the first under load: seconds-long smoke cells made that check flaky in CI.)
    pids = [_event_file_pids(cell) for cell in cells]
    assert all(len(p) >= 1 for p in pids) and not pids[0] & pids[1]


def test_submitit_local_launcher_runs_a_cell(cli, tmp_path):
    done = cli("+experiment=supervised", "data=synthetic", "profile=smoke", "hydra/launcher=submitit_local",
               multirun=True)
    assert done.returncode == 0, done.stderr[-3000:]
    sweep = tmp_path / "multirun"
    [results] = _results(sweep)
    assert results["status"] == "ok" and results["experiment"] == "supervised"
    assert list((sweep / ".submitit").glob("*/*_0_result.pkl")), "the cell did not run through submitit"


def _cluster_stand_ins(folder: Path) -> dict[str, str]:
    """`srun` to be found and an `sbatch` that refuses, so that nothing is ever submitted from a test."""
    folder.mkdir()
    (folder / "srun").write_text("#!/bin/sh\nexit 1\n")
    (folder / "sbatch").write_text("#!/bin/sh\necho 'sbatch: no cluster in tests' >&2\nexit 1\n")
    for tool in ("srun", "sbatch"):
        (folder / tool).chmod(0o755)
    return {"PATH": f"{folder}{os.pathsep}{os.environ.get('PATH', '')}"}


def test_slurm_launcher_config_becomes_an_sbatch_array(cli, tmp_path):
    env = _cluster_stand_ins(tmp_path / "bin")
    done = cli("+experiment=simclr", "data=synthetic", "profile=smoke", "data.fraction=0.05,0.25,0.5",
               "hydra/launcher=slurm", "hydra.launcher.partition=gpu", "hydra.launcher.gpus_per_node=4",
               "hydra.launcher.tasks_per_node=4", "hydra.launcher.array_parallelism=2", multirun=True, env=env)
    assert done.returncode != 0 and "no cluster in tests" in done.stderr

    [script] = (tmp_path / "multirun" / ".submitit").glob(".submission_file_*.sh")
    options = set(re.findall(r"^#SBATCH (\S+)$", script.read_text(), flags=re.MULTILINE))
    expected = {"--array=0-2%2", "--partition=gpu", "--gpus-per-node=4", "--ntasks-per-node=4", "--nodes=1",
                "--cpus-per-task=8", "--mem=32GB", "--time=240", "--job-name=ssl_lightning"}
    assert expected <= options, expected - options
    assert len(list((tmp_path / "multirun" / ".submitit").glob("*.pkl"))) == 3  # one pickled cell per task
