"""Equity and drawdown pictures for asset metadata: PNG in a Markdown data URI (the UI's Markdown renderer
allows ``data:`` image sources). Built on ``matplotlib.figure.Figure`` with the Agg canvas, not pyplot: no
global figure state, safe in any thread, no display needed.

matplotlib is imported on the first picture, not with the code location: loading it costs every run process
0.3-0.4 s, and only backtest runs draw. Fixed margins and plain tick labels instead of constrained layout and
mathtext halve the drawing time (0.4 s to 0.2 s a picture, measured)."""

from __future__ import annotations

import base64
import io

import numpy as np
import pandas as pd


def equity_chart_png(curve: pd.DataFrame, title: str) -> bytes:
    """``curve``: columns ts, equity, drawdown (a negative fraction), one row per valid bar."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter, PercentFormatter

    figure = Figure(figsize=(7.5, 4.0), dpi=80)
    figure.subplots_adjust(left=0.11, right=0.98, top=0.93, bottom=0.08, hspace=0.08)
    top, bottom = figure.subplots(2, 1, sharex=True, height_ratios=[2.2, 1])
    top.plot(curve["ts"], curve["equity"], color="#2a6fdb", linewidth=1.1)
    top.set_yscale("log")
    top.yaxis.set_major_locator(LogLocator(subs=_log_ticks(curve["equity"])))
    top.yaxis.set_major_formatter(FuncFormatter(lambda value, _: _compact(value)))
    top.yaxis.set_minor_formatter(NullFormatter())
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


def _log_ticks(equity: pd.Series) -> tuple[float, ...]:
    """Labelled ticks per decade, fewer the more decades the curve spans (a handful of labels in all)."""
    positive = equity[equity > 0]
    decades = float(np.log10(positive.max() / positive.min())) if len(positive) else 0.0
    for span, subs in ((0.5, tuple(range(1, 10))), (1.5, (1, 2, 3, 5)), (3.0, (1, 2, 5))):
        if decades < span:
            return tuple(float(s) for s in subs)
    return (1.0,)


def _compact(value: float) -> str:
    for scale, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if value >= scale:
            return f"{value / scale:g}{suffix}"
    return f"{value:g}"


def markdown_image(png: bytes, alt: str) -> str:
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})"
