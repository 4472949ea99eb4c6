"""The report's chart: the price series with every order event and level move drawn on it, as inline SVG.

matplotlib is the optional `report` extra and costs ~0.45 s to import, so it is
imported here, inside `require_matplotlib()`/`svg()`, never at package import.
Each order-event marker is its own artist with `gid="order-event-<seq>"` and each
level move `gid="level-move-<seq>"`, so the SVG names every marker it draws.
The SVG is cleaned for inlining: no XML prolog, no DOCTYPE, no metadata, no
namespace URLs (an HTML parser puts inline SVG in its namespace by itself).
"""
from __future__ import annotations

import io
import re
from typing import Any

from triplegain_fsm.views.report_data import Marker, ReportData

INSTALL_HINT = "the HTML report needs matplotlib: pip install 'triplegain-fsm[report]' (or pip install matplotlib)"

# kind -> (marker, colour, size, filled)
STYLES: dict[str, tuple[str, str, float, bool]] = {
    "entry placed": ("o", "#1f77b4", 7, False),
    "entry fill": ("^", "#2ca02c", 11, True),
    "partial fill": ("d", "#98df8a", 7, True),
    "stop_loss placed": ("_", "#d62728", 14, True),
    "stop_loss fill": ("X", "#d62728", 11, True),
    "take_profit placed": ("_", "#2ca02c", 14, True),
    "take_profit fill": ("*", "#2ca02c", 13, True),
    "close placed": ("o", "#7f7f7f", 7, False),
    "close fill": ("s", "#000000", 8, True),
    "rejected": ("x", "#9467bd", 8, True),
    "cancel requested": ("|", "#8c564b", 10, True),
    "cancelled": ("o", "#8c564b", 6, False),
}
DEFAULT_STYLE = (".", "#17becf", 8, True)


class MatplotlibMissing(RuntimeError):
    """The `report` extra is not installed."""


def require_matplotlib() -> Any:
    """pyplot on the Agg backend (no display), or MatplotlibMissing with the install command."""
    try:
        import matplotlib
    except ImportError:
        raise MatplotlibMissing(INSTALL_HINT) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def svg(data: ReportData) -> str:
    plt = require_matplotlib()
    with plt.rc_context({"svg.fonttype": "none", "svg.hashsalt": "triplegain-fsm"}):
        fig, ax = plt.subplots(figsize=(13, 6.5))
        try:
            _draw(ax, data)
            buffer = io.StringIO()
            fig.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None, "Creator": None})
        finally:
            plt.close(fig)
    return inline(buffer.getvalue())


def _draw(ax: Any, data: ReportData) -> None:
    times = [t.at for t in data.ticks]
    ax.plot(times, [float(t.price) for t in data.ticks], color="#4a4a4a", linewidth=0.9,  # float-ok: plot
            label=f"{data.symbol or ''} price", zorder=1)
    for line in data.lines:
        xs = [at for at, _ in line.points] + [line.end]
        ys = [float(level) for _, level in line.points]  # float-ok: plot coordinates
        ys.append(ys[-1])
        colour, style = ("#d62728", "-") if line.leg == "stop_loss" else ("#2ca02c", "--")
        ax.plot(xs, ys, drawstyle="steps-post", color=colour, linestyle=style, linewidth=0.8, alpha=0.6, zorder=2)
    for seq, at, level, leg in data.moves:
        ax.plot([at], [float(level)], marker=".", markersize=5, linestyle="none",  # float-ok: plot
                color="#d62728" if leg == "stop_loss" else "#2ca02c", gid=f"level-move-{seq}", zorder=3)
    for marker in data.markers:
        _marker(ax, marker)
    _legend(ax, data)
    ax.set_ylabel("price")
    ax.grid(True, linewidth=0.3, alpha=0.5)
    ax.set_title(f"{data.symbol or 'session'}: {len(data.ticks):,} ticks, {len(data.markers)} order events, "
                 f"{len(data.moves)} level moves")


def _marker(ax: Any, marker: Marker) -> None:
    shape, colour, size, filled = STYLES.get(marker.kind, DEFAULT_STYLE)
    if marker.kind == "entry fill" and marker.side == "sell":
        shape = "v"
    ax.plot([marker.at], [float(marker.price)], marker=shape, markersize=size, linestyle="none",  # float-ok: plot
            markeredgecolor=colour, markerfacecolor=colour if filled else "none", markeredgewidth=1.4,
            gid=f"order-event-{marker.seq}", zorder=4)


def _legend(ax: Any, data: ReportData) -> None:
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color="#4a4a4a", label="price"),
               Line2D([], [], color="#d62728", label="stop-loss level"),
               Line2D([], [], color="#2ca02c", linestyle="--", label="take-profit level")]
    for kind in dict.fromkeys(m.kind for m in data.markers):
        shape, colour, size, filled = STYLES.get(kind, DEFAULT_STYLE)
        handles.append(Line2D([], [], marker=shape, linestyle="none", markersize=size * 0.8, markeredgecolor=colour,
                              markerfacecolor=colour if filled else "none", label=kind))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)


_PROLOG = re.compile(r"<\?xml[^>]*\?>\s*|<!DOCTYPE[^>]*>\s*|<metadata>.*?</metadata>\s*", re.S)
_NAMESPACES = re.compile(r'\s+xmlns(:\w+)?="[^"]*"')


def inline(text: str) -> str:
    """An SVG document as an element to put inside HTML, without any URL."""
    text = _PROLOG.sub("", text)
    text = _NAMESPACES.sub("", text)
    return text.replace("xlink:href=", "href=")
