"""Sweep report: every results.json below a folder -> results.md, results.csv, results_runs.csv, comparisons.csv
and PNG figures.

Run it with `python -m ssl_lightning.report <multirun or outputs folder> [--out DIR]`.
Modules: collect (read runs), columns (method/variant labels), configs (config keys that split columns),
aggregate (cells: mean, std, 95% CI), statistics (CIs, t-tests, Holm), comparisons (method vs baseline),
table (markdown), csvfile (csv), curves (TensorBoard scalars), figures (PNGs).
"""
