"""conf/schema/*.yaml: every section's keys at their dataclass defaults, generated, so conf/ holds presets only.

The config groups extend these files (`defaults: [/schema/<node>@<package>, _self_]`), so the composed config
has every key of its dataclasses (`downstream.k=10` is an override, not an addition, and unknown keys stay
unknown) while a group file writes only what differs from the schema. They are plain generated YAML rather than
ConfigStore entries: a ConfigStore must be filled in every process before its first compose (the CLI's checks, the
tests, report/missing.py, DDP workers), and filling it needs every method module imported first.

    python -m ssl_lightning.config.schema_files          # rewrite conf/schema/ (tests/test_schema.py: current)

Which keys a node holds is the composed config's contract, kept key for key: a key added to a protocol's section
would enter its work-folder key (config/identity.py) and re-run every stored cell.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from ssl_lightning.config.schema import default_values, sections

CONF = Path(__file__).resolve().parents[2] / "conf"
SYNTHETIC_ONLY = ("num_classes", "train_size", "test_size", "channels", "synthetic_seed")
SET_AT_RUN_TIME = ("test_fold", "image_cache")  # data.test_folds sets the fold; paths.cache the image store
_DOWNSTREAM_COMMON = ("protocol", "probe_layer", "monitor", "select", "cv_folds")
_TRAINED = ("head", "epochs", "patience", "min_steps", "lr_grid", "batch_size", "optimizer", "lr", "weight_decay",
            "momentum", "nesterov", "scheduler", "warmup_epochs", "step_milestones", "step_gamma", "augment",
            "limit_train_batches", "limit_val_batches")
# Each protocol's keys (k-NN trains nothing: no optimiser keys; `epochs` is every profile's preset).
DOWNSTREAM_KEYS = {
    "finetune": (*_DOWNSTREAM_COMMON, *_TRAINED),
    "linear": (*_DOWNSTREAM_COMMON, "solver", "penalty_grid", "penalty_patience", "max_iter", *_TRAINED),
    "knn": (*_DOWNSTREAM_COMMON, "k", "k_grid", "temperature", "metric", "epochs"),
}
# Each architecture's keys (compact's width and blocks mean nothing to a ResNet or a timm model).
BACKBONE_KEYS = {
    "compact": ("name", "stem", "width", "blocks", "stem_stride", "init"),
    "resnet": ("name", "stem", "init", "discard_loaded_stem", "input_size", "normalize"),
    "timm": ("name", "model", "init", "patch_size", "input_size", "normalize", "kwargs"),
}
PRETEXT_KEYS = ("epochs", "batch_size", "optimizer", "lr", "weight_decay", "momentum", "nesterov", "scheduler",
                "warmup_epochs", "step_milestones", "step_gamma", "exclude_norm_bias", "trust_coefficient", "reuse",
                "limit_train_batches", "limit_val_batches")
HEADER = "# Generated from the settings dataclasses by `python -m ssl_lightning.config.schema_files`: do not edit.\n"


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _pick(cls: type, names: tuple[str, ...] | None = None, leave_out: tuple[str, ...] = ()) -> dict[str, Any]:
    values = default_values(cls)
    return {name: _plain(values[name]) for name in (names or tuple(values)) if name not in leave_out}


def nodes() -> dict[str, dict[str, Any]]:
    """{conf/schema file stem: its values}."""
    found = sections()
    data = found["data"]
    out = {
        "suite": {**_pick(found[""]), "paths": _pick(found["paths"])},
        "data": _pick(data, leave_out=SYNTHETIC_ONLY + SET_AT_RUN_TIME),
        "data_synthetic": _pick(data, SYNTHETIC_ONLY),
        "trainer": _pick(found["trainer"]),
        "pretext": _pick(found["pretext"], PRETEXT_KEYS),
    }
    for architecture, names in BACKBONE_KEYS.items():
        out[f"backbone_{architecture}"] = _pick(found["backbone"], names)
    for protocol, names in DOWNSTREAM_KEYS.items():
        out[f"downstream_{protocol}"] = _pick(found["downstream"], names)
    for section in ("fixmatch", "raw_pixels", *sorted(s for s in found if s not in out and s not in (
            "", "data", "pretext_data.*", "backbone", "trainer", "pretext", "downstream", "paths"))):
        out[section] = _pick(found[section])
    return out


def render(values: dict[str, Any]) -> str:
    return HEADER + OmegaConf.to_yaml(OmegaConf.create(values))


def write(conf: Path = CONF) -> list[Path]:
    folder = conf / "schema"
    folder.mkdir(exist_ok=True)
    written = []
    for name, values in nodes().items():
        path = folder / f"{name}.yaml"
        path.write_text(render(values))
        written.append(path)
    return written


if __name__ == "__main__":
    for path in write(Path(sys.argv[1]) if len(sys.argv) > 1 else CONF):
        print(path)
