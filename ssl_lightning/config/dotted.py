"""Dotted keys ('data.fraction') looked up in a nested config dict."""

from __future__ import annotations

from typing import Any


def lookup(config: dict[str, Any], dotted: str) -> tuple[bool, Any]:
    """(True, value) when every part of `dotted` is present; (False, None) otherwise (None may be a real value)."""
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node
