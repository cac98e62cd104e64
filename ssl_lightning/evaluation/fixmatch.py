"""FixMatch (Sohn et al., NeurIPS 2020) as an arm beside the pretext methods: `+experiment=fixmatch`.

No pretext stage: the randomly initialised encoder is trained once, end to end, on two batches per step - the
labelled subset (`loading.EVEN`, every labelled image every epoch, as for every arm) and `mu` times as many
images of the unlabelled pool the pretext methods train on (`LabelSplit.pool`; their labels are never read,
data/fixmatch_data.py). The loss is the cross-entropy of the weak views of the labelled images plus `lambda_u`
times the cross-entropy of the strong views of the unlabelled images against the argmax of the weak views'
prediction, counted only where that prediction's probability reaches `threshold` (averaged over every unlabelled
image, as in the paper, so a step with no confident prediction adds exactly 0).

Views come from the batched on-device augmentation (data/augment.py), not per-image RandAugment:
- weak: `downstream_view` (random shift up to 12.5% and horizontal flip), the supervised arm's augmentation;
- strong: `simclr_view` at strength 1 (crop of 25-100% of the area and flip, colour jitter p=0.8, grayscale
  p=0.2), solarisation p=0.2 (one of RandAugment's operations), then Cutout of a square half the image side at a
  random centre filled with grey, as FixMatch's RandAugment variant always ends.

Differences from the paper, on purpose: `mu` defaults to 3 (paper: 7) so that a CPU step stays affordable; no
EMA of the weights for evaluation; the suite's optimiser and step plan (`downstream.*`, `downstream.min_steps`)
instead of 2^20 steps of SGD at lr 0.03; the suite's compact backbones instead of WideResNet-28-2.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ssl_lightning.data.augment import downstream_view, simclr_view, standardize, to_unit_float
from ssl_lightning.data.augment_streams import augment_options
from ssl_lightning.data.fixmatch_data import LABELED, UNLABELED
from ssl_lightning.errors import UserError
from ssl_lightning.evaluation.classifier import Classifier
from ssl_lightning.methods.registry import FIXMATCH
from ssl_lightning.schema_fields import DOWNSTREAM, setting

CHECKPOINT_FIXMATCH = "fixmatch_metrics"  # checkpoint entry: the mask rate and unlabelled loss of its epoch
STRONG_CROP_MIN_SCALE = 0.25  # between SimCLR's 0.08 and no crop: strong, but the object stays in view
STRONG_SOLARIZE_P = 0.2
CUTOUT_SIZE = 0.5  # side of the Cutout square, as a share of the image side (FixMatch: 16 px of 32)
CUTOUT_FILL = 0.5  # grey, as FixMatch's (127, 127, 127)


@dataclass(frozen=True)
class FixMatchParams:
    """The `fixmatch:` section of conf/experiment/fixmatch.yaml."""

    threshold: float = setting(0.95, "[0, 1]", "confidence a weak view's prediction needs to become a pseudo-label "
                               "(paper: 0.95)", DOWNSTREAM)
    mu: int = setting(3, ">=1", "unlabelled images per labelled image in a step (paper: 7)", DOWNSTREAM)
    lambda_u: float = setting(1.0, ">=0", "weight of the unlabelled loss (paper: 1)", DOWNSTREAM)


def fixmatch_params(config: dict[str, Any]) -> FixMatchParams:
    """The typed `fixmatch` section of a resolved config; one-line UserError for an unknown key or a bad value."""
    values = dict(config.get(FIXMATCH) or {})
    known = {f.name for f in fields(FixMatchParams)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise UserError(f"unknown config key(s) {[f'{FIXMATCH}.{k}' for k in unknown]} for +experiment={FIXMATCH}; "
                        f"valid: {sorted(known)}")
    threshold, mu, lambda_u = (values.get(name, getattr(FixMatchParams, name)) for name in ("threshold", "mu",
                                                                                             "lambda_u"))
    if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not 0 <= threshold <= 1:
        raise UserError(f"{FIXMATCH}.threshold={threshold} is invalid: use a number in [0, 1], e.g. 0.95")
    if isinstance(mu, bool) or not isinstance(mu, int) or mu < 1:
        raise UserError(f"{FIXMATCH}.mu={mu} is invalid: use a whole number >= 1 (unlabelled per labelled image)")
    if isinstance(lambda_u, bool) or not isinstance(lambda_u, int | float) or not lambda_u >= 0:
        raise UserError(f"{FIXMATCH}.lambda_u={lambda_u} is invalid: use a number >= 0, e.g. 1.0")
    return FixMatchParams(float(threshold), int(mu), float(lambda_u))


def check_fixmatch(experiment: str, protocol: str, config: dict[str, Any]) -> None:
    """Before anything trains: FixMatch trains the whole network with its unlabelled batches, so it is fine-tuning
    only (selected like every arm: under cv each fold trains with the unlabelled pool too)."""
    if experiment != FIXMATCH:
        return
    if protocol != "finetune":
        raise UserError(f"+experiment={FIXMATCH} trains the whole network on labelled and unlabelled images: "
                        f"downstream=finetune only, not downstream={protocol}")
    fixmatch_params(config)


def random_cutout(images: torch.Tensor, size: float = CUTOUT_SIZE, fill: float = CUTOUT_FILL,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Cutout (DeVries and Taylor 2017), batched: a square of `size` times the image side per image, centred
    anywhere (so it may be clipped at the border), filled with `fill`. Keeps shape and dtype."""
    batch, _, height, width = images.shape
    centre = torch.rand((batch, 2), device=images.device, generator=generator) * images.new_tensor([height, width])
    rows = torch.arange(height, device=images.device, dtype=images.dtype) + 0.5
    columns = torch.arange(width, device=images.device, dtype=images.dtype) + 0.5
    inside_rows = (rows[None, :] - centre[:, :1]).abs() < size * height / 2
    inside_columns = (columns[None, :] - centre[:, 1:]).abs() < size * width / 2
    inside = inside_rows[:, :, None] & inside_columns[:, None, :]
    return images.masked_fill(inside[:, None], fill)


def strong_view(images: torch.Tensor, generator: torch.Generator | None = None,
                hed_jitter: float = 0.0) -> torch.Tensor:
    """FixMatch's strong augmentation from the batched operations (module docstring); [0, 1] floats in and out."""
    view = simclr_view(images, strength=1.0, crop_min_scale=STRONG_CROP_MIN_SCALE, grayscale_p=0.2,
                       solarize_p=STRONG_SOLARIZE_P, generator=generator, hed_jitter=hed_jitter)
    return random_cutout(view, generator=generator)


def unlabeled_loss(weak_logits: torch.Tensor, strong_logits: torch.Tensor,
                   threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(masked pseudo-label cross-entropy averaged over all unlabelled images, share of images above threshold).

    The pseudo-labels are the argmax of the weak views' softmax, without gradient."""
    confidence, pseudo_labels = torch.softmax(weak_logits.detach().float(), dim=1).max(dim=1)
    mask = (confidence >= threshold).to(strong_logits.dtype)
    per_image = F.cross_entropy(strong_logits, pseudo_labels, reduction="none")
    return (per_image * mask).mean(), mask.mean()


class FixMatch(Classifier):
    """The downstream Classifier trained the FixMatch way; validation, testing and checkpoints are Classifier's."""

    def __init__(self, *args: Any, params: FixMatchParams = FixMatchParams(), **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.params = params
        self._epoch_sums = torch.zeros(2)  # this training epoch's (mask rate, unlabelled loss) summed over steps
        self._epoch_steps = 0

    def _weak(self, images: torch.Tensor, options: dict[str, Any]) -> torch.Tensor:
        return downstream_view(images, **options) if self.augment else images

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        images, labels = batch[LABELED]
        unlabelled = to_unit_float(batch[UNLABELED])
        options = augment_options(self)
        views = torch.cat([self._weak(to_unit_float(images), options), self._weak(unlabelled, options),
                           strong_view(unlabelled, **options)])
        logits = self.head(self.encoder(standardize(views)))  # one pass: BatchNorm sees all three, as in the paper
        count, unlabelled_count = len(labels), len(unlabelled)
        labelled_logits = logits[:count]
        weak_logits, strong_logits = logits[count:count + unlabelled_count], logits[count + unlabelled_count:]
        supervised = F.cross_entropy(labelled_logits, labels)
        unsupervised, mask_rate = unlabeled_loss(weak_logits, strong_logits, self.params.threshold)
        loss = supervised + self.params.lambda_u * unsupervised
        self.train_acc(labelled_logits, labels)
        self.log("downstream/train_loss", loss, on_step=False, on_epoch=True, prog_bar=True, sync_dist=True)
        self.log("downstream/train_acc", self.train_acc, on_step=False, on_epoch=True, prog_bar=True)
        self.log("fixmatch/supervised_loss", supervised, on_step=False, on_epoch=True, sync_dist=True)
        self.log("fixmatch/unlabeled_loss", unsupervised, on_step=False, on_epoch=True, sync_dist=True)
        self.log("fixmatch/mask_rate", mask_rate, on_step=False, on_epoch=True, prog_bar=True, sync_dist=True)
        self._epoch_sums = self._epoch_sums.to(loss.device) + torch.stack([mask_rate, unsupervised]).detach().float()
        self._epoch_steps += 1
        return loss

    def on_train_epoch_start(self) -> None:
        super().on_train_epoch_start()
        self._epoch_sums, self._epoch_steps = torch.zeros(2, device=self.device), 0

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Also keep this process's mask rate and unlabelled loss of the checkpoint's training epoch."""
        super().on_save_checkpoint(checkpoint)
        if self._epoch_steps:
            mask_rate, loss = (float(v) for v in self._epoch_sums / self._epoch_steps)
            checkpoint[CHECKPOINT_FIXMATCH] = {"mask_rate": mask_rate, "unlabeled_loss": loss}


def classifier_type(experiment: str, config: dict[str, Any]) -> type[Classifier] | partial[Classifier]:
    """The downstream module class of the run's arm: FixMatch with its parameters, or the plain Classifier."""
    if experiment != FIXMATCH:
        return Classifier
    return partial(FixMatch, params=fixmatch_params(config))


def fixmatch_results(config: dict[str, Any], checkpoint: Path, unlabeled_images: int) -> dict[str, Any]:
    """The results.json entry `fixmatch`: its parameters, the unlabelled pool's size, and the mask rate and
    unlabelled loss of the tested checkpoint's training epoch (null when the checkpoint has none)."""
    stored = torch.load(checkpoint, map_location="cpu", weights_only=True).get(CHECKPOINT_FIXMATCH) or {}
    return {FIXMATCH: {**asdict(fixmatch_params(config)), "unlabeled_images": int(unlabeled_images),
                       "mask_rate": stored.get("mask_rate"), "unlabeled_loss": stored.get("unlabeled_loss"),
                       "weak_view": "downstream_view", "strong_view": "simclr_view+solarize+cutout"}}
