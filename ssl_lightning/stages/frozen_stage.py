"""The frozen-feature downstream stage: one cell's probe on cached features.

features of every image (feature store: computed once per encoder, layer and data set) -> fit on the labelled
subset -> choose the penalty (logistic regression) or k (k-NN), and with `probe_layer=best` the layer, on the
monitored metric (`downstream.monitor`) of the validation selection or, with `downstream.select=cv`, of folds of
the labelled set (then refitted on all of it) -> test once. Used for `downstream=knn` and for `downstream=linear` with
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
from ssl_lightning.data.fractions import LabelSplit, no_validation_fix
from ssl_lightning.data.mapped_images import take
from ssl_lightning.errors import UserError
from ssl_lightning.evaluation.cross_validation import stratified_group_folds
from ssl_lightning.evaluation.downstream_selection import resolve_monitor, resolve_select, selected_on
from ssl_lightning.evaluation.metrics import ClassificationMetrics, classification_metrics
from ssl_lightning.models.backbones import Encoder
from ssl_lightning.models.probe import stage_count, truncated
from ssl_lightning.probes.config import MAX_PENALTY, MIN_PENALTY, is_frozen
from ssl_lightning.probes.knn import knn_probabilities
from ssl_lightning.probes.logistic import (
    HeldOut,
    LogisticModel,
    PathDiverged,
    PenaltyChoice,
    Standardizer,
    finite,
    fit_logistic,
    select_penalty,
)
from ssl_lightning.probes.scoring import MIN_PROBABILITY, Scored, choose, cross_entropy, held_out_score
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


def uses_frozen_stage(stage: DownstreamSettings) -> bool:
    """k-NN always, the linear protocol with the L-BFGS solver; everything else trains through the Trainer."""
    return is_frozen(stage.protocol, stage.solver)


@dataclass(frozen=True)
class SelectionPlan:
    """How this split's probe is chosen: `select` resolved (val | cv | last), the monitored metric, the folds of
    the labelled set (positions into split.labeled; cv only) and why `auto` or a fallback resolved as it did."""

    select: str
    monitor: str
    folds: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    note: str = ""

    @property
    def selected_on(self) -> str:
        return selected_on(self.select, self.monitor)


@dataclass
class Fit:
    """One layer's probe, chosen by the plan (on validation or by cross-validation, then refitted)."""

    layer: int | str
    features: CachedFeatures
    score: float  # the chosen candidate's held-out score on the monitored metric (validation or mean over folds)
    loss: float  # its held-out cross-entropy
    penalty: float | None = None
    k: int | None = None
    model: LogisticModel | None = None
    standardizer: Standardizer | None = None
    scores: list[Scored] = field(default_factory=list)  # every C or k tried, in order
    diverged: list[float] = field(default_factory=list)  # C values with non-finite weights or loss


@dataclass
class FrozenOutcome:
    protocol: str
    solver: str | None
    test_loss: float
    metrics: ClassificationMetrics
    chosen: Fit
    plan: SelectionPlan
    validation: dict[str, float | None]  # the chosen probe on the validation split (None without one)
    diverged: list[dict[str, Any]]  # every (layer, C) skipped for non-finite weights or loss
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
            "best_val_acc": self.validation["acc"], "best_val_balanced_acc": self.validation["balanced_acc"],
            "val_loss": self.validation["loss"], "checkpoint": str(self.checkpoint.relative_to(run_dir)),
            "best_epoch": None, "chosen_lr": None, "probe_layer": fit.layer, "solver": self.solver,
            "monitor": self.plan.monitor, "select": self.plan.select, "selected_on": self.plan.selected_on,
            "selection_note": self.plan.note, "cv_folds": len(self.plan.folds) or None,
            "selection_score": fit.score, "selection_loss": fit.loss,
            "chosen_C": fit.penalty, "chosen_penalty": fit.penalty, "chosen_k": fit.k,
            "val_scores": [[c.value, c.score] for c in fit.scores],
            "selection_scores": [[c.value, c.score, c.loss] for c in fit.scores],
            "diverged_candidates": self.diverged,
            "feature_key": fit.features.key, "features_reused": fit.features.reused,
        }


def _candidate_count(stage: DownstreamSettings) -> int:
    values = len(stage.k_grid or (stage.k,)) if stage.protocol == "knn" else len(stage.penalty_grid)
    return values * (2 if stage.probe_layer == "best" else 1)  # best: at least two layers


def plan_selection(settings: RunSettings, train_labels: np.ndarray, train_groups: np.ndarray | None,
                   split: LabelSplit) -> SelectionPlan:
    """Resolve `downstream.select` for this split (UserError, before anything is fitted, when nothing can choose).

    auto: cv when the validation split holds fewer than MIN_VAL_PER_CLASS images (groups) in its smallest class,
    else val. cv: folds = min(downstream.cv_folds, images (groups) of the smallest labelled class); below 2 (one
    labelled image or patient in a class) cross-validation is impossible and validation chooses instead, said in
    `note`. last: frozen probes have no epochs, so candidates are chosen on validation when there is one; without,
    only a single candidate can be tested unchosen."""
    stage, data = settings.downstream, settings.data
    labels = np.asarray(train_labels, dtype=np.int64)
    labelled = labels[split.labeled]
    monitor = resolve_monitor(stage.monitor, np.bincount(labelled).tolist())
    groups = None if train_groups is None else np.asarray(train_groups)
    has_val = len(split.selection_val) > 0
    select = stage.select
    if _candidate_count(stage) == 1 and select in ("auto", "cv"):  # nothing to choose: no folds to fit
        return SelectionPlan("val" if has_val else "last", monitor, [], f"select={select}: one candidate (one "
                             f"{'k' if stage.protocol == 'knn' else 'C'}, one layer), nothing to choose")
    select, note, count = resolve_select(
        select, labels, groups, split.labeled, split.selection_val, stage.cv_folds, has_val,
        _candidate_count(stage) > 1, no_validation_fix(split))
    if select == "cv":
        folds = stratified_group_folds(labelled, None if groups is None else groups[split.labeled], count,
                                       data.split_seed)
        return SelectionPlan("cv", monitor, folds, note)
    if not has_val:
        if _candidate_count(stage) > 1:
            raise UserError(f"downstream.select={select}: no validation images to choose among the probe's "
                            f"candidates; use downstream.select=cv, a single value, or: "
                            f"{no_validation_fix(split, 'give data.val_split>0')}")
        return SelectionPlan("last", monitor, [], note or "no validation images; one candidate, nothing to choose")
    if select == "last":
        note = "select=last: frozen probes have no epochs; candidates chosen on validation"
    return SelectionPlan("val", monitor, [], note)


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


def _linear_splits(plan: SelectionPlan, train: torch.Tensor, labels: torch.Tensor, val: torch.Tensor,
                   val_labels: torch.Tensor) -> list[HeldOut]:
    """The path's fits: one on the labelled rows scored on validation, or one per fold scored on its held-out
    rows (each standardised with its own training rows' statistics)."""
    if plan.select != "cv":
        scaler = Standardizer.fit(train)
        return [HeldOut(scaler(train), labels, scaler(val), val_labels)]
    splits = []
    for inside, held in plan.folds:
        scaler = Standardizer.fit(train[inside])
        splits.append(HeldOut(scaler(train[inside]), labels[inside], scaler(train[held]), labels[held]))
    return splits


def _refit(train: torch.Tensor, labels: torch.Tensor, num_classes: int, stage: DownstreamSettings,
           choice: PenaltyChoice) -> LogisticModel:
    """The chosen C on every labelled row, reached along the same warm-started path (diverged C values skipped)."""
    previous = None
    for penalty in sorted(float(c) for c in stage.penalty_grid):
        if penalty > choice.penalty:
            break
        if penalty in choice.diverged:
            continue
        model = fit_logistic(train, labels, num_classes, penalty, previous, stage.max_iter)
        previous = model if finite(model) else previous
    if previous is None or previous.penalty != choice.penalty:
        raise PathDiverged([choice.penalty])
    return previous


def _fit_linear(stage: DownstreamSettings, plan: SelectionPlan, layer: int | str, features: CachedFeatures,
                split: LabelSplit, num_classes: int, device: torch.device) -> Fit:
    train, train_labels = (t.to(device) for t in _rows(features, split.labeled))
    val, val_labels = (t.to(device) for t in _rows(features, split.selection_val))
    splits = _linear_splits(plan, train, train_labels, val, val_labels)
    choice = select_penalty(splits, num_classes, stage.penalty_grid, plan.monitor, stage.max_iter,
                            patience=stage.penalty_patience)
    scaler = Standardizer.fit(train)
    model = _refit(scaler(train), train_labels, num_classes, stage, choice) if plan.select == "cv" else choice.model
    if choice.diverged:
        log.warning("logistic regression on layer %s: C=%s gave non-finite weights or loss and were skipped", layer,
                    ", ".join(f"{c:g}" for c in choice.diverged))
    log.info("logistic regression (L-BFGS) on layer %s: C=%g chosen on %s (%s %.4f, loss %.4f; %s)", layer,
             choice.penalty, plan.selected_on, plan.monitor, choice.score, choice.loss,
             ", ".join(f"C={c.value:g}: {c.score:.4f}/{c.loss:.4f}" for c in choice.scores))
    return Fit(layer, features, choice.score, choice.loss, penalty=choice.penalty, model=model, standardizer=scaler,
               scores=choice.scores, diverged=choice.diverged)


def _knn_inputs(stage: DownstreamSettings, bank: torch.Tensor) -> Standardizer | None:
    """Euclidean k-NN measures distances on standardised features (labelled-set statistics); cosine needs none."""
    return Standardizer.fit(bank) if stage.metric == "euclidean" else None


def _scaled(scaler: Standardizer | None, features: torch.Tensor, device: torch.device) -> torch.Tensor:
    values = features.to(device)
    return scaler(values).float() if scaler is not None else values


def _knn_held_out(stage: DownstreamSettings, bank: torch.Tensor, bank_labels: torch.Tensor, queries: torch.Tensor,
                  labels: torch.Tensor, num_classes: int, metric: str, device: torch.device) -> list[Scored]:
    """(k, score, vote-distribution loss) of every k for one bank and its held-out queries."""
    scaler = _knn_inputs(stage, bank.to(device))
    ks = list(stage.k_grid or (stage.k,))
    probabilities = knn_probabilities(_scaled(scaler, bank, device), bank_labels, _scaled(scaler, queries, device),
                                      num_classes, ks, stage.temperature, stage.metric)
    return [Scored(k, held_out_score(probabilities[k], labels, metric), cross_entropy(probabilities[k], labels))
            for k in ks]


def _fit_knn(stage: DownstreamSettings, plan: SelectionPlan, layer: int | str, features: CachedFeatures,
             split: LabelSplit, num_classes: int, device: torch.device) -> Fit:
    bank, bank_labels = _rows(features, split.labeled)
    if plan.select == "cv":
        per_fold = [_knn_held_out(stage, bank[inside], bank_labels[inside], bank[held], bank_labels[held],
                                  num_classes, plan.monitor, device) for inside, held in plan.folds]
        scores = [Scored(first.value, float(np.mean([f[i].score for f in per_fold])),
                         float(np.mean([f[i].loss for f in per_fold]))) for i, first in enumerate(per_fold[0])]
    else:
        val, val_labels = _rows(features, split.selection_val)
        scores = _knn_held_out(stage, bank, bank_labels, val, val_labels, num_classes, plan.monitor, device)
    pick = scores[choose(scores)]
    if len(scores) > 1:
        log.info("k-NN on layer %s: k=%d chosen on %s (%s %.4f, loss %.4f; %s)", layer, pick.value,
                 plan.selected_on, plan.monitor, pick.score, pick.loss,
                 ", ".join(f"k={int(c.value)}: {c.score:.4f}/{c.loss:.4f}" for c in scores))
    return Fit(layer, features, pick.score, pick.loss, k=int(pick.value),
               standardizer=_knn_inputs(stage, bank.to(device)), scores=scores)


def fit_probe(stage: DownstreamSettings, plan: SelectionPlan, layer: int | str, features: CachedFeatures,
              split: LabelSplit, num_classes: int, device: torch.device) -> Fit:
    """The stage's probe (k-NN or L-BFGS logistic regression) fitted on the labelled rows, chosen by the plan."""
    fitter = _fit_knn if stage.protocol == "knn" else _fit_linear
    return fitter(stage, plan, layer, features, split, num_classes, device)


def _probabilities(stage: DownstreamSettings, fit: Fit, split: LabelSplit, queries: torch.Tensor, num_classes: int,
                   device: torch.device) -> torch.Tensor:
    """Class probabilities (CPU, float64) of the chosen probe for the given features."""
    if fit.model is not None:
        assert fit.standardizer is not None
        return fit.model.probabilities(fit.standardizer(queries.to(device))).cpu()
    assert fit.k is not None
    bank, bank_labels = _rows(fit.features, split.labeled)
    probabilities = knn_probabilities(_scaled(fit.standardizer, bank, device), bank_labels,
                                      _scaled(fit.standardizer, queries, device), num_classes, [fit.k],
                                      stage.temperature, stage.metric)
    return probabilities[fit.k]


def _validation(stage: DownstreamSettings, fit: Fit, split: LabelSplit, num_classes: int,
                device: torch.device) -> dict[str, float | None]:
    """The chosen probe on the validation split (reported under cv too; all None without validation images)."""
    if not len(split.selection_val):
        return {"acc": None, "balanced_acc": None, "loss": None}
    val, labels = _rows(fit.features, split.selection_val)
    probabilities = _probabilities(stage, fit, split, val, num_classes, device)
    return {"acc": held_out_score(probabilities, labels, "acc"),
            "balanced_acc": held_out_score(probabilities, labels, "balanced_acc"),
            "loss": cross_entropy(probabilities, labels)}


def evaluate_probe(stage: DownstreamSettings, fit: Fit, split: LabelSplit, num_classes: int,
                   device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(class probabilities of every test image, their labels): the one look at the test split."""
    test, labels = fit.features.arrays["test"], fit.features.arrays["test_labels"]
    return _probabilities(stage, fit, split, test, num_classes, device), labels


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


def all_diverged_error(stage: DownstreamSettings, diverged: list[dict[str, Any]]) -> PathDiverged:
    grid = "[" + ",".join(f"{c:g}" for c in stage.penalty_grid) + "]"
    return PathDiverged([d["C"] for d in diverged], f"downstream.penalty_grid={grid}: every penalty gave non-finite "
                        f"weights or loss on every probed layer; use C values in [{MIN_PENALTY:g}, {MAX_PENALTY:g}] "
                        "(the default grid is 1e-6 ... 1e5)")


def _fit_layers(settings: RunSettings, encoder: Encoder, images: ImageSet, split: LabelSplit, plan: SelectionPlan,
                data_identity: dict[str, Any], pretext_key: str | None,
                device: torch.device) -> tuple[list[Fit], list[dict[str, Any]], float, float]:
    """Every probed layer's fit (a layer whose every C diverged is left out), the (layer, C) pairs that diverged,
    and the seconds spent on features and on probes."""
    stage = settings.downstream
    features_seconds, probe_seconds = 0.0, 0.0
    fits: list[Fit] = []
    diverged: list[dict[str, Any]] = []
    for layer in _layers(stage, encoder):
        features = cell_features(settings, encoder, images, layer, data_identity, pretext_key, device)
        features_seconds += features.seconds
        started = time.perf_counter()
        try:
            fit = fit_probe(stage, plan, layer, features, split, images.num_classes, device)
            fits.append(fit)
            diverged += [{"C": c, "probe_layer": layer} for c in fit.diverged]
        except PathDiverged as error:
            log.warning("logistic regression on layer %s: %s", layer, error)
            diverged += [{"C": c, "probe_layer": layer} for c in error.diverged]
        probe_seconds += time.perf_counter() - started
    if not fits:
        raise all_diverged_error(stage, diverged)
    return fits, diverged, features_seconds, probe_seconds


def run_frozen(settings: RunSettings, encoder: Encoder, images: ImageSet, split: LabelSplit,
               data_identity: dict[str, Any], pretext_key: str | None, run_dir: Path) -> FrozenOutcome:
    """Fetch or compute the features, fit the probe on the labelled subset, choose C, k and the layer as the
    selection plan says (validation or cross-validation on the monitored metric), test once."""
    stage, device = settings.downstream, probe_device(settings)
    plan = plan_selection(settings, images.train_labels.numpy(), images.train_groups, split)
    if plan.note:
        log.info("downstream selection: %s", plan.note)
    fits, diverged, features_seconds, probe_seconds = _fit_layers(settings, encoder, images, split, plan,
                                                                  data_identity, pretext_key, device)
    started = time.perf_counter()
    chosen = fits[choose([Scored(fit.layer, fit.score, fit.loss) for fit in fits])]
    if len(fits) > 1:
        log.info("probe layer %s chosen on %s (%s %.4f, loss %.4f)", chosen.layer, plan.selected_on, plan.monitor,
                 chosen.score, chosen.loss)
    validation = _validation(stage, chosen, split, images.num_classes, device)
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
    return FrozenOutcome(stage.protocol, solver, test_loss, metrics, chosen, plan, validation, diverged, checkpoint,
                         features_seconds, probe_seconds)
