"""trainer.threads=auto|N (training/thread_policy.py, cpu_load.py): idle cores from /proc/stat text, cgroup
quotas, the choice and its reason, epoch re-checks, and an explicit N honoured by a real run (no timing checks)."""

from __future__ import annotations

import json
import re
from types import SimpleNamespace

import pytest
import torch

from ssl_lightning.training import cpu_load, thread_policy
from ssl_lightning.training.cpu_load import Load, idle_cores, parse_cfs, parse_cpu_max, parse_proc_stat
from ssl_lightning.training.thread_policy import AUTO, ThreadPolicyCallback, decide

# /proc/stat: cpuN user nice system idle iowait irq softirq steal guest guest_nice
BEFORE = """cpu  300 0 100 1000 0 0 0 0 0 0
cpu0 100 0 50 500 0 0 0 0 0 0
cpu1 200 0 50 500 0 0 0 0 0 0
intr 12345 1 2
ctxt 999
procs_running 2
"""
# 20 ticks later: cpu0 idle (18 idle + 2 iowait), cpu1 busy with a niced process (20 nice), guest time in user
AFTER = """cpu  300 20 100 1018 2 0 0 0 0 0
cpu0 100 0 50 518 2 0 0 0 0 0
cpu1 200 20 50 500 0 0 0 0 5 0
intr 12400 1 2
procs_running 3
"""


def test_proc_stat_per_core_idle_and_total_ticks():
    assert parse_proc_stat(BEFORE) == {0: (500, 0, 650), 1: (500, 0, 750)}
    assert parse_proc_stat(AFTER) == {0: (520, 0, 670), 1: (500, 20, 770)}  # guest (5) is inside user: not added


def test_idle_cores_count_only_the_usable_ones():
    before, after = parse_proc_stat(BEFORE), parse_proc_stat(AFTER)
    assert idle_cores(before, after, {0, 1}) == pytest.approx(1.0)
    assert idle_cores(before, after, {1}) == pytest.approx(0.0)  # affinity: only the busy core is ours
    assert idle_cores(before, after, {0, 7}) == pytest.approx(1.0)  # a core absent from the file is ignored
    assert idle_cores(before, before, {0, 1}) == pytest.approx(2.0)  # no ticks in between: idle
    # a niced neighbour yields its core to a nice-0 cell: free when asked
    assert idle_cores(before, after, {0, 1}, niced_is_free=True) == pytest.approx(2.0)


def test_cgroup_quotas_as_cores():
    assert parse_cpu_max("max 100000\n") is None
    assert parse_cpu_max("150000 100000\n") == pytest.approx(1.5)
    assert parse_cpu_max("50000 100000") == pytest.approx(0.5)
    assert parse_cfs("-1\n", "100000\n") is None
    assert parse_cfs("200000", "100000") == pytest.approx(2.0)


def test_the_tightest_cgroup_quota_of_the_process_and_its_parents(tmp_path):
    (tmp_path / "job" / "step").mkdir(parents=True)
    (tmp_path / "job" / "cpu.max").write_text("200000 100000\n")  # the job's quota bounds its step
    (tmp_path / "job" / "step" / "cpu.max").write_text("max 100000\n")
    assert cpu_load.cgroup_cpu_limit(tmp_path, "0::/job/step\n") == pytest.approx(2.0)
    v1 = tmp_path / "cpu,cpuacct" / "slurm" / "job_7"
    v1.mkdir(parents=True)
    (v1 / "cpu.cfs_quota_us").write_text("150000\n")
    (v1 / "cpu.cfs_period_us").write_text("100000\n")
    both = "4:cpu,cpuacct:/slurm/job_7\n3:memory:/slurm/job_7\n0::/job/step\n"
    assert cpu_load.cgroup_cpu_limit(tmp_path, both) == pytest.approx(1.5)
    assert cpu_load.cgroup_cpu_limit(tmp_path, "0::/elsewhere\n") is None


def test_auto_takes_the_idle_cores_within_the_cap_and_quota():
    busy = decide(AUTO, 2, Load(usable=2, free=1.02, others=0.98))
    assert busy.threads == 1
    assert busy.reason == "1 of 2 cores idle (load from other processes ~1.0): 1 torch thread"
    assert decide(AUTO, 2, Load(2, 1.8, 0.2)).threads == 2  # a core 80% free counts (IDLE_MARGIN)
    assert decide(AUTO, 2, Load(2, 0.1, 1.9)).reason.endswith("~1.9), at least 1: 1 torch thread")
    capped = decide(AUTO, 2, Load(8, 8.0, 0.0), cap_reason="OMP_NUM_THREADS=2")
    assert capped.threads == 2 and "at most 2 (OMP_NUM_THREADS=2)" in capped.reason
    quota = decide(AUTO, 8, Load(8, 8.0, 0.0), quota=3.5)
    assert quota.threads == 3 and "cgroup CPU quota 3.5 cores" in quota.reason
    assert decide(AUTO, 1, None, cap_reason="OMP_NUM_THREADS=1").reason == "1 torch thread (OMP_NUM_THREADS=1)"
    assert decide(AUTO, 4, None).threads == 4  # nothing to sample (no /proc/stat): the cap
    assert decide(3, 2, None).as_json() == {"policy": 3, "threads": 3, "reason": "as set: 3 torch threads"}


@pytest.fixture
def fresh_policy(monkeypatch):
    """A process that has not applied the policy yet, with torch's 2 threads as its cap."""
    monkeypatch.setattr(thread_policy, "_state", thread_policy._State())
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    torch.set_num_threads(2)


@pytest.mark.skipif(not cpu_load.PROC_STAT.is_file(), reason="needs /proc/stat")
@pytest.mark.usefixtures("fresh_policy")
def test_auto_samples_the_machine_and_records_the_cell(caplog):
    start = thread_policy.mark()
    with caplog.at_level("INFO", logger="ssl_lightning"):
        decision = thread_policy.apply(AUTO, thread_policy.CELL_START)
    usable = len(cpu_load.usable_cores())
    assert 1 <= decision.threads <= 2 and torch.get_num_threads() == decision.threads
    assert re.fullmatch(rf"\d+ of {usable} cores idle \(load from other processes ~[\d.]+\)(, at .*)?: "
                        rf"{decision.threads} torch threads?", decision.reason), decision.reason
    assert f"trainer.threads=auto at cell start: {decision.reason}" in caplog.text
    thread_policy.apply(1, "pretext stage start")  # a change is recorded with where it happened
    record = thread_policy.cell_record(start)
    assert record["policy"] == AUTO and record["threads"] == decision.threads
    if decision.threads != 1:
        assert record["changes"] == [{"at": "pretext stage start", "threads": 1, "reason": "as set: 1 torch thread"}]


@pytest.mark.usefixtures("fresh_policy")
def test_the_callback_rechecks_at_epoch_starts_only_when_due():
    trainer = SimpleNamespace(num_devices=2, current_epoch=3)  # 2 processes on this node share the cap of 2
    due = ThreadPolicyCallback(AUTO, "pretext", recheck_s=0.0)
    due.on_train_start(trainer, None)
    assert thread_policy._state.history[-1].reason == "1 torch thread (torch's 2 threads shared by 2 processes)"
    due.on_train_epoch_start(trainer, None)
    assert [d.where for d in thread_policy._state.history] == ["pretext stage start", "pretext epoch 3"]
    later = ThreadPolicyCallback(AUTO, "downstream")  # RECHECK_S: not again right after the stage start
    later.on_train_start(trainer, None)
    later.on_train_epoch_start(trainer, None)
    assert thread_policy._state.history[-1].where == "downstream stage start"
    fixed = ThreadPolicyCallback(3, "downstream", recheck_s=0.0)  # a number is used as given, never re-checked
    fixed.on_train_start(trainer, None)
    fixed.on_train_epoch_start(trainer, None)
    assert thread_policy._state.history[-1].where == "downstream stage start" and torch.get_num_threads() == 3


def test_an_explicit_thread_count_is_honoured_and_recorded(cli_in_process, tmp_path):
    assert torch.get_num_threads() == 1  # conftest's one_torch_thread
    done = cli_in_process("+experiment=supervised", "data=synthetic", "profile=smoke", "trainer.threads=2")
    assert done.returncode == 0, done.stderr[-2000:]
    assert torch.get_num_threads() == 2
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["threads"] == {"policy": 2, "threads": 2, "reason": "as set: 2 torch threads",
                                  "changes": []}
