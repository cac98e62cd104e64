"""Sweep report: every results.json below a folder -> results.md, results.csv and PNG figures.

Run it with `python -m ssl_lightning.report <multirun or outputs folder> [--out DIR]`.
Modules: collect (read runs), columns (method/variant labels), aggregate (mean/std per cell),
table (markdown), csvfile (csv), curves (TensorBoard scalars), figures (PNGs).
"""
