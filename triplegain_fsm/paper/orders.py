"""The engine's records: a resting or finished order, and one fill (a trade).

`PaperOrder` is mutable and only the engine changes it, under the engine's lock;
the outside world sees Kraken-shaped copies made by `views`. Money fields are
exact Decimals; rounding to Kraken's decimals happens only when rendering.
"""
from __future__ import annotations

from decimal import Decimal

import attrs

from triplegain_fsm.enums import OrderSide, OrderType
from triplegain_fsm.paper.pairs import PairSpec
from triplegain_fsm.paper.params import LIMIT_TYPES, TRIGGERED_TYPES, CloseSpec, PriceExpr

ZERO = Decimal(0)
ALWAYS = (Decimal("Infinity"), None)          # wake levels of an order every tick must visit
LIVE = ("pending", "open")
MARKET_AFTER_TRIGGER = frozenset({OrderType.STOP_LOSS, OrderType.TAKE_PROFIT, OrderType.TRAILING_STOP})


@attrs.define(eq=False)
class PaperOrder:
    txid: str
    seq: int                                  # arrival order: time priority for shared liquidity
    pair: PairSpec
    side: OrderSide
    ordertype: OrderType
    vol: Decimal
    opentm: float
    price_text: str = "0"                     # descr.price as Kraken shows it
    price2_text: str = "0"                    # descr.price2
    leverage: int | None = None
    reduce_only: bool = False
    oflags: tuple[str, ...] = ()
    timeinforce: str = "GTC"
    starttm: float = 0.0
    expiretm: float = 0.0
    userref: int | None = None
    cl_ord_id: str | None = None
    refid: str | None = None                  # the order whose fill placed this conditional close
    close: CloseSpec | None = None
    trigger_price: Decimal | None = None      # stop/take-profit trigger; trailing: the current trigger
    limit_price: Decimal | None = None        # limit price (a trailing-stop-limit gets it when triggered)
    trailing_offset: PriceExpr | None = None
    limit_offset: PriceExpr | None = None     # trailing-stop-limit's price2
    watermark: Decimal | None = None          # best price since placement (trailing types)
    hold_price: Decimal | None = None         # the price a spot buy's hold is computed at
    status: str = "open"
    vol_exec: Decimal = ZERO
    cost: Decimal = ZERO
    fee: Decimal = ZERO
    stopprice: Decimal = ZERO
    limitprice: Decimal = ZERO
    triggered: bool = False
    posted: bool = False                      # rested in the book: later fills are maker fills
    ready_tick: int | None = None             # with fill latency: the tick it may fill from
    # (low, high): a tick needs this order only at price <= low or >= high (None = never on that
    # side). Kept by `matching`, so a tick skips the orders it cannot move with two comparisons.
    wake: tuple[Decimal | None, Decimal | None] = ALWAYS
    reason: str | None = None
    closetm: float | None = None
    misc: list[str] = attrs.Factory(list)
    trades: list[str] = attrs.Factory(list)
    hold_asset: str | None = None
    hold: Decimal = ZERO

    @property
    def remaining(self) -> Decimal:
        return self.vol - self.vol_exec

    @property
    def is_live(self) -> bool:
        return self.status in LIVE

    @property
    def awaiting_trigger(self) -> bool:
        return self.ordertype in TRIGGERED_TYPES and not self.triggered

    @property
    def is_market_phase(self) -> bool:
        """Fills at whatever the price is: a market order, or a triggered stop without a limit."""
        return self.ordertype is OrderType.MARKET or (self.triggered and self.ordertype in MARKET_AFTER_TRIGGER)

    @property
    def is_limit_phase(self) -> bool:
        return self.ordertype is OrderType.LIMIT or (self.triggered and self.ordertype in LIMIT_TYPES)

    @property
    def average_price(self) -> Decimal:
        return self.cost / self.vol_exec if self.vol_exec else ZERO

    def add_misc(self, flag: str) -> None:
        if flag not in self.misc:
            self.misc.append(flag)


@attrs.frozen
class TradeRecord:
    txid: str
    ordertxid: str
    postxid: str
    pair: PairSpec
    time: float
    side: OrderSide
    ordertype: OrderType
    price: Decimal
    cost: Decimal
    fee: Decimal
    vol: Decimal
    margin: Decimal
    leverage: int | None
    maker: bool
    trade_id: int
    misc: str = ""                            # "closing" when it closed (part of) a position
    posstatus: str | None = None              # "open" when it opened a margin position
