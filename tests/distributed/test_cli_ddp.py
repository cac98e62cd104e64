"""The full CLI under DDP on CPU: Lightning re-launches the script for rank 1, which runs the same pipeline.

Only rank 0 may take the pretext store lock (rank 1 taking it while rank 0 trains would deadlock: the
timeout catches that) and write the run's files.
"""

from __future__ import annotations

import json


def test_cli_trains_simclr_with_two_ddp_processes(cli, tmp_path):
    """The `ddp` trainer preset (SyncBatchNorm on) on CPUs: SyncBatchNorm is skipped and the log says so."""
    done = cli("+experiment=simclr", "data=synthetic", "profile=smoke", "trainer=ddp", "trainer.accelerator=cpu",
               "trainer.devices=2", timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]

    run = tmp_path / "run"
    results = json.loads((run / "results.json").read_text())
    assert results["status"] == "ok", results.get("error")
    assert results["config"]["trainer"]["devices"] == 2 and results["pretext_reused"] is False
    assert (run / "subset.json").is_file() and (run / "checkpoints" / "best.ckpt").is_file()
    assert list((run / "tb" / "pretext").glob("events.out.tfevents.*"))

    # Rank 1 was a second process that ran the whole pipeline, logging into the same run folder.
    rank1_log = (run / "train_ddp_process_1.log").read_text()
    assert "training pretext stage" in rank1_log
    assert "Initializing distributed: GLOBAL_RANK: 1" in done.stdout + done.stderr
    assert [p.name for p in run.rglob("results.json")] == ["results.json"]
    rank0_log = (run / "ssl_lightning.log").read_text()
    assert rank0_log.count("trainer.sync_batchnorm ignored: SyncBatchNorm needs GPUs") == 1

    store = tmp_path / "cache" / "pretext"
    entries = [p for p in store.iterdir() if p.is_dir()]
    assert [p.name for p in entries] == [results["pretext_key"]]
    assert (entries[0] / "meta.json").is_file()
