"""ssl_lightning.training.distributed: rank detection from each launcher's variables, and rank-0 decisions shared
by file."""

from __future__ import annotations

import multiprocessing
import time

import pytest

from ssl_lightning.training import distributed

RANK_VARIABLES = ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK",
                  "SLURM_JOB_ID", "SLURM_RESTART_COUNT", "TORCHELASTIC_RUN_ID", distributed.LAUNCH_VARIABLE)


@pytest.fixture(autouse=True)
def single_process(monkeypatch):
    for name in RANK_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(distributed, "_published", {})


@pytest.mark.parametrize(("variables", "zero"), [
    ({}, True),
    ({"RANK": "0", "LOCAL_RANK": "0"}, True),
    ({"RANK": "3", "LOCAL_RANK": "0"}, False),  # torchrun, second node
    ({"LOCAL_RANK": "1", "NODE_RANK": "0"}, False),  # Lightning's re-launch of the script
    ({"LOCAL_RANK": "0", "NODE_RANK": "1"}, False),
    ({"LOCAL_RANK": "1", "SLURM_PROCID": "0"}, False),  # re-launched inside a SLURM batch step
    ({"SLURM_PROCID": "0"}, True),
    ({"SLURM_PROCID": "5"}, False),  # srun tasks: nothing else tells them apart before the Trainer
])
def test_is_global_zero_reads_every_launcher(monkeypatch, variables, zero):
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    assert distributed.is_global_zero() is zero


def test_launch_id_is_the_job_under_slurm_and_fixed_once_drawn(monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    assert distributed.launch_id() == "slurm4242-1"
    monkeypatch.delenv("SLURM_JOB_ID")
    assert distributed.launch_id() == "slurm4242-1"  # kept in the environment that re-launched ranks inherit


def _follower(folder: str, launch: str, results) -> None:
    import os

    os.environ.update(LOCAL_RANK="1", NODE_RANK="0", **{distributed.LAUNCH_VARIABLE: launch})
    distributed._published.clear()
    results.put([distributed.share_from_rank_zero(folder, "key", poll_s=0.05, timeout_s=60) for _ in range(2)])


def test_other_ranks_wait_for_rank_zero_and_follow_each_decision_in_order(tmp_path):
    launch = distributed.launch_id()
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    follower = context.Process(target=_follower, args=(str(tmp_path), launch, results))
    follower.start()
    time.sleep(0.3)  # the follower is already waiting when rank 0 decides
    assert distributed.share_from_rank_zero(tmp_path, "key", {"reuse": False}) == {"reuse": False}
    assert distributed.share_from_rank_zero(tmp_path, "key", {"reuse": True}) == {"reuse": True}
    assert results.get(timeout=60) == [{"reuse": False}, {"reuse": True}]
    follower.join(timeout=10)

    distributed.forget_shared(tmp_path, "key")
    assert list(tmp_path.iterdir()) == []


def test_a_note_from_another_launch_is_not_followed(tmp_path, monkeypatch):
    monkeypatch.setenv(distributed.LAUNCH_VARIABLE, "earlier")
    distributed.share_from_rank_zero(tmp_path, "key", {"reuse": True})
    monkeypatch.setenv(distributed.LAUNCH_VARIABLE, "now")
    monkeypatch.setenv("SLURM_PROCID", "1")
    monkeypatch.setattr(distributed, "_published", {})
    with pytest.raises(TimeoutError):
        distributed.share_from_rank_zero(tmp_path, "key", poll_s=0.05, timeout_s=0.3)
