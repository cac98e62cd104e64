"""The frozen-feature downstream stage: one cell's probe on cached features.

features of every image (feature store: computed once per encoder, layer and data set) -> fit on the labelled
subset -> choose the penalty (logistic regression) or k (k-NN), and with `probe_layer=best` the layer, on the
validation selection -> test once. Used for `downstream=knn` and for `downstream=linear` with
`downstream.solver=lbfgs`; the SGD head through the Trainer (`solver=sgd`) stays in downstream_stage.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ssl_lightning.atomic import write_npz, write_torch
from ssl_lightning.config.settings import DownstreamSettings, RunSettings
from ssl_lightning.data.augment import standardize, to_unit_float
from ssl_lightning.data.base import Images, ImageSet
from ssl_lightning.data.fractions import LabelSplit
from ssl_lightning.data.mapped_images import take
from ssl_lightning.evaluation.metrics import ClassificationMetrics, classification_metrics
from ssl_lightning.models.backbones import Encoder
from ssl_lightning.models.probe import stage_count, truncated
from ssl_lightning.probes.config import is_frozen
from ssl_lightning.probes.knn import knn_probabilities
from ssl_lightning.probes.logistic import LogisticModel, Standardizer, accuracy, select_penalty
from ssl_lightning.stages.embeddings import FILE_NAME as EMBEDDINGS_FILE
from ssl_lightning.stages.embeddings import MAX_IMAGES, subsample
from ssl_lightning.stages.feature_store import (
    EVAL_TRANSFORM,
    CachedFeatures,
    FeatureStore,
    feature_key,
    image_identity,
    tensor_digest,
)
from ssl_lightning.training.distributed import is_global_zero

log = logging.getLogger(__name__)
CHECKPOINT = Path("checkpoints") / "probe.pt"
MIN_PROBABILITY = 1e-12  # k-NN gives probability 0 to classes without a vote: the test loss clamps it


def uses_frozen_stage(stage: DownstreamSettings) -> bool:
    """k-NN always, the linear protocol with the L-BFGS solver; everything else trains through the Trainer."""
    return is_frozen(stage.protocol, stage.solver)


@dataclass
class Fit:
    """One layer's probe, chosen on validation."""

    layer: int | str
    features: CachedFeatures
    val_acc: float
    penalty: float | None = None
    k: int | None = None
    model: LogisticModel | None = None
    standardizer: Standardizer | None = None
    val_scores: list[tuple[float | int, float]] = field(default_factory=list)  # (C or k, validation accuracy)


@dataclass
class FrozenOutcome:
    protocol: str
    solver: str | None
    test_loss: float
    metrics: ClassificationMetrics
    chosen: Fit
    checkpoint: Path
    seconds_features: float
    seconds_probe: float

    def results(self, run_dir: Path, classes: list[str]) -> dict[str, Any]:
        """The results.json fields of this stage (the SGD stage's keys kept, epoch and lr not applicable)."""
        fit = self.chosen
        return {
            "status": "ok", "test_loss": self.test_loss, "test_acc": self.metrics.acc,
            **self.metrics.as_results(),
            "per_class_acc": dict(zip(classes, self.metrics.per_class_acc, strict=False)),
            "best_val_acc": fit.val_acc, "checkpoint": str(self.checkpoint.relative_to(run_dir)),
            "best_epoch": None, "chosen_lr": None, "probe_layer": fit.layer, "solver": self.solver,
            "chosen_penalty": fit.penalty, "chosen_k": fit.k, "val_scores": [list(pair) for pair in fit.val_scores],
            "feature_key": fit.features.key, "features_reused": fit.features.reused,
        }


def probe_device(settings: RunSettings) -> torch.device:
    """The GPU when the trainer asks for one and there is one, else the CPU."""
    wants_gpu = settings.trainer.accelerator in ("gpu", "cuda", "auto")
    return torch.device("cuda") if wants_gpu and torch.cuda.is_available() else torch.device("cpu")


@torch.no_grad()
def extract_features(encoder: Encoder, images: Images, batch_size: int, device: torch.device) -> torch.Tensor:
    """Float32 features (CPU) of uint8 images, un-augmented, encoder in eval mode, with the classifier's scaling."""
    was_training = encoder.training
    encoder.eval()
    parts = []
    try:
        for start in range(0, len(images), batch_size):
            batch = take(images, np.arange(start, min(start + batch_size, len(images)))).to(device)
            parts.append(encoder(standardize(to_unit_float(batch))).float().cpu())
    finally:
        encoder.train(was_training)
    return torch.cat(parts) if parts else torch.empty(0, encoder.feature_dim)


def _layers(stage: DownstreamSettings, encoder: Encoder) -> list[int | str]:
    """The probed layers; the last stage is always called `last` so that it shares one store entry."""
    count = stage_count(encoder)
    if stage.probe_layer == "best":
        return [*range(1, count), "last"]
    return ["last" if stage.probe_layer == count else stage.probe_layer]


def cell_features(settings: RunSettings, encoder: Encoder, images: ImageSet, layer: int | str,
                  data_identity: dict[str, Any], pretext_key: str | None, device: torch.device) -> CachedFeatures:
    """The encoder's features of every training and test image at `layer`, from the store or computed once."""
    probed = encoder if layer == "last" else truncated(encoder, int(layer))
    identity = {"pretext_key": pretext_key, "architecture": encoder.name,
                "weights": tensor_digest(encoder.state_dict())}
    picture = image_identity(data_identity, tuple(images.train_images.shape), tuple(images.test_images.shape),
                             images.train_labels, images.test_labels)
    transform = {"scale": EVAL_TRANSFORM, "image_size": list(images.image_size), "channels": images.channels}
    key = feature_key(identity, picture, layer, transform)

    def compute() -> dict[str, torch.Tensor]:
        original = next(encoder.parameters(), torch.empty(0)).device  # raw pixels: no parameters
        encoder.to(device)
        try:
            batch = settings.data.eval_batch_size
            train = extract_features(probed, images.train_images, batch, device)
            test = extract_features(probed, images.test_images, batch, device)
        finally:
            encoder.to(original)
        return {"train": train, "test": test, "train_labels": images.train_labels.long().clone(),
                "test_labels": images.test_labels.long().clone()}

    meta = {"encoder": identity, "images": picture, "layer": layer, "transform": transform,
            "experiment": settings.experiment}
    return FeatureStore(settings.cache_dir / "features").get(key, compute, meta)


def _rows(features: CachedFeatures, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    index = torch.as_tensor(rows, dtype=torch.long)
    return features.arrays["train"][index], features.arrays["train_labels"][index]


def _fit_linear(stage: DownstreamSettings, layer: int | str, features: CachedFeatures, split: LabelSplit,
                num_classes: int, device: torch.device) -> Fit:
    train, train_labels = _rows(features, split.labeled)
    val, val_labels = _rows(features, split.selection_val)
    scaler = Standardizer.fit(train.to(device))
    choice = select_penalty(scaler(train.to(device)), train_labels.to(device), scaler(val.to(device)),
                            val_labels.to(device), num_classes, stage.penalty_grid, stage.max_iter,
                            patience=stage.penalty_patience)
    log.info("logistic regression (L-BFGS) on layer %s: C=%g chosen on validation (val_acc %.4f; %s)", layer,
             choice.model.penalty, choice.val_acc, ", ".join(f"C={c:g}: {a:.4f}" for c, a in choice.scores))
    return Fit(layer, features, choice.val_acc, penalty=choice.model.penalty, model=choice.model,
               standardizer=scaler, val_scores=choice.scores)


def _knn_inputs(stage: DownstreamSettings, bank: torch.Tensor) -> Standardizer | None:
    """Euclidean k-NN measures distances on standardised features (labelled-set statistics); cosine needs none."""
    return Standardizer.fit(bank) if stage.metric == "euclidean" else None


def _scaled(scaler: Standardizer | None, features: torch.Tensor, device: torch.device) -> torch.Tensor:
    values = features.to(device)
    return scaler(values).float() if scaler is not None else values


def _fit_knn(stage: DownstreamSettings, layer: int | str, features: CachedFeatures, split: LabelSplit,
             num_classes: int, device: torch.device) -> Fit:
    bank, bank_labels = _rows(features, split.labeled)
    val, val_labels = _rows(features, split.selection_val)
    scaler = _knn_inputs(stage, bank.to(device))
    ks = list(stage.k_grid or (stage.k,))
    probabilities = knn_probabilities(_scaled(scaler, bank, device), bank_labels, _scaled(scaler, val, device),
                                      num_classes, ks, stage.temperature, stage.metric)
    scores = [(k, accuracy(probabilities[k], val_labels)) for k in ks]
    best_k, best_acc = ks[0], scores[0][1]
    for k, (_, acc) in zip(ks, scores, strict=True):  # ties: the k listed first
        if acc > best_acc:
            best_k, best_acc = k, acc
    if len(ks) > 1:
        log.info("k-NN on layer %s: k=%d chosen on validation (val_acc %.4f; %s)", layer, best_k, best_acc,
                 ", ".join(f"k={int(k)}: {a:.4f}" for k, a in scores))
    return Fit(layer, features, best_acc, k=best_k, standardizer=scaler, val_scores=scores)


def fit_probe(stage: DownstreamSettings, layer: int | str, features: CachedFeatures, split: LabelSplit,
              num_classes: int, device: torch.device) -> Fit:
    """The stage's probe (k-NN or L-BFGS logistic regression) fitted on the labelled rows, chosen on validation."""
    fitter = _fit_knn if stage.protocol == "knn" else _fit_linear
    return fitter(stage, layer, features, split, num_classes, device)


def evaluate_probe(stage: DownstreamSettings, fit: Fit, split: LabelSplit, num_classes: int,
               device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(class probabilities of every test image, their labels): the one look at the test split."""
    test, labels = fit.features.arrays["test"], fit.features.arrays["test_labels"]
    if fit.model is not None:
        assert fit.standardizer is not None
        return fit.model.probabilities(fit.standardizer(test.to(device))).cpu(), labels
    assert fit.k is not None
    bank, bank_labels = _rows(fit.features, split.labeled)
    probabilities = knn_probabilities(_scaled(fit.standardizer, bank, device), bank_labels,
                                      _scaled(fit.standardizer, test, device), num_classes, [fit.k],
                                      stage.temperature, stage.metric)
    return probabilities[fit.k], labels


def _head_state(stage: DownstreamSettings, fit: Fit, split: LabelSplit, classes: list[str]) -> dict[str, Any]:
    """The fitted probe as a small file: the logistic weights, or k-NN's settings and labelled rows (its bank is
    those rows of the feature store entry)."""
    state: dict[str, Any] = {"protocol": stage.protocol, "probe_layer": str(fit.layer), "feature_key": fit.features.key,
                             "classes": classes}
    if fit.standardizer is not None:
        state.update(mean=fit.standardizer.mean.float().cpu(), scale=fit.standardizer.scale.float().cpu())
    if fit.model is not None:
        state.update(solver="lbfgs", weight=fit.model.weight.float().cpu(), bias=fit.model.bias.float().cpu(),
                     penalty=fit.model.penalty)
    else:
        state.update(k=fit.k, temperature=stage.temperature, metric=stage.metric,
                     labeled_indices=torch.as_tensor(split.labeled, dtype=torch.long))
    return state


def _save_embeddings(fit: Fit, images: ImageSet, run_dir: Path, seed: int) -> None:
    """The probed test features (a seeded subsample, float16) in embeddings.py's format, for the report's maps."""
    indices = subsample(len(images.test_labels), MAX_IMAGES, seed)
    chosen = torch.as_tensor(indices, dtype=torch.long)
    write_npz(run_dir / EMBEDDINGS_FILE, {
        "features": fit.features.arrays["test"][chosen].numpy().astype(np.float16),
        "labels": images.test_labels[chosen].numpy().astype(np.int64), "indices": indices,
        "classes": np.asarray(images.classes, dtype=str)})


def run_frozen(settings: RunSettings, encoder: Encoder, images: ImageSet, split: LabelSplit,
               data_identity: dict[str, Any], pretext_key: str | None, run_dir: Path) -> FrozenOutcome:
    """Fetch or compute the features, fit the probe on the labelled subset, choose on validation, test once."""
    stage, device = settings.downstream, probe_device(settings)
    features_seconds, probe_seconds = 0.0, 0.0
    fits = []
    for layer in _layers(stage, encoder):
        features = cell_features(settings, encoder, images, layer, data_identity, pretext_key, device)
        features_seconds += features.seconds
        started = time.perf_counter()
        fits.append(fit_probe(stage, layer, features, split, images.num_classes, device))
        probe_seconds += time.perf_counter() - started
    started = time.perf_counter()
    chosen = fits[0]
    for fit in fits[1:]:  # ties: the earlier layer
        chosen = fit if fit.val_acc > chosen.val_acc else chosen
    if len(fits) > 1:
        log.info("probe layer %s chosen on validation (val_acc %.4f)", chosen.layer, chosen.val_acc)
    probabilities, labels = evaluate_probe(stage, chosen, split, images.num_classes, device)
    test_loss = float(F.nll_loss(probabilities.clamp_min(MIN_PROBABILITY).log(), labels.long()))
    metrics = classification_metrics(probabilities, labels, images.num_classes, groups=images.test_groups)
    checkpoint = run_dir / CHECKPOINT
    if is_global_zero():
        write_torch(checkpoint, _head_state(stage, chosen, split, images.classes))
        _save_embeddings(chosen, images, run_dir, settings.data.split_seed)
    probe_seconds += time.perf_counter() - started
    solver = stage.solver if stage.protocol == "linear" else None
    log.info("%s probe tested once: test_acc %.4f (features %.1f s, probe %.1f s)", stage.protocol, metrics.acc,
             features_seconds, probe_seconds)
    return FrozenOutcome(stage.protocol, solver, test_loss, metrics, chosen, checkpoint, features_seconds,
                         probe_seconds)
