"""Benchmarks run by `make bench` (`python -m benchmarks.run_all`).

Every benchmark module is runnable on its own (`python -m benchmarks.<name> [--tiny] [--repeats N]`),
prints the machine it ran on and its figures (min and median over repeats), and with `--json PATH`
writes the figures for `run_all`'s summary table (see `benchmarks.common.Figure`).
"""
