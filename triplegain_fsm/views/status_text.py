"""`triplegain-fsm status [--all]` as text: working orders, open positions, and with --all the closed ones,
their P&L and fees, totals, and alert counts by type and severity."""
from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import TextIO

from triplegain_fsm.views import fmt
from triplegain_fsm.views import store_views as sv
from triplegain_fsm.views.text import table


def print_status(conn: sqlite3.Connection, path: Path, out: TextIO, *, show_all: bool = False) -> None:
    orders = sv.orders(conn, working_only=True)
    positions = sv.positions(conn, open_only=True)
    counts = sv.state_counts(conn)
    books = sv.position_books(conn)
    closed = [b for b in books if b.state == "CLOSED"]
    print(f"store: {path}", file=out)
    print("orders by state: " + (", ".join(f"{r['n']} {r['state']}" for r in counts) or "none"), file=out)
    print(f"\nOpen orders ({len(orders)})", file=out)
    table(["order", "position", "role", "side", "type", "size", "filled", "price", "trigger", "state", "txid"],
          [(o["id"], o["position_id"] or "-", o["role"], o["side"], o["order_type"], fmt.amount(o["size"]),
            fmt.amount(o["filled_size"]), fmt.money(o["price"]), fmt.money(o["stop_price"]), o["state"],
            o["external_id"] or "-") for o in orders], out, right=[5, 6, 7, 8])
    print(f"\nOpen positions ({len(positions)}; {len(closed)} closed)", file=out)
    table(["position", "symbol", "side", "size", "entry", "stop", "(where)", "target", "(where)", "state",
           "fees", "realized"],
          [(p["id"], p["symbol"], p["side"], fmt.amount(p["size"]), fmt.money(p["entry_price"]),
            fmt.money(p["stop_loss"]), p["stop_loss_location"], fmt.money(p["take_profit"]),
            p["take_profit_location"], p["state"], fmt.money(p["total_fees"]), fmt.money(p["realized_pnl"]))
           for p in positions], out, right=[3, 4, 5, 7, 10, 11])
    if show_all:
        _print_books(conn, closed, books, out)


def _print_books(conn: sqlite3.Connection, closed: list[sv.PositionBook], books: list[sv.PositionBook],
                 out: TextIO) -> None:
    print(f"\nClosed positions ({len(closed)})", file=out)
    table(["position", "symbol", "side", "size", "entry", "exit", "fees", "realized P&L", "ended by", "closed at"],
          [(b.id, b.symbol, b.side, fmt.amount(b.size), fmt.pair_price(b.entry, b.symbol),
            fmt.pair_price(b.exit, b.symbol), fmt.money(b.fees, 4), fmt.money(b.pnl), b.ended_by,
            (b.closed_at or "-")[:19]) for b in closed], out, right=[3, 4, 5, 6, 7])
    fees, pnl = sv.totals(books)
    closed_fees, closed_pnl = sv.totals(closed)
    print("\nTotals", file=out)
    table(["", "closed", "all positions"], [
        ("positions", str(len(closed)), str(len(books))),
        ("fees", fmt.money(closed_fees, 4), fmt.money(fees, 4)),
        ("realized P&L (net of fees)", fmt.money(closed_pnl), fmt.money(pnl)),
    ], out, right=[1, 2])
    alerts = sv.alert_counts(conn)
    print(f"\nAlerts ({sum(a['n'] for a in alerts)})", file=out)
    table(["alert", "severity", "count"], [(a["alert_type"] or "-", a["severity"] or "-", a["n"]) for a in alerts],
          out, right=[2])
