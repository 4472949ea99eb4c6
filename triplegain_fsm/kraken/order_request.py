"""What the core asks Kraken to place: a small typed request, not 20 wire-named kwargs.

`kraken.params.add_order_params` is the one place that turns it into AddOrder's
wire fields (the F01 class of bug lives there and only there).
"""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import attrs

from triplegain_fsm.models import OrderSide, OrderType


@attrs.frozen
class Offset:
    """A trailing or limit offset relative to a trigger/last price: `+150`, `-10`, `+2%`."""

    amount: Decimal
    percent: bool = False
    sign: str = "+"   # "+" or "-"; trailing offsets must be "+"


@attrs.frozen
class OrderRequest:
    pair: str                              # Kraken altname, e.g. "XBTUSD"
    side: OrderSide
    order_type: OrderType
    volume: Decimal                        # base currency (quote currency when volume_in_quote)
    cl_ord_id: str                         # every order carries one: the idempotency key
    limit_price: Decimal | None = None     # limit and *-limit types
    trigger_price: Decimal | None = None   # stop-loss / take-profit (and their -limit variants)
    trailing_offset: Offset | None = None  # trailing-stop(-limit)
    limit_offset: Offset | None = None     # trailing-stop-limit
    leverage: int | None = None            # margin only; None or 1 = spot
    reduce_only: bool = False              # margin closes
    volume_in_quote: bool = False          # viqc: market BUY on spot only
    post_only: bool = False                # limit only
    time_in_force: str | None = None       # GTC | IOC | GTD
    deadline: datetime | None = None       # engine rejects after it: makes "not found" definite
    validate: bool = False                 # dry run: Kraken checks, places nothing
