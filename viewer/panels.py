"""Text of the viewer's panels: each run's metrics and parameter count as a markdown table.

Numbers are printed with ``format_value`` so that a test can look for a run's exact numbers on the
page without knowing anything else about the layout.
"""

from __future__ import annotations

import math
from typing import Any, Iterator

__all__ = ["flatten_metrics", "format_value", "metrics_markdown"]


def format_value(value: Any) -> str:
    """Integers with thousands separators; floats with 4 decimals, or 3 significant digits in
    scientific notation when smaller than 1e-3 (Chamfer distances are ~1e-3 to 1e-5)."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if value != 0 and abs(value) < 1e-3:
            return f"{value:.3e}"
        return f"{value:.4f}"
    return str(value)


def flatten_metrics(metrics: dict, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """``(dotted key, value)`` for every number or string in a nested metrics dict, in file order.

    Lists (e.g. loss curves) are left out: they do not fit a table cell.
    """
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            yield from flatten_metrics(value, prefix=f"{name}.")
        elif isinstance(value, (int, float, str, bool)) or value is None:
            yield name, value


def metrics_markdown(name: str, num_parameters: int, summary: dict, metrics: dict, note: str = "") -> str:
    """One run's panel: the field's description, its exact parameter count and its metrics."""
    rows = [("parameters", format_value(int(num_parameters)))]
    rows += [(key, format_value(value)) for key, value in summary.items() if value is not None]
    rows += [(key, format_value(value)) for key, value in flatten_metrics(metrics)]
    table = "\n".join(f"| {key} | {value} |" for key, value in rows)
    text = f"**{name}**\n\n| metric | value |\n|---|---|\n{table}\n"
    return text + (f"\n{note}\n" if note else "")
