"""One self-contained HTML file for a session's store: the chart (inline SVG), the P&L table, the order events.

No network reference at all: no script, stylesheet, font or image is loaded from
anywhere; the chart is inline SVG and the style sheet is in the page.
`render(conn, title)` returns the text; `write(path, out)` is the CLI's entry.
"""
from __future__ import annotations

from html import escape
from pathlib import Path

from triplegain_fsm.views import fmt
from triplegain_fsm.views import store_views as sv
from triplegain_fsm.views.readonly import open_store
from triplegain_fsm.views.report_data import ReportData, load

_CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { padding: 2px 8px; border-bottom: 1px solid #ddd; text-align: left; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
tr.total td { font-weight: bold; border-top: 2px solid #888; }
.note { color: #666; }
svg { max-width: 100%; height: auto; }
"""


def write(store: Path, out: Path) -> ReportData:
    """Render the store at `store` into `out`; returns what was drawn (for the CLI's one-line summary)."""
    conn = open_store(store)
    try:
        data = load(conn)
        text = render(data, title=f"triplegain-fsm session: {store.name}", source=str(store))
    finally:
        conn.close()
    out.write_text(text, encoding="utf-8")
    return data


def render(data: ReportData, *, title: str, source: str) -> str:
    from triplegain_fsm.views import chart

    if data.ticks:
        figure = chart.svg(data)
    else:
        chart.require_matplotlib()
        figure = ('<p class="note">This store has no recorded prices (a <code>prices</code> table is written by '
                  '<code>triplegain-fsm paper</code> sessions), so there is no chart; the books follow.</p>')
    parts = [
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">', f"<title>{escape(title)}</title>",
        f"<style>{_CSS}</style>", "</head>", "<body>", f"<h1>{escape(title)}</h1>",
        f'<p class="note">store: {escape(source)}; {_span(data)}</p>',
        f'<div id="chart">{figure}</div>',
        "<h2>Positions</h2>", _positions(data),
        "<h2>Alerts</h2>", _alerts(data),
        f"<h2>Order events ({len(data.markers)})</h2>",
        '<p class="note">An order event is one state change of one order (a row of the store\'s '
        "<code>events</code> table with entity <code>order</code>); each has one marker on the chart, "
        "at the tick it happened and the price it concerns.</p>",
        _events(data), "</body>", "</html>", "",
    ]
    return "\n".join(parts)


def _span(data: ReportData) -> str:
    if not data.ticks:
        return "no prices recorded"
    first, last = data.ticks[0], data.ticks[-1]
    return (f"{len(data.ticks):,} ticks of {escape(data.symbol or '?')} from {first.at:%Y-%m-%d %H:%M:%S} "
            f"to {last.at:%H:%M:%S} UTC")


def _table(headers: list[str], rows: list[list[str]], numeric: set[int], total: list[str] | None = None) -> str:
    def cells(values: list[str], tag: str) -> str:
        return "".join(f'<{tag}{" class=n" if i in numeric else ""}>{escape(v)}</{tag}>'
                       for i, v in enumerate(values))

    body = [f"<tr>{cells(r, 'td')}</tr>" for r in rows]
    if total is not None:
        body.append(f'<tr class="total">{cells(total, "td")}</tr>')
    if not rows:
        body = [f'<tr><td colspan="{len(headers)}">(none)</td></tr>']
    return f"<table><tr>{cells(headers, 'th')}</tr>{''.join(body)}</table>"


def _positions(data: ReportData) -> str:
    headers = ["position", "side", "size", "entry", "exit", "stop", "target", "fees", "realized P&L", "close reason",
               "state"]
    rows = []
    for b in data.books:
        levels = [fmt.pair_price(v, b.symbol) for v in (b.entry, b.exit, b.stop_loss, b.take_profit)]
        rows.append([b.id, b.side, fmt.amount(b.size), *levels, fmt.money(b.fees, 4), fmt.money(b.pnl), b.ended_by,
                     b.state])
    fees, pnl = sv.totals(data.books)
    total = [f"total ({len(data.books)})", "", "", "", "", "", "", fmt.money(fees, 4), fmt.money(pnl), "", ""]
    return _table(headers, rows, {2, 3, 4, 5, 6, 7, 8}, total)


def _alerts(data: ReportData) -> str:
    rows = [[a["alert_type"] or "-", a["severity"] or "-", str(a["n"])] for a in data.alert_counts]
    return _table(["alert", "severity", "count"], rows, {2})


def _events(data: ReportData) -> str:
    rows = [[str(m.seq), str(m.tick), f"{m.at:%H:%M:%S}", m.order_id, m.role, m.kind,
             fmt.pair_price(m.price, data.symbol), m.text] for m in data.markers]
    return _table(["seq", "tick", "time", "order", "role", "event", "price", "reason"], rows, {0, 1, 6})
