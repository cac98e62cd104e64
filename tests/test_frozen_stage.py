"""The frozen-feature stage through the real CLI: features computed once per encoder and reused by later processes
(another protocol, another fraction), recomputed when the key changes or the checksum fails; results.json carries
the probe's fields, and the logistic probe's test accuracy is what scikit-learn gets on the stored features."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression

from ssl_lightning.__main__ import entry
from ssl_lightning.stages.feature_store import FILE_NAME, FeatureStore
from tests.conftest import call_main
from tests.helpers import log_text

CELL = ("+experiment=simclr", "data=synthetic", "profile=smoke")


def _cell(tmp_path: Path, name: str, *overrides: str, own_process: bool = False) -> tuple[dict, str]:
    """One cell in its own run folder, all cells sharing one cache; (results.json, the run's log). The first cell
    runs in its own `python -m ssl_lightning` process, the later ones in this process (the entry function): what
    they reuse comes from disk, written by another process."""
    run_dir = tmp_path / name
    args = [*CELL, *overrides, f"paths.cache={tmp_path / 'cache'}", f"hydra.run.dir={run_dir}"]
    if own_process:
        done = subprocess.run([sys.executable, "-m", "ssl_lightning", *args], cwd=tmp_path, capture_output=True,
                              text=True, timeout=600, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    else:
        done = call_main(entry, args, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((run_dir / "results.json").read_text())
    assert results["status"] == "ok", results.get("traceback")
    return results, log_text(run_dir)


def _common_fields(results: dict, run_dir: Path) -> None:
    assert results["best_epoch"] is None and results["chosen_lr"] is None
    assert set(results["seconds"]) >= {"features", "probe", "downstream", "total"}
    assert 0.0 <= results["test_acc"] <= 1.0 and np.isfinite(results["test_loss"])
    assert 0.0 <= results["best_val_acc"] <= 1.0
    assert {"test_balanced_acc", "test_macro_f1", "test_confusion"} <= set(results)
    confusion = np.asarray(results["test_confusion"])
    assert confusion.sum() == results["num_test"]
    assert abs(np.trace(confusion) / confusion.sum() - results["test_acc"]) < 1e-9
    assert (run_dir / results["checkpoint"]).is_file() and (run_dir / "embeddings.npz").is_file()


def test_features_are_reused_across_processes_and_recomputed_when_the_key_changes(tmp_path):
    knn, knn_log = _cell(tmp_path, "knn", "downstream=knn", own_process=True)
    assert (knn["protocol"], knn["solver"], knn["chosen_k"], knn["chosen_penalty"]) == ("knn", None, 20, None)
    _common_fields(knn, tmp_path / "knn")
    assert "computing features" in knn_log and not knn["features_reused"]
    key = knn["feature_key"]

    linear, linear_log = _cell(tmp_path, "linear", "downstream=linear", "data.fraction=0.5")
    assert linear["pretext_reused"] and linear["features_reused"]
    assert f"reusing features {key}" in linear_log and "computing features" not in linear_log
    assert (linear["protocol"], linear["solver"], linear["chosen_k"]) == ("linear", "lbfgs", None)
    assert linear["chosen_penalty"] in [10.0 ** e for e in range(-6, 6)]
    _common_fields(linear, tmp_path / "linear")
    arrays = torch.load(tmp_path / "cache" / "features" / key / FILE_NAME, weights_only=True)
    assert arrays["train"].shape == (512, arrays["test"].shape[1]) and len(arrays["test"]) == 128  # every image
    head = torch.load(tmp_path / "linear" / linear["checkpoint"], weights_only=True)
    assert head["weight"].shape == (4, arrays["train"].shape[1]) and head["penalty"] == linear["chosen_penalty"]

    # scikit-learn with the chosen C on the stored features and the recorded labelled subset gives the same accuracy
    subset = json.loads((tmp_path / "linear" / "subset.json").read_text())
    train = arrays["train"][subset["labeled_indices"]].double().numpy()
    mean, std = train.mean(axis=0), train.std(axis=0)
    std = np.where(std > 1e-12, std, 1.0)
    reference = LogisticRegression(C=linear["chosen_penalty"], max_iter=10000, tol=1e-8).fit(
        (train - mean) / std, arrays["train_labels"][subset["labeled_indices"]].numpy())
    test = (arrays["test"].double().numpy() - mean) / std
    assert abs(float((reference.predict(test) == arrays["test_labels"].numpy()).mean()) - linear["test_acc"]) <= 1e-3

    layer, layer_log = _cell(tmp_path, "layer", "downstream=linear", "downstream.probe_layer=1")
    assert layer["feature_key"] != key and not layer["features_reused"] and "computing features" in layer_log
    assert len(list((tmp_path / "cache" / "features").glob("*/meta.json"))) == 2


def test_a_corrupt_entry_fails_its_checksum_and_is_recomputed(tmp_path):
    store = FeatureStore(tmp_path / "features")
    calls = []

    def compute() -> dict[str, torch.Tensor]:
        calls.append(1)
        return {"train": torch.arange(12.0).reshape(6, 2), "test": torch.ones(3, 2),
                "train_labels": torch.zeros(6, dtype=torch.long), "test_labels": torch.zeros(3, dtype=torch.long)}

    first = store.get("abc", compute, {"what": "test"})
    again = store.get("abc", compute, {"what": "test"})
    assert (first.reused, again.reused, len(calls)) == (False, True, 1)
    assert torch.equal(again.arrays["train"], first.arrays["train"])
    path = tmp_path / "features" / "abc" / FILE_NAME
    data = bytearray(path.read_bytes())
    data[-20] ^= 0xFF
    path.write_bytes(bytes(data))
    third = store.get("abc", compute, {"what": "test"})
    assert (third.reused, len(calls)) == (False, 2)
    assert store.get("other", compute, {}).reused is False and len(calls) == 3
