"""The one place that turns SI values into text for people. Nothing here computes a figure."""

from __future__ import annotations

import math


def seconds(x: float) -> str:
    """0.0415 -> '41.5 ms'."""
    if x is None or math.isnan(x):
        return "n/a"
    for scale, unit in ((1.0, "s"), (1e-3, "ms"), (1e-6, "us")):
        if abs(x) >= scale:
            return f"{x / scale:.3g} {unit}"
    return f"{x / 1e-9:.3g} ns"


def gigabytes(x: float) -> str:
    """Decimal gigabytes: 140e9 -> '140.0 GB'."""
    return f"{x / 1e9:,.1f} GB"


def rate(x: float, unit: str) -> str:
    """Decimal-prefixed rate: rate(3.35e12, 'B/s') -> '3.35 TB/s'."""
    for scale, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= scale:
            return f"{x / scale:.3g} {prefix}{unit}"
    return f"{x:.3g} {unit}"


def fraction(x: float) -> str:
    """0.8291 -> '82.9%'."""
    return f"{100 * x:.1f}%"


def usd(x: float) -> str:
    return f"${x:,.2f}" if x >= 0.01 else f"${x:.4f}"


def count(x: float) -> str:
    return f"{x:,.0f}"


def table(header: list[str], rows: list[list[str]]) -> str:
    """Plain monospaced table: first column left-aligned, the rest right-aligned."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    def line(r):
        return "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
    return "\n".join([line(header), "  ".join("-" * w for w in widths), *(line(r) for r in rows)])
