"""The few-label study of docs/RESULTS.md under the new protocol, as one command: Fashion-MNIST at 1 / 5 / 10 / 25
labels per class, SimCLR and rotation (frozen probes: L-BFGS and k-NN, over `--splits` label splits per seed) against
the raw-pixel floor, and fine-tuned (the same encoders, reused from the store) against supervised from scratch (one
split per seed, `downstream.select=auto`, so cross-validated at these budgets), each over `--seeds` seeds; then the
report of all of it.

Each step is one real Hydra multirun of the suite, printed before it runs so the study can be repeated by hand; a
step whose sweep finished before with the same settings is skipped (re-run the script after a stop; cells resume
from the stores); one that finished with other settings (e.g. another `--seeds`) is refused, never reused. The
pretext budget is an argument because the study must compare encoders that learned something: at `profile=cpu`'s
4 epochs SimCLR's features sit at the pixel floor. A fine-tuned arm's sweep reuses its encoders from the store, so
`finetune_<arm>` runs after the frozen sweep of the same arm (or computes them itself).

    python -m benchmarks.few_label_study --out /tmp/few --seeds 10 --pretext-epochs 12
    python -m benchmarks.few_label_study --out /tmp/few_tiny --tiny        # seconds: synthetic data, smoke budgets
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from benchmarks.common import run_logged

BUDGETS = "1,5,10,25"


def steps(args: argparse.Namespace) -> dict[str, list[str]]:
    """Sweep name -> its overrides (without the sweep and cache folders)."""
    seeds = ",".join(str(s) for s in range(args.seeds))
    splits = "[" + ",".join(str(s) for s in range(args.splits)) + "]"
    common = [f"seed={seeds}", f"data.labels_per_class={args.budgets}", *args.overrides]
    if args.tiny:
        common += ["data=synthetic", "profile=smoke", "data.train_size=300", "data.test_size=60"]
    frozen = ["downstream=linear,knn", f"data.split_seeds={splits}"]
    return {
        "simclr": ["+experiment=simclr", f"pretext.epochs={args.pretext_epochs}", *frozen, *common],
        "rotation": ["+experiment=rotation", f"pretext.epochs={args.pretext_epochs}", *frozen, *common],
        "raw_pixels": ["+experiment=raw_pixels", *frozen, *common],
        **{f"finetune_{arm}": [f"+experiment={arm}", f"pretext.epochs={args.pretext_epochs}", *common]
           for arm in ("supervised", "simclr", "rotation")},
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="sweeps, logs and the report go here")
    parser.add_argument("--seeds", type=int, default=10, help="pretext seeds per arm (the few-label norm: >= 10)")
    parser.add_argument("--splits", type=int, default=10, help="label splits per seed for the frozen probes")
    parser.add_argument("--pretext-epochs", type=int, default=12)
    parser.add_argument("--budgets", default=BUDGETS, help="labels per class, comma-separated")
    parser.add_argument("--tiny", action="store_true", help="synthetic data and smoke budgets: checks the wiring")
    parser.add_argument("--steps", default=None,
                        help="comma-separated sweeps to run (default: all); two halves can run side by side "
                             "(trainer.threads=1): rotation,finetune_rotation and finetune_supervised,finetune_simclr")
    parser.add_argument("--no-report", action="store_true", help="skip the report (when another half still runs)")
    parser.add_argument("overrides", nargs="*", help="extra overrides for every sweep, e.g. trainer.threads=1")
    args = parser.parse_args(argv)
    if args.tiny:
        args.budgets, args.pretext_epochs = "1,5", 1
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    sweeps = steps(args)
    chosen = list(sweeps) if args.steps is None else args.steps.split(",")
    unknown = sorted(set(chosen) - set(sweeps))
    if unknown:
        parser.error(f"unknown step(s) {', '.join(unknown)}; choose from {', '.join(sweeps)}")
    for name in chosen:
        sweep, done = out / name, out / f"{name}.done"
        command = [sys.executable, "-m", "ssl_lightning", "-m", *sweeps[name], f"hydra.sweep.dir={sweep}",
                   f"paths.cache={out / 'cache'}"]
        if done.exists() and (sweep / "multirun.yaml").exists():
            if done.read_text() != shlex.join(command[1:]):  # a finished sweep of other settings: never reuse it
                parser.error(f"{sweep} holds a finished sweep run with other settings ({done.read_text()}); "
                             "choose another --out")
            print(f"{name}: done before ({sweep}), skipped", flush=True)
            continue
        run_logged(command, out / f"{name}.log")
        done.write_text(shlex.join(command[1:]))
    if args.no_report:
        return
    run_logged([sys.executable, "-m", "ssl_lightning.report", str(out), "--out", str(out / "report"),
                "--embedding-points", "0"], out / "report.log")


if __name__ == "__main__":
    main()
