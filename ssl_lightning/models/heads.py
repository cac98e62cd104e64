"""Small heads on top of an encoder: classifiers and SimCLR's projector."""

from __future__ import annotations

from torch import nn


def mlp(in_dim: int, hidden_dim: int, out_dim: int) -> nn.Sequential:
    """Linear-BN-ReLU-Linear, SimCLR's projector and the optional non-linear classifier."""
    return nn.Sequential(
        nn.Linear(in_dim, hidden_dim, bias=False), nn.BatchNorm1d(hidden_dim), nn.ReLU(inplace=True),
        nn.Linear(hidden_dim, out_dim),
    )


def classifier_head(kind: str, in_dim: int, num_classes: int, hidden_dim: int = 512) -> nn.Module:
    """`linear` (default) or `mlp`."""
    if kind == "linear":
        return nn.Linear(in_dim, num_classes)
    if kind == "mlp":
        return mlp(in_dim, hidden_dim, num_classes)
    raise ValueError(f"unknown head {kind!r}")
