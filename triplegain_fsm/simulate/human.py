"""A human at the exchange, behind the core's back: what the core must notice, and never undo silently.

- `cancel_stop` / `cancel_entry`: one of the core's resting stops or entries is cancelled by hand.
- `foreign_order`: a limit order of the human's own rests at the exchange (far from the market).
- `foreign_position` (margin only): a leveraged market order of the human's own opens a margin
  position, on ETH/USD: a pair the simulated core does not trade. (On the core's own pair Kraken
  nets it with the core's rows. The core refuses margin entries beside a foreign position that
  reconciliation has seen, and a core position netted away entirely vanishes with an alert; one
  netted away in part stays alerted drift, which the exposure invariant here does not model.)
- `close_foreign` (margin only): the human closes what their orders still hold, by an opposite
  leveraged market order.

Every order the human places joins `World.foreign`: the invariants leave those orders out, and
take what their leveraged trades hold out of the exchange's margin exposure (the core must report
it as drift, not adopt or flatten it).
"""
from __future__ import annotations

from decimal import Decimal
from typing import Any

from triplegain_fsm.enums import OrderRole
from triplegain_fsm.paper import KrakenRejection, PaperExchange
from triplegain_fsm.paper.params import parse_add_order
from triplegain_fsm.simulate.invariants import foreign_margin
from triplegain_fsm.simulate.world import World

PAIR = "XXBTZUSD"
FOREIGN_PAIR = "XETHZUSD"


def act(world: World, core: Any, params: dict[str, Any]) -> bool:
    """Do what `params["what"]` says; False when there was nothing to do it to."""
    what = params["what"]
    if what == "foreign_order":
        return _place(world, {"type": "buy", "ordertype": "limit", "volume": "0.01", "price": "20000"})
    if what == "foreign_position":
        return _place(world, {"type": params["side"], "ordertype": "market", "volume": f"{params['volume']:f}",
                              "leverage": "2"}, FOREIGN_PAIR)
    if what == "close_foreign":
        held = foreign_margin(world.paper.trades(), world.foreign).get(FOREIGN_PAIR, Decimal(0))
        if not held:
            return False
        return _place(world, {"type": "sell" if held > 0 else "buy", "ordertype": "market",
                              "volume": f"{abs(held):f}", "leverage": "2"}, FOREIGN_PAIR)
    role = OrderRole.STOP_LOSS if what == "cancel_stop" else OrderRole.ENTRY
    return cancel_one(world.paper, core, role, params["pick"])


def cancel_one(paper: PaperExchange, core: Any, role: OrderRole, pick: float) -> bool:
    """Cancel one of the core's resting orders of `role` at the exchange (`pick` in [0, 1) says which)."""
    open_at_exchange = paper.open_orders()
    targets = sorted(o.external_id for o in core.orders.working_orders()
                     if o.role is role and o.external_id is not None and o.external_id in open_at_exchange)
    if not targets:
        return False
    paper.engine.cancel_order(txid=targets[int(pick * len(targets))])
    return True


def _place(world: World, fields: dict[str, str], pair: str = PAIR) -> bool:
    try:
        placed = world.paper.engine.add_order(parse_add_order({"pair": pair, **fields}))
    except KrakenRejection:   # the exchange refused the human too (e.g. a market in limit-only mode)
        return False
    world.foreign.update(placed["txid"])
    return True
