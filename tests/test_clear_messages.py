"""Issue 32 item 10: each unclear or inconsistent message of the fuzz, now saying what is actually wrong."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ssl_lightning.export.encoders import main as export_main
from ssl_lightning.models.backbones import BackboneConfig, build_encoder

KEY = "0123456789abcdef"


# ---------------------------------------------------------------- export of frozen-probe runs

def _run(sweep: Path, name: str, cache: Path, **fields) -> Path:
    """A finished run folder with the results.json fields of the given protocol (no checkpoint unless finetune)."""
    run = sweep / name
    (run / "checkpoints").mkdir(parents=True)
    results = {"status": "ok", "experiment": "simclr", "fraction": 0.1, "pretext_key": None, "encoder": "trained",
               "config": {"paths": {"cache": str(cache)}, "backbone": {"name": "compact", "width": 4}}, **fields}
    (run / "results.json").write_text(json.dumps(results))
    return run


def test_frozen_probe_runs_export_their_encoder_and_do_not_block_a_sweep(tmp_path, capsys):
    state = build_encoder(BackboneConfig(name="compact", width=4), 3, 16).state_dict()
    cache, sweep = tmp_path / "cache", tmp_path / "sweep"
    (cache / "pretext" / KEY).mkdir(parents=True)
    torch.save(state, cache / "pretext" / KEY / "encoder.pt")
    _run(sweep, "0", cache, protocol="knn", solver=None, pretext_key=KEY)
    _run(sweep, "1", cache, protocol="linear", solver="lbfgs", experiment="raw_pixels", encoder="raw_pixels")
    tuned = _run(sweep, "2", cache, protocol="finetune", solver="sgd", pretext_key=KEY)
    torch.save({"state_dict": {f"encoder.{k}": v for k, v in state.items()}}, tuned / "checkpoints" / "best.ckpt")

    assert export_main([str(sweep), "--cache", str(cache)]) == 0
    err = capsys.readouterr().err
    assert sorted(p.name for p in (sweep / "export").iterdir()) == ["classifier_2", f"pretext_{KEY}"]
    notes = err.strip().splitlines()
    assert len(notes) == 2 and all(line.startswith("note: ") for line in notes), err
    assert "keeps no fine-tuned checkpoint" in notes[0] and f"pretext encoder pretext_{KEY}" in notes[0]
    assert "raw pixels" in notes[1] and "does not exist" not in err

    # a single raw-pixel probe: nothing to export, said in one line
    code = export_main([str(sweep / "1"), "--cache", str(cache)])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: nothing exported: "), lines
    assert "frozen-probe run (linear)" in lines[0] and "no encoder" in lines[0]
