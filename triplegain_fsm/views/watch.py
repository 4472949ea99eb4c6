"""`triplegain-fsm status --watch`: the store redrawn every few seconds with rich, read-only.

Each refresh opens the store read-only, reads it and closes it again
(views.readonly: it never writes and leaves no -wal/-shm behind), so it can run
beside a bot for hours. Ctrl-C ends it with exit 0. Shown: open positions with
their protection state and where each leg lives, the working orders, the
protective work still pending (the core's retry queue), whatever the store
records in `meta` about the stream or poller, and the last alerts.
"""
from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from triplegain_fsm.views import fmt
from triplegain_fsm.views import store_views as sv
from triplegain_fsm.views.readonly import NotAStore, open_store

_LEG_STYLE = {"exchange": "green", "local": "yellow", "none": "red"}
_STATE_STYLE = {"PROTECTED": "green", "UNPROTECTED": "bold red", "OPENING": "cyan", "CLOSING": "yellow"}
_SEVERITY_STYLE = {"critical": "bold red", "high": "red", "medium": "yellow", "low": "dim"}


def run(path: Path, interval: float, *, console: Any = None, sleep: Callable[[float], None] = time.sleep,
        refreshes: int | None = None) -> int:
    """Redraw every `interval` seconds until Ctrl-C (or `refreshes` times, for tests); returns 0."""
    from rich.console import Console
    from rich.live import Live

    console = console or Console()
    count = 1
    live = Live(render(path, count), console=console, auto_refresh=False, transient=False)
    with contextlib.suppress(KeyboardInterrupt), live:  # Ctrl-C is how a person ends the watch
        while refreshes is None or count < refreshes:
            sleep(interval)
            count += 1
            live.update(render(path, count), refresh=True)
    if not console.is_terminal:
        console.line()
    console.print(f"[dim]stopped after {count} refreshes[/dim]")
    return 0


def render(path: Path, count: int) -> Any:
    """One frame: a rich renderable of the store as it is now (an error line if it cannot be read)."""
    from rich.console import Group
    from rich.text import Text

    stamp = datetime.now(timezone.utc).strftime("%H:%M:%S UTC")
    header = Text.assemble((f"{path}", "bold"), f"  refresh #{count} at {stamp}  (Ctrl-C to stop)")
    try:
        conn = open_store(path)
    except (NotAStore, sqlite3.Error) as exc:
        return Group(header, Text(f"cannot read the store: {exc}", style="red"))
    try:
        parts = [header, _counts(conn), _positions(conn), _orders(conn), _work(conn), _meta(conn), _alerts(conn)]
    except sqlite3.Error as exc:   # a writer between our reads: show it, the next refresh retries
        parts = [header, Text(f"store busy ({exc}); retrying", style="yellow")]
    finally:
        conn.close()
    return Group(*[p for p in parts if p is not None])


def _table(title: str, headers: list[str]) -> Any:
    from rich.table import Table

    table = Table(title=title, title_justify="left", expand=False)
    for header in headers:
        table.add_column(header, no_wrap=True)
    return table


def _row(table: Any, *cells: Any) -> None:
    """Add a row of plain text (a store's strings are never read as rich markup)."""
    from rich.text import Text

    table.add_row(*(c if isinstance(c, Text) else Text(str(c)) for c in cells))


def _styled(text: str, style: str) -> Any:
    from rich.text import Text

    return Text(text, style=style)


def _counts(conn: sqlite3.Connection) -> Any:
    from rich.text import Text

    counts = ", ".join(f"{r['n']} {r['state']}" for r in sv.state_counts(conn)) or "none"
    books = sv.position_books(conn)
    fees, pnl = sv.totals(books)
    closed = sum(1 for b in books if b.state == "CLOSED")
    return Text(f"orders by state: {counts}\npositions: {len(books) - closed} open, {closed} closed; "
                f"fees {fmt.money(fees, 4)}, realized P&L {fmt.money(pnl)}")


def _leg(level: Any, location: str | None, symbol: str, order: dict[str, Any] | None) -> Any:
    from rich.text import Text

    where = location or "none"
    detail = f" {order['state']}" if order else ""
    return Text(f"{fmt.pair_price(level, symbol)} @ {where}{detail}", style=_LEG_STYLE.get(where, ""))


def _positions(conn: sqlite3.Connection) -> Any:
    orders = {o["id"]: o for o in sv.orders(conn)}
    table = _table("Open positions", ["position", "symbol", "side", "size", "entry", "state", "stop-loss",
                                      "take-profit", "fees", "realized"])
    for p in sv.positions(conn, open_only=True):
        symbol = p["symbol"]
        _row(table, p["id"], symbol, p["side"], fmt.amount(p["size"]), fmt.pair_price(p["entry_price"], symbol),
                      _styled(p["state"], _STATE_STYLE.get(p["state"], "")),
                      _leg(p["stop_loss"], p["stop_loss_location"], symbol, orders.get(p["stop_loss_order_id"] or "")),
                      _leg(p["take_profit"], p["take_profit_location"], symbol,
                           orders.get(p["take_profit_order_id"] or "")),
                      fmt.money(p["total_fees"], 4), fmt.money(p["realized_pnl"]))
    return table


def _orders(conn: sqlite3.Connection) -> Any:
    table = _table("Working orders", ["order", "position", "role", "side", "type", "size", "filled", "price",
                                      "trigger", "state", "txid"])
    for o in sv.orders(conn, working_only=True):
        symbol = o["symbol"]
        _row(table, o["id"], o["position_id"] or "-", o["role"], o["side"], o["order_type"], fmt.amount(o["size"]),
                      fmt.amount(o["filled_size"]), fmt.pair_price(o["price"], symbol),
                      fmt.pair_price(o["stop_price"], symbol), o["state"], o["external_id"] or "-")
    return table


def _work(conn: sqlite3.Connection) -> Any:
    work = sv.pending_work(conn)
    if not work:
        return None
    table = _table("Protective work pending", ["position", "kind", "attempts", "next attempt", "last error"])
    for w in work:
        _row(table, w["position_id"], w["kind"], str(w["attempts"]), (w["next_attempt_at"] or "-")[:19],
                      w["last_error"] or "-")
    return table


def _meta(conn: sqlite3.Connection) -> Any:
    from rich.text import Text

    recorded = {k: v for k, v in sv.meta(conn).items() if k != "schema_version"}
    if not recorded:
        return Text("stream/poll state: not recorded in this store", style="dim")
    return Text("stream/poll state: " + ", ".join(f"{k}={v}" for k, v in recorded.items()))


def _alerts(conn: sqlite3.Connection) -> Any:
    table = _table("Last alerts", ["at", "alert", "severity", "position", "message"])
    for a in sv.last_alerts(conn):
        severity = a["severity"] or "-"
        _row(table, (a["at"] or "")[:19], a["alert_type"] or "-",
                      _styled(severity, _SEVERITY_STYLE.get(severity, "")), a["position_id"] or "-",
                      (a["message"] or "")[:80])
    return table
