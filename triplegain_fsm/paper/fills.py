"""One fill: move the money, record the trade, update the order, release what it held.

Fees are charged in the quote currency at the pair's entry tier (taker or maker).
Spot fills move base and quote balances; leveraged fills open or close margin
position rows instead and settle only fees and realised profit in quote.
"""
from __future__ import annotations

from decimal import Decimal

from triplegain_fsm.enums import OrderSide
from triplegain_fsm.paper.fmt import quantize
from triplegain_fsm.paper.margin import MarginPosition
from triplegain_fsm.paper.orders import PaperOrder, TradeRecord
from triplegain_fsm.paper.pairs import PairSpec
from triplegain_fsm.paper.state import State

ZERO = Decimal(0)
POSTXID_SPOT = "TKH2SE-M7IF5-CFI7LT"   # Kraken's placeholder postxid on spot trades


def fee_for(pair: PairSpec, cost: Decimal, *, maker: bool) -> Decimal:
    pct = pair.maker_pct if maker else pair.taker_pct
    return quantize(cost * pct / 100, pair.cost_decimals, half_up=True)


def required_hold(order: PaperOrder) -> tuple[str | None, Decimal]:
    """What a live spot order reserves: the base it sells, or the quote (plus taker fee) it may spend."""
    if order.leverage or not order.is_live or order.remaining <= 0:
        return None, ZERO
    pair = order.pair
    if order.side is OrderSide.SELL:
        return pair.base, order.remaining
    price = order.hold_price or ZERO
    return pair.quote, order.remaining * price * (1 + pair.taker_pct / 100)


def sync_hold(state: State, order: PaperOrder) -> None:
    asset, amount = required_hold(order)
    if order.hold_asset is not None and order.hold:
        state.ledger.add_hold(order.hold_asset, -order.hold)
    if asset is not None and amount:
        state.ledger.add_hold(asset, amount)
    order.hold_asset, order.hold = asset, amount


def finish(state: State, order: PaperOrder, status: str, reason: str | None = None) -> None:
    """Close, cancel or expire an order: it leaves the book and releases its hold. Keeps vol_exec."""
    state.touch(order)
    order.status = status
    order.reason = reason
    order.closetm = state.now()
    state.unregister(order)
    sync_hold(state, order)
    if status == "closed" and order.close is not None:
        state.pending_closes.append(order)


def fill(state: State, order: PaperOrder, vol: Decimal, price: Decimal, *, maker: bool) -> list[TradeRecord]:
    """Execute up to `vol` of `order` at `price`; returns the trades made (none if refused)."""
    vol = min(quantize(vol, order.pair.lot_decimals, down=True), order.remaining)
    if vol <= 0:
        return []
    execute = _fill_margin if order.leverage else _fill_spot
    trades = execute(state, order, vol, price, maker)
    for trade in trades:
        order.vol_exec += trade.vol
        order.cost += trade.cost
        order.fee += trade.fee
        order.trades.append(trade.txid)
        state.trades[trade.txid] = trade
    if not order.is_live:
        return trades
    if order.remaining <= 0:
        finish(state, order, "closed")
    else:
        sync_hold(state, order)
        if order.reduce_only and state.positions.open_volume(order.pair.id, order.side.opposite) == 0:
            finish(state, order, "canceled", "Reduce only order: position closed")
    return trades


def _trade(state: State, order: PaperOrder, vol: Decimal, price: Decimal, maker: bool, **extra) -> TradeRecord:
    cost = vol * price
    return TradeRecord(
        txid=state.ids.trade_txid(), ordertxid=order.txid, postxid=extra.pop("postxid", POSTXID_SPOT),
        pair=order.pair, time=state.now(), side=order.side, ordertype=order.ordertype, price=price, cost=cost,
        fee=fee_for(order.pair, cost, maker=maker), vol=vol, margin=extra.pop("margin", ZERO),
        leverage=order.leverage, maker=maker, trade_id=state.ids.trade_number(), **extra,
    )


def _fill_spot(state: State, order: PaperOrder, vol: Decimal, price: Decimal, maker: bool) -> list[TradeRecord]:
    pair, ledger = order.pair, state.ledger
    trade = _trade(state, order, vol, price, maker)
    if order.side is OrderSide.BUY:
        own_hold = order.hold if order.hold_asset == pair.quote else ZERO
        if trade.cost + trade.fee > ledger.available(pair.quote) + own_hold:
            # A stop that gapped past the price it held for: Kraken cancels it rather than overdraw.
            finish(state, order, "canceled", "Insufficient funds")
            return []
        ledger.add(pair.quote, -(trade.cost + trade.fee))
        ledger.add(pair.base, vol)
    else:
        ledger.add(pair.base, -vol)
        ledger.add(pair.quote, trade.cost - trade.fee)
    return [trade]


def _fill_margin(state: State, order: PaperOrder, vol: Decimal, price: Decimal, maker: bool) -> list[TradeRecord]:
    """Close opposite rows first (FIFO), then open a row with what is left (never for reduce_only)."""
    pair, ledger, leverage = order.pair, state.ledger, order.leverage or 1
    trades: list[TradeRecord] = []
    closures = state.positions.close_fifo(pair.id, order.side, vol, price)
    closed = sum((c.vol for c in closures), ZERO)
    if closed:
        trade = _trade(state, order, closed, price, maker, postxid=closures[0].position.posid, misc="closing")
        ledger.add(pair.quote, sum((c.pnl for c in closures), ZERO) - trade.fee)
        trades.append(trade)
    opening = ZERO if order.reduce_only else vol - closed
    if opening:
        posid = state.ids.position_id()
        trade = _trade(state, order, opening, price, maker, postxid=posid, posstatus="open",
                       margin=opening * price / leverage)
        ledger.add(pair.quote, -trade.fee)
        state.positions.add(MarginPosition(
            posid=posid, ordertxid=order.txid, pair=pair, side=order.side, ordertype=order.ordertype,
            time=trade.time, leverage=leverage, vol=opening, cost=trade.cost, fee=trade.fee, oflags=order.oflags,
        ))
        trades.append(trade)
    return trades
