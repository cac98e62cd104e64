"""Sweep report: every results.json below a folder -> results.md, results.csv, results_runs.csv, comparisons.csv
and PNG figures.

Run it with `python -m ssl_lightning.report <multirun or outputs folder> [--out DIR] [--metric acc] [--margin 1]`.
Modules: collect (read runs through ssl_lightning/record.py), folds (a seed's outer test folds pooled into one run),
budget (fraction or labels per class), metric_choice
(--metric, from the declared test metrics), columns
(method/variant labels), configs (config keys that split columns), aggregate (cells: two-level mean and 95% CI over
seeds), statistics (CIs, t-tests, Holm, detectable difference), comparisons (method vs baseline), verdict (ahead,
behind, equivalent within --margin, inconclusive), improvement (probability of improvement), paragraph (the verdict
paragraph that ends each table), table
(markdown), csvfile (csv in and out), curves (TensorBoard scalars), figures (PNGs).
"""

import logging

# Before any module here imports matplotlib: with an unwritable home (a container, a cluster job) it logs "mkdir -p
# failed ..." and "Matplotlib created a temporary cache directory ..." at import, lines between the report's own
# that no user can act on (and that turned one-line errors into three). Its errors still show.
logging.getLogger("matplotlib").setLevel(logging.ERROR)
