"""Issue 32 item 10: each unclear or inconsistent message of the fuzz, now saying what is actually wrong."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from ssl_lightning.atomic import write_json
from ssl_lightning.config.validation import MAX_SEED, problems
from ssl_lightning.data import load_dataset
from ssl_lightning.data.config import DataConfig
from ssl_lightning.data.fractions import make_label_split
from ssl_lightning.data.manifest import read_manifest
from ssl_lightning.errors import UserError
from ssl_lightning.export.encoders import main as export_main
from ssl_lightning.models.backbones import BackboneConfig, build_encoder
from ssl_lightning.stages import pipeline
from tests.data.patient_tree import write_patient_tree
from tests.data.test_manifest import tree_rows, write_csv
from tests.data.writers import write_png

KEY = "0123456789abcdef"
CONF = Path(__file__).resolve().parents[1] / "conf"


def _prepare(tmp_path: Path, *overrides: str) -> pipeline.PreparedCell:
    """Everything a cell checks before it writes anything, in this process."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=["profile=smoke", f"paths.cache={tmp_path / 'cache'}", *overrides])
    return pipeline.prepare(cfg)


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


# ---------------------------------------------------------------- manifests

def test_a_folder_as_manifest_is_called_a_folder(tmp_path):
    with pytest.raises(UserError, match=r"is a folder; give the CSV file itself .*data=imagefolder"):
        read_manifest(tmp_path)


def test_folder_levels_of_absolute_manifest_paths_count_below_the_common_folder(tmp_path):
    root = tmp_path / "tiles"
    owner = write_patient_tree(root, {"benign": [3, 3, 3], "malignant": [3, 3, 3]}, magnifications=("x40",))
    rows = tree_rows(root, owner)
    absolute = write_csv(tmp_path / "abs.csv", ["path", "label"], [[str(root / r[0]), r[1]] for r in rows])
    relative = write_csv(root / "rel.csv", ["path", "label"], [r[:2] for r in rows])
    for csv_path in (absolute, relative):
        images = load_dataset(DataConfig(name="manifest", manifest=str(csv_path), group_by="folder:2"))
        assert set(images.train_groups) | set(images.test_groups) == set(owner)  # not everything under "/"
        assert not set(images.train_groups) & set(images.test_groups)
    with pytest.raises(UserError, match=r"folder:4: .* has only 3 folder level\(s\) below .*tiles, the folder that "
                                        r"holds every listed file"):
        load_dataset(DataConfig(name="manifest", manifest=str(absolute), group_by="folder:4"))


def test_labels_differing_only_in_case_are_named(tmp_path):
    for name in ("a.png", "b.png", "c.png"):
        (tmp_path / name).write_bytes(b"x")
    csv_path = write_csv(tmp_path / "m.csv", ["path", "label"], [["a.png", "benign"], ["b.png", "Benign"],
                                                                  ["c.png", "tumour"]])
    with pytest.raises(UserError, match=r"labels 'benign' \(row 2\) and 'Benign' \(row 3\) differ only in case"):
        read_manifest(csv_path)


@pytest.mark.parametrize("content", [b"path,label\na\x00b.png,x\n", b"path,label\x00\na.png,x\n",
                                     b"path,label\na.png,x\x1b[31m\n"])
def test_control_bytes_of_a_csv_are_escaped_never_echoed(tmp_path, content):
    csv_path = tmp_path / "m.csv"
    csv_path.write_bytes(content)
    (tmp_path / "a.png").write_bytes(b"x")
    with pytest.raises(UserError) as caught:
        read_manifest(csv_path)
    message = str(caught.value)
    assert message.isprintable() and ("\\x00" in message or "\\x1b" in message), message


def test_a_split_too_small_for_validation_says_so_not_give_val_split(tmp_path):
    split = make_label_split(np.array([0, 1, 2]), 1.0, 0, 0.1)
    assert len(split.val) == 0 and "data.val_split=0.1 carved no validation image" in split.val_shortfall
    assert make_label_split(np.array([0, 0, 1, 1]), 1.0, 0, 0.1).val_shortfall is None
    assert make_label_split(np.array([0, 1]), 1.0, 0, 0.0).val_shortfall is None  # asked for none

    rows = []
    for label, colour in (("a", 10), ("b", 200)):
        for split_name in ("train", "test"):
            image = tmp_path / f"{label}_{split_name}.png"
            write_png(image, (colour, colour, colour), size=8)
            rows.append([image.name, label, split_name])
    tiny = write_csv(tmp_path / "tiny_split.csv", ["path", "label", "split"], rows)
    with pytest.raises(UserError) as caught:
        _prepare(tmp_path, "+experiment=raw_pixels", "downstream=linear", "data=manifest", f"data.manifest={tiny}")
    message = str(caught.value)
    assert "data.val_split=0.1 carved no validation image" in message and "at least 2 per class" in message
    assert "give data.val_split>0" not in message


# ---------------------------------------------------------------- config values

def test_hed_jitter_that_is_no_number_names_the_key(tmp_path):
    with pytest.raises(UserError, match=r"^data.hed_jitter=abc is invalid: use a number in \[0, 1\)"):
        _prepare(tmp_path, "+experiment=supervised", "data=synthetic", "data.hed_jitter=abc")


def test_split_seeds_stop_where_split_seed_stops():
    assert problems({"data": {"split_seed": MAX_SEED, "split_seeds": [0, MAX_SEED]}}) == []
    for seeds in ([0, 2**64], [MAX_SEED + 1], [-1], []):
        assert problems({"data": {"split_seeds": seeds}}) == [
            f"data.split_seeds={seeds} is invalid: use a non-empty list of whole numbers in [0, {MAX_SEED}] (as "
            "data.split_seed), e.g. [0,1,2], or null"]
    assert problems({"data": {"split_seed": 2**64}})[0].startswith("data.split_seed=18446744073709551616 is invalid")
    with pytest.raises(UserError, match=rf"whole numbers in \[0, {MAX_SEED}\]"):
        DataConfig.from_mapping({"split_seeds": [0, 2**64], "val_seed": 0})


# ---------------------------------------------------------------- strict results.json

def _forbid(constant: str):
    raise AssertionError(f"bare {constant} in a JSON file")


def test_results_json_is_strict_json_and_the_report_reads_null_as_missing(tmp_path):
    from ssl_lightning.report.collect import collect

    run = tmp_path / "sweep" / "0"
    write_json(run / "results.json", {
        "status": "ok", "experiment": "supervised", "data": "synthetic", "fraction": 0.1, "seed": 0,
        "protocol": "linear", "test_acc": 0.25, "test_loss": float("nan"), "best_val_loss": np.float32("inf"),
        "test_balanced_acc": float("-inf"), "per_class_acc": [0.5, float("nan")], "ok_value": np.float64(0.5),
        "count": np.int64(3)})
    text = (run / "results.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    values = json.loads(text, parse_constant=_forbid)
    assert values["test_loss"] is None and values["best_val_loss"] is None and values["test_balanced_acc"] is None
    assert values["per_class_acc"] == [0.5, None] and values["ok_value"] == 0.5 and values["count"] == 3

    [read] = collect(tmp_path / "sweep").runs
    assert read.ok and read.test_acc == 0.25 and read.test_loss is None
    assert "test_balanced_acc" not in read.metrics


# ---------------------------------------------------------------- report --metric on ungrouped runs

def _results(folder: Path, data: str, group_by: str) -> None:
    write_json(folder / "results.json", {
        "status": "ok", "experiment": "supervised", "data": data, "fraction": 0.1, "seed": 0, "protocol": "linear",
        "test_acc": 0.5, "test_balanced_acc": 0.5, "config": {"data": {"name": data, "group_by": group_by}}})


def test_a_group_metric_on_runs_without_groups_says_they_have_no_groups(tmp_path):
    from ssl_lightning.report.collect import collect
    from ssl_lightning.report.metric_choice import require

    _results(tmp_path / "a" / "0", "synthetic", "auto")
    _results(tmp_path / "a" / "1", "manifest", "none")
    runs = collect(tmp_path / "a").runs
    with pytest.raises(UserError) as caught:
        require("group_acc", runs)
    message = str(caught.value)
    assert message.startswith("--metric group_acc: 2 of 2 successful run(s) have no patient groups (first: ")
    assert "data=synthetic, data.group_by=auto" in message and "older runs" not in message
    require("balanced_acc", runs)  # recorded: no complaint

    _results(tmp_path / "b" / "0", "manifest", "auto")  # grouped data in principle, but no group metric recorded
    with pytest.raises(UserError, match=r"one image per group .* or they predate patient-level metrics"):
        require("group_balanced_acc", collect(tmp_path / "b").runs)


# ---------------------------------------------------------------- one line from report and export

@pytest.mark.parametrize("module", ["report", "export"])
def test_usage_errors_are_one_line(module, capsys):
    from ssl_lightning.export.encoders import main as export
    from ssl_lightning.report.__main__ import main as report

    with pytest.raises(SystemExit) as stopped:
        {"report": report, "export": export}[module](["somewhere", "--bogus"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert stopped.value.code == 2 and len(lines) == 1, lines
    assert lines[0].startswith("error: ") and "--bogus" in lines[0] and "--help" in lines[0]


def test_matplotlib_says_nothing_at_import_with_an_unwritable_home(tmp_path):
    """The report's figures import matplotlib; with no writable home it used to log three lines to stderr."""
    env = {k: v for k, v in os.environ.items() if k not in ("MPLCONFIGDIR", "XDG_CONFIG_HOME", "XDG_CACHE_HOME")}
    env.update(HOME="/proc/no-home", PYTHONPATH=str(Path(__file__).resolve().parents[1]), OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-c", "import ssl_lightning.report.figures, matplotlib; "
                           "print(matplotlib.get_configdir())"], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=120)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert "/proc/no-home" not in done.stdout  # matplotlib did fall back to a temporary folder: the case at hand
