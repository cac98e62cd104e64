"""Damage the stores and inputs survive (issue 32, items 8 and 9): a killed save's temporary file is swept, a
`meta.json` holding `null` is a damaged entry (recomputed, not an AttributeError), a latin-1 manifest and a
results.json holding a list are one line each."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import torch

from ssl_lightning.data.manifest import read_manifest
from ssl_lightning.errors import UserError
from ssl_lightning.export.encoders import main as export_main
from ssl_lightning.models.backbones import BackboneConfig, build_encoder
from ssl_lightning.stages.feature_store import ARRAYS, FeatureStore
from ssl_lightning.stages.pretext_store import STALE_TEMP_SECONDS, PretextStore
from tests.conftest import call_main

KEY, OTHER = "a" * 16, "b" * 16


def _arrays() -> dict[str, torch.Tensor]:
    return {"train": torch.ones(4, 2), "test": torch.zeros(2, 2), "train_labels": torch.arange(4),
            "test_labels": torch.arange(2)}


def _temp(folder: Path, name: str, age: float = 0.0) -> Path:
    """A temporary file as atomic.py names it, `age` seconds old."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f".{name}.x1y2z3.tmp"
    path.write_bytes(b"\0" * 1024)
    if age:
        then = time.time() - age
        os.utime(path, (then, then))
    return path


def test_a_killed_feature_save_leaves_no_temporary_file_behind(tmp_path):
    store = FeatureStore(tmp_path)
    killed = _temp(tmp_path / KEY, "features.pt")  # the same key, killed during torch.save
    old = _temp(tmp_path / OTHER, "features.pt", age=STALE_TEMP_SECONDS + 60)  # another key, abandoned
    live = _temp(tmp_path / OTHER, "meta.json")  # another key, still being written
    got = store.get(KEY, _arrays, {})
    assert not got.reused and not killed.exists() and not old.exists() and live.exists()
    assert sorted(path.name for path in (tmp_path / KEY).iterdir()) == ["features.pt", "meta.json"]


def test_a_killed_pretext_save_leaves_no_temporary_file_behind(tmp_path):
    store = PretextStore(tmp_path)
    killed = _temp(tmp_path / KEY, "encoder.pt")
    store.save(KEY, {"w": torch.ones(2)}, {"method": "rotation"}, events_from=None)
    assert not killed.exists() and store.load(KEY) is not None


@pytest.mark.parametrize("damage", ["null", "[1, 2]", '"text"'])
def test_a_meta_json_that_is_not_an_object_is_a_damaged_entry(tmp_path, damage):
    features = FeatureStore(tmp_path / "features")
    features.get(KEY, _arrays, {})
    (tmp_path / "features" / KEY / "meta.json").write_text(damage)
    again = features.get(KEY, _arrays, {})
    assert not again.reused and set(again.arrays) == set(ARRAYS)
    assert features.get(KEY, _arrays, {}).reused  # healed: the next run reuses it

    pretext = PretextStore(tmp_path / "pretext")
    pretext.save(KEY, {"w": torch.ones(2)}, {}, events_from=None)
    pretext.entry(KEY).meta_path.write_text(damage)
    assert pretext.load(KEY) is None and not pretext.entry(KEY).folder.exists()


def test_a_latin_1_manifest_is_one_line_naming_the_row(tmp_path):
    image = tmp_path / "caf\u00e9.png"
    image.write_bytes(b"")
    manifest = tmp_path / "list.csv"
    manifest.write_bytes(b"path,label\n" + f"{image.name},tumour\n".encode("latin-1"))
    with pytest.raises(UserError, match=r"list.csv is not UTF-8 \(row 2, byte 0xe9\); save it as UTF-8"):
        read_manifest(manifest)


def _one_line(done) -> str:
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2 and len(lines) == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    return lines[0]


def test_export_of_a_results_list_and_of_a_null_meta_json(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.json").write_text("[1, 2]")
    line = _one_line(call_main(export_main, [str(run)], tmp_path))
    assert "holds a JSON list" in line

    entry = tmp_path / "cache" / "pretext" / KEY
    entry.mkdir(parents=True)
    state = build_encoder(BackboneConfig(width=8), 3, 32).state_dict()
    torch.save(state, entry / "encoder.pt")
    (entry / "meta.json").write_text("null")
    done = call_main(export_main, [str(entry), "--out", str(tmp_path / "out")], tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    card = json.loads(next((tmp_path / "out").rglob("card.json")).read_text())
    assert card["store_key"] == KEY and card["method"] is None
