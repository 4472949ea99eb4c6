"""The REST methods: each turns parameters into an engine call and a Kraken result.

One small function per method, registered by name in PUBLIC and PRIVATE; the
dispatcher (`api`) does transport, auth, rate limits and faults around them.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import attrs

from triplegain_fsm.paper import market_data
from triplegain_fsm.paper.engine import Engine
from triplegain_fsm.paper.errors import ORDERS_LIMIT, PERMISSION_DENIED, KrakenRejection, invalid
from triplegain_fsm.paper.fmt import rfc1123, rfc3339
from triplegain_fsm.paper.pairs import PairSpec
from triplegain_fsm.paper.params import parse_add_order, parse_amend, parse_bool, parse_int, parse_txids
from triplegain_fsm.paper.ratelimit import RateLimiter, amend_cost, cancel_cost
from triplegain_fsm.paper.ws_tokens import TokenBook

Params = Mapping[str, str]


@attrs.frozen
class Context:
    engine: Engine
    limiter: RateLimiter | None = None
    tokens: TokenBook | None = None      # WebSocket tokens (GetWebSocketsToken)


Handler = Callable[[Context, Params], Any]


def _names(params: Params, name: str) -> list[str] | None:
    value = params.get(name)
    return [part.strip() for part in value.split(",") if part.strip()] if value else None


# -- public -------------------------------------------------------------------------------------

def time_(ctx: Context, params: Params) -> dict[str, Any]:
    now = ctx.engine.now()
    return {"unixtime": int(now), "rfc1123": rfc1123(now)}


def system_status(ctx: Context, params: Params) -> dict[str, Any]:
    return {"status": ctx.engine.system_status, "timestamp": rfc3339(ctx.engine.now())}


def asset_pairs(ctx: Context, params: Params) -> dict[str, Any]:
    registry = ctx.engine.registry
    names = _names(params, "pair")
    specs = [registry.resolve(n) for n in names] if names else list(registry.pairs.values())
    return {spec.id: ctx.engine.pair_entry(spec.id) for spec in specs}


def assets(ctx: Context, params: Params) -> dict[str, Any]:
    registry = ctx.engine.registry
    names = _names(params, "asset")
    specs = [registry.asset(n) for n in names] if names else list(registry.assets.values())
    return {spec.id: spec.to_kraken() for spec in specs}


def ticker(ctx: Context, params: Params) -> dict[str, Any]:
    return ctx.engine.ticker(_names(params, "pair"))


def _one_pair(ctx: Context, params: Params) -> PairSpec:
    names = _names(params, "pair")
    if not names or len(names) != 1:
        raise invalid("pair")
    return ctx.engine.registry.resolve(names[0])


def _bounded(params: Params, name: str, default: int, top: int) -> int:
    value = parse_int(params, name, default)
    if value is None or not 1 <= value <= top:
        raise invalid(name)
    return value


def depth(ctx: Context, params: Params) -> dict[str, Any]:
    """Depth (`pair`, `count` 1..500, default 100): synthetic levels around the last price (market_data)."""
    return market_data.depth(ctx.engine, _one_pair(ctx, params), _bounded(params, "count", 100, market_data.MAX_DEPTH))


def ohlc(ctx: Context, params: Params) -> dict[str, Any]:
    """OHLC (`pair`, `interval` minutes of Kraken's set, default 1, `since`): candles of the prints."""
    interval = parse_int(params, "interval", 1)
    if interval not in market_data.INTERVALS:
        raise invalid("interval")
    return market_data.ohlc(ctx.engine, _one_pair(ctx, params), interval, _time(params, "since"))


def recent_trades(ctx: Context, params: Params) -> dict[str, Any]:
    """Trades (`pair`, `since` seconds or nanoseconds, `count` 1..1000): the prints of the tape."""
    spec = _one_pair(ctx, params)
    count = _bounded(params, "count", market_data.MAX_TRADES, market_data.MAX_TRADES)
    return market_data.trades(ctx.engine, spec, market_data.since_seconds(_time(params, "since")), count)


# -- private: orders ----------------------------------------------------------------------------

def add_order(ctx: Context, params: Params) -> dict[str, Any]:
    new = parse_add_order(params)
    spec = ctx.engine.registry.find(new.pair)
    if ctx.limiter is not None and spec is not None and not new.validate:
        if ctx.engine.open_count(spec.id) >= ctx.limiter.tier.max_open_orders:
            raise KrakenRejection(ORDERS_LIMIT)
        ctx.limiter.charge_trading(spec.id, 1)
    return ctx.engine.add_order(new)


def cancel_order(ctx: Context, params: Params) -> dict[str, Any]:
    txid, cl_ord_id = params.get("txid") or None, params.get("cl_ord_id") or None
    if ctx.limiter is not None:
        for pair_id, age in ctx.engine.open_order_ages(txid=txid, cl_ord_id=cl_ord_id):
            ctx.limiter.charge_trading(pair_id, cancel_cost(age))
    return {"count": ctx.engine.cancel_order(txid=txid, cl_ord_id=cl_ord_id), "pending": False}


def amend_order(ctx: Context, params: Params) -> dict[str, Any]:
    amendment = parse_amend(params)
    if ctx.limiter is not None:
        for pair_id, age in ctx.engine.open_order_ages(txid=amendment.txid, cl_ord_id=amendment.cl_ord_id):
            ctx.limiter.charge_trading(pair_id, amend_cost(age))
    return ctx.engine.amend_order(amendment)


def cancel_all(ctx: Context, params: Params) -> dict[str, Any]:
    return {"count": ctx.engine.cancel_all()}


def cancel_all_orders_after(ctx: Context, params: Params) -> dict[str, Any]:
    timeout = parse_int(params, "timeout")
    if timeout is None:
        raise invalid("timeout")
    return ctx.engine.cancel_all_after(timeout)


def query_orders(ctx: Context, params: Params) -> dict[str, Any]:
    return ctx.engine.query_orders(
        parse_txids(params.get("txid")), trades=parse_bool(params, "trades"), userref=parse_int(params, "userref")
    )


def open_orders(ctx: Context, params: Params) -> dict[str, Any]:
    return ctx.engine.open_orders(
        trades=parse_bool(params, "trades"), userref=parse_int(params, "userref"),
        cl_ord_id=params.get("cl_ord_id") or None,
    )


def closed_orders(ctx: Context, params: Params) -> dict[str, Any]:
    return ctx.engine.closed_orders(
        trades=parse_bool(params, "trades"), userref=parse_int(params, "userref"),
        cl_ord_id=params.get("cl_ord_id") or None, start=params.get("start"), end=params.get("end"),
        ofs=parse_int(params, "ofs", 0) or 0, closetime=params.get("closetime") or "both",
    )


# -- private: trades, positions, balances -------------------------------------------------------

def _time(params: Params, name: str) -> float | None:
    value = params.get(name)
    if not value:
        return None
    try:
        return float(value)  # float-ok: time
    except ValueError:
        raise invalid(name) from None


def trades_history(ctx: Context, params: Params) -> dict[str, Any]:
    return ctx.engine.trades_history(
        start=_time(params, "start"), end=_time(params, "end"), ofs=parse_int(params, "ofs", 0) or 0
    )


def query_trades(ctx: Context, params: Params) -> dict[str, Any]:
    return ctx.engine.query_trades(parse_txids(params.get("txid"), limit=20))


def open_positions(ctx: Context, params: Params) -> dict[str, Any]:
    parse_bool(params, "docalcs")   # value and net are always computed; the flag is only checked
    return ctx.engine.open_positions(_names(params, "txid"))


def balance(ctx: Context, params: Params) -> dict[str, Any]:
    return ctx.engine.balance()


def balance_ex(ctx: Context, params: Params) -> dict[str, Any]:
    return ctx.engine.balance_ex()


def trade_balance(ctx: Context, params: Params) -> dict[str, Any]:
    return ctx.engine.trade_balance(params.get("asset") or "ZUSD")


def get_websockets_token(ctx: Context, params: Params) -> dict[str, Any]:
    """A token for the private WebSocket v2 (`paper.ws_server`): use it within 15 minutes."""
    if ctx.tokens is None:
        raise KrakenRejection(PERMISSION_DENIED)
    return ctx.tokens.issue()


PUBLIC: dict[str, Handler] = {
    "Time": time_, "SystemStatus": system_status, "AssetPairs": asset_pairs, "Assets": assets, "Ticker": ticker,
    "Depth": depth, "OHLC": ohlc, "Trades": recent_trades,
}
PRIVATE: dict[str, Handler] = {
    "AddOrder": add_order, "CancelOrder": cancel_order, "AmendOrder": amend_order, "CancelAll": cancel_all,
    "CancelAllOrdersAfter": cancel_all_orders_after, "QueryOrders": query_orders, "OpenOrders": open_orders,
    "ClosedOrders": closed_orders, "TradesHistory": trades_history, "QueryTrades": query_trades,
    "OpenPositions": open_positions, "Balance": balance, "BalanceEx": balance_ex, "TradeBalance": trade_balance,
    "GetWebSocketsToken": get_websockets_token,
}
