"""Typed data settings, built once from the Hydra config at the edge (pipeline.run)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from ssl_lightning.data import registry
from ssl_lightning.data.groups import parse_rule
from ssl_lightning.errors import UserError

MAX_SEED = 2**32 - 1  # numpy's and Lightning's seed range (config/validation.py checks every *seed key with it)

# 512 images of 32 x 32 px: evaluation batches hold at most this many pixels, so a 224 px cell evaluates 10 images
# at a time instead of 512 (whose activations made up most of a 3 GB peak at 224 px; issue 21).
EVAL_BATCH_PIXELS = 512 * 32 * 32


def eval_batch(limit: int, pixels: int | None, height: int, width: int) -> int:
    """Images per validation/test batch: `limit`, or fewer so a batch holds at most `pixels` pixels (>= 1)."""
    if pixels is None:
        return int(limit)
    return max(1, min(int(limit), int(pixels) // max(1, height * width)))


@dataclass(frozen=True)
class DataConfig:
    """Everything a loader, the fraction sampler and the DataModules need to know."""

    name: str = "fashion_mnist"
    root: str | None = None
    fraction: float = 1.0
    labels_per_class: int | None = None  # a label budget by count instead of a fraction (exclusive with it)
    split_seed: int = 0
    split_seeds: tuple[int, ...] | None = None  # frozen probes: several label splits evaluated in one process
    val_seed: int | None = None  # carves the validation pool (and so the pretext pool); None = split_seed
    val_split: float = 0.1
    val_per_label: float | None = 0.2
    test_split: float = 0.2
    test_split_seed: int = 42
    test_folds: int | None = None  # patient-level cross-validation: K test folds of whole groups, each its own run
    test_fold: int | None = None  # set per fold run by data.test_folds (or given: run that fold only)
    image_size: int | None = None
    include: str | None = None
    group_by: str = "auto"  # auto | none | folder:<k> | a regex whose first group is the group id (data/groups.py)
    manifest: str | None = None  # data=manifest: the CSV file (columns path,label and optional group,split)
    balance: bool = False
    download: bool = True
    on_bad_image: str = "error"
    eval_batch_size: int = 512
    eval_batch_pixels: int | None = EVAL_BATCH_PIXELS  # caps eval batches by image area; None = no cap
    hed_jitter: float = 0.0  # H&E stain jitter strength t in every training augmentation (data/stain.py); 0 = off
    num_workers: int = 0
    pin_memory: bool = False
    decode_workers: int | None = None  # folders: processes decoding into the image store; None = cores available
    max_image_pixels: int | None = None  # bigger images are bad images (on_bad_image); None = Pillow's bomb limit
    image_cache: str | None = None  # set from paths.cache (<cache>/images); None = decode folders into memory
    # synthetic only
    num_classes: int = 4
    train_size: int = 512
    test_size: int = 128
    channels: int = 3
    synthetic_seed: int = 0

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> DataConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise UserError(f"unknown data option(s) {unknown}; valid options: {sorted(known)}")
        if isinstance(values.get("split_seeds"), list | tuple):
            values = {**values, "split_seeds": tuple(values["split_seeds"])}
        config = cls(**values)
        config.validate()
        return config

    def _validate_split_seeds(self) -> None:
        seeds = self.split_seeds
        if seeds is None:
            return
        example = "e.g. data.split_seeds=[0,1,2,3,4,5,6,7,8,9]"
        if (not isinstance(seeds, tuple) or not seeds
                or any(isinstance(s, bool) or not isinstance(s, int) or not 0 <= s <= MAX_SEED for s in seeds)):
            raise UserError(f"data.split_seeds={list(seeds) if isinstance(seeds, tuple) else seeds} must be a "
                            f"non-empty list of whole numbers in [0, {MAX_SEED}] like data.split_seed ({example}) "
                            "or null")
        if len(set(seeds)) != len(seeds):
            raise UserError(f"data.split_seeds={list(seeds)} repeats a seed; each label split is one run, list each "
                            "seed once")
        if self.val_seed is None:
            raise UserError("data.split_seeds needs a fixed data.val_seed (default ${seed}): with val_seed=null each "
                            "split seed would carve its own validation pool and so need its own encoder; set "
                            "data.val_seed or sweep data.split_seed=0,1,... instead")

    def _validate_test_folds(self) -> None:
        folds, fold = self.test_folds, self.test_fold
        if folds is None:
            if fold is not None:
                raise UserError(f"data.test_fold={fold} names one fold of data.test_folds, which is null; set "
                                "data.test_folds=K (e.g. 5) too, or drop data.test_fold")
            return
        if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
            raise UserError(f"data.test_folds={folds} must be a whole number >= 2 (e.g. 5: every patient tested once "
                            "across 5 runs) or null (one test split, data.test_split)")
        spec = registry.find(self.name)  # test_split="drawn" (registry.py): data.test_folds can deal it in folds
        if spec is None or not spec.drawn_test_split:
            raise UserError(f"data.test_folds={folds}: data={self.name} has a fixed test split (the data set's own); "
                            "cross-validation of the test split needs data=imagefolder or data=manifest whose test "
                            "split is drawn here (data.test_split)")
        if fold is not None and (isinstance(fold, bool) or not isinstance(fold, int) or not 0 <= fold < folds):
            raise UserError(f"data.test_fold={fold} is not a fold of data.test_folds={folds}: use 0 to {folds - 1}, "
                            "or null for all of them")

    @property
    def validation_seed(self) -> int:
        """The seed the validation pool is carved with."""
        return int(self.split_seed if self.val_seed is None else self.val_seed)

    def validate(self) -> None:
        parse_rule(self.group_by)
        self._validate_split_seeds()
        self._validate_test_folds()
        if self.labels_per_class is not None:
            count = self.labels_per_class
            if isinstance(count, bool) or not isinstance(count, int) or count < 1:
                raise UserError(f"data.labels_per_class={count} must be a whole number >= 1 (or null: use "
                                "data.fraction)")
            if float(self.fraction) != 1.0:
                raise UserError(f"data.labels_per_class={count} and data.fraction={self.fraction} both set the label "
                                "budget; keep data.fraction=1.0 with labels_per_class, or set labels_per_class=null")
        if self.manifest and self.name != "manifest":  # else silently ignored: another data set would train
            raise UserError(f"data.manifest is read only with data=manifest; add data=manifest (data={self.name} "
                            "reads its own files)")
        if self.name == "manifest" and not self.manifest:
            raise UserError("data=manifest needs data.manifest=/path/to/file.csv (columns path,label[,group,split])")
        if not 0.0 < float(self.fraction) <= 1.0:
            raise UserError(f"data.fraction={self.fraction} is outside (0, 1]; use e.g. data.fraction=0.25")
        if not 0.0 <= float(self.val_split) < 1.0:
            raise UserError(f"data.val_split={self.val_split} must be in [0, 1); use e.g. data.val_split=0.1")
        if self.val_per_label is not None and not float(self.val_per_label) > 0:
            raise UserError(f"data.val_per_label={self.val_per_label} must be positive (or null for the whole "
                            "validation pool); use e.g. data.val_per_label=0.2")
        if not 0.0 < float(self.test_split) < 1.0:
            raise UserError(f"data.test_split={self.test_split} must be in (0, 1); use e.g. data.test_split=0.2")
        if self.on_bad_image not in ("error", "skip"):
            raise UserError(f"data.on_bad_image={self.on_bad_image!r} is not one of ['error', 'skip']")
        if self.decode_workers is not None and int(self.decode_workers) < 1:
            raise UserError(f"data.decode_workers={self.decode_workers} must be at least 1 (or null: all cores)")
        if int(self.num_workers) < 0:
            raise UserError(f"data.num_workers={self.num_workers} must be 0 or more")
        if int(self.eval_batch_size) < 1 or (self.eval_batch_pixels is not None and int(self.eval_batch_pixels) < 1):
            raise UserError(f"data.eval_batch_size={self.eval_batch_size} and data.eval_batch_pixels="
                            f"{self.eval_batch_pixels} must be >= 1 (eval_batch_pixels may be null: no area cap)")
        if not 0.0 <= float(self.hed_jitter) < 1.0:
            raise UserError(f"data.hed_jitter={self.hed_jitter} must be in [0, 1); Tellez et al. use 0.05 (light) "
                            "or 0.2 (strong)")
        if self.image_size is not None and int(self.image_size) < 8:
            raise UserError(f"data.image_size={self.image_size} is too small; use 8 or more")
