"""Never average different configurations: find the resolved-config keys that set the runs of one column apart.

Runs of one column (same data, protocol, method and pretext-data/init variant) may differ only in replicate
keys (the seed and any `split_seed`-named key), bookkeeping (paths, hydra, progress bar, logging cadence,
download, pretext-store reuse), another method's own section, and the cell axes (experiment,
data.fraction, data.labels_per_class). Any other difference splits the column: each run gets the differing keys
as a label part, e.g. `downstream.lr=0.01`, so no cell mixes two configurations.
"""

from __future__ import annotations

import json
from dataclasses import fields
from functools import cache
from typing import Any

from ssl_lightning.methods import registry

MISSING = "∅"  # the key is absent from this run's config (e.g. written by an older version)
_IGNORED_SECTIONS = {"paths", "hydra"}
_IGNORED_KEYS = {"seed", "experiment", "data.fraction", "data.labels_per_class"}
# run bookkeeping that cannot change a result: display, logging cadence, download permission, store reuse, and CPU
# threads (speed; at most float rounding), so runs from before trainer.threads existed share a column
_BOOKKEEPING = {"trainer.enable_progress_bar", "trainer.log_every_n_steps", "trainer.threads", "data.download",
                "pretext.reuse"}
_PRETEXT_SECTIONS = {"pretext", "pretext_data"}  # only read by methods with a pretext stage


def flatten(config: Any, prefix: str = "") -> dict[str, str]:
    """Nested mappings -> dotted keys; leaves (lists included) as compact JSON text so values compare exactly."""
    if isinstance(config, dict) and config:
        flat: dict[str, str] = {}
        for key, value in config.items():
            flat.update(flatten(value, f"{prefix}{key}."))
        return flat
    if not prefix:
        return {}
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return {prefix[:-1]: text.strip('"') if isinstance(config, str) else text}


def varies_by_design(key: str) -> bool:
    """Replicate axes (the seed, any key named split_seed* or val_seed: data.split_seed, data.val_seed, which
    follows `seed`; a fold run's `test_fold`, pooled by folds.py - `test_folds`, K, is a real setting) and the
    cell axes (experiment, data.fraction, data.labels_per_class): keys that differ between
    the runs of a sweep on purpose."""
    last = key.rsplit(".", 1)[-1]
    return key in _IGNORED_KEYS or last.startswith(("split_seed", "val_seed")) or last == "test_fold"


@cache
def _method_sections() -> dict[str, str]:
    """experiment -> the config section of its hyper-parameters, from the method registry."""
    return {name: spec.section for name, spec in registry.methods().items()}


@cache
def _unused_keys(experiment: str) -> frozenset[str]:
    """Keys of the method's own section that stay out of its pretext store key (plain rotation reads the rotation
    section but uses none of it): a reused encoder ignores them, so they cannot change the run's result."""
    spec = registry.methods().get(experiment)
    if spec is None:
        return frozenset()
    shaping = set(spec.params().identity())
    return frozenset(f"{spec.section}.{f.name}" for f in fields(spec.params) if f.name not in shaping)


def _ignored(key: str, experiment: str) -> bool:
    section = key.split(".", 1)[0]
    if section in _IGNORED_SECTIONS or key in _BOOKKEEPING or varies_by_design(key) or key in _unused_keys(experiment):
        return True
    sections = _method_sections()
    if section in set(sections.values()) and section != sections.get(experiment):
        return True  # another method's hyper-parameters do not touch this run
    return experiment in registry.NO_PRETEXT_STAGE and section in _PRETEXT_SECTIONS  # no pretext stage


def relevant(config: dict[str, Any] | None, experiment: str) -> dict[str, str]:
    """The flattened config keys that can change this run's result."""
    return {k: v for k, v in flatten(config or {}).items() if not _ignored(k, experiment)}


def differing_keys(configs: list[dict[str, str]]) -> list[str]:
    """Keys whose value (or presence) is not the same in every config, sorted."""
    keys = set().union(*configs) if configs else set()
    return sorted(k for k in keys if len({c.get(k, MISSING) for c in configs}) > 1)


NO_CONFIG = "no config recorded"


def config_variants(groups: dict[Any, list[tuple[Any, dict[str, str]]]]) -> dict[Any, tuple[str, ...]]:
    """group -> [(run id, relevant config)] to run id -> ('key=value', ...) over the keys that differ in its group.

    A run without any config (a hand-written or very old results.json) cannot be matched key by key: next to runs
    that have one it gets its own column, labelled NO_CONFIG, instead of every key of the others."""
    variants: dict[Any, tuple[str, ...]] = {}
    for members in groups.values():
        known = [config for _, config in members if config]
        keys = differing_keys(known)
        for run_id, config in members:
            if config or not known:
                variants[run_id] = tuple(f"{k}={config.get(k, MISSING)}" for k in keys)
            else:
                variants[run_id] = (NO_CONFIG,)
    return variants
