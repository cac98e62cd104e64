"""Hydra entry point: `python -m ssl_lightning +experiment=<name> [overrides]` runs one cell; `-m` a grid."""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from ssl_lightning.cli import run_folder, sweep_status
from ssl_lightning.cli.cli_checks import check_group_choices, group_options, route_method_overrides
from ssl_lightning.cli.cli_errors import exit_with_user_error, failure_line
from ssl_lightning.cli.preflight import check_run, parse
from ssl_lightning.cli.unknown_keys import check_known_keys
from ssl_lightning.errors import UserError
from ssl_lightning.training.cell_threads import parallel_jobs, share_cores

log = logging.getLogger("ssl_lightning")
CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "conf")


def _summary(results: dict) -> str:
    if results.get("status") != "ok":
        return f"FAILED {results.get('experiment')} fraction={results.get('fraction')}: {results.get('error')}"
    reused = " (pretext reused)" if results.get("pretext_reused") else ""
    return (f"{results['experiment']} {results['data']} fraction={results['fraction']} seed={results['seed']}: "
            f"test_acc={100 * results['test_acc']:.2f}% test_loss={results['test_loss']:.4f}{reused}")


@hydra.main(config_path=CONFIG_DIR, config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    jobs = parallel_jobs(HydraConfig.get().launcher)
    if jobs is not None:
        share_cores(jobs)  # before torch starts its thread pool in this worker
    from ssl_lightning.stages import pipeline  # heavy imports after Hydra has parsed the command line

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    single = HydraConfig.get().mode.name == "RUN"
    try:
        results = pipeline.run(cfg, run_dir)
    except UserError as error:
        if single:
            exit_with_user_error(error, run_dir)  # nothing of this run left behind
            return
        # A check only this cell's data can make (data loading, its label split): the cell fails alone, named, and
        # the sweep goes on; its folder keeps the log and a failed results.json for the report.
        log.error("cell refused: %s", error)
        name = sweep_status.cell_name(list(HydraConfig.get().overrides.task), HydraConfig.get().job.get("num"))
        line = f"{name} failed: {' '.join(str(error).split())}"
        try:
            pipeline.record_refused_cell(cfg, run_dir, error)
        except (UserError, OSError) as unrecorded:  # e.g. a full disk: the sweep's exit code must still say so
            sweep_status.failed_cells.append(f"{line} (not recorded: {unrecorded})")
        print(f"error: {line}; the sweep goes on (log: {run_dir / 'ssl_lightning.log'})", file=sys.stderr, flush=True)
        return
    except OSError as error:  # e.g. a full disk while results are written: one line, not a traceback
        print(failure_line(f"{type(error).__name__}: {error}", run_dir), file=sys.stderr, flush=True)
        if single:
            raise SystemExit(1) from None
        return
    log.info("%s", _summary(results))
    nested = [part for part, key in (("fold_*", "test_folds"), ("split_*", "split_seeds")) if cfg.data.get(key)]
    written = run_dir.joinpath(*nested, "results.json")
    log.info("results: %s | TensorBoard: tensorboard --logdir %s", written, run_dir)
    if results.get("status") != "ok":
        print(failure_line(str(results.get("error")), run_dir), file=sys.stderr, flush=True)
        if single:
            raise SystemExit(1)


def _with_default_profile(argv: list[str]) -> list[str]:
    """profile=paper on a CUDA machine, profile=cpu elsewhere, unless the user chose one."""
    if any(arg in ("--help", "-h", "--hydra-help", "--info") for arg in argv[1:]):
        return argv
    if any(override.key_or_group == "profile" for override in parse([a for a in argv[1:] if not a.startswith("-")])):
        return argv
    import torch

    return [*argv, "profile=paper" if torch.cuda.is_available() else "profile=cpu"]


def checked_argv(argv: list[str]) -> list[str]:
    """The command line after every check that needs no training (UserError on the first problem): override
    syntax, group names, method sections, unknown keys, then every cell of the run or sweep composed and checked."""
    config_dir = Path(CONFIG_DIR)
    groups = set(group_options(config_dir))
    parse([arg for arg in argv if not arg.startswith("-")])  # a syntax slip is one line, before anything else
    check_group_choices(argv, config_dir)
    argv = route_method_overrides(argv, config_dir)
    argv = _with_default_profile(["ssl_lightning", *argv])[1:]
    check_known_keys(argv, config_dir, groups)
    check_run(argv, config_dir, groups)
    return argv


def entry(argv: list[str] | None = None) -> None:
    """`python -m ssl_lightning ...`; tests call it with argv in-process."""
    program = sys.argv[0] if sys.argv else "ssl_lightning"
    try:
        checked = checked_argv(list(sys.argv[1:] if argv is None else argv))
    except UserError as error:
        exit_with_user_error(error, None)
        return
    sys.argv = [program, *checked]
    sweep_status.remember_cells(checked)
    # Inherited by the ranks Lightning re-launches (they run the sweep again): one sweep folder for all ranks.
    os.environ.setdefault("SSL_LIGHTNING_STARTED", time.strftime("%Y-%m-%d_%H-%M-%S"))
    sweep_status.failed_cells.clear()
    run_folder.forget()
    main()
    if sweep_status.failed_cells:
        first = sweep_status.failed_cells[0]
        print(f"error: {len(sweep_status.failed_cells)} cell(s) of the sweep failed; first: {first}",
              file=sys.stderr, flush=True)
        raise SystemExit(1)


if __name__ == "__main__":
    entry()
