"""Typed data settings, built once from the Hydra config at the edge (pipeline.run)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from ssl_lightning.data import registry
from ssl_lightning.data.groups import parse_rule
from ssl_lightning.errors import UserError
from ssl_lightning.schema_fields import (
    BOTH,
    DOWNSTREAM,
    MAX_SEED,
    NEITHER,
    SEED,
    SEEDS,
    Valid,
    field_problems,
    integer,
    setting,
)

# 512 images of 32 x 32 px: evaluation batches hold at most this many pixels, so a 224 px cell evaluates 10 images
# at a time instead of 512 (whose activations made up most of a 3 GB peak at 224 px; issue 21).
EVAL_BATCH_PIXELS = 512 * 32 * 32
LOADING = "how images are read or batched, not which"


def eval_batch(limit: int, pixels: int | None, height: int, width: int) -> int:
    """Images per validation/test batch: `limit`, or fewer so a batch holds at most `pixels` pixels (>= 1)."""
    if pixels is None:
        return int(limit)
    return max(1, min(int(limit), int(pixels) // max(1, height * width)))


@dataclass(frozen=True)
class DataConfig:
    """Everything a loader, the fraction sampler and the DataModules need to know."""

    name: str = setting("fashion_mnist", "", "the data set (data=<name> sets it)", BOTH)
    root: str | None = setting(None, "", "where the files are; null = the data set's default place", BOTH)
    fraction: float = setting(1.0, "(0, 1]", "share of the labelled training pool used downstream, e.g. 0.25",
                              DOWNSTREAM)
    labels_per_class: int | None = setting(None, ">=1", "label budget by count (N labelled images per class); set "
                                           "it with fraction 1.0", DOWNSTREAM)
    split_seed: int = setting(0, SEED, "draws the nested label subsets (conf: ${seed})", DOWNSTREAM)
    split_seeds: tuple[int, ...] | None = setting(None, SEEDS, "frozen probes: several label splits this one cell "
                                                  "evaluates in turn, each its own run in <cell>/split_<seed>/",
                                                  DOWNSTREAM)
    val_seed: int | None = setting(None, SEED, "carves the validation pool (and so the pretext pool); null = "
                                   "split_seed (conf: ${seed})", BOTH)
    val_split: float = setting(0.1, "[0, 1)", "stratified share of the training data kept as the validation pool",
                               BOTH)
    val_per_label: float | None = setting(0.2, ">0", "validation images each fraction selects on, per labelled "
                                          "image (nested; null = the whole pool)", DOWNSTREAM)
    test_split: float = setting(0.2, "(0, 1)", "imagefolder without train/ and test/: stratified test share", BOTH)
    test_split_seed: int = setting(42, SEED, "imagefolder: the train/test split (the original study used 42); "
                                   "seeds test_folds too", BOTH)
    test_folds: int | None = setting(None, "", "imagefolder/manifest: K folds of whole groups (patients), each "
                                     "tested once in its own run <cell>/fold_<k>/; null = one test split", BOTH)
    test_fold: int | None = setting(None, "", "set per fold run by test_folds (or given: run that fold only)", BOTH)
    image_size: int | None = setting(None, ">=8", "resize to a square of this many pixels", BOTH)
    include: str | None = setting(None, "", "imagefolder: glob inside each class folder, e.g. '**/x40/*.png'", BOTH)
    group_by: str = setting("auto", "", "patients/slides kept whole by every split: auto | none | folder:<k> | a "
                            "regex whose first group is the id", BOTH)
    manifest: str | None = setting(None, "", "data=manifest: CSV with columns path,label[,group,split]", BOTH)
    balance: bool = setting(False, "", "cut every class's labelled candidates down to the smallest class",
                            DOWNSTREAM)
    download: bool = setting(True, "", "let torchvision download when the files are not found", NEITHER,
                             "fetches missing files; the files are the data set's either way")
    on_bad_image: str = setting("error", "error|skip", "an unreadable image stops the run or is left out", NEITHER,
                                "a run reads the same images or stops (error) / leaves out unreadable ones (skip)")
    eval_batch_size: int = setting(512, ">=1", "validation/test batch size", NEITHER, LOADING)
    eval_batch_pixels: int | None = setting(EVAL_BATCH_PIXELS, ">=1", "and at most this many pixels per eval batch "
                                            "(512 x 32 x 32: 10 images at 224 px); null: no cap", NEITHER,
                                            LOADING)
    hed_jitter: float = setting(0.0, "[0, 1)", "H&E stain jitter t in every training augmentation (0.05 light, "
                                "0.2 strong); 0 = off", BOTH)
    num_workers: int = setting(0, ">=0", "DataLoader workers (batches are index gathers: 0 is fastest on 2 cores)",
                               NEITHER, LOADING)
    pin_memory: bool = setting(False, "", "pinned host memory for GPU copies", NEITHER, LOADING)
    decode_workers: int | None = setting(None, ">=1", "folders: processes decoding into the image store; null = "
                                         "all cores", NEITHER, LOADING)
    max_image_pixels: int | None = setting(None, ">=1", "width x height above which a file is a bad image (null: "
                                           "Pillow's 89.5 M bomb limit)", NEITHER,
                                           "a run reads the same images or stops (error) / leaves out oversized ones "
                                           "(skip)")
    image_cache: str | None = setting(None, "", "set from paths.cache (<cache>/images); null = decode folders into "
                                      "memory", NEITHER, "where decoded pixels are kept")
    # synthetic only (conf/data/synthetic.yaml)
    num_classes: int = setting(4, ">=2", "synthetic: classes", BOTH)
    train_size: int = setting(512, ">=1", "synthetic: training images", BOTH)
    test_size: int = setting(128, ">=1", "synthetic: test images", BOTH)
    channels: int = setting(3, Valid(lambda v: integer(v) in (1, 3), "1 or 3"), "synthetic: image channels", BOTH)
    synthetic_seed: int = setting(0, SEED, "synthetic: the seed the images are drawn with", BOTH)

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
        if self.on_bad_image not in ("error", "skip"):
            raise UserError(f"data.on_bad_image={self.on_bad_image!r} is not one of ['error', 'skip']")
        problems = field_problems(self, "data")  # every range its fields declare
        if problems:
            raise UserError("; ".join(problems))
