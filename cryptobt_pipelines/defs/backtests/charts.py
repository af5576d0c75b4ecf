"""Equity and drawdown pictures for asset metadata: PNG in a Markdown data URI (the UI's Markdown renderer
allows ``data:`` image sources). Built on ``matplotlib.figure.Figure`` with the Agg canvas, not pyplot: no
global figure state, safe in any thread, no display needed."""

from __future__ import annotations

import base64
import io

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter


def equity_chart_png(curve: pd.DataFrame, title: str) -> bytes:
    """``curve``: columns ts, equity, drawdown (a negative fraction), one row per valid bar."""
    figure = Figure(figsize=(7.5, 4.0), dpi=80, layout="constrained")
    top, bottom = figure.subplots(2, 1, sharex=True, height_ratios=[2.2, 1])
    top.plot(curve["ts"], curve["equity"], color="#2a6fdb", linewidth=1.1)
    top.set_yscale("log")
    top.set_ylabel("equity")
    top.set_title(title, fontsize=10)
    top.grid(alpha=0.3)
    bottom.fill_between(curve["ts"], curve["drawdown"], 0, color="#d9534f", alpha=0.6, linewidth=0)
    bottom.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    bottom.set_ylabel("drawdown")
    bottom.grid(alpha=0.3)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def markdown_image(png: bytes, alt: str) -> str:
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})"
