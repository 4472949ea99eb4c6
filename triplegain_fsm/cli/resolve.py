"""Orders the exchange no longer knows: finding them, and resolving them by hand (audited).

An order the store holds as working but the exchange answers "unknown order" for (its
history was purged, or a paper account was replaced) makes every poll of its batch fail,
so every reconcile reports an error and exits 1, forever. `forgotten_orders` names them
(each txid asked alone); `resolve` ends one: only after the exchange has said, once more,
that it does not know it, the order is moved to CANCELLED through its machine with a
reason naming who resolved it, and a `order_resolved` alert says the same. Its position
then does what a cancelled order means for it (a leg is re-protected, an unfilled entry
abandoned), and the holdings comparison of reconciliation settles the rest: if the order
had in fact filled, the exchange's balances show it.
"""
from __future__ import annotations

import getpass
import socket
from typing import Any

from triplegain_fsm import alerts
from triplegain_fsm.cli.common import UsageError
from triplegain_fsm.enums import OrderStatus
from triplegain_fsm.kraken.errors import KrakenError, UnknownOrder
from triplegain_fsm.models import Order

ORDER_RESOLVED = "order_resolved"
_AT_EXCHANGE = frozenset({OrderStatus.OPEN.value, OrderStatus.PARTIALLY_FILLED.value,
                          OrderStatus.CANCEL_PENDING.value})


def who() -> str:
    """Who is resolving, as the audit trail records it."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):   # no user name in the environment nor the password database
        user = "unknown user"
    return f"triplegain-fsm reconcile --resolve, by {user}@{socket.gethostname()}"


def _describe(order: Order) -> dict[str, Any]:
    return {"order_id": order.id, "txid": order.external_id, "state": order.state, "role": order.role.value,
            "symbol": order.symbol, "side": order.side.value, "size": str(order.size),
            "position_id": order.position_id}


def forgotten_orders(core: Any) -> list[dict[str, Any]]:
    """The working orders the exchange says it does not know, each asked alone (a failed batch hides which)."""
    found = []
    for order in core.orders.get_open_orders():
        if order.external_id is None or order.state not in _AT_EXCHANGE:
            continue
        try:
            core.client.query_orders([order.external_id], trades=False)
        except UnknownOrder:
            found.append(_describe(order))
        except KrakenError:   # another failure is in the report already; it proves nothing about this order
            continue
    return found


def check(core: Any, ident: str) -> Order:
    """The order `ident` (order id or Kraken txid) if it can be resolved; a UsageError saying why not."""
    order = core.orders.get_order(ident) or core.orders.order_by_txid(ident)
    if order is None:
        raise UsageError(f"{ident}: no order with this id or Kraken txid in {core.config.storage.path}")
    if order.is_final:
        raise UsageError(f"{ident}: the order is {order.state}; there is nothing to resolve")
    if order.state not in _AT_EXCHANGE or order.external_id is None:
        raise UsageError(f"{ident}: the order is {order.state} (its placement is not settled); reconcile settles "
                         "it by its client order id, it cannot be resolved by hand")
    try:
        known = core.client.query_orders([order.external_id], trades=False)
    except UnknownOrder:
        return order
    status = known.get(order.external_id, {}).get("status", "?") if isinstance(known, dict) else "?"
    raise UsageError(f"{ident}: the exchange still knows {order.external_id} (status {status}); reconcile "
                     "applies what it says, there is nothing to resolve")


def resolve(core: Any, order: Order, by: str) -> dict[str, Any]:
    """End `order` as CANCELLED, with the reason and an alert naming `by`; its position reacts as to a cancel."""
    before = _describe(order)
    reason = f"resolved by hand: the exchange no longer knows {order.external_id} ({by})"
    with core.guard.unit() as unit:
        unit.touch(order)   # before the change: a rollback restores it
        order.error_message = reason
        unit.fire(order, "cancelled", reason=reason)
        core.reindex(order)
        core.positions.on_order_final(unit, order)
        unit.alert(ORDER_RESOLVED, alerts.HIGH,
                   f"order {order.id} ({order.role.value} {order.side.value} {order.size} {order.symbol}, txid "
                   f"{order.external_id}) was {before['state']}; {reason}. Treated as cancelled: if it filled, "
                   "reconciliation finds it in the holdings", order_id=order.id, txid=order.external_id,
                   position_id=order.position_id, previous_state=before["state"], resolved_by=by)
    return {**before, "resolved_as": order.state, "reason": reason}
