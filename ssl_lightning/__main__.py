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

from ssl_lightning import sweep_status
from ssl_lightning.cell_threads import parallel_jobs, share_cores
from ssl_lightning.cli_checks import check_group_choices, group_options, route_method_overrides
from ssl_lightning.cli_errors import exit_with_user_error
from ssl_lightning.errors import UserError
from ssl_lightning.unknown_keys import check_known_keys

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
    from ssl_lightning import pipeline  # heavy imports after Hydra has parsed the command line

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        results = pipeline.run(cfg, run_dir)
    except UserError as error:
        exit_with_user_error(error, run_dir)
        return
    log.info("%s", _summary(results))
    log.info("results: %s | TensorBoard: tensorboard --logdir %s", run_dir / "results.json", run_dir / "tb")
    if results.get("status") != "ok" and HydraConfig.get().mode.name == "RUN":
        raise SystemExit(1)


def _with_default_profile(argv: list[str]) -> list[str]:
    """profile=paper on a CUDA machine, profile=cpu elsewhere, unless the user chose one."""
    if any(arg.startswith(("profile=", "+profile=", "~profile")) for arg in argv[1:]):
        return argv
    if any(arg in ("--help", "-h", "--hydra-help", "--info") for arg in argv[1:]):
        return argv
    import torch

    return [*argv, "profile=paper" if torch.cuda.is_available() else "profile=cpu"]


def entry() -> None:
    try:
        check_group_choices(sys.argv[1:], Path(CONFIG_DIR))
        sys.argv = [sys.argv[0], *route_method_overrides(sys.argv[1:], Path(CONFIG_DIR))]
        sys.argv = _with_default_profile(sys.argv)
        check_known_keys(sys.argv[1:], Path(CONFIG_DIR), set(group_options(Path(CONFIG_DIR))))
    except UserError as error:
        exit_with_user_error(error, None)
    # Inherited by the ranks Lightning re-launches (they run the sweep again): one sweep folder for all ranks.
    os.environ.setdefault("SSL_LIGHTNING_STARTED", time.strftime("%Y-%m-%d_%H-%M-%S"))
    main()
    if sweep_status.failed_cells:
        print(f"{len(sweep_status.failed_cells)} cell(s) of the sweep failed: "
              + ", ".join(sweep_status.failed_cells), file=sys.stderr)
        raise SystemExit(1)


if __name__ == "__main__":
    entry()
