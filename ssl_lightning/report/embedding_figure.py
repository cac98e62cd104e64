"""2-D t-SNE maps of the test-set embeddings each cell saved (`embeddings.npz`), coloured by class.

One PNG per (data, protocol, label budget), `embedding_<data>_<protocol>_<5pct|10perclass>.png`, with one panel per
method (column of the results table). A panel shows the run with the lowest seed of that method; every panel uses the
same test images (cells draw the subsample from the split seed), at most `max_points` of them.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from ssl_lightning.report.budget import Budget  # noqa: E402
from ssl_lightning.report.collect import Run  # noqa: E402
from ssl_lightning.stages.embeddings import FILE_NAME, load_embeddings  # noqa: E402

DEFAULT_POINTS = 2000  # t-SNE of 2,000 points takes seconds per panel on 2 CPU cores; 5,000 about a minute


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "x"


def tsne_map(features: np.ndarray, seed: int = 0) -> np.ndarray:
    """N x 2 t-SNE coordinates (PCA to 50 dimensions first, as usual for speed and noise)."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    features = np.nan_to_num(features.astype(np.float32))
    if features.shape[1] > 50 and len(features) > 50:
        features = PCA(n_components=50, random_state=seed).fit_transform(features)
    perplexity = float(min(30.0, max(2.0, (len(features) - 1) / 3)))
    return TSNE(n_components=2, init="pca", learning_rate="auto", perplexity=perplexity,
                random_state=seed).fit_transform(features)


def _chosen_runs(runs: list[Run]) -> dict[tuple[str, str, Budget], dict[str, Run]]:
    """(data, protocol, budget) -> method label -> the finished run with embeddings and the lowest seed."""
    groups: dict[tuple[str, str, Budget], dict[str, Run]] = defaultdict(dict)
    for run in sorted(runs, key=lambda r: (r.seed is None, r.seed or 0, r.split_seed or 0, str(r.run_dir))):
        if run.ok and (run.run_dir / FILE_NAME).is_file():
            groups[(run.data, run.protocol, run.budget)].setdefault(run.label, run)
    return groups


def _palette(count: int) -> list:
    return list(matplotlib.colormaps["tab10" if count <= 10 else "tab20"].colors)


def _panel(ax, features: np.ndarray, labels: np.ndarray, max_points: int, colours: list) -> None:
    if len(labels) > max_points:
        keep = np.sort(np.random.default_rng(0).choice(len(labels), size=max_points, replace=False))
        features, labels = features[keep], labels[keep]
    if len(labels) < 5:
        ax.text(0.5, 0.5, "too few test images", ha="center", va="center", transform=ax.transAxes)
        return
    points = tsne_map(features)
    ax.scatter(points[:, 0], points[:, 1], c=[colours[int(k) % len(colours)] for k in labels], s=3, alpha=0.7,
               linewidths=0)


def embedding_figures(runs: list[Run], out_dir: Path, max_points: int = DEFAULT_POINTS) -> list[Path]:
    """Write one map per (data, protocol, budget) that has saved embeddings; returns the files written."""
    if max_points <= 0:
        return []
    written = []
    chosen = _chosen_runs(runs)
    for data, protocol, budget in sorted(chosen, key=lambda k: (k[0], k[1], k[2].order)):
        by_label = chosen[(data, protocol, budget)]
        labels = sorted(by_label, key=lambda name: by_label[name].column_order)
        loaded = {label: load_embeddings(by_label[label].run_dir / FILE_NAME) for label in labels}
        classes = loaded[labels[0]][2]
        colours = _palette(len(classes))
        columns = min(len(labels), 4)
        rows = -(-len(labels) // columns)
        figure = Figure(figsize=(4.2 * columns, 4.2 * rows + 0.8), layout="constrained")
        axes = figure.subplots(rows, columns, squeeze=False).ravel()
        for ax, label in zip(axes, labels, strict=False):
            features, class_ids, _ = loaded[label]
            _panel(ax, features, class_ids, max_points, colours)
            ax.set_title(f"{label} (seed {by_label[label].seed})", fontsize=10)
            ax.set_xticks([])
            ax.set_yticks([])
        for ax in axes[len(labels):]:
            ax.set_visible(False)
        handles = [Line2D([], [], marker="o", linestyle="", color=colours[i % len(colours)], label=name)
                   for i, name in enumerate(classes)]
        figure.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 10), fontsize=9)
        figure.suptitle(f"{data} · {protocol} · {budget.text} labels: t-SNE of the test-set "
                        "embeddings each classifier was tested with, coloured by class")
        path = out_dir / f"embedding_{_safe(data)}_{_safe(protocol)}_{_safe(budget.file_part)}.png"
        figure.savefig(path, dpi=100)
        written.append(path)
    return written
