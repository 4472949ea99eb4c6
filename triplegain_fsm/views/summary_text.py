"""The end-of-session summary `triplegain-fsm paper` prints: actions, orders, positions, totals, verdict."""
from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Any, TextIO

from triplegain_fsm.views.text import table


def _money(value: Any, places: int = 2) -> str:
    if value is None or value == "":
        return "-"
    return f"{Decimal(value).quantize(Decimal(1).scaleb(-places)):,}"


def _num(value: Any) -> str:
    """A size or price as exact text without trailing zeros (0.11630000 -> 0.1163)."""
    if value is None or value == "":
        return "-"
    return format(Decimal(value).normalize(), "f")



def print_summary(summary: Any, out: TextIO) -> None:
    print(f"\nActions ({len(summary.actions)})", file=out)
    table(["tick", "action", "outcome"], [(a.tick, a.action, a.outcome) for a in summary.actions], out,
          right=[0])
    print(f"\nOrders ({len(summary.orders)}): "
          + ", ".join(f"{n} {state}" for state, n in summary.orders_by_status.items()), file=out)
    table(["order", "position", "role", "side", "type", "size", "filled", "avg price", "trigger", "fee", "state"],
          [(o.id, o.position_id or "-", o.role.value, o.side.value, o.order_type.value, _num(o.size),
            _num(o.filled_size), _money(o.average_fill_price), _money(o.stop_price), _money(o.fee_amount, 4),
            o.state) for o in summary.orders], out, right=[5, 6, 7, 8, 9])
    _explain_rejections(summary.orders, out)
    print(f"\nPositions ({len(summary.positions)})", file=out)
    table(["position", "ref", "side", "size", "entry", "exit", "stop", "target", "ended by", "fees",
           "P&L core", "P&L exchange"],
          [(p.id, p.ref or "-", p.side, _num(p.entry_size), _money(p.entry_price), _money(p.exit_price),
            _money(p.stop_loss), _money(p.take_profit), p.exit_by + (" (trailed)" if p.trailing else ""),
            _money(p.fees), _money(p.core_pnl), _money(p.exchange_pnl)) for p in summary.positions], out,
          right=[3, 4, 5, 6, 7, 9, 10, 11])
    print("\nTotals", file=out)
    table(["", "core", "paper exchange"], [
        ("fees", _money(summary.total_fees, 4), _money(summary.exchange_fees, 4)),
        ("realized P&L (net of fees)", _money(summary.core_pnl), _money(summary.exchange_pnl)),
    ], out, right=[1, 2])
    alerts = ", ".join(f"{n} {kind}" for kind, n in summary.alerts_by_type.items()) or "none"
    print(f"\nalerts: {alerts}", file=out)
    print(f"orders that filled in parts: {summary.partially_filled_orders}", file=out)
    print(f"open orders left on the paper exchange: {summary.open_exchange_orders}", file=out)
    refused = summary.refused_actions
    print(f"scheduled actions: {len(summary.actions)}, refused or skipped: {len(refused)}", file=out)
    never = ", ".join(summary.never_protected) or "none"
    print(f"positions that held size and were never protected: {never}", file=out)
    print(f"{summary.ticks:,} ticks in {summary.elapsed_seconds:.2f} s ({summary.ticks_per_second:,.0f} ticks/s)",
          file=out)
    if summary.chaos is not None:
        print("", *summary.chaos.lines, sep="\n", file=out)
    ok = "OK: books agree to the cent, nothing left open, no critical alert"
    if summary.chaos is not None:
        ok = "OK: books agree to the cent, nothing left open, every invariant held through the chaos"
    verdict = ok if summary.ok else "FAILED: " + "; ".join(summary.problems())
    print(verdict, file=out)
    print(f"store: {summary.store_path}  (triplegain-fsm status --store ...; triplegain-fsm events --store ...)",
          file=out)


def _explain_rejections(orders: Iterable[Any], out: TextIO) -> None:
    """Why orders were rejected, grouped: on a spot account most are expected (see below)."""
    reasons: dict[tuple[str, str], int] = {}
    for order in orders:
        if order.state == "REJECTED":
            key = (order.role.value, order.error_message or "no reason recorded")
            reasons[key] = reasons.get(key, 0) + 1
    for (role, reason), count in sorted(reasons.items()):
        note = ""
        if role == "take_profit" and "Insufficient funds" in reason:
            note = " -> expected on spot: the stop-loss holds the coins, so the take-profit is watched locally"
        print(f"rejected: {count} {role}: {reason}{note}", file=out)
